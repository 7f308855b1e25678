/**
 * The load process of `npm run bench:broker` (forked by bench/broker.ts, one or more per phase): it
 * drives one phase against a running broker and reports its counts, its per-request latencies and its
 * own CPU and event-loop delay (./load-probe.ts), so the figure is the broker's and the report shows
 * when it is not.
 *
 * Protocol over IPC: the parent sends one BrokerLoadJob; the child warms up (the same requests against
 * the phase's warm-up topic: JIT, connections, the broker's own warm-up), answers 'warm', waits for 'go'
 * (so several load processes start together), runs the measured part and answers with a
 * BrokerLoadResult.
 */
import * as grpc from '@grpc/grpc-js';
import * as hdr from 'hdr-histogram-js';
import { Producer } from '../src/client/index.js';
import { Connection } from '../src/client/connection.js';
import { encodeBatch } from '../src/batch/index.js';
import type { RecordInput } from '../src/batch/types.js';
import { LoadProbe, type LoadSelfReport } from './load-probe.js';

export type BrokerPhaseKind = 'produce-raw' | 'produce-raw-idempotent' | 'produce-encode' | 'produce-structured' | 'consume-fetch' | 'consume-subscribe';

export interface BrokerLoadJob {
  address: string;
  kind: BrokerPhaseKind;
  topic: string;
  /** Produce: the topic the warm-up requests go to (never the measured one). */
  warmupTopic: string;
  partitions: number;
  /** Produce: this process's share of the requests; consume: ignored (it reads `ends`). */
  requests: number;
  warmupRequests: number;
  concurrency: number;
  connections: number;
  acks: 'all' | 'leader' | 'none';
  recordsPerRequest: number;
  valueBytes: number;
  /** Consume: the partitions this process reads, with the end offset of each. */
  ends?: Array<[number, number]>;
  /** Consume: the partitions of the warm-up topic and their ends (read once, unmeasured). */
  warmupEnds?: Array<[number, number]>;
  /** Distinguishes the pools of several load processes, so no two send the same bytes. */
  seed: number;
}

export interface BrokerLoadResult {
  records: number;
  /** Epoch ms (performance.timeOrigin based) of the measured part's start and end. */
  startMs: number;
  endMs: number;
  /** Per-request latencies (µs), as an hdr histogram's encoded form, so the parent can merge them. */
  histogram?: string;
  self: LoadSelfReport;
}

export type BrokerLoadMessage = { type: 'warm' } | { type: 'result'; result: BrokerLoadResult } | { type: 'error'; message: string };

function makeRecords(seed: number, count: number, valueBytes: number): RecordInput[] {
  const out: RecordInput[] = [];
  for (let i = 0; i < count; i++) out.push({ key: null, value: Buffer.alloc(valueBytes, (seed * 31 + i) & 0xff) });
  return out;
}

/** Runs `total` requests with `concurrency` in flight; records each request's latency (µs). */
async function requestLoop(total: number, concurrency: number, send: (i: number) => Promise<unknown>, histogram?: hdr.Histogram): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const t0 = performance.now();
      await send(i);
      histogram?.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

/** Counts records in raw batches from their headers (recordCount at byte 57), without decoding. */
function countRecords(batches: Buffer): number {
  let n = 0;
  for (let pos = 0; pos + 61 <= batches.length; pos += batches.readInt32BE(pos + 8) + 12) n += batches.readInt32BE(pos + 57);
  return n;
}

async function fetchAll(conns: Connection[], topic: string, ends: Array<[number, number]>): Promise<number> {
  let total = 0;
  await Promise.all(ends.map(async ([partition, end]) => {
    const conn = conns[partition % conns.length]!;
    let offset = 0;
    for (let i = 0; offset < end && i < 10_000_000; i++) {
      const res = await conn.unary(conn.broker, conn.broker.fetch, { topic, partition, offset: BigInt(offset), maxBytes: 1 << 20, maxWaitMs: 0, raw: true });
      total += countRecords(res.recordBatches);
      offset = Number(res.nextOffset);
    }
  }));
  return total;
}

