/**
 * Producer: batches records per partition (lingerMs, batchBytes), encodes Kafka v2 batches on the
 * client (the broker then only checks the CRC and assigns offsets), retries retriable errors with
 * exponential backoff, and picks partitions exactly as the broker does (murmur2 of the key, as
 * Kafka's default partitioner; sticky round-robin for unkeyed records).
 *
 * Idempotence (the default): the producer gets a producer id from InitProducer and numbers the
 * records of each partition with sequences; a retry re-sends the same sequences, so the broker answers
 * a retry of a batch it already wrote with the original offsets instead of writing it twice. Up to
 * PRODUCER_BATCHES_CACHED requests per partition are in flight. Ordering holds because the broker
 * only appends the next sequence: when request N fails and N+1 was already sent, N+1 comes back
 * OUT_OF_ORDER_SEQUENCE (retriable while N is outstanding); the lane then stops sending new batches
 * and re-sends the failed ones one at a time, lowest sequence first, until it has caught up (Kafka's
 * approach). A (producer id, epoch, sequence) never names two different batches: after a batch fails
 * for good its partition moves to a fresh producer id (Kafka bumps the epoch) and re-numbers from 0.
 * A named producer cannot change id: after a refusal that proves no attempt of the batch was written
 * (a bad batch) later batches take over its sequences; after any failure that may have been written
 * (a timeout or a lost answer on some attempt), the producer stops (create a new one: that bumps the
 * epoch).
 *
 * With `idempotent: false` at most one request per partition is in flight, so records of one
 * partition are still appended in `send` order, but a retry after a lost response can duplicate.
 */
import { BATCH_BYTES_MAX_DEFAULT, BATCH_RECORDS_MAX, PRODUCER_BATCHES_CACHED } from '../constants.js';
import { SluiceError, isSluiceError, type ErrorCode } from '../errors.js';
import { Compression, encodeBatch } from '../batch/index.js';
import {
  BATCH_LOG_OVERHEAD_BYTES,
  OFF_BASE_SEQUENCE,
  OFF_CRC,
  OFF_LENGTH,
  OFF_PRODUCER_EPOCH,
  OFF_PRODUCER_ID,
  OFF_RECORD_COUNT,
  asBuffer,
  computeBatchCrc,
} from '../batch/codec.js';
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
  /**
   * Retries never duplicate (default true; needs acks 'all'). With acks other than 'all' and this
   * unset, idempotence is off, as in Kafka.
   */
  idempotent?: boolean;
  /**
   * A stable name for an idempotent producer (like Kafka's transactional.id): a new Producer with the
   * same name fences the older one, whose writes then fail with PRODUCER_FENCED.
   */
  producerName?: string;
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
  idempotent: true,
  producerName: undefined as string | undefined,
});
type FilledProducerOptions = typeof FILLED_DEFAULTS;

function validate(o: FilledProducerOptions): FilledProducerOptions {
  if (!(o.lingerMs >= 0)) throw new SluiceError('INVALID_REQUEST', `lingerMs must be >= 0 (got ${o.lingerMs})`);
  if (!(o.batchBytes > 0 && o.batchBytes <= BATCH_BYTES_MAX_DEFAULT)) {
    throw new SluiceError('INVALID_REQUEST', `batchBytes must be in (0, ${BATCH_BYTES_MAX_DEFAULT}] (got ${o.batchBytes})`);
  }
  if (!(o.retries >= 0)) throw new SluiceError('INVALID_REQUEST', `retries must be >= 0 (got ${o.retries})`);
  if (o.idempotent && o.acks !== 'all') throw new SluiceError('INVALID_REQUEST', `an idempotent producer needs acks 'all' (got '${o.acks}'); set idempotent: false`);
  if (o.producerName !== undefined && !o.idempotent) throw new SluiceError('INVALID_REQUEST', 'producerName needs an idempotent producer');
  return o;
}

