/**
 * The load process of `npm run bench:cluster` for its paced phases (forked by bench/cluster.ts; the
 * throughput phase uses bench/broker-load.ts). It talks to the cluster as a client does: the TS
 * client's Producer with every node's address, which sends each partition's requests to its leader.
 *
 *  - e2e: produce at `ratePerS` for `warmupSeconds` and then `seconds` more (a request every E2E_TICK_MS
 *    carrying the records due, partitions in turn) while one Subscribe stream per partition, on its
 *    leader, reads them back. Each value carries its *intended* send time (start + i / rate) in its first
 *    8 bytes, so a late sender does not hide latency (coordinated omission); for values due after the
 *    warm-up, the receive time minus it goes into an hdr histogram. The warm-up is the same load, not
 *    measured: on a fresh topic (and a fresh cluster) the first seconds pay for JIT compilation, new
 *    streams and first-touch allocations, which are not the steady state the figure describes.
 *  - paced: one lane per partition sends `recordsPerRequest` records every period (`ratePerS` over all
 *    lanes), retrying a failed attempt after PACED_RETRY_MS, until the parent says 'stop'. The parent
 *    may ask ('watch') for the first acknowledgement of a request *sent* after a given time on a given
 *    partition: after a kill -9 of its leader, that ack can only come from a new leader.
 *
 * Both report the process's own CPU and event-loop delay (./load-probe.ts), so a stalled load says so.
 * Protocol over IPC: job in; 'warm' once every partition took a produce; 'go'; then (paced) any number of
 * 'watch' -> 'acked', and 'stop' -> 'result'; (e2e) 'result' when done.
 */
import * as grpc from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { Admin, Producer } from '../src/client/index.js';
import { encodeBatch } from '../src/batch/index.js';
import { FastBrokerClient } from '../src/rpc/index.js';
import type { FetchResponse } from '../src/rpc/gen/sluice/v1/broker.js';
import { forEachValue } from './harness/drivers.js';
import { LoadProbe, type LoadSelfReport } from './load-probe.js';

/** e2e: how often the pacer sends the records that are due (the most a record waits for its request). */
export const E2E_TICK_MS = 2;
/** e2e: most records sent but not yet acknowledged before the pacer holds back (bounds memory). */
export const E2E_OUTSTANDING_RECORDS_MAX = 50_000;
/** e2e: most records in one request (1,000 of 100 bytes is about 110 KB; a late tick must not exceed the 1 MiB batch limit). */
export const E2E_BATCH_RECORDS_MAX = 5_000;
/** e2e: how long the subscribers may take to catch up after the last send. */
export const E2E_DRAIN_MS = 5_000;
/** paced: wait after a failed attempt before the lane tries again. */
export const PACED_RETRY_MS = 20;
/** paced: deadline of one produce attempt (a stuck attempt costs at most this much of a failover). */
export const PACED_REQUEST_TIMEOUT_MS = 1_000;
/** Warm-up: how long every partition may take to acknowledge its first produce. */
export const WARMUP_MS = 30_000;

