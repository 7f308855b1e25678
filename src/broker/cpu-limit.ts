/**
 * How many CPUs this process may use, as its cgroup's CPU quota says: a Kubernetes pod with
 * `limits.cpu: 1` on a 32-core node sees 32 CPUs through `os.availableParallelism()` but gets one
 * CPU's worth of time, so sizing shards by the CPU count would start 31 threads that only compete.
 *
 * The quota comes from cgroup v2 `cpu.max` ("150000 100000" = 1.5 CPUs, "max 100000" = none) or cgroup
 * v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = none). Each cgroup's limit is found through
 * /proc/self/mountinfo (where the hierarchy is mounted, and which part of it) and /proc/self/cgroup
 * (this process's place in it), and every ancestor up to the mount point is read too, because a
 * parent's quota caps its children. The smallest quota wins. Everything takes file contents through
 * a `ReadFile`, so tests feed sample files instead of needing a container. A CPU set (cpuset, pinned
 * CPUs) needs nothing here: libuv's `availableParallelism` already counts only the CPUs in the
 * process's affinity mask.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Returns a file's contents, or undefined when it does not exist or cannot be read. */
export type ReadFile = (file: string) => string | undefined;

export const readFileIfExists: ReadFile = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

/** A cgroup v2 `cpu.max`: CPUs as a fraction, or undefined for no limit (or an unreadable file). */
export function parseCpuMax(content: string): number | undefined {
  const fields = content.trim().split(/\s+/);
  if (fields.length !== 2 || fields[0] === 'max') return undefined;
  return quotaOverPeriod(fields[0], fields[1]);
}

/** cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`: CPUs, or undefined for no limit (-1). */
export function parseCfsQuota(quotaUs: string, periodUs: string): number | undefined {
  return quotaOverPeriod(quotaUs.trim(), periodUs.trim());
}

function quotaOverPeriod(quota: string, period: string): number | undefined {
  if (!/^\d+$/.test(quota) || !/^\d+$/.test(period)) return undefined;
  const q = Number(quota);
  const p = Number(period);
  return q > 0 && p > 0 ? q / p : undefined;
}

/** A cgroup filesystem mount: where it is mounted, and which path of the hierarchy that shows. */
export interface CgroupMount {
  version: 1 | 2;
  mountPoint: string;
  root: string;
}

/** The cgroup2 mount and the cgroup v1 mount that carries the `cpu` controller, from /proc/self/mountinfo. */
export function parseMountInfo(content: string): CgroupMount[] {
  const mounts: CgroupMount[] = [];
  for (const line of content.split('\n')) {
    // "36 25 0:32 / /sys/fs/cgroup/cpu rw,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct"
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fsType, , superOptions = ''] = line.slice(sep + 3).split(' ');
    if (left.length < 5) continue;
    const root = unescapeMountPath(left[3]);
    const mountPoint = unescapeMountPath(left[4]);
    if (fsType === 'cgroup2') mounts.push({ version: 2, mountPoint, root });
    else if (fsType === 'cgroup' && superOptions.split(',').includes('cpu')) mounts.push({ version: 1, mountPoint, root });
  }
  return mounts;
}

/** mountinfo writes space, tab, newline and backslash as octal escapes ("\040"). */
function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** This process's cgroup paths from /proc/self/cgroup: the v2 one ("0::/x") and the v1 `cpu` one. */
export function parseProcCgroup(content: string): { v2?: string; v1Cpu?: string } {
  const out: { v2?: string; v1Cpu?: string } = {};
  for (const line of content.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const id = line.slice(0, first);
    const controllers = line.slice(first + 1, second);
    const cgroupPath = line.slice(second + 1);
    if (id === '0' && controllers === '') out.v2 = cgroupPath;
    else if (controllers.split(',').includes('cpu')) out.v1Cpu = cgroupPath;
  }
  return out;
}

/**
 * The directories whose quota applies to this process, innermost first, ending at the mount point.
 * When the process's path lies outside what the mount shows (a container without its own cgroup
 * namespace sees the host's path), the mount point itself is this container's cgroup.
 */
export function cgroupDirs(mount: CgroupMount, cgroupPath: string): string[] {
  const rel = path.posix.relative(mount.root, cgroupPath);
  if (rel.startsWith('..') || path.posix.isAbsolute(rel)) return [mount.mountPoint];
  const segments = rel === '' ? [] : rel.split('/');
  const dirs: string[] = [];
  for (let n = segments.length; n > 0; n--) dirs.push(path.posix.join(mount.mountPoint, ...segments.slice(0, n)));
  dirs.push(mount.mountPoint);
  return dirs;
}

/** The smallest CPU quota over this process's cgroups (v2 and v1), or undefined when none is set. */
export function cgroupCpuLimit(read: ReadFile = readFileIfExists): number | undefined {
  const mountInfo = read('/proc/self/mountinfo');
  const procCgroup = read('/proc/self/cgroup');
  if (mountInfo === undefined || procCgroup === undefined) return undefined;
  const own = parseProcCgroup(procCgroup);
  let limit: number | undefined;
  const consider = (cpus: number | undefined): void => {
    if (cpus !== undefined && (limit === undefined || cpus < limit)) limit = cpus;
  };
  for (const mount of parseMountInfo(mountInfo)) {
    const cgroupPath = mount.version === 2 ? own.v2 : own.v1Cpu;
    if (cgroupPath === undefined) continue;
    for (const dir of cgroupDirs(mount, cgroupPath)) {
      if (mount.version === 2) {
        const max = read(path.posix.join(dir, 'cpu.max'));
        if (max !== undefined) consider(parseCpuMax(max));
      } else {
        const quota = read(path.posix.join(dir, 'cpu.cfs_quota_us'));
        const period = read(path.posix.join(dir, 'cpu.cfs_period_us'));
        if (quota !== undefined && period !== undefined) consider(parseCfsQuota(quota, period));
      }
    }
  }
  return limit;
}

/**
 * Whole CPUs this process can use: the CPU count, capped by the cgroup quota rounded up (a 1.5-CPU
 * quota can keep two threads busy half the time each). At least 1.
 */
export function cpuBudget(cpuCount: number = os.availableParallelism(), quota: number | undefined = cgroupCpuLimit()): number {
  const capped = quota === undefined ? cpuCount : Math.min(cpuCount, Math.ceil(quota));
  return Math.max(1, capped);
}
