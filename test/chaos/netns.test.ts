/**
 * Goal: `--net netns` (test/chaos/netns.ts) gives each chaos node a host of its own and cuts a
 * partition in the kernel the way a real one behaves: packets dropped, so a connect hangs until its
 * own timeout (never refused), while other links and the harness's own traffic pass; healing restores
 * the link; nothing is left behind. And a short 3-node chaos run on namespaces is clean.
 * Method: (a) three namespaces (host block 240) with a TCP echo server in each, started through the
 * same `ip netns exec` prefix as the brokers; connects from inside a namespace (a child run there)
 * before, during and after a cut between nodes 1 and 2; the servers' pids checked to be the programs
 * themselves, in their namespace (so kill -9 and SIGSTOP reach them); `ip netns list` and `ip link`
 * after the teardown. (b) `runSchedule` on host block 241 with a fixed 12 s schedule: a minority
 * partition around a partition leader, then kill -9 of a leader.
 * Needs root and `ip netns` (skipped otherwise, with the reason) and `npm run build` (the brokers run
 * from dist/). Every wait is bounded.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { waitExit } from '../../bench/broker-process.js';
import { NetnsHosts, netnsLeftovers, netnsUnavailable } from './netns.js';
import { runSchedule } from './run.js';
import type { Schedule } from './schedule.js';

const unavailable = netnsUnavailable();
if (unavailable !== null) console.log(`netns.test.ts skipped: ${unavailable}`);

const UNIT_BASE = 240;
const RUN_BASE = 241;
const PORT = 7000;
/** A connect that has not completed in this long counts as hanging (a dropped SYN is retried after 1 s). */
const CONNECT_PROBE_MS = 1_500;
const SERVER_START_MS = 10_000;