export interface ClusterLoadJob {
  kind: 'e2e' | 'paced';
  addresses: string[];
  topic: string;
  partitions: number;
  ratePerS: number;
  valueBytes: number;
  /** paced: records per request. */
  recordsPerRequest: number;
  /** e2e: how long to send, after the warm-up. */
  seconds: number;
  /** e2e: how long to send first at the same rate without measuring (default 0). */
  warmupSeconds?: number;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export interface ClusterLoadResult {
  sent: number;
  acked: number;
  /** Failed attempts (paced: each retried) or failed requests (e2e). */
  failed: number;
  /** e2e: records acknowledged but not received within E2E_DRAIN_MS. */
  missing?: number;
  achievedRatePerS: number;
  latency?: LatencySummary;
  /** A few distinct failure messages. */
  errors: string[];
  self: LoadSelfReport;
}

export type ClusterLoadToParent =
  | { type: 'warm' }
  | { type: 'acked'; id: number; ackMs: number; sentMs: number }
  | { type: 'result'; result: ClusterLoadResult }
  | { type: 'error'; message: string };

export type ClusterLoadFromParent = { type: 'go' } | { type: 'watch'; id: number; partition: number; sinceMs: number } | { type: 'stop' };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function send(m: ClusterLoadToParent, then?: () => void): void {
  if (then === undefined) process.send!(m);
  else process.send!(m, () => then());
}

function noteError(errors: string[], err: unknown): void {
  const m = (err instanceof Error ? err.message : String(err)).slice(0, 200);
  if (errors.length < 5 && !errors.includes(m)) errors.push(m);
}

/** Waits until every partition acknowledged one produce (routes learned, leaders elected). */
async function warmUp(producer: Producer, job: ClusterLoadJob, batch: Uint8Array): Promise<void> {
  const deadline = Date.now() + WARMUP_MS;
  for (let p = 0; p < job.partitions; p++) {
    for (let i = 0; ; i++) {
      try {
        await producer.produceRaw(job.topic, p, batch);
        break;
      } catch (err) {
        if (Date.now() > deadline || i > 10_000) throw new Error(`warm-up: partition ${p} took no produce in ${WARMUP_MS} ms: ${String(err)}`, { cause: err });
        await sleep(PACED_RETRY_MS);
      }
    }
  }
}

function summarize(h: hdr.Histogram): LatencySummary {
  const ms = (us: number): number => us / 1000;
  return { count: h.totalCount, p50Ms: ms(h.getValueAtPercentile(50)), p99Ms: ms(h.getValueAtPercentile(99)), p999Ms: ms(h.getValueAtPercentile(99.9)), maxMs: ms(h.maxValue) };
}

const messages: ClusterLoadFromParent[] = [];
const waiters: Array<() => void> = [];
process.on('message', (m: ClusterLoadFromParent | ClusterLoadJob) => {
  if (!('type' in m)) return;
  messages.push(m);
  waiters.splice(0).forEach((w) => w());
});
async function nextMessage(): Promise<ClusterLoadFromParent> {
  for (;;) {
    const m = messages.shift();
    if (m !== undefined) return m;
    await new Promise<void>((resolve) => waiters.push(resolve));
  }
}

/** One Subscribe stream per partition, on its leader, from the latest offset; values to `onValue`. */
async function subscribeAll(job: ClusterLoadJob, onValue: (buf: Buffer, start: number) => void): Promise<() => void> {
  const admin = new Admin({ brokers: job.addresses });
  try {
    const md = await admin.metadata([job.topic]);
    const byId = new Map(md.brokers.map((b) => [b.nodeId, b.grpcAddress]));
    const ends = await admin.listOffsets(job.topic, 'latest');
    const topic = md.topics.find((t) => t.name === job.topic);
    if (topic === undefined) throw new Error(`topic ${job.topic} is not in the metadata`);
    const clients = new Map<string, InstanceType<typeof FastBrokerClient>>();
    for (const p of topic.partitions) {
      const address = byId.get(p.leader);
      if (address === undefined) throw new Error(`partition ${p.partition} has no leader`);
      if (!clients.has(address)) clients.set(address, new FastBrokerClient(address, grpc.credentials.createInsecure(), { 'grpc-node.flow_control_window': 4 << 20, 'grpc.max_receive_message_length': 64 << 20 }));
      const from = ends.get(p.partition) ?? 0;
      const stream = clients.get(address)!.subscribe({ topic: job.topic, partition: p.partition, offset: BigInt(from), maxBytes: 0, raw: true });
      stream.on('data', (res: FetchResponse) => forEachValue(res.recordBatches, from, onValue));
      stream.on('error', () => {
        // cancelled at the end, or the node went away: the missing count says so
      });
    }
    return () => {
      for (const c of clients.values()) c.close();
    };
  } finally {
    admin.close();
  }
}

async function runE2e(job: ClusterLoadJob, producer: Producer): Promise<ClusterLoadResult> {
  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  let received = 0;
  // Values due before this (the warm-up) are counted as received but not measured.
  let measureFrom = Infinity;
  const stop = await subscribeAll(job, (buf, start) => {
    if (buf.length - start < 8) return;
    received++;
    const sentAt = buf.readDoubleLE(start);
    if (sentAt >= measureFrom) histogram.recordValue(Math.max(1, Math.round((performance.now() - sentAt) * 1000)));
  });
  const probe = new LoadProbe();
  send({ type: 'warm' });
  await nextMessage(); // 'go'
  const value = Buffer.alloc(job.valueBytes, 0x61);
  const errors: string[] = [];
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let inflight = 0;
  const start = performance.now();
  const warmupMs = (job.warmupSeconds ?? 0) * 1000;
  measureFrom = start + warmupMs;
  let probing = false;
  const total = Math.floor((job.ratePerS * (warmupMs + job.seconds * 1000)) / 1000);
  const sendDeadline = start + warmupMs + job.seconds * 1000 + 1000;
  for (let tick = 0; sent < total && performance.now() < sendDeadline && tick < 10_000_000; tick++) {
    // The load's own CPU and loop delay are reported over the measured part only.
    if (!probing && performance.now() >= measureFrom) {
      probe.start();
      probing = true;
    }
    const due = Math.min(total, Math.floor(((performance.now() - start) * job.ratePerS) / 1000));
    if (due > sent && sent - acked - failed < E2E_OUTSTANDING_RECORDS_MAX) {
      const n = Math.min(due - sent, E2E_BATCH_RECORDS_MAX);
      const records = [];
      for (let i = 0; i < n; i++) {
        const v = Buffer.from(value);
        v.writeDoubleLE(start + ((sent + i) * 1000) / job.ratePerS, 0);
        records.push({ key: null, value: v });
      }
      sent += n;
      inflight++;
      producer.produceRaw(job.topic, tick % job.partitions, encodeBatch(records)).then(
        () => {
          inflight--;
          acked += n;
        },
        (err: unknown) => {
          inflight--;
          failed += n;
          noteError(errors, err);
        },
      );
    }
    await sleep(E2E_TICK_MS);
  }
  const sentEnd = performance.now();
  const drainDeadline = Date.now() + E2E_DRAIN_MS;
  for (let i = 0; (received < acked || inflight > 0) && Date.now() < drainDeadline && i < 100_000; i++) await sleep(10);
  if (!probing) probe.start();
  const self = probe.stop();
  stop();
  return { sent, acked, failed, missing: Math.max(0, acked - received), achievedRatePerS: (sent * 1000) / Math.max(1, sentEnd - start), latency: summarize(histogram), errors, self };
}

async function runPaced(job: ClusterLoadJob, producer: Producer, batch: Uint8Array): Promise<ClusterLoadResult> {
  const periodMs = (job.partitions * job.recordsPerRequest * 1000) / job.ratePerS;
  const watches: Array<{ id: number; partition: number; sinceMs: number }> = [];
  const errors: string[] = [];
  let acked = 0;
  let failed = 0;
  let sent = 0;
  let stopping = false;
  const lane = async (partition: number): Promise<void> => {
    for (let next = Date.now(); !stopping; ) {
      const sentMs = Date.now();
      sent += job.recordsPerRequest;
      try {
        await producer.produceRaw(job.topic, partition, batch);
        const ackMs = Date.now();
        acked += job.recordsPerRequest;
        for (let i = watches.length - 1; i >= 0; i--) {
          const w = watches[i]!;
          if (w.partition === partition && sentMs >= w.sinceMs) {
            watches.splice(i, 1);
            send({ type: 'acked', id: w.id, ackMs, sentMs });
          }
        }
        next += periodMs;
        await sleep(Math.max(0, next - Date.now()));
      } catch (err) {
        failed++;
        noteError(errors, err);
        await sleep(PACED_RETRY_MS);
        next = Date.now();
      }
    }
  };
  const probe = new LoadProbe();
  send({ type: 'warm' });
  await nextMessage(); // 'go'
  probe.start();
  const t0 = performance.now();
  const lanes = Array.from({ length: job.partitions }, (_, p) => lane(p));
  for (let i = 0; i < 1e9; i++) {
    const m = await nextMessage();
    if (m.type === 'watch') watches.push(m);
    else if (m.type === 'stop') break;
  }
  stopping = true;
  await Promise.all(lanes);
  const self = probe.stop();
  return { sent, acked, failed, achievedRatePerS: (acked * 1000) / Math.max(1, performance.now() - t0), errors, self };
}

async function run(job: ClusterLoadJob): Promise<ClusterLoadResult> {
  const producer = new Producer({ brokers: job.addresses, acks: 'all', idempotent: false, retries: 0, requestTimeoutMs: job.kind === 'paced' ? PACED_REQUEST_TIMEOUT_MS : undefined });
  try {
    const batch = encodeBatch(Array.from({ length: job.recordsPerRequest }, (_, i) => ({ key: null, value: Buffer.alloc(job.valueBytes, i & 0xff) })));
    await warmUp(producer, job, batch);
    return job.kind === 'e2e' ? await runE2e(job, producer) : await runPaced(job, producer, batch);
  } finally {
    await producer.close().catch(() => {});
  }
}

process.once('message', (job: ClusterLoadJob) => {
  // Keeps the process alive while it waits for the parent with nothing else pending.
  const keepAlive = setInterval(() => {}, 60_000);
  run(job).then(
    (result) => send({ type: 'result', result }, () => process.exit(0)),
    (err: unknown) => send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () => process.exit(1)),
  ).finally(() => clearInterval(keepAlive));
});
