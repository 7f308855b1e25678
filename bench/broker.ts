/**
 * Broker benchmark (`npm run bench:broker`; never a timed test).
 *
 * Setup, as issues 3 and 16 fix it: the broker runs in its own process (`sluice serve`, spawned here),
 * and the load runs in load processes of its own (bench/broker-load.ts, forked per phase,
 * `--load-processes N` of them sharing the requests), so this process only orchestrates and measures
 * nothing itself. Each load process warms up first (the phase's own requests against a warm-up topic:
 * JIT, connections, the broker's first allocations), then all start together on 'go'. Beside each
 * figure the report prints the load processes' CPU (cores) and event-loop delay (p99, max): a load
 * process that was busy or stalled says so ("STALLED"), so a low figure is not blamed on the broker
 * when the load was the limit. The whole run (fresh broker, every phase) repeats `--runs N` times
 * (default 3) and the table quotes each phase's median; `--json` has every run.
 *
 * One topic per phase with 8 partitions, 100-byte values, 1,000 records per request, acks=all with the
 * default flush policy (fsync, group commit).
 *  - produce raw:        Kafka v2 batches encoded up front by the TS client (encodeBatch), sent as record_batch;
 *  - produce raw idempotent (with --idempotence): the raw phase again on its own topic, through
 *                        idempotent producers (sequences stamped in the batch headers, dedup on the broker);
 *  - produce raw+encode: the TS client encodes every request afresh (informational);
 *  - produce structured: protobuf `records`, encoded into batches by the broker;
 *  - consume fetch:      Fetch (raw batches) of everything the raw phase wrote, one loop per partition;
 *  - consume subscribe:  Subscribe streams of the same data.
 * Reported: records/s, MB/s (of values), produce p50/p99 per request (hdr-histogram-js, merged over the
 * load processes), the broker's peak RSS (VmHWM), the load's CPU and loop delay.
 *
 * Options: --records N (per produce phase, default 2,000,000), --runs N (default 3), --warmup N (records
 * per load process before each phase, default 200,000), --load-processes N (default 1), --concurrency N
 * (requests in flight per load process, default 16), --connections N (TCP connections per load process,
 * default 4), --shards N (broker shard workers), --acks all|leader|none (default all), --idempotence,
 * --profile DIR (CPU profiles of the broker), --phases LIST (comma-separated, of raw, encode, structured,
 * fetch, subscribe; default all: a quicker A/B of one phase, e.g. `--phases fetch`; the consume phases
 * read what the raw phase wrote, so they run it too), --json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Admin } from '../src/client/index.js';
import { spawnBroker, peakRssBytes, waitExit } from './broker-process.js';
import { brokerNodeArgs } from './harness/servers.js';
import type { BrokerPhaseKind } from './broker-load.js';
import { runLoads, type LoadSummary } from './load-process.js';
import { describeLoad, isStalled, median } from './load-probe.js';

interface Args {
  records: number;
  runs: number;
  warmupRecords: number;
  loadProcesses: number;
  concurrency: number;
  shards?: number;
  json: boolean;
  /** Write a CPU profile of the broker's main thread (and workers) into this directory. */
  profileDir?: string;
  acks: 'all' | 'leader' | 'none';
  /** Producer connections per load process (each its own TCP connection); requests are spread over them. */
  connections: number;
  /** Also run the raw phase with idempotent producers. */
  idempotence: boolean;
  /** The phases to run (PHASE_NAMES); the consume phases bring the raw phase they read. */
  phases: Set<PhaseName>;
}

const PHASE_NAMES = ['raw', 'encode', 'structured', 'fetch', 'subscribe'] as const;
type PhaseName = (typeof PHASE_NAMES)[number];