/** Refusals after which the broker certainly wrote nothing, so the batch's sequences can be reused. */
const DEFINITE_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'INVALID_REQUEST',
  'CORRUPT_BATCH',
  'RECORD_TOO_LARGE',
  'TOO_MANY_RECORDS',
  'UNSUPPORTED_MAGIC',
  'UNSUPPORTED_COMPRESSION',
  'UNKNOWN_TOPIC',
  'UNKNOWN_PARTITION',
]);

interface Identity {
  producerId: bigint;
  producerEpoch: number;
}

/**
 * Writes producer id, epoch and base sequences into pre-encoded v2 batches (in place) and re-computes
 * their CRCs, which cover these fields. Sequences run on across the batches.
 */
function stampBatches(data: Uint8Array, id: Identity, baseSequence: number): void {
  const buf = asBuffer(data);
  let seq = baseSequence;
  for (let pos = 0; pos < buf.length; ) {
    const size = buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
    buf.writeBigInt64BE(id.producerId, pos + OFF_PRODUCER_ID);
    buf.writeInt16BE(id.producerEpoch, pos + OFF_PRODUCER_EPOCH);
    buf.writeInt32BE(seq, pos + OFF_BASE_SEQUENCE);
    buf.writeUInt32BE(computeBatchCrc(buf, pos, size), pos + OFF_CRC);
    seq += buf.readInt32BE(pos + OFF_RECORD_COUNT);
    pos += size;
  }
}

/** Records in pre-encoded batches (header walk). */
function countBatchRecords(data: Uint8Array): number {
  const buf = asBuffer(data);
  let n = 0;
  for (let pos = 0; pos + OFF_RECORD_COUNT + 4 <= buf.length; ) {
    n += buf.readInt32BE(pos + OFF_RECORD_COUNT);
    pos += buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
  }
  return n;
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
  /** Pre-encoded batches (produceRaw) instead of records. */
  raw?: Uint8Array;
  /** Called with the whole result (produceBatch, produceRaw) instead of per-record waiters. */
  whole?: { resolve: (r: ProduceResult) => void; reject: (e: unknown) => void };
}

/** A batch of an idempotent lane that has its sequences: in flight, or queued for a retry. */
interface SequencedBatch {
  batch: PendingBatch;
  seq: number;
  count: number;
  identity: Identity;
  state: 'sending' | 'queued';
  attempts: number;
  /**
   * Whether some attempt failed in a way that does not prove the broker wrote nothing (a timeout, a
   * lost connection, UNAVAILABLE...). Its sequences may then name these bytes in some replica's log,
   * so they are never given to other bytes under the same producer id and epoch.
   */
  maybeWritten: boolean;
  /** Whether a lower sequence of the lane was unresolved when this was last sent. */
  lowerUnresolvedAtSend: boolean;
  /** Position among the lane's batches (for the dedup window). */
  ordinal: number;
}

/** The accumulator of one partition: an open batch, closed batches waiting, requests in flight. */
class PartitionLane {
  open: PendingBatch | null = null;
  ready: PendingBatch[] = [];
  inFlight = false;
  timer: NodeJS.Timeout | null = null;
  // Idempotent lanes only:
  /** Batches with sequences, not yet acknowledged or failed, in sequence order. */
  unresolved: SequencedBatch[] = [];
  nextSeq = 0;
  nextOrdinal = 0;
  /** This lane's producer identity when it had to leave the producer's shared one. */
  identity: Identity | null = null;
  /** A retry backoff is running: nothing is sent until it ends. */
  backoff: NodeJS.Timeout | null = null;
  /** Sequences must be re-assigned once nothing is in flight ('renumber'), or a new id taken ('new-id'). */
  reset: 'renumber' | 'new-id' | null = null;
  /** For 'renumber': the first sequence of the refused batch, where renumbering starts. */
  resetFromSeq: number | null = null;
  resetting = false;

