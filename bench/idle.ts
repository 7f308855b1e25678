/**
 * Idle cost of a broker (issue 11, "Idle cost"): CPU per node of a cluster doing nothing, measured as
 * process CPU time (user + system, all threads, /proc/PID/stat) over a window after the cluster
 * settled, with the split by thread (/proc/PID/task/TID/stat: the main thread, each shard worker,
 * V8's and libuv's helpers) so a change can be attributed.
 *
 * Setups: `--nodes 1` is a single-node `sluice serve` (no seeds: the plain broker), `--nodes 3` three
 * `sluice serve` processes in cluster mode (bench/cluster-nodes.ts; `__consumer_offsets`, 16
 * partitions at RF 3, exists there), plus `--partitions N` partitions at replication factor 3 (RF 1 on
 * one node) created in topics of IDLE_TOPIC_PARTITIONS. `--seconds` (20) is the window, `--settle`
 * (10) the wait before it, `--profile DIR` runs node 1 with --cpu-prof (main thread and workers).
 * `--kills N` (3 nodes, after the window): N times kill -9 the leader of an idle partition (idle-0/k),
 * then send one record to it and time kill -> acknowledgement (the producer retries every 20-50 ms);
 * restart the node, wait for it to be ready and for KILL_SETTLE_MS, so the groups are idle again.
 * `SLUICE_BENCH_BROKER_CLI` points at another build's main.js, for a before/after on one machine.
 *
 * Usage: npm run build && npm run bench:idle -- --nodes 3 --partitions 1000
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Admin, Producer } from '../src/client/index.js';
import { isSluiceError } from '../src/errors.js';
import { spawnBroker, waitExit } from './broker-process.js';
import { brokerNodeArgs } from './harness/servers.js';
import { BenchCluster, cpuSeconds, killTracked, rssBytes, sumMetric, track } from './cluster-nodes.js';

const IDLE_TOPIC_PARTITIONS = 100;
const CLUSTER_READY_MS = 120_000;
const LEADERS_MS = 600_000;
const CREATE_RETRY_MS = 120_000;
const POLL_MS = 500;
/** Leader changes must stand still for this many polls (POLL_MS * 2 apart) before the window, at most STABLE_WAIT_MS. */
const STABLE_POLLS = 5;
const STABLE_WAIT_MS = 300_000;
/** After a killed node is back and ready, the wait before the next kill (groups quiesce again). */
const KILL_SETTLE_MS = 10_000;
/** How long one kill may take to an acknowledged record. */
const KILL_ACK_MS = 30_000;

interface Args {
  nodes: 1 | 3;
  partitions: number;
  seconds: number;
  settle: number;
  shards?: number;
  profileDir?: string;
  json: boolean;
  kills: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { nodes: 3, partitions: 0, seconds: 20, settle: 10, json: false, kills: 0 };
  const int = (f: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${f} takes an integer in [${min}, ${max}]; got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const v = (): string | undefined => argv[++i];
    if (f === '--nodes') {
      const n = int(f, v(), 1, 3);
      if (n !== 1 && n !== 3) throw new Error('--nodes takes 1 or 3');
      a.nodes = n;
    } else if (f === '--partitions') a.partitions = int(f, v(), 0, 100_000);
    else if (f === '--seconds') a.seconds = int(f, v(), 1, 3_600);
    else if (f === '--settle') a.settle = int(f, v(), 0, 3_600);
    else if (f === '--shards') a.shards = int(f, v(), 1, 64);
    else if (f === '--profile') a.profileDir = path.resolve(v() ?? '.');
    else if (f === '--json') a.json = true;
    else if (f === '--kills') a.kills = int(f, v(), 0, 100);
    else throw new Error(`unknown flag ${f}`);
  }
  return a;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const progress = (line: string): void => void process.stderr.write(`${line}\n`);

/** CPU seconds of each thread of `pid`, by "tid name". */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(`${tid} ${name}`, (Number(rest[11]) + Number(rest[12])) / 100);
    } catch {
      // the thread ended
    }
  }
  return out;
}

interface Node {
  id: number;
  pid: number;
  kill9?(): Promise<void>;
  restart?(): Promise<void>;
  address: string;
  http: string;
  stop(): Promise<void>;
}

