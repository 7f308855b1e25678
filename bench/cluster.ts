/**
 * Cluster benchmark (`npm run bench:cluster`, after `npm run build`; never a timed test): issue 11's
 * "Benchmarks" on three `sluice serve` processes, node N on 127.0.0.N with its own ports and data dir
 * under one temp dir, the default flush policy (fsync on every node), controller voters 1,2,3. The load
 * runs in processes of its own (bench/broker-load.ts for throughput, bench/cluster-load.ts for the
 * paced phases), through the TS client, which sends each partition's requests to its leader; this
 * process only orchestrates and reads the brokers from outside (/readyz, /metrics, /proc).
 *
 * Phases (`--phases` picks a subset; progress lines go to stderr):
 *  1. throughput: replication factor 3 and 1 in the same run, acks=all, 100-byte records in
 *     1,000-record raw v2 batches (as bench:broker's raw phase), `--partitions` partitions per topic,
 *     warmed up first. Target >= 400k records/s at RF 3.
 *  2. e2e: produce -> a Subscribe stream on the leader receives, at `--e2e-rate` (50k) records/s, RF 3;
 *     p50/p99/p99.9 (hdr-histogram-js) from each value's intended send time. Target p99 <= 25 ms. Each
 *     run sends at the rate for `--e2e-warmup-seconds` (5) before it measures, as throughput warms up: on
 *     a fresh cluster the first seconds of the first run measured p99s of 100-200 ms against 30-60 ms
 *     after (JIT compilation, new streams), and that is not the steady state the figure describes.
 *  3. steady (only with `--steady SECONDS`; the issue asks 600): a paced produce load at
 *     `--steady-rate`, and the rise of `sluice_leader_changes_total` summed over the three nodes'
 *     /metrics (every partition in the cluster). Target 0.
 *  4. failover: under a paced produce load, `--kills` times: kill -9 the leader of a partition (each
 *     partition in turn), time from the kill to the first acknowledgement of a produce sent to that
 *     partition after the process was gone (so it is the new leader's); restart the node, wait until
 *     every replica of the topic is in sync again. Target p50 <= 1.5 s, worst <= 3 s.
 *  5. idle (a fresh cluster): `--idle-partitions` (1,000) partitions at RF 3 created in topics of
 *     IDLE_TOPIC_PARTITIONS, all with leaders, leader changes standing still for IDLE_SETTLE_MS (balancing
 *     after the creates is not idle; bounded; reported: the leader changes since the first create, first
 *     leaders not on their preferred replica, leaders that moved after a create's metadata named them,
 *     and epochs above 1), then no traffic: CPU of the three brokers together over
 *     `--idle-seconds` (30) from /proc/PID/stat, and each one's RSS. Target <= 15% of one core together,
 *     <= 500 MB RSS each.
 * Throughput and e2e repeat `--runs` times (default 3, fresh topics on the same cluster) and the table
 * quotes medians; failover quotes the p50 and worst of its kills. Beside each figure: the load
 * process's CPU and event-loop delay (STALLED when the load itself was late) and the machine's load
 * average, since on a shared 2-core machine the figures are noisy.
 *
 * Flags: --runs N, --json, --phases throughput,e2e,steady,failover,idle, --records N (per throughput
 * phase, default 3,000,000: at replication factor 3 a million records took about 4 s, most of it the
 * ramp, and measured 230-280k/s where the same builds measured 300-400k/s over 3 million), --warmup N (records, default 100,000), --partitions N (default 6),
 * --load-processes N (1), --concurrency N (16), --connections N (4), --e2e-rate N, --e2e-seconds N (20), --e2e-warmup-seconds N (5),
 * --e2e-partitions N (3), --steady SECONDS, --steady-rate N (10,000), --kills N (20), --failover-rate N
 * (10,000), --idle-partitions N, --idle-seconds N, --shards N (per broker), --profile DIR
 * (--cpu-prof of one broker, `--profile-node ID`, default 1; written when the bench stops it).
 * Every broker runs with the node flags it ships with (BROKER_NODE_FLAGS in src/constants.ts, as `npm
 * start` and the image); SLUICE_BENCH_BROKER_NODE_ARGS="--flag ..." replaces them (empty: none), for A/B.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Admin } from '../src/client/index.js';
import { isSluiceError } from '../src/errors.js';
import { BenchCluster, cpuSeconds, killTracked, rssBytes, track } from './cluster-nodes.js';
import type { ClusterLoadFromParent, ClusterLoadJob, ClusterLoadResult, ClusterLoadToParent } from './cluster-load.js';
import { runLoads, type MergedLoad } from './load-process.js';
import { describeLoad, median, type LoadSelfReport } from './load-probe.js';
import { brokerNodeArgs } from './harness/servers.js';

const PHASE_NAMES = ['throughput', 'e2e', 'steady', 'failover', 'idle'] as const;
type PhaseName = (typeof PHASE_NAMES)[number];

const RECORDS_PER_REQUEST = 1_000;
const VALUE_BYTES = 100;
/** Records per request of the paced loads (steady, failover). */
const PACED_RECORDS_PER_REQUEST = 100;
/** Idle phase: partitions per CreateTopic (the 1,000 are created in batches of this). */
const IDLE_TOPIC_PARTITIONS = 50;
/** Idle phase: quiet time after the last leader is elected, before the CPU window opens. */
const IDLE_SETTLE_MS = 5_000;
/** The longest the idle phase waits for leader changes to stand still before it measures anyway. */
const IDLE_SETTLE_MAX_MS = 300_000;
/** How long a fresh cluster may take until every /readyz answers 200. */
const CLUSTER_READY_MS = 60_000;
/** How long new partitions may take until each has a leader. */
const LEADERS_MS = 120_000;
/** Failover: how long the first acknowledgement after a kill may take before the kill counts as failed. */
const FAILOVER_ACK_MS = 30_000;
/** Failover: how long a restarted node may take to be ready and back in sync on every partition. */
const CATCH_UP_MS = 120_000;
/** Deadline of one admin call (creating 50 RF-3 partitions took over 10 s on this loaded machine). */
const ADMIN_TIMEOUT_MS = 30_000;
/** How long a CreateTopic may be retried (see BenchAdmin.createTopic), and the pause between tries. */
const CREATE_RETRY_MS = 60_000;
const CREATE_RETRY_PAUSE_MS = 500;
/** A paced load process that has not answered its result this long after 'stop' is killed. */
const LOAD_RESULT_MS = 60_000;
/** Polling period of the bounded waits (metadata, readiness). */
const POLL_MS = 100;