  sending(): number {
    let n = 0;
    for (const b of this.unresolved) if (b.state === 'sending') n++;
    return n;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function toPbRecords(records: RecordInput[]): ProduceRequest['records'] {
  return records.map((r) => ({
    key: r.key === null ? undefined : Buffer.from(r.key.buffer, r.key.byteOffset, r.key.byteLength),
    value: r.value === null ? undefined : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength),
    headers: (r.headers ?? []).map((h) => ({ key: h.key, value: h.value === null ? undefined : Buffer.from(h.value) })),
    timestampMs: BigInt(r.timestampMs ?? 0),
    offset: 0n,
  }));
}

export class Producer {
  private readonly conn: Connection;
  private readonly options: FilledProducerOptions;
  private readonly lanes = new Map<string, PartitionLane>();
  private readonly partitionCounts = new Map<string, Promise<number>>();
  private readonly partitionCountsAt = new Map<string, number>();
  private readonly sticky = new Map<string, number>();
  private readonly idle = new Set<() => void>();
  private closed = false;
  /** The producer id and epoch shared by all lanes (idempotent producers). */
  private identity: Promise<Identity> | null = null;
  private identityResolved: Identity | null = null;
  /** Set once the producer cannot go on (fenced, or a named producer's ambiguous failure). */
  private fatal: SluiceError | null = null;

  constructor(options: ProducerOptions = {}) {
    this.conn = new Connection(options);
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    const filled = { ...FILLED_DEFAULTS, ...given } as FilledProducerOptions;
    // Idempotence is the default only where it can work (acks 'all'), as in Kafka.
    if (options.idempotent === undefined && filled.acks !== 'all') (filled as { idempotent: boolean }).idempotent = false;
    this.options = validate(filled);
  }

  /** Queues one record; resolves once it is acknowledged (per `acks`). */
  async send(topic: string, record: ProducerRecord): Promise<RecordMetadata> {
    if (this.closed) throw new SluiceError('INVALID_REQUEST', 'the producer is closed');
    if (this.fatal) throw this.fatal;
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
    if (this.options.idempotent) return this.enqueueWhole(topic, partition, { records: inputs, waiters: [], bytes: 0 });
    return this.request(topic, partition, inputs);
  }

  /**
   * Sends pre-encoded Kafka v2 batches (the raw fast path). An idempotent producer writes its producer
   * id, epoch and sequences into the batches' headers in place (and their CRCs): do not reuse the
   * buffer until the promise settles. Without idempotence the bytes go as they are.
   */
  async produceRaw(topic: string, partition: number | undefined, recordBatch: Uint8Array): Promise<ProduceResult> {
    if (partition !== undefined) checkPartition(partition);
    if (this.options.idempotent) {
      const p = partition ?? (await this.pickPartition(topic, null));
      return this.enqueueWhole(topic, p, { records: [], waiters: [], bytes: 0, raw: recordBatch });
    }
    return this.withRetry(() => this.call(this.produceRequest(topic, partition, [], asBuffer(recordBatch))));
  }

  /** Queues a whole request behind whatever the partition has waiting (so `send` order is kept). */
  private enqueueWhole(topic: string, partition: number, batch: PendingBatch): Promise<ProduceResult> {
    if (this.closed) return Promise.reject(new SluiceError('INVALID_REQUEST', 'the producer is closed'));
    if (this.fatal) return Promise.reject(this.fatal);
    return new Promise((resolve, reject) => {
      batch.whole = { resolve, reject };
      const key = `${partition}\u0000${topic}`;
      const lane = this.laneFor(key);
      this.closeOpen(lane);
      lane.ready.push(batch);
      this.pump(key, lane);
    });
  }

  private laneFor(key: string): PartitionLane {
    let lane = this.lanes.get(key);
    if (lane === undefined) {
      lane = new PartitionLane();
      this.lanes.set(key, lane);
    }
    return lane;
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
    const lane = this.laneFor(key);
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
    if (this.options.idempotent) return this.pumpIdempotent(key, lane);
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
    for (const lane of this.lanes.values()) {
      if (lane.inFlight || lane.ready.length > 0 || lane.open !== null || lane.unresolved.length > 0 || lane.resetting) return true;
    }
    return false;
  }

  // --- idempotent lanes --------------------------------------------------------------------------