function parsePhases(v: string | undefined): Set<PhaseName> {
  const names = (v ?? '').split(',').filter((x) => x !== '');
  const bad = names.filter((x) => !(PHASE_NAMES as readonly string[]).includes(x));
  if (names.length === 0 || bad.length > 0) throw new Error(`--phases takes a comma-separated list of ${PHASE_NAMES.join(', ')}; got ${String(v)}`);
  const set = new Set(names as PhaseName[]);
  if (set.has('fetch') || set.has('subscribe')) set.add('raw');
  return set;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { records: 2_000_000, runs: 3, warmupRecords: 200_000, loadProcesses: 1, concurrency: 16, json: false, acks: 'all', connections: 4, idempotence: false, phases: new Set(PHASE_NAMES) };
  const int = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') args.json = true;
    else if (a === '--records') args.records = int(a, argv[++i], 1000, 1e9);
    else if (a === '--runs') args.runs = int(a, argv[++i], 1, 20);
    else if (a === '--warmup') args.warmupRecords = int(a, argv[++i], 0, 1e8);
    else if (a === '--load-processes') args.loadProcesses = int(a, argv[++i], 1, 16);
    else if (a === '--concurrency') args.concurrency = int(a, argv[++i], 1, 1024);
    else if (a === '--shards') args.shards = int(a, argv[++i], 1, 64);
    else if (a === '--profile') args.profileDir = argv[++i];
    else if (a === '--acks') args.acks = argv[++i] as Args['acks'];
    else if (a === '--connections') args.connections = int(a, argv[++i], 1, 64);
    else if (a === '--idempotence') args.idempotence = true;
    else if (a === '--phases') args.phases = parsePhases(argv[++i]);
    else throw new Error(`unknown argument ${a}: see the header of bench/broker.ts`);
  }
  return args;
}

const PARTITIONS = 8;
const RECORDS_PER_REQUEST = 1_000;
const VALUE_BYTES = 100;

interface PhaseResult {
  phase: string;
  records: number;
  seconds: number;
  recordsPerSec: number;
  mbPerSec: number;
  p50Ms?: number;
  p99Ms?: number;
  /** The broker's peak RSS so far (MB), read after the phase: shows which phase raised it. */
  brokerPeakRssMbAfter?: number;
  load: LoadSummary;
}

interface Phase {
  name: string;
  kind: BrokerPhaseKind;
  topic: string;
  warmupTopic: string;
}

/** Runs one phase over `args.loadProcesses` load processes and merges what they report. */
async function runPhase(args: Args, address: string, phase: Phase, requests: number, ends?: Map<number, number>, warmupEnds?: Map<number, number>): Promise<PhaseResult> {
  const n = args.loadProcesses;
  const share = (i: number): number => Math.floor(requests / n) + (i < requests % n ? 1 : 0);
  const split = (m: Map<number, number> | undefined, i: number): Array<[number, number]> => [...(m ?? [])].filter(([p]) => p % n === i);
  const merged = await runLoads(Array.from({ length: n }, (_, i) => ({
    address, kind: phase.kind, topic: phase.topic, warmupTopic: phase.warmupTopic, partitions: PARTITIONS,
    requests: share(i), warmupRequests: Math.ceil(args.warmupRecords / RECORDS_PER_REQUEST), concurrency: args.concurrency,
    connections: args.connections, acks: args.acks, recordsPerRequest: RECORDS_PER_REQUEST, valueBytes: VALUE_BYTES,
    ends: split(ends, i), warmupEnds: split(warmupEnds, i), seed: i,
  })));
  const { records, seconds } = merged;
  return { phase: phase.name, records, seconds, recordsPerSec: records / seconds, mbPerSec: (records * VALUE_BYTES) / seconds / 1e6, p50Ms: merged.p50Ms, p99Ms: merged.p99Ms, load: merged.load };
}