const TARGETS = Object.freeze({
  throughputRf3RecordsPerS: 400_000,
  e2eP99Ms: 25,
  failoverP50Ms: 1_500,
  failoverWorstMs: 3_000,
  idleCpuShareOfOneCore: 0.15,
  idleRssBytesEach: 500 * 1024 * 1024,
  steadyLeaderChanges: 0,
});

interface Args {
  runs: number;
  json: boolean;
  phases: Set<PhaseName>;
  records: number;
  warmupRecords: number;
  partitions: number;
  loadProcesses: number;
  concurrency: number;
  connections: number;
  e2eRate: number;
  e2eSeconds: number;
  e2eWarmupSeconds: number;
  e2ePartitions: number;
  steadySeconds: number;
  steadyRate: number;
  kills: number;
  failoverRate: number;
  idlePartitions: number;
  idleSeconds: number;
  shards?: number;
  profileDir?: string;
  profileNode: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    runs: 3, json: false, phases: new Set(PHASE_NAMES.filter((p) => p !== 'steady')), records: 3_000_000, warmupRecords: 100_000, partitions: 6,
    loadProcesses: 1, concurrency: 16, connections: 4, e2eRate: 50_000, e2eSeconds: 20, e2eWarmupSeconds: 5, e2ePartitions: 3, steadySeconds: 0, steadyRate: 10_000,
    kills: 20, failoverRate: 10_000, idlePartitions: 1_000, idleSeconds: 30, profileNode: 1,
  };
  const int = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
    return n;
  };
  let phasesGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    const v = (): string | undefined => argv[++i];
    if (f === '--json') a.json = true;
    else if (f === '--runs') a.runs = int(f, v(), 1, 20);
    else if (f === '--phases') {
      const names = (v() ?? '').split(',').filter((x) => x !== '');
      const bad = names.filter((x) => !(PHASE_NAMES as readonly string[]).includes(x));
      if (names.length === 0 || bad.length > 0) throw new Error(`--phases takes a comma-separated list of ${PHASE_NAMES.join(', ')}; got ${names.join(',')}`);
      a.phases = new Set(names as PhaseName[]);
      phasesGiven = true;
    } else if (f === '--records') a.records = int(f, v(), 1_000, 1e9);
    else if (f === '--warmup') a.warmupRecords = int(f, v(), 0, 1e8);
    else if (f === '--partitions') a.partitions = int(f, v(), 1, 1_000);
    else if (f === '--load-processes') a.loadProcesses = int(f, v(), 1, 16);
    else if (f === '--concurrency') a.concurrency = int(f, v(), 1, 1_024);
    else if (f === '--connections') a.connections = int(f, v(), 1, 64);
    else if (f === '--e2e-rate') a.e2eRate = int(f, v(), 1, 10_000_000);
    else if (f === '--e2e-seconds') a.e2eSeconds = int(f, v(), 1, 3_600);
    else if (f === '--e2e-warmup-seconds') a.e2eWarmupSeconds = int(f, v(), 0, 600);
    else if (f === '--e2e-partitions') a.e2ePartitions = int(f, v(), 1, 1_000);
    else if (f === '--steady') a.steadySeconds = int(f, v(), 1, 86_400);
    else if (f === '--steady-rate') a.steadyRate = int(f, v(), 100, 10_000_000);
    else if (f === '--kills') a.kills = int(f, v(), 1, 1_000);
    else if (f === '--failover-rate') a.failoverRate = int(f, v(), 100, 10_000_000);
    else if (f === '--idle-partitions') a.idlePartitions = int(f, v(), 1, 100_000);
    else if (f === '--idle-seconds') a.idleSeconds = int(f, v(), 1, 3_600);
    else if (f === '--shards') a.shards = int(f, v(), 1, 64);
    else if (f === '--profile') a.profileDir = path.resolve(v() ?? '.');
    else if (f === '--profile-node') a.profileNode = int(f, v(), 1, 3);
    else throw new Error(`unknown argument ${f}: see the header of bench/cluster.ts`);
  }
  if (a.steadySeconds > 0 && !phasesGiven) a.phases.add('steady');
  if (a.phases.has('steady') && a.steadySeconds === 0) throw new Error('the steady phase needs --steady SECONDS (the issue asks 600)');
  return a;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const progress: (line: string) => void = (line) => void process.stderr.write(`${line}\n`);