  private splitKey(key: string): { topic: string; partition: number } {
    const sep = key.indexOf('\u0000');
    return { partition: Number(key.slice(0, sep)), topic: key.slice(sep + 1) };
  }

  /** The shared identity, from InitProducer on first use (retried like a produce). */
  private sharedIdentity(): Promise<Identity> {
    if (this.identity === null) {
      const name = this.options.producerName;
      this.identity = this.withRetry(() => this.conn.unary(this.conn.broker, this.conn.broker.initProducer, { producerName: name }));
      this.identity.then(
        (id) => (this.identityResolved = id),
        () => (this.identity = null),
      );
    }
    return this.identity;
  }

  /**
   * Sends what an idempotent lane may send now. Normal mode: new batches, up to
   * PRODUCER_BATCHES_CACHED in flight. Retry mode (some batch is queued for a re-send): nothing new;
   * once every request in flight has come back, the lowest queued batch is re-sent, alone.
   */
  private pumpIdempotent(key: string, lane: PartitionLane): void {
    if (this.fatal) this.failLane(lane, this.fatal);
    if (lane.resetting || lane.backoff !== null) return;
    const sending = lane.sending();
    if (lane.reset !== null) {
      if (sending === 0) void this.resetLane(key, lane);
      return;
    }
    const queued = lane.unresolved.find((b) => b.state === 'queued');
    if (queued !== undefined) {
      if (sending === 0) this.sendSequenced(key, lane, queued);
      return;
    }
    if (lane.ready.length > 0 && this.windowRoom(lane) > 0) {
      const identity = lane.identity ?? this.identityResolved;
      if (identity === null) {
        // First use: get the id, then come back.
        lane.resetting = true;
        this.sharedIdentity().then(
          () => {
            lane.resetting = false;
            this.pump(key, lane);
          },
          (err: unknown) => {
            lane.resetting = false;
            this.failLane(lane, err);
            this.pump(key, lane);
          },
        );
        return;
      }
      while (lane.ready.length > 0 && this.windowRoom(lane) > 0) {
        const batch = lane.ready.shift()!;
        const count = batch.raw !== undefined ? countBatchRecords(batch.raw) : batch.records.length;
        const sb: SequencedBatch = { batch, seq: lane.nextSeq, count, identity, state: 'sending', attempts: 0, maybeWritten: false, lowerUnresolvedAtSend: false, ordinal: lane.nextOrdinal++ };
        lane.nextSeq += count;
        lane.unresolved.push(sb);
        this.sendSequenced(key, lane, sb);
      }
      return;
    }
    if (!this.busy()) this.notifyIdle();
  }

  /**
   * How many more batches may be sent: every unresolved batch must stay among the last
   * PRODUCER_BATCHES_CACHED batches the broker may have written for this lane, or a retry of it could
   * fall out of the broker's dedup window. (gRPC answers out of order, so counting requests in flight
   * is not enough: N+1..N+5 may all be answered while N is still out.)
   */
  private windowRoom(lane: PartitionLane): number {
    if (lane.unresolved.length === 0) return PRODUCER_BATCHES_CACHED;
    return PRODUCER_BATCHES_CACHED - (lane.nextOrdinal - lane.unresolved[0].ordinal);
  }

  private sendSequenced(key: string, lane: PartitionLane, sb: SequencedBatch): void {
    const { topic, partition } = this.splitKey(key);
    sb.state = 'sending';
    sb.lowerUnresolvedAtSend = lane.unresolved[0] !== sb;
    let req: ProduceRequest;
    try {
      req = this.sequencedRequest(topic, partition, sb);
    } catch (err) {
      return this.settle(key, lane, sb, err);
    }
    this.call(req).then(
      (res) => this.settle(key, lane, sb, null, res),
      (err: unknown) => this.settle(key, lane, sb, err),
    );
  }