async function startNodes(a: Args, root: string): Promise<Node[]> {
  const serveArgs = a.shards === undefined ? [] : ['--shards', String(a.shards)];
  const prof = [...brokerNodeArgs(), ...(a.profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', a.profileDir])];
  if (a.nodes === 1) {
    const b = await spawnBroker(path.join(root, 'n1'), serveArgs, {}, prof);
    track(b.child);
    return [{ id: 1, pid: b.child.pid!, address: b.grpcAddress, http: b.httpAddress, stop: async () => void (b.child.kill('SIGTERM'), await waitExit(b.child)) }];
  }
  const c = await BenchCluster.start({ root, serveArgs, nodeArgs: (id) => (id === 1 ? prof : brokerNodeArgs()) }, CLUSTER_READY_MS);
  return c.nodes.map((n) => {
    const node: Node = {
      id: n.id,
      pid: n.pid!,
      address: n.grpcAddress,
      http: n.httpAddress,
      stop: () => n.stop(),
      kill9: () => n.kill9(),
      restart: async () => {
        await n.start();
        node.pid = n.pid!;
        await c.waitReady(CLUSTER_READY_MS);
      },
    };
    return node;
  });
}

/** kill -9 the leader of idle-0/k, k = 0..kills-1; ms from the kill to the ack of a record sent after it. */
async function kills(a: Args, nodes: Node[], admin: Admin): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k < a.kills; k++) {
    const md = await admin.metadata(['idle-0']);
    const partition = k % md.topics[0]!.partitions.length;
    const leader = md.topics[0]!.partitions.find((p) => p.partition === partition)!.leader;
    const node = nodes.find((n) => n.id === leader)!;
    const producer = new Producer({ brokers: nodes.filter((n) => n !== node).map((n) => n.address), retries: 10_000, retryBackoffMs: 20, retryBackoffMaxMs: 50, requestTimeoutMs: 1_000, lingerMs: 0 });
    try {
      const t0 = performance.now();
      await node.kill9!();
      const sent = producer.send('idle-0', { partition, value: Buffer.from('x') });
      const ms = await Promise.race([sent.then(() => performance.now() - t0), sleep(KILL_ACK_MS).then(() => Number.NaN)]);
      out.push(ms);
      progress(`  kill ${k + 1}/${a.kills}: node ${leader} (leader of idle-0/${partition}) -> ack after ${Math.round(ms)} ms`);
    } finally {
      await producer.close().catch(() => {});
    }
    await node.restart!();
    await sleep(KILL_SETTLE_MS);
  }
  return out;
}

/** Leader changes a node's replicas have seen (sluice_leader_changes_total), or NaN. */
async function leaderChanges(n: Node): Promise<number> {
  try {
    return sumMetric(await (await fetch(`http://${n.http}/metrics`, { signal: AbortSignal.timeout(5_000) })).text(), 'sluice_leader_changes_total');
  } catch {
    return Number.NaN;
  }
}

/** CLOCK_MONOTONIC in microseconds: the clock of a V8 CPU profile's timestamps (for a window). */
const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