/** Polls `pred` every POLL_MS until it holds or `ms` passes; throws naming `what` then. */
async function until(what: string, ms: number, pred: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  for (let i = 0; Date.now() - t0 < ms && i < 1_000_000; i++) {
    if (await pred()) return Date.now() - t0;
    await sleep(POLL_MS);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/**
 * Admin clients for the bench: `any` goes to whichever node answers (metadata, topic admin); `of(id)`
 * asks one node, since a partition's in-sync replicas are known only on its leader's node.
 */
class BenchAdmin {
  readonly any: Admin;
  createRetries = 0;
  private closed = false;
  private readonly perNode = new Map<number, Admin>();

  constructor(private readonly cluster: BenchCluster) {
    this.any = new Admin({ brokers: cluster.addresses, requestTimeoutMs: ADMIN_TIMEOUT_MS });
  }

  of(id: number): Admin {
    let a = this.perNode.get(id);
    if (a === undefined) this.perNode.set(id, (a = new Admin({ brokers: this.cluster.node(id).grpcAddress, requestTimeoutMs: 2_000 })));
    return a;
  }

  /**
   * CreateTopic, retried (bounded by CREATE_RETRY_MS) while the controller sees fewer live nodes than
   * the replication factor or answers a retriable error: on a loaded machine gossip may suspect a
   * busy node for a moment. Each retry is a progress line and counted in `createRetries`.
   */
  async createTopic(name: string, o: { partitions: number; replicationFactor: number }): Promise<void> {
    const t0 = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.any.createTopic(name, o);
        return;
      } catch (err) {
        if (attempt > 1 && isSluiceError(err, 'TOPIC_ALREADY_EXISTS')) return;
        const again = isSluiceError(err) && (err.retriable || err.code === 'REPLICATION_FACTOR_TOO_LARGE');
        if (!again || Date.now() - t0 > CREATE_RETRY_MS) throw err;
        this.createRetries++;
        progress(`  create ${name}: ${(err as Error).message}; retrying`);
        await sleep(CREATE_RETRY_PAUSE_MS);
      }
    }
  }

  metadata(topics: string[]): ReturnType<Admin['metadata']> {
    return this.any.metadata(topics);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.any.close();
    for (const a of this.perNode.values()) a.close();
  }
}

function makeAdmin(cluster: BenchCluster): BenchAdmin {
  return new BenchAdmin(cluster);
}

/**
 * Every partition of `topics` has a leader, and with `allInSync` every replica is in the in-sync set
 * its leader's node reports (false while any node does not answer).
 */
async function partitionsReady(admin: BenchAdmin, topics: string[], allInSync: boolean): Promise<boolean> {
  try {
    const md = await admin.metadata(topics);
    if (md.topics.length < topics.length || !md.topics.every((t) => t.partitions.every((p) => p.leader > 0))) return false;
    if (!allInSync) return true;
    const leaders = new Set(md.topics.flatMap((t) => t.partitions.map((p) => p.leader)));
    for (const id of leaders) {
      const seen = await admin.of(id).metadata(topics);
      const expected = md.topics.flatMap((t) => t.partitions.filter((p) => p.leader === id).map((p) => `${t.name}/${p.partition}`));
      const synced = new Set(seen.topics.flatMap((t) => t.partitions.filter((p) => p.leader === id && (p.inSyncReplicas ?? []).length === p.replicas.length).map((p) => `${t.name}/${p.partition}`)));
      if (!expected.every((k) => synced.has(k))) return false;
    }
    return true;
  } catch {
    return false;
  }
}

async function createTopics(admin: BenchAdmin, topics: string[], partitions: number, replicationFactor: number): Promise<void> {
  for (const t of topics) await admin.createTopic(t, { partitions, replicationFactor });
  await until(`leaders of ${topics.join(', ')}`, LEADERS_MS, () => partitionsReady(admin, topics, false));
}

// --- 1. throughput -----------------------------------------------------------------------------------

interface ThroughputResult {
  replicationFactor: number;
  recordsPerSec: number;
  p50Ms?: number;
  p99Ms?: number;
  load: MergedLoad['load'];
}

async function throughput(args: Args, cluster: BenchCluster, admin: BenchAdmin, run: number, rf: number): Promise<ThroughputResult> {
  const topic = `tput-rf${rf}-r${run}`;
  const warm = `warm-rf${rf}-r${run}`;
  await createTopics(admin, [topic, warm], args.partitions, rf);
  const requests = Math.ceil(args.records / RECORDS_PER_REQUEST);
  const n = args.loadProcesses;
  const m = await runLoads(Array.from({ length: n }, (_, i) => ({
    address: cluster.addresses.join(','), kind: 'produce-raw' as const, topic, warmupTopic: warm, partitions: args.partitions,
    requests: Math.floor(requests / n) + (i < requests % n ? 1 : 0), warmupRequests: Math.ceil(args.warmupRecords / RECORDS_PER_REQUEST),
    concurrency: args.concurrency, connections: args.connections, acks: 'all' as const, recordsPerRequest: RECORDS_PER_REQUEST, valueBytes: VALUE_BYTES, seed: i,
  })), track);
  const r = { replicationFactor: rf, recordsPerSec: m.records / m.seconds, p50Ms: m.p50Ms, p99Ms: m.p99Ms, load: m.load };
  progress(`  throughput RF ${rf}: ${Math.round(r.recordsPerSec).toLocaleString('en-US')} records/s, request p50 ${r.p50Ms?.toFixed(1)} ms p99 ${r.p99Ms?.toFixed(1)} ms, ${describeLoad({ ...m.load, loopDelayP50Ms: 0 })}`);
  return r;
}

// --- the paced load process (e2e, steady, failover) --------------------------------------------------

