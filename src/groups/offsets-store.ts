/**
 * Committed offsets, durable in the internal topic `__consumer_offsets`, served from an in-memory
 * table (OffsetsStm) rebuilt on start by replaying every offsets partition.
 *
 * A group lives in partition murmur2(group) mod OFFSETS_PARTITIONS. A commit is acknowledged only
 * after its records are appended with acks=all (fsynced under the default flush policy), and applied
 * to the table only then, so the table never shows an offset a crash could lose.
 *
 * Commits bound for one offsets partition are coalesced: while one append is in flight, the next
 * ones queue and go out together as one append (and so share one fsync). One append in flight per
 * partition also keeps the table's apply order equal to the log order.
 *
 * Per offsets partition: in cluster mode the coordinator loads (`loadPartition`) only the partitions
 * this node leads, and forgets (`forgetPartition`) those it stops leading.
 */
import { SluiceError, isSluiceError } from '../errors.js';
import { decodeBatches } from '../batch/index.js';
import type { RecordInput } from '../batch/types.js';
import { murmur2 } from '../model/murmur2.js';
import type { BrokerApi, TopicDescription } from '../broker/types.js';
import { OFFSETS_LOG_RETENTION_MS, OFFSETS_PARTITIONS, OFFSETS_REFRESH_AGE_MS, OFFSETS_TOPIC } from './constants.js';
import { encodeOffsetKey, encodeOffsetValue } from './offsets-codec.js';
import { OffsetsStm, type CommittedOffsetEntry } from './offsets-stm.js';

/** The broker may offer a way to create internal ("__") topics, which createTopic refuses. */
export interface InternalTopicCreator {
  createInternalTopic(name: string, partitions: number, configs: Record<string, string>): Promise<TopicDescription>;
}

/**
 * Configs of the offsets topic. Compaction is "replay + refresh": the table keeps the last value per
 * key, and every live key whose last write is older than OFFSETS_REFRESH_AGE_MS is appended again
 * (`refresh`), so ordinary time retention can drop old segments without ever dropping the only copy of
 * a live offset. Daily segments let retention free space in steps.
 */
export const OFFSETS_TOPIC_CONFIGS: Readonly<Record<string, string>> = Object.freeze({
  'retention.ms': String(OFFSETS_LOG_RETENTION_MS),
  'segment.ms': String(24 * 3600 * 1000),
  'segment.bytes': String(16 * 1024 * 1024),
});

/**
 * Records in one append. Worst case a record is ~800 bytes (255-byte group, 249-byte topic, 256-byte
 * metadata), so an append stays under the default 1 MiB max.message.bytes.
 */
const APPEND_RECORDS_MAX = 1_000;

/** The offsets partition (and so the coordinator) of a group. */
export function offsetsPartitionFor(group: string, partitions = OFFSETS_PARTITIONS): number {
  return (murmur2(Buffer.from(group, 'utf8')) & 0x7fffffff) % partitions;
}

export interface OffsetWrite {
  topic: string;
  partition: number;
  /** null deletes the offset (a tombstone). commitTimeMs: kept from the original commit by a refresh; default now. */
  value: { offset: number; metadata: string; commitTimeMs?: number } | null;
}

interface PendingAppend {
  group: string;
  writes: OffsetWrite[];
  timeMs: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export interface OffsetsStoreOptions {
  topic?: string;
  partitions?: number;
  now?: () => number;
  /** Replay every offsets partition at open (default true; cluster mode loads partitions as it leads them). */
  replayAll?: boolean;
}

export class OffsetsStore {
  readonly stm = new OffsetsStm();
  readonly topic: string;
  readonly partitions: number;
  private readonly now: () => number;
  private readonly queues: PendingAppend[][] = [];
  private readonly inFlight: boolean[] = [];
  /** Bumped when a partition is forgotten: an append that completes after it does not touch the table. */
  private readonly tenure: number[] = [];

  private constructor(private readonly api: BrokerApi, options: OffsetsStoreOptions) {
    this.topic = options.topic ?? OFFSETS_TOPIC;
    this.partitions = options.partitions ?? OFFSETS_PARTITIONS;
    this.now = options.now ?? Date.now;
    for (let p = 0; p < this.partitions; p++) {
      this.queues.push([]);
      this.inFlight.push(false);
      this.tenure.push(0);
    }
  }

  /** Creates the offsets topic if needed and replays it into the table. */
  static async open(api: BrokerApi, options: OffsetsStoreOptions = {}): Promise<OffsetsStore> {
    // The broker refuses client writes to `__` topics; the store is the broker's own writer.
    const store = new OffsetsStore(api.internalView?.() ?? api, options);
    await store.ensureTopic();
    if (options.replayAll !== false) await store.recover();
    return store;
  }

  partitionFor(group: string): number {
    return offsetsPartitionFor(group, this.partitions);
  }

  private async ensureTopic(): Promise<void> {
    let described: TopicDescription | null = null;
    try {
      described = await this.api.describeTopic(this.topic);
    } catch (err) {
      if (!isSluiceError(err, 'UNKNOWN_TOPIC')) throw err;
    }
    if (described === null) {
      const creator = this.api as Partial<InternalTopicCreator>;
      try {
        if (typeof creator.createInternalTopic === 'function') {
          described = await creator.createInternalTopic(this.topic, this.partitions, { ...OFFSETS_TOPIC_CONFIGS });
        } else {
          described = await this.api.createTopic(this.topic, this.partitions, 1, { ...OFFSETS_TOPIC_CONFIGS });
        }
      } catch (err) {
        // Another starter won the race: use its topic.
        if (!isSluiceError(err, 'TOPIC_ALREADY_EXISTS')) throw err;
        described = await this.api.describeTopic(this.topic);
      }
    }
    if (described.partitions.length !== this.partitions) {
      throw new SluiceError(
        'INVALID_PARTITIONS',
        `${this.topic} has ${described.partitions.length} partitions but groups need exactly ${this.partitions}: a group's partition is hash(group) mod ${this.partitions}`,
      );
    }
  }

