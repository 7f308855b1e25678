/**
 * Producer: batches records per partition (lingerMs, batchBytes), encodes Kafka v2 batches on the
 * client (the broker then only checks the CRC and assigns offsets), retries retriable errors with
 * exponential backoff, and picks partitions exactly as the broker does (murmur2 of the key, as
 * Kafka's default partitioner; sticky round-robin for unkeyed records).
 *
 * Ordering: at most one request per partition is in flight from `send`, so records of one partition
 * are appended in the order `send` was called, retries included. Retrying a request the broker may
 * have appended can duplicate it (there is no idempotent producer yet).
 */
import { BATCH_BYTES_MAX_DEFAULT, BATCH_RECORDS_MAX } from '../constants.js';
import { SluiceError, isSluiceError } from '../errors.js';
import { Compression, encodeBatch } from '../batch/index.js';
import type { Header, RecordInput } from '../batch/types.js';
import { partitionForKey } from '../model/murmur2.js';
import { fromAcks } from '../rpc/convert.js';
import type { ProduceRequest, ProduceResponse } from '../rpc/gen/sluice/v1/broker.js';
import { Connection, type ClientOptions } from './connection.js';
import type { Acks, Bytes, ProduceResult, ProducerRecord, RecordMetadata } from './types.js';
import { checkPartition, checkTimestampMs } from './validate.js';

export interface ProducerOptions extends ClientOptions {
  /** Default 'all': acknowledged once durable under the topic's flush policy. */
  acks?: Acks;
  /** How long `send` waits for more records before sending a partial batch. Default 5 ms. */
  lingerMs?: number;
  /** A batch is sent once it holds about this many bytes. Default 512 KiB (below the 1 MiB default max). */
  batchBytes?: number;
  /** Compression of client-encoded batches. Default none. */
  compression?: Compression;
  /** 'batch' (default): Kafka v2 batches encoded here; 'records': protobuf Records encoded by the broker. */
  format?: 'batch' | 'records';
  /** Retries of a retriable failure. Default 8. */
  retries?: number;
  retryBackoffMs?: number;
  retryBackoffMaxMs?: number;
  /** How long a topic's partition count is trusted before it is looked up again. Default 30 s. */
  metadataMaxAgeMs?: number;
}

const FILLED_DEFAULTS = Object.freeze({
  acks: 'all' as Acks,
  lingerMs: 5,
  batchBytes: 512 * 1024,
  compression: Compression.None,
  format: 'batch' as 'batch' | 'records',
  retries: 8,
  retryBackoffMs: 50,
  retryBackoffMaxMs: 2_000,
  metadataMaxAgeMs: 30_000,
});
type FilledProducerOptions = typeof FILLED_DEFAULTS;

function validate(o: FilledProducerOptions): FilledProducerOptions {
  if (!(o.lingerMs >= 0)) throw new SluiceError('INVALID_REQUEST', `lingerMs must be >= 0 (got ${o.lingerMs})`);
  if (!(o.batchBytes > 0 && o.batchBytes <= BATCH_BYTES_MAX_DEFAULT)) {
    throw new SluiceError('INVALID_REQUEST', `batchBytes must be in (0, ${BATCH_BYTES_MAX_DEFAULT}] (got ${o.batchBytes})`);
  }
  if (!(o.retries >= 0)) throw new SluiceError('INVALID_REQUEST', `retries must be >= 0 (got ${o.retries})`);
  return o;
}

const PER_RECORD_OVERHEAD_BYTES = 24;
const BATCH_OVERHEAD_BYTES = 61;

export function toBytes(b: Bytes): Uint8Array {
  return typeof b === 'string' ? Buffer.from(b, 'utf8') : b;
}

function toHeaders(h: ProducerRecord['headers']): Header[] | undefined {
  if (h === undefined) return undefined;
  if (Array.isArray(h)) return h;
  return Object.entries(h).map(([key, value]) => ({ key, value: value === null ? null : toBytes(value) }));
}

export function toRecordInput(r: ProducerRecord): RecordInput {
  if (r.timestampMs !== undefined) checkTimestampMs(r.timestampMs);
  return {
    key: r.key === undefined || r.key === null ? null : toBytes(r.key),
    value: r.value === null ? null : toBytes(r.value),
    headers: toHeaders(r.headers),
    timestampMs: r.timestampMs,
  };
}

function estimateBytes(r: RecordInput): number {
  let n = PER_RECORD_OVERHEAD_BYTES + (r.key?.length ?? 0) + (r.value?.length ?? 0);
  for (const h of r.headers ?? []) n += h.key.length + (h.value?.length ?? 0) + 4;
  return n;
}

interface Waiter {
  resolve: (m: RecordMetadata) => void;
  reject: (e: unknown) => void;
}

interface PendingBatch {
  records: RecordInput[];
  waiters: Waiter[];
  bytes: number;
}