const CLUSTER_LOAD_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cluster-load.js');

class PacedLoad {
  readonly warm: Promise<void>;
  readonly done: Promise<ClusterLoadResult>;
  private readonly child: ChildProcess;
  private readonly acks = new Map<number, (m: { ackMs: number; sentMs: number }) => void>();
  private nextWatch = 1;

  constructor(job: ClusterLoadJob) {
    this.child = fork(CLUSTER_LOAD_SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    track(this.child);
    let onWarm!: () => void;
    let onFail!: (err: Error) => void;
    const failed = new Promise<never>((_, reject) => (onFail = reject));
    failed.catch(() => {});
    this.warm = Promise.race([new Promise<void>((resolve) => (onWarm = resolve)), failed]);
    this.done = new Promise((resolve, reject) => {
      this.child.on('message', (m: ClusterLoadToParent) => {
        if (m.type === 'warm') onWarm();
        else if (m.type === 'acked') this.acks.get(m.id)?.(m);
        else if (m.type === 'result') resolve(m.result);
        else {
          const err = new Error(`${job.kind} load process failed: ${m.message}`);
          onFail(err);
          reject(err);
        }
      });
      this.child.once('exit', (code, signal) => {
        const err = new Error(`${job.kind} load process exited (${code ?? signal}) without a result`);
        onFail(err);
        reject(err);
      });
    });
    this.done.catch(() => {});
    this.child.send(job);
  }

  private tell(m: ClusterLoadFromParent): void {
    if (this.child.connected) this.child.send(m);
  }

  go(): void {
    this.tell({ type: 'go' });
  }

  /** Resolves with the first ack (epoch ms) of a produce to `partition` sent at or after `sinceMs`; null after `ms`. */
  firstAckAfter(partition: number, sinceMs: number, ms: number): Promise<{ ackMs: number; sentMs: number } | null> {
    const id = this.nextWatch++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.acks.delete(id);
        resolve(null);
      }, ms);
      this.acks.set(id, (m) => {
        clearTimeout(timer);
        this.acks.delete(id);
        resolve(m);
      });
      this.tell({ type: 'watch', id, partition, sinceMs });
    });
  }

  async stop(): Promise<ClusterLoadResult> {
    this.tell({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), LOAD_RESULT_MS);
    try {
      return await this.done;
    } finally {
      clearTimeout(timer);
    }
  }
}

// --- 2. e2e ------------------------------------------------------------------------------------------

interface E2eResult {
  ratePerS: number;
  achievedRatePerS: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  missing: number;
  failed: number;
  load: LoadSelfReport;
  errors: string[];
}

async function e2e(args: Args, cluster: BenchCluster, admin: BenchAdmin, run: number): Promise<E2eResult> {
  const topic = `e2e-r${run}`;
  await createTopics(admin, [topic], args.e2ePartitions, 3);
  const load = new PacedLoad({ kind: 'e2e', addresses: cluster.addresses, topic, partitions: args.e2ePartitions, ratePerS: args.e2eRate, valueBytes: VALUE_BYTES, recordsPerRequest: RECORDS_PER_REQUEST, seconds: args.e2eSeconds, warmupSeconds: args.e2eWarmupSeconds });
  await load.warm;
  load.go();
  const r = await load.done;
  const l = r.latency!;
  const out = { ratePerS: args.e2eRate, achievedRatePerS: r.achievedRatePerS, p50Ms: l.p50Ms, p99Ms: l.p99Ms, p999Ms: l.p999Ms, maxMs: l.maxMs, missing: r.missing ?? 0, failed: r.failed, load: r.self, errors: r.errors };
  progress(`  e2e at ${args.e2eRate.toLocaleString('en-US')}/s after a ${args.e2eWarmupSeconds} s warm-up (reached ${Math.round(r.achievedRatePerS).toLocaleString('en-US')}/s): p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms, p99.9 ${l.p999Ms.toFixed(1)} ms, max ${l.maxMs.toFixed(1)} ms; missing ${out.missing}, failed ${r.failed}; ${describeLoad(r.self)}${r.errors.length > 0 ? `; errors: ${r.errors.join(' | ')}` : ''}`);
  return out;
}

// --- 3. steady ---------------------------------------------------------------------------------------

interface SteadyResult {
  seconds: number;
  ratePerS: number;
  achievedRatePerS: number;
  /** Rise of sluice_leader_changes_total per node over the window (null: the node did not answer). */
  leaderChangesPerNode: Array<number | null>;
  leaderChanges: number;
  failedAttempts: number;
  load: LoadSelfReport;
  errors: string[];
}

async function leaderChanges(cluster: BenchCluster): Promise<Array<number | null>> {
  return Promise.all(cluster.nodes.map((n) => n.metricSum('sluice_leader_changes_total')));
}

