/**
 * Broker benchmark (`npm run bench`; never a timed test).
 *
 * Setup, as issue 3 fixes it: the broker runs in its own process (`sluice serve`, spawned here), the
 * producer in this one. One topic per phase with 8 partitions, 100-byte values, 1,000 records per
 * request, acks=all with the default flush policy (fsync, group commit).
 *  - produce raw:        Kafka v2 batches encoded by the TS client (encodeBatch), sent as record_batch;
 *  - produce raw idempotent (with --idempotence): the raw phase again, right after it and on its own
 *                        topic, through idempotent producers (InitProducer, sequences stamped in the
 *                        batch headers, dedup checks on the broker), to compare the two in one run;
 *  - produce raw+encode: the same, but the client encodes every request afresh (informational);
 *  - produce structured: protobuf `records`, encoded into batches by the broker;
 *  - consume fetch:      Fetch (raw batches) of everything the raw phase wrote, one loop per partition;
 *  - consume subscribe:  Subscribe streams of the same data.
 * Reported: records/s, MB/s (of values), produce p50/p99 per request (hdr-histogram-js), the broker's
 * peak RSS (VmHWM). Table by default, `--json` for machines; a progress bar on a TTY.
 *
 * Options: --records N (per produce phase, default 2,000,000), --concurrency N (requests in flight,
 * default 16), --shards N (broker shard workers), --acks all|leader|none (default all), --connections N (client TCP connections, default 4), --idempotence (add the idempotent raw phase), --profile DIR (CPU profiles of the broker), --json.
 * The other phases use non-idempotent producers, so their numbers stay comparable with earlier runs.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import cliProgress from 'cli-progress';
import { Admin, Producer } from '../src/client/index.js';
import { Connection } from '../src/client/connection.js';
import { encodeBatch } from '../src/batch/index.js';
import type { RecordInput } from '../src/batch/types.js';
import { spawnBroker, peakRssBytes, waitExit } from './broker-process.js';

interface Args {
  records: number;
  concurrency: number;
  shards?: number;
  json: boolean;
  /** Write a CPU profile of the broker's main thread (and workers) into this directory. */
  profileDir?: string;
  acks: 'all' | 'leader' | 'none';
  /** Producer connections (each its own TCP connection); requests are spread over them. */
  connections: number;
  /** Also run the raw phase with idempotent producers. */
  idempotence: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { records: 2_000_000, concurrency: 16, json: false, acks: 'all', connections: 4, idempotence: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') args.json = true;
    else if (a === '--records') args.records = Number(argv[++i]);
    else if (a === '--concurrency') args.concurrency = Number(argv[++i]);
    else if (a === '--shards') args.shards = Number(argv[++i]);
    else if (a === '--profile') args.profileDir = argv[++i];
    else if (a === '--acks') args.acks = argv[++i] as Args['acks'];
    else if (a === '--connections') args.connections = Number(argv[++i]);
    else if (a === '--idempotence') args.idempotence = true;
    else throw new Error(`unknown argument ${a}: use --records N --concurrency N --shards N --json`);
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
}

function makeRecords(seed: number): RecordInput[] {
  const out: RecordInput[] = [];
  for (let i = 0; i < RECORDS_PER_REQUEST; i++) {
    const value = Buffer.alloc(VALUE_BYTES, (seed * 31 + i) & 0xff);
    out.push({ key: null, value });
  }
  return out;
}

