/**
 * Consumer: one long-poll Fetch loop per partition, merged into one async iterator. Fetches ask for
 * raw Kafka v2 batches and decode them here (the broker does no per-record work); the first batch of a
 * fetch may start below the requested offset, so records below it are skipped.
 *
 * Memory is bounded: a partition loop stops fetching while `bufferRecordsMax` records wait unread.
 */
import { CONSUMER_RETRIES_MAX, CONSUMER_RETRY_BACKOFF_MS_MAX } from '../constants.js';
import { SluiceError, isSluiceError } from '../errors.js';
import { decodeFetched } from './decode.js';
import type { FetchResponse } from '../rpc/gen/sluice/v1/broker.js';
import { Admin } from './admin.js';
import { Connection, type ClientOptions } from './connection.js';
import { GroupConsumer, type GroupConsumerOptions } from './group-consumer.js';
import type { ConsumedRecord, StartOffset } from './types.js';
import { checkInt32, checkOffset, checkPartition, checkTimestampMs } from './validate.js';

export { decodeFetched };

export interface ConsumerOptions extends ClientOptions {
  topic: string;
  /** Partitions to read; default all. */
  partitions?: number[];
  /** Where to start in each partition. Default 'earliest'. */
  from?: StartOffset;
  /** Soft bound on the bytes of one fetch. Default 1 MiB. */
  maxBytes?: number;
  /** Long-poll wait when a partition has no new data. Default 500 ms. */
  maxWaitMs?: number;
  /** Finish once every partition is read up to its high watermark (kcat -e). */
  stopAtEnd?: boolean;
  /** Records buffered ahead of the reader. Default 10,000. */
  bufferRecordsMax?: number;
  retryBackoffMs?: number;
}

