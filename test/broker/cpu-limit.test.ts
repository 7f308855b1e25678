/**
 * Goal: the default shard count follows the pod's CPU limit (the cgroup quota), not the host's CPU
 * count. Method: feed cgroupCpuLimit the /proc and /sys files that a Kubernetes pod, a systemd host
 * and a Docker container without a cgroup namespace show (cgroup v2 and v1), as a map of path to
 * contents, and check the CPUs it finds and the shard budget that follows; then, where the machine
 * allows, run a real process in a real cgroup with a quota.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  cgroupCpuLimit,
  cgroupDirs,
  cpuBudget,
  parseCfsQuota,
  parseCpuMax,
  parseMountInfo,
  parseProcCgroup,
  type ReadFile,
} from '../../src/broker/cpu-limit.js';

const files = (m: Record<string, string>): ReadFile => (p) => m[p];

const V2_MOUNT = '30 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';
const V1_MOUNTS = [
  '31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755',
  '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct',
  '33 31 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,memory',
  '34 31 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:11 - cgroup2 cgroup2 rw',
  '',
].join('\n');

describe('cgroup file parsers', () => {
  it('reads cpu.max as quota / period, "max" as no limit', () => {
    expect(parseCpuMax('100000 100000\n')).toBe(1);
    expect(parseCpuMax('150000 100000\n')).toBe(1.5);
    expect(parseCpuMax('50000 100000')).toBe(0.5);
    expect(parseCpuMax('max 100000\n')).toBeUndefined();
    for (const bad of ['', 'garbage', '0 100000', '100000 0', '-1 100000', '1 2 3']) expect(parseCpuMax(bad), bad).toBeUndefined();
  });

  it('reads cgroup v1 cfs quota and period, -1 as no limit', () => {
    expect(parseCfsQuota('200000\n', '100000\n')).toBe(2);
    expect(parseCfsQuota('-1\n', '100000\n')).toBeUndefined();
    expect(parseCfsQuota('x', '100000')).toBeUndefined();
  });

  it('finds the cgroup2 mount and the v1 mount with the cpu controller, unescaping paths', () => {
    expect(parseMountInfo(V2_MOUNT)).toEqual([{ version: 2, mountPoint: '/sys/fs/cgroup', root: '/' }]);
    expect(parseMountInfo(V1_MOUNTS)).toEqual([
      { version: 1, mountPoint: '/sys/fs/cgroup/cpu,cpuacct', root: '/' },
      { version: 2, mountPoint: '/sys/fs/cgroup/unified', root: '/' },
    ]);
    expect(parseMountInfo('40 31 0:40 /a\\040b /mnt/c\\040g rw - cgroup2 cgroup2 rw')).toEqual([{ version: 2, mountPoint: '/mnt/c g', root: '/a b' }]);
  });

  it('reads the v2 path and the v1 cpu path of this process', () => {
    expect(parseProcCgroup('0::/\n')).toEqual({ v2: '/' });
    expect(parseProcCgroup('12:memory:/x\n4:cpu,cpuacct:/docker/abc\n0::/\n')).toEqual({ v2: '/', v1Cpu: '/docker/abc' });
  });

  it('lists the cgroup and its ancestors up to the mount point, or only the mount point when the path is outside it', () => {
    const mount = { version: 2 as const, mountPoint: '/sys/fs/cgroup', root: '/' };
    expect(cgroupDirs(mount, '/')).toEqual(['/sys/fs/cgroup']);
    expect(cgroupDirs(mount, '/kubepods/pod1/c1')).toEqual(['/sys/fs/cgroup/kubepods/pod1/c1', '/sys/fs/cgroup/kubepods/pod1', '/sys/fs/cgroup/kubepods', '/sys/fs/cgroup']);
    expect(cgroupDirs({ ...mount, root: '/docker/abc' }, '/docker/abc/sub')).toEqual(['/sys/fs/cgroup/sub', '/sys/fs/cgroup']);
    expect(cgroupDirs({ ...mount, root: '/docker/abc' }, '/other')).toEqual(['/sys/fs/cgroup']);
  });
});

describe('cgroupCpuLimit', () => {
  it('a Kubernetes pod on cgroup v2 with its own cgroup namespace: cpu.max at the mount point', () => {
    const read = files({ '/proc/self/mountinfo': V2_MOUNT, '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '100000 100000\n' });
    expect(cgroupCpuLimit(read)).toBe(1);
  });

  it('a cgroup v2 host path: the smallest quota over the cgroup and its parents wins', () => {
    const read = files({
      '/proc/self/mountinfo': V2_MOUNT,
      '/proc/self/cgroup': '0::/kubepods.slice/pod1.slice/cri-c1.scope\n',
      '/sys/fs/cgroup/kubepods.slice/pod1.slice/cri-c1.scope/cpu.max': 'max 100000\n',
      '/sys/fs/cgroup/kubepods.slice/pod1.slice/cpu.max': '150000 100000\n',
      '/sys/fs/cgroup/kubepods.slice/cpu.max': '3200000 100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(1.5);
  });

  it('cgroup v2 with no quota anywhere: no limit', () => {
    const read = files({ '/proc/self/mountinfo': V2_MOUNT, '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'max 100000\n' });
    expect(cgroupCpuLimit(read)).toBeUndefined();
  });

  it('cgroup v1 (hybrid host): cfs quota on the cpu,cpuacct hierarchy', () => {
    const base = { '/proc/self/mountinfo': V1_MOUNTS, '/proc/self/cgroup': '4:cpu,cpuacct:/\n0::/\n', '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n' };
    expect(cgroupCpuLimit(files({ ...base, '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n' }))).toBeUndefined();
    expect(cgroupCpuLimit(files({ ...base, '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '250000\n' }))).toBe(2.5);
  });

  it('cgroup v1 in a container that sees the host path: the quota at its own mount point', () => {
    const read = files({
      '/proc/self/mountinfo': '50 40 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n',
      '/proc/self/cgroup': '4:cpu,cpuacct:/docker/abc\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '100000\n',
      '/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    });
    expect(cgroupCpuLimit(read)).toBe(1);
  });

  it('no /proc (not Linux): no limit', () => {
    expect(cgroupCpuLimit(files({}))).toBeUndefined();
  });
});

describe('cpuBudget', () => {
  it('caps the CPU count by the quota rounded up, at least 1', () => {
    expect(cpuBudget(32, 1)).toBe(1);
    expect(cpuBudget(32, 1.5)).toBe(2);
    expect(cpuBudget(2, 8)).toBe(2);
    expect(cpuBudget(4, undefined)).toBe(4);
    expect(cpuBudget(4, 0.1)).toBe(1);
  });
});

/**
 * The real files: a child process placed in a fresh cgroup with a half-CPU quota must read 0.5 from
 * its own /proc/self/mountinfo, /proc/self/cgroup and the cgroup filesystem. Needs root and a
 * writable cgroup v1 `cpu` hierarchy (CI on this machine has both); elsewhere it says it skipped.
 */