  private sequencedRequest(topic: string, partition: number, sb: SequencedBatch): ProduceRequest {
    const b = sb.batch;
    if (b.raw !== undefined) {
      stampBatches(b.raw, sb.identity, sb.seq);
      return this.produceRequest(topic, partition, [], asBuffer(b.raw));
    }
    if (this.options.format === 'records') {
      const req = this.produceRequest(topic, partition, toPbRecords(b.records), Buffer.alloc(0));
      req.producerId = sb.identity.producerId;
      req.producerEpoch = sb.identity.producerEpoch;
      req.baseSequence = sb.seq;
      return req;
    }
    const batch = encodeBatch(b.records, { compression: this.options.compression, producerId: sb.identity.producerId, producerEpoch: sb.identity.producerEpoch, baseSequence: sb.seq });
    return this.produceRequest(topic, partition, [], batch);
  }

  /** One answer for a sequenced batch: done, re-queued, or failed for good. */
  private settle(key: string, lane: PartitionLane, sb: SequencedBatch, err: unknown, res?: ProduceResult): void {
    const { topic } = this.splitKey(key);
    if (err === null) {
      this.resolveBatch(lane, sb, topic, res!);
      return this.pump(key, lane);
    }
    // OUT_OF_ORDER_SEQUENCE and the definite refusals say this attempt wrote nothing; anything else may have.
    if (!isSluiceError(err) || (err.code !== 'OUT_OF_ORDER_SEQUENCE' && !DEFINITE_REFUSALS.has(err.code))) sb.maybeWritten = true;
    const outOfOrderBehind =
      isSluiceError(err, 'OUT_OF_ORDER_SEQUENCE') && (sb.lowerUnresolvedAtSend || lane.unresolved.some((x) => x !== sb && x.seq < sb.seq));
    if (outOfOrderBehind || (isSluiceError(err) && err.retriable && sb.attempts < this.options.retries && lane.reset === null)) {
      // A batch behind a failed one is not charged a retry: it waits for its turn.
      if (!outOfOrderBehind) sb.attempts++;
      sb.state = 'queued';
      if (lane.backoff === null && !outOfOrderBehind) {
        const backoff = Math.min(this.options.retryBackoffMaxMs, this.options.retryBackoffMs * 2 ** (sb.attempts - 1));
        lane.backoff = setTimeout(() => {
          lane.backoff = null;
          this.pump(key, lane);
        }, backoff * (0.5 + Math.random() / 2));
      }
      return this.pump(key, lane);
    }
    // OUT_OF_ORDER_SEQUENCE with nothing earlier outstanding: the partition has no state for this
    // producer (expired or evicted), so nothing was written; an anonymous lane moves to a fresh id and
    // re-sends from sequence 0.
    if (isSluiceError(err, 'OUT_OF_ORDER_SEQUENCE') && this.options.producerName === undefined && sb.attempts < this.options.retries && lane.reset === null) {
      sb.attempts++;
      sb.state = 'queued';
      lane.reset = 'new-id';
      return this.pump(key, lane);
    }
    // Failed for good.
    lane.unresolved.splice(lane.unresolved.indexOf(sb), 1);
    this.rejectBatch(sb.batch, err);
    if (isSluiceError(err, 'UNKNOWN_PARTITION')) this.partitionCounts.delete(topic);
    if (isSluiceError(err, 'PRODUCER_FENCED')) {
      this.fatal = err;
    } else if (this.options.producerName === undefined) {
      // Kafka's rule: a batch that failed for good never hands its sequences to other bytes under the
      // same id and epoch. An earlier attempt may have been written (its answer lost), and a refusal
      // now (a node that restarted and did not know the topic yet) does not undo that: re-using the
      // sequence would make the broker answer the next batch as a duplicate of this one, losing it.
      lane.reset = 'new-id';
    } else if (isSluiceError(err) && DEFINITE_REFUSALS.has(err.code) && !sb.maybeWritten) {
      // A named producer cannot move to another id. Every attempt of this batch was refused before
      // anything was written, so no log holds these sequences: the next batches may take them.
      lane.reset ??= 'renumber';
      lane.resetFromSeq = Math.min(lane.resetFromSeq ?? sb.seq, sb.seq);
    } else {
      this.fatal = new SluiceError(
        isSluiceError(err) ? err.code : 'INTERNAL',
        `named producer '${this.options.producerName}' stopped: a batch failed after it may have been written (${(err as Error).message}); create a new Producer`,
        { cause: err, retriable: false },
      );
    }
    this.pump(key, lane);
  }