/** Refuses numbers the wire cannot carry or the broker would reject, before a connection is made. */
function checkConsumerOptions(o: ConsumerOptions): void {
  for (const p of o.partitions ?? []) checkPartition(p, 'partitions[]');
  const from = o.from;
  if (typeof from === 'number') checkOffset(from, 'from');
  else if (typeof from === 'object' && 'fromEnd' in from) checkOffset(from.fromEnd, 'from.fromEnd');
  else if (typeof from === 'object' && 'timestampMs' in from) checkTimestampMs(from.timestampMs, 'from.timestampMs');
  if (o.maxBytes !== undefined) checkInt32(o.maxBytes, 'maxBytes');
  if (o.maxWaitMs !== undefined) checkInt32(o.maxWaitMs, 'maxWaitMs');
  if (o.bufferRecordsMax !== undefined) checkInt32(o.bufferRecordsMax, 'bufferRecordsMax', 1);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class Consumer implements AsyncIterable<ConsumedRecord> {
  private readonly conn: Connection;
  private readonly options: ConsumerOptions;
  private readonly buffer: ConsumedRecord[] = [];
  private readonly aborter = new AbortController();
  private readonly positions = new Map<number, number>();
  private wakeReader: (() => void) | null = null;
  private wakeLoops: (() => void)[] = [];
  private running = 0;
  private failure: unknown = null;
  private started = false;

  constructor(options: ConsumerOptions | GroupConsumerOptions) {
    this.options = options as ConsumerOptions;
    if (!('groupId' in options)) checkConsumerOptions(this.options);
    this.conn = new Connection(options);
  }

  /**
   * Group mode: `new Consumer({ groupId, ... }).subscribe(topics).run(async (batch) => ...)` joins the
   * consumer group; the broker assigns partitions and stores commits (see GroupConsumer).
   */
  subscribe(topics: string | string[] | RegExp): GroupConsumer {
    const groupId = (this.options as Partial<GroupConsumerOptions>).groupId;
    if (typeof groupId !== 'string' || groupId.length === 0) {
      throw new SluiceError('INVALID_REQUEST', 'subscribe() is for consumer groups: create the consumer with new Consumer({ groupId, ... })');
    }
    this.conn.close();
    return new GroupConsumer(this.options as unknown as GroupConsumerOptions).subscribe(topics);
  }

  /** The next offset each partition will read (after start-up). */
  get offsets(): ReadonlyMap<number, number> {
    return this.positions;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ConsumedRecord> {
    await this.start();
    for (;;) {
      while (this.buffer.length > 0) {
        const record = this.buffer.shift()!;
        if (this.buffer.length < (this.options.bufferRecordsMax ?? 10_000)) this.releaseLoops();
        yield record;
      }
      if (this.failure !== null) throw this.failure;
      if (this.running === 0 || this.aborter.signal.aborted) return;
      await new Promise<void>((resolve) => (this.wakeReader = resolve));
    }
  }

  /** Resolves each partition's start offset and starts the fetch loops. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const admin = new Admin(this.conn);
    const topic = this.options.topic;
    const partitions = this.options.partitions ?? (await this.retrying(() => admin.describeTopic(topic))).partitions.map((p) => p.partition);
    const from = this.options.from ?? 'earliest';
    const earliest = await this.retrying(() => admin.listOffsets(topic, 'earliest', partitions));
    const latest = await this.retrying(() => admin.listOffsets(topic, 'latest', partitions));
    let byTime: Map<number, number> | null = null;
    if (typeof from === 'object' && 'timestampMs' in from) byTime = await this.retrying(() => admin.listOffsets(topic, from, partitions));
    for (const p of partitions) {
      const lo = earliest.get(p) ?? 0;
      const hi = latest.get(p) ?? 0;
      let start: number;
      if (from === 'earliest') start = lo;
      else if (from === 'latest') start = hi;
      else if (typeof from === 'number') start = from;
      else if ('fromEnd' in from) start = Math.max(lo, hi - from.fromEnd);
      else start = byTime!.get(p) === -1 ? hi : (byTime!.get(p) ?? hi);
      this.positions.set(p, start);
    }
    for (const p of partitions) {
      this.running++;
      void this.loop(p).then(
        () => this.loopEnded(null),
        (err: unknown) => this.loopEnded(err),
      );
    }
  }

  /**
   * Runs a start-up lookup again after a retriable error (a partition between leaders, a node that just
   * restarted), with the fetch loop's backoff and bound, as Kafka consumers retry ListOffsets.
   */
  private async retrying<T>(call: () => Promise<T>): Promise<T> {
    for (let failures = 1; ; failures++) {
      try {
        return await call();
      } catch (err) {
        if (this.aborter.signal.aborted || !isSluiceError(err) || !err.retriable || failures > CONSUMER_RETRIES_MAX) throw err;
        await sleep(Math.min(CONSUMER_RETRY_BACKOFF_MS_MAX, (this.options.retryBackoffMs ?? 50) * 2 ** failures));
      }
    }
  }

  close(): void {
    this.aborter.abort();
    this.releaseLoops();
    this.wakeReader?.();
    this.conn.close();
  }

  private loopEnded(err: unknown): void {
    this.running--;
    if (err !== null && !this.aborter.signal.aborted && this.failure === null) this.failure = err;
    if (this.failure !== null) this.aborter.abort();
    this.wakeReader?.();
  }

  private releaseLoops(): void {
    const loops = this.wakeLoops;
    this.wakeLoops = [];
    for (const wake of loops) wake();
  }

  private async loop(partition: number): Promise<void> {
    const { topic, stopAtEnd = false } = this.options;
    const maxWaitMs = stopAtEnd ? 0 : (this.options.maxWaitMs ?? 500);
    const signal = this.aborter.signal;
    let failures = 0;
    while (!signal.aborted) {
      while (this.buffer.length >= (this.options.bufferRecordsMax ?? 10_000) && !signal.aborted) {
        await new Promise<void>((resolve) => this.wakeLoops.push(resolve));
      }
      const offset = this.positions.get(partition)!;
      let res: FetchResponse;
      const client = this.conn.brokerFor(topic, partition);
      try {
        res = await this.conn.unary(
          client,
          client.fetch,
          { topic, partition, offset: BigInt(offset), maxBytes: this.options.maxBytes ?? 0, maxWaitMs, raw: true },
          maxWaitMs,
          signal,
        );
        failures = 0;
      } catch (err) {
        if (signal.aborted) return;
        this.conn.routeFailed(topic, partition, err);
        if (!isSluiceError(err) || !err.retriable || ++failures > CONSUMER_RETRIES_MAX) throw err;
        await sleep(Math.min(CONSUMER_RETRY_BACKOFF_MS_MAX, (this.options.retryBackoffMs ?? 50) * 2 ** failures));
        continue;
      }
      const records = decodeFetched(topic, partition, res.recordBatches, offset);
      const next = Number(res.nextOffset);
      if (next < offset) throw new SluiceError('INTERNAL', `broker moved partition ${partition} backwards from ${offset} to ${next}`);
      this.positions.set(partition, next);
      if (records.length > 0) {
        for (const r of records) this.buffer.push(r);
        this.wakeReader?.();
      }
      if (stopAtEnd && next >= Number(res.highWatermark)) return;
    }
  }
}