const v1Cpu = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).find((m) => m.version === 1 && m.root === '/');
const canUseCgroups = process.getuid?.() === 0 && v1Cpu !== undefined && accessible(v1Cpu.mountPoint);

function accessible(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

describe('cgroupCpuLimit in a real cgroup', () => {
  if (!canUseCgroups) console.warn('\n*** SKIPPED real-cgroup check: needs root and a writable cgroup v1 cpu hierarchy ***\n');
  it.skipIf(!canUseCgroups)('a process in a cgroup with cfs_quota 50000/100000 sees 0.5 CPU and a budget of 1', () => {
    const dir = path.join(v1Cpu!.mountPoint, `sluice-test-${process.pid}`);
    mkdirSync(dir);
    try {
      writeFileSync(path.join(dir, 'cpu.cfs_period_us'), '100000');
      writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), '50000');
      const module = fileURLToPath(new URL('../../dist/src/broker/cpu-limit.js', import.meta.url));
      expect(existsSync(module), `${module}: run npm run build first`).toBe(true);
      const script = `import(${JSON.stringify(module)}).then((m) => console.log(JSON.stringify({ limit: m.cgroupCpuLimit(), budget: m.cpuBudget() })))`;
      // The shell moves itself into the cgroup, then execs node, so node starts inside it.
      const out = execFileSync('/bin/sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec "$0" --input-type=module -e "$1"`, process.execPath, script], { encoding: 'utf8', timeout: 30_000 });
      expect(JSON.parse(out)).toEqual({ limit: 0.5, budget: 1 });
    } finally {
      rmdirSync(dir);
    }
  });
});