/** A TCP echo server in node `id`'s namespace, on its address; resolves once it listens. */
async function startServer(net: NetnsHosts, id: number): Promise<ChildProcess> {
  const script = `require('node:net').createServer((c) => { c.on('error', () => {}); c.pipe(c); }).listen(${PORT}, '${net.address(id)}', () => console.log('listening'));`;
  const [cmd, ...args] = [...net.wrap(id), process.execPath, '-e', script];
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server ${id} did not listen in ${SERVER_START_MS} ms`)), SERVER_START_MS);
    child.stdout!.on('data', () => (clearTimeout(timer), resolve()));
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`server ${id} exited ${code}`))));
  });
  return child;
}

/** A connect to node `to`'s server: from node `from`'s namespace (a child run there), or from the harness (from = 0). */
function connect(net: NetnsHosts, from: number, to: number): string {
  const script = `const s = require('node:net').connect({ host: '${net.address(to)}', port: ${PORT}, timeout: ${CONNECT_PROBE_MS} });
s.on('connect', () => { console.log('connected'); s.destroy(); });
s.on('timeout', () => { console.log('timeout'); s.destroy(); });
s.on('error', (e) => console.log('error ' + e.code));`;
  const argv = [...(from === 0 ? [] : net.wrap(from)), process.execPath, '-e', script];
  return execFileSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: CONNECT_PROBE_MS + SERVER_START_MS }).trim();
}

const inode = (p: string): number => fs.statSync(p).ino;

describe.skipIf(unavailable !== null)('chaos nodes on ip netns hosts', () => {
  const outRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chaos-netns-'));
  afterAll(() => fs.rmSync(outRoot, { recursive: true, force: true }));

  it('reaches every node from the harness; a cut drops packets between two nodes only; healing restores; nothing is left', async () => {
    const net = NetnsHosts.create(UNIT_BASE, 3);
    const servers: ChildProcess[] = [];
    try {
      // Built over a crashed run's leftovers: the same names are removed first.
      expect(netnsLeftovers(UNIT_BASE).namespaces.sort()).toEqual(['sluice-240-1', 'sluice-240-2', 'sluice-240-3']);
      const again = NetnsHosts.create(UNIT_BASE, 3);
      for (let id = 1; id <= 3; id++) servers.push(await startServer(again, id));
      for (let id = 1; id <= 3; id++) {
        // `ip netns exec` execs: the child's pid is the program itself, in its namespace.
        const pid = servers[id - 1].pid!;
        expect(fs.readlinkSync(`/proc/${pid}/exe`)).toBe(fs.realpathSync(process.execPath));
        expect(inode(`/proc/${pid}/ns/net`)).toBe(inode(`/run/netns/${again.namespace(id)}`));
        expect(connect(again, 0, id), `harness -> n${id}`).toBe('connected');
      }
      expect(connect(again, 1, 2)).toBe('connected');
      const before = await again.droppedPackets();
      await again.apply([{ from: 1, to: 2, mode: 'drop' }]);
      expect(connect(again, 1, 2), 'n1 -> n2 cut: the SYN is dropped, not refused').toBe('timeout');
      expect(connect(again, 2, 1), 'n2 -> n1 cut').toBe('timeout');
      expect(connect(again, 2, 3), 'n2 -> n3 is not cut').toBe('connected');
      expect(connect(again, 1, 3), 'n1 -> n3 is not cut').toBe('connected');
      expect(connect(again, 0, 1), 'the harness is never cut').toBe('connected');
      expect(await again.droppedPackets()).toBeGreaterThan(before);
      await again.healAll();
      expect(connect(again, 1, 2)).toBe('connected');
      expect(connect(again, 2, 1)).toBe('connected');
      // SIGSTOP and kill -9 reach the program through its pid.
      servers[2].kill('SIGSTOP');
      const state = (): string => fs.readFileSync(`/proc/${servers[2].pid}/stat`, 'utf8').split(') ')[1][0];
      const stopBy = Date.now() + SERVER_START_MS;
      while (state() !== 'T' && Date.now() < stopBy) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(state(), 'stopped').toBe('T');
      servers[2].kill('SIGKILL');
      expect((await waitExit(servers[2])).signal).toBe('SIGKILL');
      again.close();
    } finally {
      for (const s of servers) s.kill('SIGKILL');
      net.close();
    }
    expect(netnsLeftovers(UNIT_BASE)).toEqual({ namespaces: [], links: [] });
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toMatch(/sluice-240-/);
    expect(execFileSync('ip', ['link'], { encoding: 'utf8' })).not.toMatch(/slc-240-/);
  }, 90_000);

  it('a short 3-node run on namespaces (a minority partition, a kill) is clean and leaves nothing behind', async () => {
    const schedule: Schedule = {
      seed: 9241,
      nodes: 3,
      durationMs: 12_000,
      kinds: ['partition', 'kill'],
      faults: [
        { id: 1, kind: 'partition', shape: 'minority', nodes: [1], target: 'leader', startMs: 1_500, durationMs: 2_500, detail: 'partition: cut a partition leader off the others for 2500 ms' },
        { id: 2, kind: 'kill', nodes: [2], target: 'leader', startMs: 5_500, durationMs: 500, detail: 'kill -9 a partition leader (power cut), restart after 500 ms' },
      ],
    };
    const r = await runSchedule({ seed: schedule.seed, nodes: 3, durationMs: schedule.durationMs, kinds: schedule.kinds, outRoot, schedule, hostBase: RUN_BASE, net: 'netns' });
    const why = `${JSON.stringify(r.verdict.samples.slice(0, 5))} stops=${JSON.stringify(r.stops)} report ${r.outDir}/report.html`;
    expect(r.net).toBe('netns');
    expect({ lost: r.verdict.lost, inconsistent: r.verdict.inconsistent, duplicated: r.verdict.duplicated, hwBackwards: r.verdict.hwBackwards, replicaMismatches: r.verdict.replicaMismatches }, why).toEqual({ lost: 0, inconsistent: 0, duplicated: 0, hwBackwards: 0, replicaMismatches: 0 });
    expect(r.verdict.ok, why).toBe(true);
    expect(r.verdict.acked, why).toBeGreaterThan(0);
    const history = fs.readFileSync(path.join(r.outDir, 'history.jsonl'), 'utf8');
    expect(history).toContain('network netns: namespaces sluice-241-1..sluice-241-3');
    // The nodes listened in their namespaces, and the partition dropped real packets in the kernel.
    expect(history).toContain('n1=10.211.241.1:');
    const dropped = [...history.matchAll(/the kernel dropped (\d+) packets/g)].map((m) => Number(m[1]));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]).toBeGreaterThan(0);
    expect(JSON.parse(fs.readFileSync(path.join(r.outDir, 'verdict.json'), 'utf8')).net).toBe('netns');
    expect(netnsLeftovers(RUN_BASE)).toEqual({ namespaces: [], links: [] });
  }, 90_000);
});