async function steady(args: Args, cluster: BenchCluster, admin: BenchAdmin): Promise<SteadyResult> {
  const topic = 'steady';
  await createTopics(admin, [topic], args.partitions, 3);
  const load = new PacedLoad({ kind: 'paced', addresses: cluster.addresses, topic, partitions: args.partitions, ratePerS: args.steadyRate, valueBytes: VALUE_BYTES, recordsPerRequest: PACED_RECORDS_PER_REQUEST, seconds: 0 });
  await load.warm;
  // Leaders of the new partitions settle (and are counted) before the window opens.
  await until('steady topic in sync', LEADERS_MS, () => partitionsReady(admin, [topic], true));
  const before = await leaderChanges(cluster);
  load.go();
  const t0 = Date.now();
  for (let s = 0; Date.now() - t0 < args.steadySeconds * 1000 && s < 1e6; s++) {
    await sleep(Math.min(60_000, args.steadySeconds * 1000 - (Date.now() - t0)));
    const now = await leaderChanges(cluster);
    progress(`  steady: ${Math.round((Date.now() - t0) / 1000)} s of ${args.steadySeconds}, leader changes so far ${now.reduce<number>((a, x, i) => a + ((x ?? 0) - (before[i] ?? 0)), 0)}`);
  }
  const after = await leaderChanges(cluster);
  const r = await load.stop();
  const perNode = after.map((x, i) => (x === null || before[i] === null ? null : x - before[i]!));
  const out = { seconds: args.steadySeconds, ratePerS: args.steadyRate, achievedRatePerS: r.achievedRatePerS, leaderChangesPerNode: perNode, leaderChanges: perNode.reduce<number>((a, x) => a + (x ?? 0), 0), failedAttempts: r.failed, load: r.self, errors: r.errors };
  progress(`  steady ${args.steadySeconds} s at ${Math.round(r.achievedRatePerS).toLocaleString('en-US')}/s: leader changes ${out.leaderChanges} (per node ${perNode.join('/')}), failed attempts ${r.failed}; ${describeLoad(r.self)}`);
  return out;
}

// --- 4. failover -------------------------------------------------------------------------------------

interface FailoverResult {
  kills: number;
  /** Kill -> first ack on the new leader, per kill (null: no ack within FAILOVER_ACK_MS). */
  msPerKill: Array<number | null>;
  /** Over the kills that got an ack. */
  p50Ms: number;
  /** Infinity (null in --json) when any kill got no ack within FAILOVER_ACK_MS. */
  worstMs: number;
  /** Restart -> ready and every replica in sync again, per kill. */
  catchUpMs: number[];
  failedAttempts: number;
  load: LoadSelfReport;
  errors: string[];
}

async function failover(args: Args, cluster: BenchCluster, admin: BenchAdmin): Promise<FailoverResult> {
  const topic = 'failover';
  const partitions = 3;
  await createTopics(admin, [topic], partitions, 3);
  const load = new PacedLoad({ kind: 'paced', addresses: cluster.addresses, topic, partitions, ratePerS: args.failoverRate, valueBytes: VALUE_BYTES, recordsPerRequest: PACED_RECORDS_PER_REQUEST, seconds: 0 });
  await load.warm;
  load.go();
  const msPerKill: Array<number | null> = [];
  const catchUpMs: number[] = [];
  try {
    for (let k = 0; k < args.kills; k++) {
      await until('every replica in sync', CATCH_UP_MS, () => partitionsReady(admin, [topic], true));
      const partition = k % partitions;
      const md = await admin.metadata([topic]);
      const leader = md.topics[0]!.partitions.find((p) => p.partition === partition)!.leader;
      const node = cluster.node(leader);
      const t0 = Date.now();
      await node.kill9();
      const ack = await load.firstAckAfter(partition, Date.now(), FAILOVER_ACK_MS);
      const ms = ack === null ? null : ack.ackMs - t0;
      msPerKill.push(ms);
      const t1 = Date.now();
      await node.start();
      await until(`node ${leader} ready`, CATCH_UP_MS, () => node.ready());
      await until('every replica in sync after the restart', CATCH_UP_MS, () => partitionsReady(admin, [topic], true));
      catchUpMs.push(Date.now() - t1);
      const now = (await admin.metadata([topic])).topics[0]!.partitions.find((p) => p.partition === partition)!.leader;
      progress(`  kill ${k + 1}/${args.kills}: node ${leader} (leader of ${topic}/${partition}) -> first ack ${ms === null ? `NONE in ${FAILOVER_ACK_MS} ms` : `after ${ms} ms`}; restarted and in sync in ${catchUpMs.at(-1)} ms (leader now node ${now})`);
    }
  } catch (err) {
    await load.stop().catch(() => null);
    throw err;
  }
  const r = await load.stop();
  const ok = msPerKill.filter((x): x is number => x !== null);
  return {
    kills: args.kills, msPerKill, p50Ms: ok.length > 0 ? median(ok) : Number.NaN, worstMs: ok.length === msPerKill.length ? Math.max(...ok) : Number.POSITIVE_INFINITY,
    catchUpMs, failedAttempts: r.failed, load: r.self, errors: r.errors,
  };
}

// --- 5. idle -----------------------------------------------------------------------------------------

interface IdleResult {
  partitions: number;
  seconds: number;
  /** CPU of the three brokers together, as a share of one core. */
  cpuShareOfOneCore: number;
  cpuSharePerNode: number[];
  rssBytesPerNode: Array<number | null>;
  createSeconds: number;
  /** CreateTopic calls retried because the controller briefly saw a node as not live (a loaded machine). */
  createRetries: number;
  /** How long leader changes took to stand still after the last partition had a leader (balancing). */
  settleSeconds: number;
  /** Leader changes during the measured window, over the three nodes (0 when it was idle). */
  windowLeaderChanges: number;
  /** sluice_leader_changes_total over the three nodes, from before the first create until they stood still. */
  leaderChangesFromCreates: number;
  /** The part of those after every partition had a leader (leader balancing moving leaderships). */
  leaderChangesAfterLeaders: number;
  /** Partitions whose leader, once every partition had one, was not their preferred replica (the first). */
  notPreferredAtFirstLeaders: number;
  /**
   * Partitions whose leader moved after GetMetadata named it right after its CreateTopic answered:
   * each is a NOT_LEADER (or a forwarded hop) for a client that took that answer.
   */
  movedAfterCreate: number;
  /** Partitions with a leader epoch above 1 once leader changes stood still (a transfer or re-election). */
  epochAboveFirst: number;
}