/** One run: a fresh broker, every phase in order. */
async function runOnce(args: Args, log: (line: string) => void): Promise<{ phases: PhaseResult[]; brokerPeakRssBytes: number | null }> {
  const requests = Math.ceil(args.records / RECORDS_PER_REQUEST);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  const nodeArgs = [...brokerNodeArgs(), ...(args.profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', args.profileDir])];
  const broker = await spawnBroker(dataDir, args.shards === undefined ? [] : ['--shards', String(args.shards)], {}, nodeArgs);
  const results: PhaseResult[] = [];
  const admin = new Admin({ brokers: broker.grpcAddress });
  try {
    const want = (name: PhaseName): boolean => args.phases.has(name);
    const phases: Phase[] = [
      ...(want('raw') ? [{ name: 'produce raw', kind: 'produce-raw' as const, topic: 'bench-raw', warmupTopic: 'warm-raw' }] : []),
      ...(args.idempotence ? [{ name: 'produce raw idempotent', kind: 'produce-raw-idempotent' as const, topic: 'bench-raw-idem', warmupTopic: 'warm-raw-idem' }] : []),
      ...(want('encode') ? [{ name: 'produce raw+encode', kind: 'produce-encode' as const, topic: 'bench-encode', warmupTopic: 'warm-encode' }] : []),
      ...(want('structured') ? [{ name: 'produce structured', kind: 'produce-structured' as const, topic: 'bench-records', warmupTopic: 'warm-records' }] : []),
    ];
    for (const phase of phases) {
      await admin.createTopic(phase.topic, { partitions: PARTITIONS });
      await admin.createTopic(phase.warmupTopic, { partitions: PARTITIONS });
    }
    const record = (r: PhaseResult): void => {
      const hwm = peakRssBytes(broker.child.pid!);
      if (hwm !== null) r.brokerPeakRssMbAfter = Math.round(hwm / 1024 / 1024);
      results.push(r);
      log(`  ${r.phase.padEnd(22)} ${Math.round(r.recordsPerSec).toLocaleString('en-US').padStart(10)} rec/s  ${describeLoad({ ...r.load, loopDelayP50Ms: Number.NaN })}`);
    };
    for (const phase of phases) record(await runPhase(args, broker.grpcAddress, phase, requests));
    if (want('fetch') || want('subscribe')) {
      const ends = await admin.listOffsets('bench-raw', 'latest');
      const warmEnds = await admin.listOffsets('warm-raw', 'latest');
      if (want('fetch')) record(await runPhase(args, broker.grpcAddress, { name: 'consume fetch', kind: 'consume-fetch', topic: 'bench-raw', warmupTopic: 'warm-raw' }, 0, ends, warmEnds));
      if (want('subscribe')) record(await runPhase(args, broker.grpcAddress, { name: 'consume subscribe', kind: 'consume-subscribe', topic: 'bench-raw', warmupTopic: 'warm-raw' }, 0, ends, warmEnds));
    }
  } catch (err) {
    // A failed phase must not leave the broker it spawned running (and its data dir behind).
    admin.close();
    broker.child.kill('SIGKILL');
    await waitExit(broker.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`${err instanceof Error ? err.message : String(err)}; broker stderr: ${broker.stderr().trim().slice(-2000)}`, { cause: err });
  }
  admin.close();
  const rss = peakRssBytes(broker.child.pid!);
  broker.child.kill('SIGTERM');
  await waitExit(broker.child);
  fs.rmSync(dataDir, { recursive: true, force: true });
  return { phases: results, brokerPeakRssBytes: rss };
}

const TARGETS: Record<string, number> = { 'produce raw': 1_000_000, 'produce raw idempotent': 1_000_000, 'produce raw+encode': 1_000_000, 'produce structured': 400_000, 'consume fetch': 2_000_000, 'consume subscribe': 2_000_000 };

/** Per phase, the median of each figure over the runs (each figure on its own; the runs are in `runs`). */
function medians(runs: Array<{ phases: PhaseResult[] }>) {
  return runs[0]!.phases.map((first) => {
    const same = runs.map((r) => r.phases.find((p) => p.phase === first.phase)!).filter((p) => p !== undefined);
    const med = (f: (p: PhaseResult) => number | undefined): number | undefined => {
      const v = same.map(f).filter((x): x is number => x !== undefined);
      return v.length === 0 ? undefined : median(v);
    };
    const recordsPerSec = med((p) => p.recordsPerSec)!;
    return {
      phase: first.phase,
      runs: same.length,
      recordsPerSec,
      minRecordsPerSec: Math.min(...same.map((p) => p.recordsPerSec)),
      maxRecordsPerSec: Math.max(...same.map((p) => p.recordsPerSec)),
      mbPerSec: med((p) => p.mbPerSec)!,
      p50Ms: med((p) => p.p50Ms),
      p99Ms: med((p) => p.p99Ms),
      brokerPeakRssMbAfter: med((p) => p.brokerPeakRssMbAfter),
      loadCpuCores: med((p) => p.load.cpuCores)!,
      loadLoopDelayP99Ms: med((p) => p.load.loopDelayP99Ms)!,
      loadLoopDelayMaxMs: Math.max(...same.map((p) => p.load.loopDelayMaxMs)),
      /** Runs of this phase in which a load process stalled. */
      loadStalledRuns: same.filter((p) => p.load.stalled || isStalled(p.load)).length,
      targetRecordsPerSec: TARGETS[first.phase]!,
      met: recordsPerSec >= TARGETS[first.phase]!,
    };
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = (line: string): void => void (args.json ? process.stderr : process.stdout).write(`${line}\n`);
  const loadavg = os.loadavg();
  log(`bench:broker: ${args.runs} run(s), ${args.records.toLocaleString('en-US')} records per produce phase, ${args.loadProcesses} load process(es) x ${args.concurrency} in flight over ${args.connections} connection(s), warm-up ${args.warmupRecords.toLocaleString('en-US')} records; machine load average ${loadavg.map((x) => x.toFixed(2)).join(' ')} on ${os.availableParallelism()} CPUs`);
  const runs: Array<{ phases: PhaseResult[]; brokerPeakRssBytes: number | null }> = [];
  for (let i = 0; i < args.runs; i++) {
    log(`run ${i + 1}/${args.runs}:`);
    runs.push(await runOnce(args, log));
  }
  const table = medians(runs);
  const rssValues = runs.map((r) => r.brokerPeakRssBytes).filter((x): x is number => x !== null);
  const rss = rssValues.length === 0 ? null : Math.max(...rssValues);
  const report = {
    setup: {
      partitions: PARTITIONS, valueBytes: VALUE_BYTES, recordsPerRequest: RECORDS_PER_REQUEST, acks: args.acks, connections: args.connections,
      concurrency: args.concurrency, loadProcesses: args.loadProcesses, warmupRecords: args.warmupRecords, runs: args.runs,
      cpus: os.availableParallelism(), loadAverageAtStart: loadavg, loadAverageAtEnd: os.loadavg(),
    },
    phases: table,
    runs,
    brokerPeakRssBytes: rss,
    rssTargetBytes: 300 * 1024 * 1024,
  };
  if (args.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const fmt = (x: number | undefined, digits = 2): string => (x === undefined ? '-' : x.toFixed(digits));
  const rows = table.map((r) => [
    r.phase,
    Math.round(r.recordsPerSec).toLocaleString('en-US'),
    `${Math.round(r.minRecordsPerSec / 1000)}k-${Math.round(r.maxRecordsPerSec / 1000)}k`,
    r.mbPerSec.toFixed(1),
    fmt(r.p50Ms),
    fmt(r.p99Ms),
    `${(r.targetRecordsPerSec / 1000).toLocaleString('en-US')}k`,
    r.met ? 'yes' : 'NO',
    String(r.brokerPeakRssMbAfter ?? '-'),
    r.loadCpuCores.toFixed(2),
    `${r.loadLoopDelayP99Ms.toFixed(1)}/${r.loadLoopDelayMaxMs.toFixed(1)}`,
    r.loadStalledRuns === 0 ? '-' : `STALLED in ${r.loadStalledRuns}/${r.runs}`,
  ]);
  const head = ['phase', 'records/s (median)', 'range', 'MB/s', 'p50 ms', 'p99 ms', 'target', 'met', 'peak RSS MB', 'load CPU', 'load loop p99/max ms', 'load'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(`\nmedians of ${args.runs} run(s); load CPU in cores (the busiest load process), load loop = the load process's own event-loop delay`);
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  const rssMb = rss === null ? 'n/a' : (rss / 1024 / 1024).toFixed(0);
  console.log(`broker peak RSS (highest run): ${rssMb} MB (target <= 300 MB)${rss !== null && rss > report.rssTargetBytes ? ' NOT MET' : ''}`);
  console.log(`machine load average: ${loadavg.map((x) => x.toFixed(2)).join(' ')} at start, ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} at end`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