/** The accumulator of one partition: an open batch, closed batches waiting, one request in flight. */
class PartitionLane {
  open: PendingBatch | null = null;
  ready: PendingBatch[] = [];
  inFlight = false;
  timer: NodeJS.Timeout | null = null;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Producer {
  private readonly conn: Connection;
  private readonly options: FilledProducerOptions;
  private readonly lanes = new Map<string, PartitionLane>();
  private readonly partitionCounts = new Map<string, Promise<number>>();
  private readonly partitionCountsAt = new Map<string, number>();
  private readonly sticky = new Map<string, number>();
  private readonly idle = new Set<() => void>();
  private closed = false;

  constructor(options: ProducerOptions = {}) {
    this.conn = new Connection(options);
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = validate({ ...FILLED_DEFAULTS, ...given } as FilledProducerOptions);
  }

  /** Queues one record; resolves once it is acknowledged (per `acks`). */
  async send(topic: string, record: ProducerRecord): Promise<RecordMetadata> {
    if (this.closed) throw new SluiceError('INVALID_REQUEST', 'the producer is closed');
    const input = toRecordInput(record);
    if (record.partition !== undefined) checkPartition(record.partition);
    const partition = record.partition ?? (await this.pickPartition(topic, input.key));
    return new Promise((resolve, reject) => this.append(topic, partition, input, { resolve, reject }));
  }

  /** Queues many records; resolves once all are acknowledged. */
  sendAll(topic: string, records: ProducerRecord[]): Promise<RecordMetadata[]> {
    return Promise.all(records.map((r) => this.send(topic, r)));
  }

  /**
   * Sends `records` now as one request (one batch), bypassing the accumulator; used by the benchmark
   * and by callers that batch themselves. Concurrent calls for one partition may be reordered on retry.
   */
  async produceBatch(topic: string, records: ProducerRecord[], options: { partition?: number } = {}): Promise<ProduceResult> {
    if (records.length === 0) throw new SluiceError('INVALID_REQUEST', 'produceBatch needs at least one record');
    const inputs = records.map(toRecordInput);
    if (options.partition !== undefined) checkPartition(options.partition);
    const partition = options.partition ?? (await this.pickPartition(topic, inputs[0]?.key ?? null));
    return this.request(topic, partition, inputs);
  }

  /** Sends pre-encoded Kafka v2 batches as they are (the raw fast path). */
  produceRaw(topic: string, partition: number | undefined, recordBatch: Uint8Array): Promise<ProduceResult> {
    if (partition !== undefined) {
      try {
        checkPartition(partition);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.withRetry(() => this.call({ topic, partition, records: [], recordBatch: Buffer.from(recordBatch.buffer, recordBatch.byteOffset, recordBatch.byteLength), acks: fromAcks(this.options.acks) }));
  }

  /** Sends every queued record now and waits until all are acknowledged or failed. */
  async flush(): Promise<void> {
    for (const [key, lane] of this.lanes) {
      this.closeOpen(lane);
      this.pump(key, lane);
    }
    while (this.busy()) await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flush();
    this.conn.close();
  }

  // --- partitioning ------------------------------------------------------------------------------

  /** Partition count from metadata, cached per topic (refreshed after UNKNOWN_PARTITION). */
  partitionCount(topic: string): Promise<number> {
    let p = this.partitionCounts.get(topic);
    // Partitions can be added: after metadataMaxAgeMs look again, so keyed records follow the broker.
    if (p !== undefined && Date.now() - (this.partitionCountsAt.get(topic) ?? 0) > this.options.metadataMaxAgeMs) p = undefined;
    if (p === undefined) {
      this.partitionCountsAt.set(topic, Date.now());
      p = this.conn.unary(this.conn.broker, this.conn.broker.getMetadata, { topics: [topic] }).then((m) => {
        const t = m.topics.find((x) => x.name === topic);
        if (t === undefined) throw new SluiceError('UNKNOWN_TOPIC', `topic "${topic}" does not exist; create it with: sluice topic create ${topic} -p N`);
        return t.partitions.length;
      });
      p.catch(() => this.partitionCounts.delete(topic));
      this.partitionCounts.set(topic, p);
    }
    return p;
  }

  private async pickPartition(topic: string, key: Uint8Array | null): Promise<number> {
    const count = await this.partitionCount(topic);
    if (key !== null) return partitionForKey(key, count);
    let sticky = this.sticky.get(topic);
    if (sticky === undefined || sticky >= count) {
      sticky = Math.floor(Math.random() * count);
      this.sticky.set(topic, sticky);
    }
    return sticky;
  }

  /** Kafka's sticky partitioner: unkeyed records move to another partition when a batch closes. */
  private rotateSticky(topic: string, closedPartition: number): void {
    const current = this.sticky.get(topic);
    const count = this.partitionCounts.get(topic);
    if (current !== closedPartition || count === undefined) return;
    void count.then((n) => {
      if (this.sticky.get(topic) === closedPartition) this.sticky.set(topic, (closedPartition + 1) % n);
    }, () => {});
  }

  // --- accumulator -------------------------------------------------------------------------------

  private append(topic: string, partition: number, input: RecordInput, waiter: Waiter): void {
    const key = `${partition}\u0000${topic}`;
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      lane = new PartitionLane();
      this.lanes.set(key, lane);
    }
    const size = estimateBytes(input);
    if (lane.open !== null && (lane.open.bytes + size > this.options.batchBytes || lane.open.records.length >= BATCH_RECORDS_MAX)) {
      this.closeOpen(lane);
      this.rotateSticky(topic, partition);
    }
    if (lane.open === null) {
      lane.open = { records: [], waiters: [], bytes: BATCH_OVERHEAD_BYTES };
      const l = lane;
      lane.timer = setTimeout(() => {
        this.closeOpen(l);
        this.rotateSticky(topic, partition);
        this.pump(key, l);
      }, this.options.lingerMs);
    }
    lane.open.records.push(input);
    lane.open.waiters.push(waiter);
    lane.open.bytes += size;
    if (lane.open.bytes >= this.options.batchBytes) {
      this.closeOpen(lane);
      this.rotateSticky(topic, partition);
    }
    this.pump(key, lane);
  }

  private closeOpen(lane: PartitionLane): void {
    if (lane.timer !== null) clearTimeout(lane.timer);
    lane.timer = null;
    if (lane.open !== null && lane.open.records.length > 0) lane.ready.push(lane.open);
    lane.open = null;
  }

  private pump(key: string, lane: PartitionLane): void {
    if (lane.inFlight || lane.ready.length === 0) {
      if (!this.busy()) this.notifyIdle();
      return;
    }
    const batch = lane.ready.shift()!;
    const sep = key.indexOf('\u0000');
    const partition = Number(key.slice(0, sep));
    const topic = key.slice(sep + 1);
    lane.inFlight = true;
    this.request(topic, partition, batch.records).then(
      (res) => {
        const acked = this.options.acks !== 'none';
        batch.waiters.forEach((w, i) => w.resolve({ topic, partition: res.partition, offset: acked ? res.baseOffset + i : -1 }));
      },
      (err: unknown) => {
        if (isSluiceError(err, 'UNKNOWN_PARTITION')) this.partitionCounts.delete(topic);
        for (const w of batch.waiters) w.reject(err);
      },
    ).finally(() => {
      lane.inFlight = false;
      this.pump(key, lane);
    });
  }

  private busy(): boolean {
    for (const lane of this.lanes.values()) if (lane.inFlight || lane.ready.length > 0 || lane.open !== null) return true;
    return false;
  }

  private notifyIdle(): void {
    const waiting = [...this.idle];
    this.idle.clear();
    for (const resolve of waiting) resolve();
  }

  // --- requests ----------------------------------------------------------------------------------

  private request(topic: string, partition: number, records: RecordInput[]): Promise<ProduceResult> {
    const acks = fromAcks(this.options.acks);
    if (this.options.format === 'records') {
      const pbRecords = records.map((r) => ({
        key: r.key === null ? undefined : Buffer.from(r.key.buffer, r.key.byteOffset, r.key.byteLength),
        value: r.value === null ? undefined : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength),
        headers: (r.headers ?? []).map((h) => ({ key: h.key, value: h.value === null ? undefined : Buffer.from(h.value) })),
        timestampMs: BigInt(r.timestampMs ?? 0),
        offset: 0n,
      }));
      return this.withRetry(() => this.call({ topic, partition, records: pbRecords, recordBatch: Buffer.alloc(0), acks }));
    }
    const recordBatch = encodeBatch(records, { compression: this.options.compression });
    return this.withRetry(() => this.call({ topic, partition, records: [], recordBatch, acks }));
  }

  private async call(req: ProduceRequest): Promise<ProduceResult> {
    const res: ProduceResponse = await this.conn.unary(this.conn.broker, this.conn.broker.produce, req);
    return {
      partition: res.partition,
      baseOffset: Number(res.baseOffset),
      lastOffset: Number(res.lastOffset),
      appendTimeMs: Number(res.appendTimeMs),
      logStartOffset: Number(res.logStartOffset),
    };
  }

  private async withRetry<T>(attempt: () => Promise<T>): Promise<T> {
    for (let i = 0; ; i++) {
      try {
        return await attempt();
      } catch (err) {
        if (!isSluiceError(err) || !err.retriable || i >= this.options.retries) throw err;
        const backoff = Math.min(this.options.retryBackoffMaxMs, this.options.retryBackoffMs * 2 ** i);
        await sleep(backoff * (0.5 + Math.random() / 2));
      }
    }
  }
}