async function createPartitions(a: Args, admin: Admin): Promise<string[]> {
  const topics: string[] = [];
  const t0 = Date.now();
  for (let made = 0; made < a.partitions; ) {
    const n = Math.min(IDLE_TOPIC_PARTITIONS, a.partitions - made);
    const name = `idle-${topics.length}`;
    for (let attempt = 1; ; attempt++) {
      try {
        await admin.createTopic(name, { partitions: n, replicationFactor: a.nodes === 1 ? 1 : 3 });
        break;
      } catch (err) {
        if (attempt > 1 && isSluiceError(err, 'TOPIC_ALREADY_EXISTS')) break;
        const again = isSluiceError(err) && (err.retriable || err.code === 'REPLICATION_FACTOR_TOO_LARGE');
        if (!again || Date.now() - t0 > CREATE_RETRY_MS * (topics.length + 1)) throw err;
        progress(`  create ${name}: ${(err as Error).message}; retrying`);
        await sleep(POLL_MS);
      }
    }
    topics.push(name);
    made += n;
    progress(`  created ${made}/${a.partitions} partitions (${Math.round((Date.now() - t0) / 1000)} s)`);
  }
  if (topics.length === 0) return topics;
  for (let i = 0; Date.now() - t0 < LEADERS_MS && i < 100_000; i++) {
    try {
      const md = await admin.metadata(topics);
      if (md.topics.length === topics.length && md.topics.every((t) => t.partitions.every((p) => p.leader > 0))) return topics;
    } catch {
      // asked again
    }
    await sleep(POLL_MS);
  }
  throw new Error('not every partition got a leader');
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-idle-'));
  process.on('exit', killTracked);
  process.on('SIGINT', () => process.exit(130));
  const load0 = os.loadavg();
  progress(`idle: ${a.nodes} node(s), ${a.partitions} partitions; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  const nodes = await startNodes(a, root);
  const admin = new Admin({ brokers: nodes.map((n) => n.address), requestTimeoutMs: 30_000 });
  let second: Admin | null = null;
  const admin2 = (): Admin => (second ??= new Admin({ brokers: nodes.map((n) => n.address), requestTimeoutMs: 5_000 }));
  try {
    await createPartitions(a, admin);
    admin.close();
    await sleep(a.settle * 1000);
    // Settled means no leader moving: after a create, leader balancing hands partitions back to their
    // preferred replicas a few per pass for a while, and that is not idle.
    const s0 = Date.now();
    let last = (await Promise.all(nodes.map(leaderChanges))).reduce((x, y) => x + y, 0);
    for (let quiet = 0; quiet < STABLE_POLLS && Date.now() - s0 < STABLE_WAIT_MS; ) {
      await sleep(POLL_MS * 2);
      const now = (await Promise.all(nodes.map(leaderChanges))).reduce((x, y) => x + y, 0);
      quiet = now === last ? quiet + 1 : 0;
      last = now;
    }
    progress(`  leaders stable after ${Math.round((Date.now() - s0) / 1000)} s more`);
    const lc0 = await Promise.all(nodes.map(leaderChanges));
    const mono0 = monoUs();
    const cpu0 = nodes.map((n) => cpuSeconds(n.pid));
    const t0 = nodes.map((n) => threadCpu(n.pid));
    const w0 = performance.now();
    await sleep(a.seconds * 1000);
    const wall = (performance.now() - w0) / 1000;
    const cpu1 = nodes.map((n) => cpuSeconds(n.pid));
    const t1 = nodes.map((n) => threadCpu(n.pid));
    const mono1 = monoUs();
    const lc1 = await Promise.all(nodes.map(leaderChanges));
    const perNode = cpu1.map((c, i) => (c === null || cpu0[i] === null ? Number.NaN : (c - cpu0[i]!) / wall));
    const threads = t1.map((m, i) =>
      [...m]
        .map(([k, v]) => [k, (v - (t0[i]!.get(k) ?? v)) / wall] as const)
        .filter(([, v]) => v >= 0.001)
        .sort((x, y) => y[1] - x[1])
        .map(([k, v]) => `${k} ${(v * 100).toFixed(1)}%`),
    );
    const killMs = a.kills > 0 && a.nodes === 3 ? await kills(a, nodes, admin2()) : [];
    const load1 = os.loadavg();
    const report = {
      nodes: a.nodes,
      partitions: a.partitions,
      seconds: a.seconds,
      cpuSharePerNode: perNode,
      cpuShareTogether: perNode.reduce((x, y) => x + y, 0),
      rssMbPerNode: nodes.map((n) => Math.round((rssBytes(n.pid) ?? 0) / 2 ** 20)),
      threads,
      killMs,
      leaderChangesInWindow: lc1.map((x, i) => x - lc0[i]!),
      profileWindowUs: [mono0, mono1],
      loadAverage: { before: load0, after: load1 },
    };
    if (a.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else {
      process.stdout.write(
        `idle ${a.nodes} node(s), ${a.partitions} partitions, ${a.seconds} s: CPU per node ${perNode.map((x) => (x * 100).toFixed(1)).join('/')}% of one core ` +
          `(together ${(report.cpuShareTogether * 100).toFixed(1)}%), RSS ${report.rssMbPerNode.join('/')} MB, load average ${load1.map((x) => x.toFixed(1)).join(' ')}\n`,
      );
      if (killMs.length > 0) process.stdout.write(`  kill -9 of an idle partition's leader -> ack (ms): ${killMs.map((x) => Math.round(x)).join(', ')}\n`);
      process.stdout.write(`  leader changes in the window ${report.leaderChangesInWindow.join('/')}; monotonic window (us) ${mono0} ${mono1}\n`);
      for (const [i, t] of threads.entries()) process.stdout.write(`  node ${i + 1} threads: ${t.join(', ')}\n`);
    }
  } finally {
    admin.close();
    (second as Admin | null)?.close();
    await Promise.all(nodes.map((n) => n.stop()));
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