async function subscribeAll(conns: Connection[], topic: string, ends: Array<[number, number]>): Promise<number> {
  let total = 0;
  await Promise.all(ends.map(([partition, end]) => new Promise<void>((resolve, reject) => {
    const conn = conns[partition % conns.length]!;
    const stream = conn.broker.subscribe({ topic, partition, offset: 0n, maxBytes: 1 << 20, raw: true });
    stream.on('data', (msg: { recordBatches: Buffer; nextOffset: bigint }) => {
      total += countRecords(msg.recordBatches);
      if (Number(msg.nextOffset) >= end) {
        stream.cancel();
        resolve();
      }
    });
    stream.on('error', (err: grpc.ServiceError) => (err.code === grpc.status.CANCELLED ? resolve() : reject(err)));
  })));
  return total;
}

/** Waits for the parent's 'go' (several load processes start their measured part together). */
function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => {
      if ((m as { type?: string }).type === 'go') {
        process.off('message', on);
        resolve();
      }
    };
    process.on('message', on);
  });
}

async function run(job: BrokerLoadJob): Promise<BrokerLoadResult> {
  const probe = new LoadProbe();
  const ownConnection = { 'grpc.use_local_subchannel_pool': 1 };
  const consume = job.kind === 'consume-fetch' || job.kind === 'consume-subscribe';
  const closers: Array<() => unknown> = [];
  try {
    let measured: (histogram: hdr.Histogram) => Promise<number>;
    if (consume) {
      const conns = Array.from({ length: job.connections }, () => new Connection({ brokers: job.address, channelOptions: ownConnection }));
      closers.push(() => conns.forEach((c) => c.close()));
      const read = job.kind === 'consume-fetch' ? fetchAll : subscribeAll;
      await read(conns, job.warmupTopic, job.warmupEnds ?? []);
      measured = () => read(conns, job.topic, job.ends ?? []);
    } else {
      const format = job.kind === 'produce-structured' ? 'records' : 'batch';
      const idempotent = job.kind === 'produce-raw-idempotent';
      const producers = Array.from({ length: job.connections }, () => new Producer({ brokers: job.address, acks: idempotent ? 'all' : job.acks, idempotent, format, channelOptions: ownConnection }));
      closers.push(() => Promise.all(producers.map((p) => p.close())));
      const recordsPool = Array.from({ length: 16 }, (_, i) => makeRecords(job.seed * 1000 + i, job.recordsPerRequest, job.valueBytes));
      // Raw phases send a pool of batches encoded up front, so this process measures the broker, not
      // its own encoder. A pool entry is reused only after 64 more requests, far more than are in
      // flight, so the idempotent producer never stamps a batch another request still carries.
      const batchPool = job.kind === 'produce-raw' || idempotent ? Array.from({ length: 64 }, (_, i) => encodeBatch(makeRecords(job.seed * 1000 + i, job.recordsPerRequest, job.valueBytes))) : [];
      const send = (topic: string) => (i: number): Promise<unknown> => {
        const producer = producers[i % producers.length]!;
        const partition = i % job.partitions;
        if (batchPool.length > 0) return producer.produceRaw(topic, partition, batchPool[i % batchPool.length]!);
        return producer.produceBatch(topic, recordsPool[i % recordsPool.length]!, { partition });
      };
      await requestLoop(job.warmupRequests, job.concurrency, send(job.warmupTopic));
      measured = async (histogram) => {
        await requestLoop(job.requests, job.concurrency, send(job.topic), histogram);
        return job.requests * job.recordsPerRequest;
      };
    }
    process.send!({ type: 'warm' } satisfies BrokerLoadMessage);
    await waitForGo();
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
    probe.start();
    const startMs = performance.timeOrigin + performance.now();
    const records = await measured(histogram);
    const endMs = performance.timeOrigin + performance.now();
    const self = probe.stop();
    return { records, startMs, endMs, histogram: consume ? undefined : hdr.encodeIntoCompressedBase64(histogram), self };
  } finally {
    for (const close of closers) await close();
  }
}

process.once('message', (job: BrokerLoadJob) => {
  run(job).then(
    (result) => process.send!({ type: 'result', result } satisfies BrokerLoadMessage, () => process.exit(0)),
    (err: unknown) => process.send!({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies BrokerLoadMessage, () => process.exit(1)),
  );
});