  /** Replays every offsets partition from its start to its high watermark. */
  private async recover(): Promise<void> {
    await Promise.all(Array.from({ length: this.partitions }, (_, p) => this.replay(p)));
  }

  /**
   * Loads one offsets partition into the table (cluster mode: this node now leads it): whatever the
   * table held of it is dropped first, then the partition is replayed up to its high watermark.
   */
  async loadPartition(partition: number): Promise<void> {
    this.dropGroups(partition);
    await this.replay(partition);
  }

  /**
   * Forgets one offsets partition (this node no longer leads it): its groups leave the table, queued
   * commits fail with `reason`, and an append in flight will not touch the table when it completes.
   */
  forgetPartition(partition: number, reason: Error): void {
    this.tenure[partition]++;
    this.dropGroups(partition);
    for (const a of this.queues[partition].splice(0)) a.reject(reason);
  }

  private dropGroups(partition: number): void {
    for (const g of this.stm.groupIds()) if (this.partitionFor(g) === partition) this.stm.removeGroup(g);
  }

  private async replay(partition: number): Promise<void> {
    const first = await this.api.listOffsets(this.topic, partition, { kind: 'earliest' });
    let offset = first.offset;
    // Bounded: each fetch advances `offset`, and the high watermark is fixed (nothing else writes
    // this partition before the coordinator is open).
    for (;;) {
      const r = await this.api.fetch({ topic: this.topic, partition, offset, maxBytes: 4 * 1024 * 1024, maxWaitMs: 0 });
      for (const batch of decodeBatches(r.batches, { verifyCrc: true })) {
        if (batch.header.isControl) continue; // Raft's own entries, not commits
        for (const rec of batch.records) if (rec.offset >= offset) this.stm.applyRecord(rec.key, rec.value, rec.timestampMs);
      }
      if (r.nextOffset <= offset || r.nextOffset >= r.highWatermark) break;
      offset = r.nextOffset;
    }
  }

  /** Appends the writes durably (acks=all), then applies them to the table. */
  write(group: string, writes: OffsetWrite[]): Promise<void> {
    if (writes.length === 0) return Promise.resolve();
    if (writes.length > APPEND_RECORDS_MAX) {
      const parts: Promise<void>[] = [];
      for (let i = 0; i < writes.length; i += APPEND_RECORDS_MAX) parts.push(this.write(group, writes.slice(i, i + APPEND_RECORDS_MAX)));
      return Promise.all(parts).then(() => undefined);
    }
    const p = this.partitionFor(group);
    return new Promise<void>((resolve, reject) => {
      this.queues[p].push({ group, writes, timeMs: this.now(), resolve, reject });
      if (!this.inFlight[p]) void this.flush(p);
    });
  }

  private async flush(p: number): Promise<void> {
    this.inFlight[p] = true;
    try {
      while (this.queues[p].length > 0) {
        // Coalesce queued commits, up to a bound that keeps one append well under max.message.bytes.
        let take = 0;
        let count = 0;
        while (take < this.queues[p].length && (take === 0 || count + this.queues[p][take].writes.length <= APPEND_RECORDS_MAX)) {
          count += this.queues[p][take].writes.length;
          take++;
        }
        const batch = this.queues[p].splice(0, take);
        const tenure = this.tenure[p];
        const records: RecordInput[] = [];
        for (const a of batch) {
          for (const w of a.writes) {
            records.push({
              key: encodeOffsetKey({ group: a.group, topic: w.topic, partition: w.partition }),
              value: w.value === null ? null : encodeOffsetValue({ offset: w.value.offset, commitTimeMs: w.value.commitTimeMs ?? a.timeMs, metadata: w.value.metadata }),
              timestampMs: a.timeMs,
            });
          }
        }
        try {
          await this.api.produce({ topic: this.topic, partition: p, records, acks: 'all' });
        } catch (err) {
          for (const a of batch) a.reject(err);
          continue;
        }
        for (const a of batch) {
          // Durable, so the commit succeeded; but the partition was forgotten meanwhile (another node
          // coordinates it now and replays it from the log), so this table no longer keeps it.
          if (tenure !== this.tenure[p]) {
            a.resolve();
            continue;
          }
          for (const w of a.writes) {
            if (w.value === null) this.stm.remove(a.group, w.topic, w.partition);
            else {
              this.stm.set(a.group, {
                topic: w.topic,
                partition: w.partition,
                offset: w.value.offset,
                metadata: w.value.metadata,
                commitTimeMs: w.value.commitTimeMs ?? a.timeMs,
                writeTimeMs: a.timeMs,
              });
            }
          }
          a.resolve();
        }
      }
    } finally {
      this.inFlight[p] = false;
    }
  }

  /**
   * Re-appends live offsets last written more than OFFSETS_REFRESH_AGE_MS ago (keeping their commit
   * time), so that log retention never removes the newest copy of a live key. Returns how many.
   */
  async refresh(): Promise<number> {
    let n = 0;
    for (const { group, entries } of this.stm.staleWrites(this.now() - OFFSETS_REFRESH_AGE_MS)) {
      await this.write(
        group,
        entries.map((e) => ({ topic: e.topic, partition: e.partition, value: { offset: e.offset, metadata: e.metadata, commitTimeMs: e.commitTimeMs } })),
      );
      n += entries.length;
    }
    return n;
  }

  committed(group: string, topic: string, partition: number): CommittedOffsetEntry | undefined {
    return this.stm.get(group, topic, partition);
  }
}