  private resolveBatch(lane: PartitionLane, sb: SequencedBatch, topic: string, res: ProduceResult): void {
    lane.unresolved.splice(lane.unresolved.indexOf(sb), 1);
    const b = sb.batch;
    if (b.whole) return b.whole.resolve(res);
    b.waiters.forEach((w, i) => w.resolve({ topic, partition: res.partition, offset: res.baseOffset + i }));
  }

  private rejectBatch(b: PendingBatch, err: unknown): void {
    if (b.whole) b.whole.reject(err);
    for (const w of b.waiters) w.reject(err);
  }

  /**
   * After a batch failed for good and nothing is in flight: the queued batches get new sequences,
   * continuing from the lowest unresolved one ('renumber': nothing after the refused batch can have
   * been written), or from 0 under a fresh producer id ('new-id').
   */
  private async resetLane(key: string, lane: PartitionLane): Promise<void> {
    const kind = lane.reset;
    lane.resetting = true;
    try {
      if (kind === 'new-id') {
        lane.identity = await this.withRetry(() => this.conn.unary(this.conn.broker, this.conn.broker.initProducer, {}));
        lane.nextSeq = 0;
      } else {
        // Nothing after the refused batch can have been written (the broker appends only the next
        // sequence), so the queued batches take over from its first sequence.
        lane.nextSeq = lane.resetFromSeq ?? lane.nextSeq;
      }
      const identity = lane.identity ?? (await this.sharedIdentity());
      for (const sb of lane.unresolved) {
        // Lower sequences than the refused batch's (queued after an OUT_OF_ORDER) keep theirs.
        if (kind === 'renumber' && sb.seq < lane.nextSeq && sb.identity === identity) continue;
        sb.seq = lane.nextSeq;
        sb.identity = identity;
        sb.state = 'queued';
        lane.nextSeq += sb.count;
      }
    } catch (err) {
      this.failLane(lane, err);
    } finally {
      lane.reset = null;
      lane.resetFromSeq = null;
      lane.resetting = false;
    }
    this.pump(key, lane);
  }

  private failLane(lane: PartitionLane, err: unknown): void {
    this.closeOpen(lane);
    for (const sb of lane.unresolved.splice(0)) if (sb.state === 'queued') this.rejectBatch(sb.batch, err);
    for (const b of lane.ready.splice(0)) this.rejectBatch(b, err);
  }

  private notifyIdle(): void {
    const waiting = [...this.idle];
    this.idle.clear();
    for (const resolve of waiting) resolve();
  }

  // --- requests ----------------------------------------------------------------------------------

  private produceRequest(topic: string, partition: number | undefined, records: ProduceRequest['records'], recordBatch: Buffer): ProduceRequest {
    return { topic, partition, records, recordBatch, acks: fromAcks(this.options.acks), producerId: undefined, producerEpoch: 0, baseSequence: 0 };
  }

  private request(topic: string, partition: number, records: RecordInput[]): Promise<ProduceResult> {
    if (this.options.format === 'records') {
      const req = this.produceRequest(topic, partition, toPbRecords(records), Buffer.alloc(0));
      return this.withRetry(() => this.call(req));
    }
    const recordBatch = encodeBatch(records, { compression: this.options.compression });
    return this.withRetry(() => this.call(this.produceRequest(topic, partition, [], recordBatch)));
  }

  /** One produce, sent to the partition's leader when the connection knows it (see Connection.brokerFor). */
  private async call(req: ProduceRequest): Promise<ProduceResult> {
    const client = this.conn.brokerFor(req.topic, req.partition);
    let res: ProduceResponse;
    try {
      res = await this.conn.produce(client, req);
    } catch (err) {
      this.conn.routeFailed(req.topic, req.partition, err);
      throw err;
    }
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