async function idle(args: Args, root: string): Promise<IdleResult> {
  const cluster = await startCluster(args, path.join(root, 'idle'));
  const admin = makeAdmin(cluster);
  try {
    const topics: string[] = [];
    const lcCreates = await leaderChanges(cluster);
    /** The leader GetMetadata named for each partition right after its create ("topic/partition" -> node). */
    const leaderAtCreate = new Map<string, number>();
    const t0 = Date.now();
    for (let made = 0; made < args.idlePartitions; ) {
      const n = Math.min(IDLE_TOPIC_PARTITIONS, args.idlePartitions - made);
      const name = `idle-${topics.length}`;
      await admin.createTopic(name, { partitions: n, replicationFactor: 3 });
      for (const t of (await admin.metadata([name])).topics) for (const p of t.partitions) leaderAtCreate.set(`${t.name}/${p.partition}`, p.leader);
      topics.push(name);
      made += n;
      progress(`  idle: created ${made}/${args.idlePartitions} partitions (${Math.round((Date.now() - t0) / 1000)} s)`);
    }
    const waited = await until('every idle partition has a leader', LEADERS_MS * 5, () => partitionsReady(admin, topics, false));
    const createSeconds = (Date.now() - t0) / 1000;
    const lcLeaders = await leaderChanges(cluster);
    const first = (await admin.metadata(topics)).topics.flatMap((t) => t.partitions);
    const notPreferredAtFirstLeaders = first.filter((p) => p.leader !== p.replicas[0]).length;
    progress(`  idle: every partition has a leader ${Math.round(waited / 1000)} s after the last create; waiting for leader changes to stand still for ${IDLE_SETTLE_MS / 1000} s`);
    admin.close();
    // After a create, leader balancing moves leaderships to the preferred replicas for a minute or two:
    // that is not idle. Wait (bounded) until no node's sluice_leader_changes_total moved for IDLE_SETTLE_MS.
    const s0 = Date.now();
    let last = JSON.stringify(await leaderChanges(cluster));
    let stillSince = Date.now();
    while (Date.now() - stillSince < IDLE_SETTLE_MS && Date.now() - s0 < IDLE_SETTLE_MAX_MS) {
      await sleep(1_000);
      const now = JSON.stringify(await leaderChanges(cluster));
      if (now !== last) {
        last = now;
        stillSince = Date.now();
        progress(`  idle: leader changes still moving ${Math.round((Date.now() - s0) / 1000)} s in (${now})`);
      }
    }
    const settleSeconds = (Date.now() - s0) / 1000;
    const lc0 = await leaderChanges(cluster);
    const sum = (a: Array<number | null>, b: Array<number | null>): number => a.reduce<number>((acc, x, k) => acc + (x === null || b[k] === null ? 0 : x - b[k]!), 0);
    const after = makeAdmin(cluster);
    const settled = await after.metadata(topics).finally(() => after.close());
    const settledParts = settled.topics.flatMap((t) => t.partitions.map((p) => ({ key: `${t.name}/${p.partition}`, leader: p.leader, epoch: p.leaderEpoch ?? 0 })));
    const moves = {
      leaderChangesFromCreates: sum(lc0, lcCreates),
      leaderChangesAfterLeaders: sum(lc0, lcLeaders),
      notPreferredAtFirstLeaders,
      movedAfterCreate: settledParts.filter((p) => (leaderAtCreate.get(p.key) ?? 0) !== 0 && leaderAtCreate.get(p.key) !== p.leader).length,
      epochAboveFirst: settledParts.filter((p) => p.epoch > 1).length,
    };
    const noLeaderAtCreate = [...leaderAtCreate.values()].filter((l) => l === 0).length;
    progress(`  idle: leader changes from the first create until still ${moves.leaderChangesFromCreates} (${moves.leaderChangesAfterLeaders} after every partition had a leader); not on the preferred replica when all had leaders: ${notPreferredAtFirstLeaders}; leader moved after the create's metadata named it: ${moves.movedAfterCreate} (no leader named yet: ${noLeaderAtCreate}); epoch above 1 when still: ${moves.epochAboveFirst}`);
    const pids = cluster.nodes.map((n) => n.pid!);
    const cpu0 = pids.map(cpuSeconds);
    const w0 = performance.now();
    await sleep(args.idleSeconds * 1000);
    const wall = (performance.now() - w0) / 1000;
    const cpu1 = pids.map(cpuSeconds);
    const perNode = cpu1.map((c, i) => (c === null || cpu0[i] === null ? Number.NaN : (c - cpu0[i]!) / wall));
    const lc1 = await leaderChanges(cluster);
    const windowLeaderChanges = lc1.reduce<number>((a, x, i) => a + (x === null || lc0[i] === null ? 0 : x - lc0[i]!), 0);
    const r = { partitions: args.idlePartitions, seconds: args.idleSeconds, cpuShareOfOneCore: perNode.reduce((a, x) => a + x, 0), cpuSharePerNode: perNode, rssBytesPerNode: pids.map(rssBytes), createSeconds, createRetries: admin.createRetries, settleSeconds, windowLeaderChanges, ...moves };
    progress(`  idle: CPU ${(r.cpuShareOfOneCore * 100).toFixed(1)}% of one core together (${perNode.map((x) => (x * 100).toFixed(1)).join('/')}%), RSS ${r.rssBytesPerNode.map((x) => (x === null ? '?' : Math.round(x / 2 ** 20))).join('/')} MB; settled after ${Math.round(settleSeconds)} s, ${windowLeaderChanges} leader change(s) in the window`);
    return r;
  } finally {
    admin.close();
    await cluster.stop();
  }
}