class Progress {
  private bar: cliProgress.SingleBar | null;
  constructor(enabled: boolean) {
    this.bar = enabled ? new cliProgress.SingleBar({ format: '{phase} [{bar}] {percentage}% {value}/{total}', hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  }
  start(phase: string, total: number): void {
    this.bar?.start(total, 0, { phase: phase.padEnd(18) });
  }
  update(value: number): void {
    this.bar?.update(value);
  }
  stop(): void {
    this.bar?.stop();
  }
}

/** Runs `total` requests with `concurrency` in flight; records each request's latency. */
async function produceLoop(total: number, concurrency: number, send: (i: number) => Promise<unknown>, progress: Progress): Promise<{ seconds: number; histogram: hdr.Histogram }> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  let next = 0;
  let done = 0;
  const started = process.hrtime.bigint();
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const t0 = process.hrtime.bigint();
      await send(i);
      histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
      if (++done % 20 === 0) progress.update(done * RECORDS_PER_REQUEST);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  progress.update(done * RECORDS_PER_REQUEST);
  return { seconds: Number(process.hrtime.bigint() - started) / 1e9, histogram };
}

function result(phase: string, records: number, seconds: number, histogram?: hdr.Histogram): PhaseResult {
  const r: PhaseResult = { phase, records, seconds, recordsPerSec: records / seconds, mbPerSec: (records * VALUE_BYTES) / seconds / 1e6 };
  if (histogram !== undefined) {
    r.p50Ms = histogram.getValueAtPercentile(50) / 1000;
    r.p99Ms = histogram.getValueAtPercentile(99) / 1000;
  }
  return r;
}

/** Counts records in raw batches from their headers (recordCount at byte 57), without decoding. */
function countRecords(batches: Buffer): number {
  let n = 0;
  for (let pos = 0; pos + 61 <= batches.length; pos += batches.readInt32BE(pos + 8) + 12) n += batches.readInt32BE(pos + 57);
  return n;
}

async function consumeFetch(conns: Connection[], topic: string, ends: Map<number, number>, progress: Progress): Promise<PhaseResult> {
  let total = 0;
  const started = process.hrtime.bigint();
  await Promise.all([...ends].map(async ([partition, end]) => {
    const conn = conns[partition % conns.length];
    let offset = 0;
    while (offset < end) {
      const res = await conn.unary(conn.broker, conn.broker.fetch, { topic, partition, offset: BigInt(offset), maxBytes: 1 << 20, maxWaitMs: 0, raw: true });
      total += countRecords(res.recordBatches);
      offset = Number(res.nextOffset);
      progress.update(total);
    }
  }));
  return result('consume fetch', total, Number(process.hrtime.bigint() - started) / 1e9);
}

async function consumeSubscribe(conns: Connection[], topic: string, ends: Map<number, number>, progress: Progress): Promise<PhaseResult> {
  let total = 0;
  const started = process.hrtime.bigint();
  await Promise.all([...ends].map(([partition, end]) => new Promise<void>((resolve, reject) => {
    const conn = conns[partition % conns.length];
    const stream = conn.broker.subscribe({ topic, partition, offset: 0n, maxBytes: 1 << 20, raw: true });
    stream.on('data', (msg: { recordBatches: Buffer; nextOffset: bigint }) => {
      total += countRecords(msg.recordBatches);
      progress.update(total);
      if (Number(msg.nextOffset) >= end) {
        stream.cancel();
        resolve();
      }
    });
    stream.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
  })));
  return result('consume subscribe', total, Number(process.hrtime.bigint() - started) / 1e9);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const requests = Math.ceil(args.records / RECORDS_PER_REQUEST);
  const records = requests * RECORDS_PER_REQUEST;
  const progress = new Progress(process.stdout.isTTY === true && !args.json);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  const nodeArgs = args.profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', args.profileDir];
  const broker = await spawnBroker(dataDir, args.shards === undefined ? [] : ['--shards', String(args.shards)], {}, nodeArgs);
  const results: PhaseResult[] = [];
  const pushResult = (r: PhaseResult): void => {
    const hwm = peakRssBytes(broker.child.pid!);
    if (hwm !== null) r.brokerPeakRssMbAfter = Math.round(hwm / 1024 / 1024);
    results.push(r);
  };
  const admin = new Admin({ brokers: broker.grpcAddress });
  try {
    await admin.createTopic('bench-raw', { partitions: PARTITIONS });
    await admin.createTopic('bench-records', { partitions: PARTITIONS });

    // Raw: the TS client encodes Kafka v2 batches (encodeBatch, as Producer does) and sends them.
    // A pool of distinct batches is encoded up front so the producer process measures the broker,
    // not its own encoder; encoding costs about as much again on the client.
    const ownConnection = { 'grpc.use_local_subchannel_pool': 1 };
    const producers = Array.from({ length: args.connections }, () => new Producer({ brokers: broker.grpcAddress, acks: args.acks, idempotent: false, channelOptions: ownConnection }));
    const pool = Array.from({ length: 64 }, (_, i) => encodeBatch(makeRecords(i)));
    progress.start('produce raw', records);
    const raw = await produceLoop(requests, args.concurrency, (i) => producers[i % producers.length].produceRaw('bench-raw', i % PARTITIONS, pool[i % pool.length]), progress);
    progress.stop();
    pushResult(result('produce raw', records, raw.seconds, raw.histogram));

    if (args.idempotence) {
      // Same pool, same load; the idempotent producer stamps id/epoch/sequence (and the CRC) into each
      // batch before sending it. A pool entry is reused only after 64 more requests, far more than
      // are in flight, so no batch is stamped while another request still carries it.
      await admin.createTopic('bench-raw-idem', { partitions: PARTITIONS });
      const idem = Array.from({ length: args.connections }, () => new Producer({ brokers: broker.grpcAddress, acks: 'all', idempotent: true, channelOptions: ownConnection }));
      progress.start('produce raw idempotent', records);
      const r = await produceLoop(requests, args.concurrency, (i) => idem[i % idem.length].produceRaw('bench-raw-idem', i % PARTITIONS, pool[i % pool.length]), progress);
      progress.stop();
      pushResult(result('produce raw idempotent', records, r.seconds, r.histogram));
      await Promise.all(idem.map((p) => p.close()));
    }

    // The same path with the client encoding every request (Producer.produceBatch → encodeBatch):
    // what an application producing fresh records gets. Written to its own topic; informational.
    const encodePool = Array.from({ length: 16 }, (_, i) => makeRecords(i + 100));
    await admin.createTopic('bench-encode', { partitions: PARTITIONS });
    progress.start('produce raw+encode', records);
    const enc = await produceLoop(requests, args.concurrency, (i) => producers[i % producers.length].produceBatch('bench-encode', encodePool[i % encodePool.length], { partition: i % PARTITIONS }), progress);
    progress.stop();
    pushResult(result('produce raw+encode', records, enc.seconds, enc.histogram));

    // Structured: protobuf Records; the broker builds the batches.
    const structured = Array.from({ length: args.connections }, () => new Producer({ brokers: broker.grpcAddress, acks: args.acks, idempotent: false, format: 'records', channelOptions: ownConnection }));
    const recordPool = Array.from({ length: 16 }, (_, i) => makeRecords(i));
    progress.start('produce structured', records);
    const rec = await produceLoop(requests, args.concurrency, (i) => structured[i % structured.length].produceBatch('bench-records', recordPool[i % recordPool.length], { partition: i % PARTITIONS }), progress);
    progress.stop();
    pushResult(result('produce structured', records, rec.seconds, rec.histogram));
    await Promise.all([...producers, ...structured].map((p) => p.close()));

    const ends = await admin.listOffsets('bench-raw', 'latest');
    const conns = Array.from({ length: args.connections }, () => new Connection({ brokers: broker.grpcAddress, channelOptions: ownConnection }));
    progress.start('consume fetch', records);
    pushResult(await consumeFetch(conns, 'bench-raw', ends, progress));
    progress.stop();
    progress.start('consume subscribe', records);
    pushResult(await consumeSubscribe(conns, 'bench-raw', ends, progress));
    progress.stop();
    for (const c of conns) c.close();
  } finally {
    admin.close();
  }
  const rss = peakRssBytes(broker.child.pid!);
  broker.child.kill('SIGTERM');
  await waitExit(broker.child);
  fs.rmSync(dataDir, { recursive: true, force: true });

  const targets: Record<string, number> = { 'produce raw': 1_000_000, 'produce raw idempotent': 1_000_000, 'produce raw+encode': 1_000_000, 'produce structured': 400_000, 'consume fetch': 2_000_000, 'consume subscribe': 2_000_000 };
  const report = {
    setup: { partitions: PARTITIONS, valueBytes: VALUE_BYTES, recordsPerRequest: RECORDS_PER_REQUEST, acks: args.acks, connections: args.connections, concurrency: args.concurrency, cpus: os.availableParallelism() },
    phases: results.map((r) => ({ ...r, targetRecordsPerSec: targets[r.phase], met: r.recordsPerSec >= targets[r.phase] })),
    brokerPeakRssBytes: rss,
    rssTargetBytes: 300 * 1024 * 1024,
  };
  if (args.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const rows = report.phases.map((r) => [
    r.phase,
    Math.round(r.recordsPerSec).toLocaleString('en-US'),
    r.mbPerSec.toFixed(1),
    r.p50Ms === undefined ? '-' : r.p50Ms.toFixed(2),
    r.p99Ms === undefined ? '-' : r.p99Ms.toFixed(2),
    `${(r.targetRecordsPerSec / 1000).toLocaleString('en-US')}k`,
    r.met ? 'yes' : 'NO',
    String(r.brokerPeakRssMbAfter ?? '-'),
  ]);
  const head = ['phase', 'records/s', 'MB/s', 'p50 ms', 'p99 ms', 'target', 'met', 'peak RSS MB'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  const rssMb = rss === null ? 'n/a' : (rss / 1024 / 1024).toFixed(0);
  console.log(`broker peak RSS: ${rssMb} MB (target <= 300 MB)${rss !== null && rss > report.rssTargetBytes ? ' NOT MET' : ''}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