// --- main --------------------------------------------------------------------------------------------

async function startCluster(args: Args, root: string): Promise<BenchCluster> {
  fs.mkdirSync(root, { recursive: true });
  const serveArgs = args.shards === undefined ? [] : ['--shards', String(args.shards)];
  // The shipped node flags, or SLUICE_BENCH_BROKER_NODE_ARGS's (bench/harness/servers.ts).
  const nodeArgs = (id: number): string[] => [...brokerNodeArgs(), ...(args.profileDir !== undefined && id === args.profileNode ? ['--cpu-prof', '--cpu-prof-dir', args.profileDir] : [])];
  const t0 = Date.now();
  const c = await BenchCluster.start({ root, serveArgs, nodeArgs }, CLUSTER_READY_MS);
  progress(`cluster up in ${Date.now() - t0} ms: ${c.addresses.join(', ')}`);
  return c;
}

interface Report {
  setup: Record<string, unknown>;
  throughput?: { runs: Array<{ rf3: ThroughputResult; rf1: ThroughputResult }>; rf3RecordsPerSec: number; rf1RecordsPerSec: number };
  e2e?: { runs: E2eResult[]; p50Ms: number; p99Ms: number; p999Ms: number };
  steady?: SteadyResult;
  failover?: FailoverResult;
  idle?: IdleResult;
  loadAverageAtEnd?: number[];
}

async function runMain(args: Args, root: string, report: Report): Promise<void> {
  const needMain = ['throughput', 'e2e', 'steady', 'failover'].some((p) => args.phases.has(p as PhaseName));
  if (needMain) {
    const cluster = await startCluster(args, path.join(root, 'main'));
    const admin = makeAdmin(cluster);
    try {
      const tput: Array<{ rf3: ThroughputResult; rf1: ThroughputResult }> = [];
      const e2es: E2eResult[] = [];
      for (let run = 1; run <= args.runs && (args.phases.has('throughput') || args.phases.has('e2e')); run++) {
        progress(`run ${run}/${args.runs} (load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}):`);
        if (args.phases.has('throughput')) tput.push({ rf3: await throughput(args, cluster, admin, run, 3), rf1: await throughput(args, cluster, admin, run, 1) });
        if (args.phases.has('e2e')) e2es.push(await e2e(args, cluster, admin, run));
      }
      if (tput.length > 0) report.throughput = { runs: tput, rf3RecordsPerSec: median(tput.map((r) => r.rf3.recordsPerSec)), rf1RecordsPerSec: median(tput.map((r) => r.rf1.recordsPerSec)) };
      if (e2es.length > 0) report.e2e = { runs: e2es, p50Ms: median(e2es.map((r) => r.p50Ms)), p99Ms: median(e2es.map((r) => r.p99Ms)), p999Ms: median(e2es.map((r) => r.p999Ms)) };
      if (args.phases.has('steady')) {
        progress(`steady run, ${args.steadySeconds} s (load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}):`);
        report.steady = await steady(args, cluster, admin);
      }
      if (args.phases.has('failover')) {
        progress(`failover, ${args.kills} kills (load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}):`);
        report.failover = await failover(args, cluster, admin);
      }
    } catch (err) {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\nbroker stderr tails:\n${cluster.nodes.map((n) => `node ${n.id}: ${n.stderr().trim().slice(-1500)}`).join('\n')}`, { cause: err });
    } finally {
      admin.close();
      await cluster.stop();
    }
  }
  if (args.phases.has('idle')) {
    progress(`idle, ${args.idlePartitions} partitions at RF 3 on a fresh cluster (load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}):`);
    report.idle = await idle(args, root);
  }
}

function printTable(args: Args, report: Report): void {
  const rows: string[][] = [];
  const met = (ok: boolean): string => (ok ? 'yes' : 'NO');
  const loadCell = (l: Pick<LoadSelfReport, 'cpuCores' | 'loopDelayP99Ms' | 'loopDelayMaxMs' | 'stalled'>): string => `${l.cpuCores.toFixed(2)} cores, loop p99/max ${l.loopDelayP99Ms.toFixed(1)}/${l.loopDelayMaxMs.toFixed(1)} ms${l.stalled ? ' STALLED' : ''}`;
  const t = report.throughput;
  if (t !== undefined) {
    const last = t.runs.at(-1)!;
    const range = (f: (r: { rf3: ThroughputResult; rf1: ThroughputResult }) => number): string => `${Math.round(Math.min(...t.runs.map(f)) / 1000)}k-${Math.round(Math.max(...t.runs.map(f)) / 1000)}k`;
    rows.push(['throughput RF 3 (records/s)', Math.round(t.rf3RecordsPerSec).toLocaleString('en-US'), range((r) => r.rf3.recordsPerSec), `>= ${(TARGETS.throughputRf3RecordsPerS / 1000).toFixed(0)}k`, met(t.rf3RecordsPerSec >= TARGETS.throughputRf3RecordsPerS), loadCell(last.rf3.load)]);
    rows.push(['throughput RF 1 (records/s)', Math.round(t.rf1RecordsPerSec).toLocaleString('en-US'), range((r) => r.rf1.recordsPerSec), '(beside RF 3)', '-', loadCell(last.rf1.load)]);
  }
  const e = report.e2e;
  if (e !== undefined) {
    const last = e.runs.at(-1)!;
    rows.push([`e2e p99 at ${(args.e2eRate / 1000).toFixed(0)}k/s RF 3 (ms)`, e.p99Ms.toFixed(1), `p50 ${e.p50Ms.toFixed(1)}, p99.9 ${e.p999Ms.toFixed(1)}; sent ${Math.round(median(e.runs.map((r) => r.achievedRatePerS)) / 1000)}k/s`, `<= ${TARGETS.e2eP99Ms}`, met(e.p99Ms <= TARGETS.e2eP99Ms), loadCell(last.load)]);
  }
  const s = report.steady;
  if (s !== undefined) rows.push([`leader changes in ${s.seconds} s steady`, String(s.leaderChanges), `per node ${s.leaderChangesPerNode.join('/')}`, '0', met(s.leaderChanges === 0), loadCell(s.load)]);
  const f = report.failover;
  if (f !== undefined) {
    const failedKills = f.msPerKill.filter((x) => x === null).length;
    rows.push([`failover p50 over ${f.kills} kills (ms)`, String(Math.round(f.p50Ms)), failedKills > 0 ? `${failedKills} kill(s) with no ack` : '', `<= ${TARGETS.failoverP50Ms}`, met(f.p50Ms <= TARGETS.failoverP50Ms), loadCell(f.load)]);
    rows.push(['failover worst (ms)', Number.isFinite(f.worstMs) ? String(Math.round(f.worstMs)) : 'none', `catch-up p50 ${Math.round(median(f.catchUpMs.length > 0 ? f.catchUpMs : [Number.NaN]))} ms`, `<= ${TARGETS.failoverWorstMs}`, met(f.worstMs <= TARGETS.failoverWorstMs), '']);
  }
  const i = report.idle;
  if (i !== undefined) {
    const rssMax = Math.max(...i.rssBytesPerNode.map((x) => x ?? Number.POSITIVE_INFINITY));
    rows.push([`idle CPU, ${i.partitions} partitions RF 3 (% of one core)`, (i.cpuShareOfOneCore * 100).toFixed(1), `per node ${i.cpuSharePerNode.map((x) => (x * 100).toFixed(1)).join('/')}`, `<= ${TARGETS.idleCpuShareOfOneCore * 100}`, met(i.cpuShareOfOneCore <= TARGETS.idleCpuShareOfOneCore), '']);
    rows.push([`leader changes after ${i.partitions} creates`, String(i.leaderChangesFromCreates), `${i.leaderChangesAfterLeaders} once all had leaders, over ${Math.round(i.settleSeconds)} s; ${i.notPreferredAtFirstLeaders} first leaders not preferred, ${i.movedAfterCreate} moved after the create, ${i.epochAboveFirst} at epoch > 1`, '', '', '']);
    rows.push(['idle RSS per broker (MB)', String(Math.round(rssMax / 2 ** 20)), i.rssBytesPerNode.map((x) => (x === null ? '?' : Math.round(x / 2 ** 20))).join('/'), `<= ${TARGETS.idleRssBytesEach / 2 ** 20}`, met(rssMax <= TARGETS.idleRssBytesEach), '']);
  }
  const head = ['figure', 'value', 'detail', 'target', 'met', 'load process'];
  const widths = head.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k]!.length)));
  const line = (cells: string[]): string => cells.map((c, k) => (k === 0 || k === 2 || k === 5 ? c.padEnd(widths[k]!) : c.padStart(widths[k]!))).join('  ');
  console.log(`\nmedians of ${args.runs} run(s) for throughput and e2e; three brokers and the load share this machine's ${os.availableParallelism()} CPUs`);
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  console.log(`machine load average: ${(report.setup.loadAverageAtStart as number[]).map((x) => x.toFixed(2)).join(' ')} at start, ${report.loadAverageAtEnd!.map((x) => x.toFixed(2)).join(' ')} at end (a shared machine: figures are noisy)`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-cluster-'));
  const cleanup = (): void => {
    killTracked();
    fs.rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', killTracked);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      progress(`${sig}: killing the brokers and load processes`);
      cleanup();
      process.exit(130);
    });
  }
  const report: Report = {
    setup: {
      phases: [...args.phases], runs: args.runs, nodes: 3, partitions: args.partitions, valueBytes: VALUE_BYTES, recordsPerRequest: RECORDS_PER_REQUEST,
      records: args.records, warmupRecords: args.warmupRecords, loadProcesses: args.loadProcesses, concurrency: args.concurrency, connections: args.connections,
      e2eRate: args.e2eRate, e2eSeconds: args.e2eSeconds, e2eWarmupSeconds: args.e2eWarmupSeconds, brokerNodeArgs: brokerNodeArgs(), e2ePartitions: args.e2ePartitions, steadySeconds: args.steadySeconds, steadyRate: args.steadyRate,
      kills: args.kills, failoverRate: args.failoverRate, idlePartitions: args.idlePartitions, idleSeconds: args.idleSeconds, shards: args.shards ?? 'default',
      cpus: os.availableParallelism(), loadAverageAtStart: os.loadavg(), targets: TARGETS,
    },
  };
  progress(`bench:cluster: phases ${[...args.phases].join(', ')}; machine load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} on ${os.availableParallelism()} CPUs`);
  try {
    await runMain(args, root, report);
  } finally {
    cleanup();
  }
  report.loadAverageAtEnd = os.loadavg();
  if (args.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else printTable(args, report);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  killTracked();
  process.exit(1);
});
