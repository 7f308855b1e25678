/**
 * The partition actor: one partition's log and its parked long-poll fetches, living inside exactly one
 * shard worker for its whole life. Nothing else touches the log, so there are no locks.
 *
 * Serialization: every operation on the actor (append, read, offsets, config) is synchronous, so two
 * requests can never interleave inside one; only open and close are asynchronous, and the shard keeps
 * an actor out of its table until it is open and takes it out before closing it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';
import { PRODUCER_IDLE_EXPIRY_MS_DEFAULT, PRODUCER_SNAPSHOT_INTERVAL_BYTES } from '../constants.js';
import { validateBatches } from '../batch/codec.js';
import { PartitionLog, type LogOpenOptions } from '../storage/index.js';
import type { AppendOptions, AppendResult, LogConfig } from '../storage/types.js';
import type { ProducerStateTable } from './producer-state.js';
import { batchIdentities, recoverProducerState, writeProducerSnapshot, type ProducerStateRecovery } from './producer-state-store.js';

const PRODUCED: AppendOptions = Object.freeze({ produced: true });

/**
 * TEST ONLY: when set to a topic name, the process kills itself (SIGKILL) right after an idempotent
 * append to that topic is durable and before the reply leaves the shard, so a test can prove that the
 * retry after a restart is deduplicated. Never set it in production.
 */
export const TEST_CRASH_AFTER_APPEND_ENV = 'SLUICE_TEST_CRASH_AFTER_APPEND';

/** A fetch waiting for data at `offset` (the log end when it parked). */
export interface ParkedFetch {
  id: number;
  offset: number;
  maxBytes: number;
  timer: NodeJS.Timeout;
}

/** `<data-dir>/<topic>-<partition>`, the storage layout (as Kafka). */
export function partitionDir(dataDir: string, topic: string, partition: number): string {
  return path.join(dataDir, `${topic}-${partition}`);
}

export class PartitionActor {
  private readonly parked = new Map<number, ParkedFetch>();
  private closed = false;
  /** Log bytes appended since the producer-state snapshot was last written. */
  private bytesSinceSnapshot = 0;
  private readonly crashAfterAppend = process.env[TEST_CRASH_AFTER_APPEND_ENV] === undefined ? null : process.env[TEST_CRASH_AFTER_APPEND_ENV];

  private constructor(
    readonly topic: string,
    readonly partition: number,
    readonly log: PartitionLog,
    /** Idempotent producers' sequences and offsets (rebuilt from the log on open). */
    readonly producers: ProducerStateTable,
    readonly producerRecovery: ProducerStateRecovery,
    private readonly producerIdleExpiryMs: number,
  ) {}

  /** Opens (recovering) the log; with `fresh`, first removes whatever a deleted namesake left behind. */
  static async open(
    dataDir: string,
    topic: string,
    partition: number,
    config: LogConfig,
    fresh: boolean,
    options: LogOpenOptions,
    producerIdleExpiryMs = PRODUCER_IDLE_EXPIRY_MS_DEFAULT,
  ): Promise<PartitionActor> {
    const dir = partitionDir(dataDir, topic, partition);
    if (fresh) await fs.promises.rm(dir, { recursive: true, force: true });
    const log = await PartitionLog.open(dir, config, options);
    try {
      const { table, report } = recoverProducerState(log);
      const actor = new PartitionActor(topic, partition, log, table, report, producerIdleExpiryMs);
      if (report.replayedBatches > 0) actor.snapshotProducers();
      return actor;
    } catch (err) {
      await log.close().catch(() => {});
      throw err;
    }
  }

  get parkedCount(): number {
    return this.parked.size;
  }

  /**
   * Appends, unless the batches are an idempotent producer's retry (answered with the original
   * offsets, once those are durable, writing nothing) or out of sequence or fenced (an error).
   */
  append(bytes: Uint8Array): AppendResult {
    if (this.closed) throw new SluiceError('UNKNOWN_PARTITION', `partition ${this.topic}/${this.partition} is being deleted`);
    const ids = batchIdentities(bytes);
    // A client's produce: every record is validated on this (shard) thread before anything is written.
    if (ids === null) return this.log.append(bytes, 0, PRODUCED);
    const check = this.producers.check(ids);
    if (check.kind !== 'append') {
      // A malformed batch is reported as such, not as a sequence problem.
      validateBatches(bytes, this.log.config.maxBatchBytes);
      if (check.kind === 'error') throw check.error;
      // The original may still be waiting for its fsync: the duplicate's answer waits for it too.
      const durable = this.log.flush();
      durable.catch(() => {});
      return { baseOffset: check.baseOffset, lastOffset: check.lastOffset, appendTimeMs: check.appendTimeMs, durable };
    }
    const result = this.log.append(bytes, 0, PRODUCED);
    this.producers.record(ids, result.baseOffset, result.appendTimeMs);
    this.bytesSinceSnapshot += bytes.length;
    if (this.crashAfterAppend === this.topic) void result.durable.then(() => process.kill(process.pid, 'SIGKILL'));
    return result;
  }

  /** Writes the producer-state snapshot as of the log end. A failure only costs a longer replay later. */
  snapshotProducers(): void {
    try {
      writeProducerSnapshot(this.log.dir, this.producers, this.log.nextOffset);
      this.bytesSinceSnapshot = 0;
    } catch {
      // Recovery replays from an older snapshot, or the whole log; nothing is lost.
    }
  }

  park(fetch: ParkedFetch): void {
    this.parked.set(fetch.id, fetch);
  }

  /** Removes a parked fetch (timeout or cancel); returns it if it was still parked. */
  unpark(id: number): ParkedFetch | undefined {
    const f = this.parked.get(id);
    if (f) {
      this.parked.delete(id);
      clearTimeout(f.timer);
    }
    return f;
  }

  /** Takes every parked fetch whose offset now has data (called after an append). */
  takeReady(): ParkedFetch[] {
    if (this.parked.size === 0) return [];
    const end = this.log.nextOffset;
    const ready: ParkedFetch[] = [];
    for (const f of this.parked.values()) {
      if (f.offset < end) ready.push(f);
    }
    for (const f of ready) this.unpark(f.id);
    return ready;
  }

  /** Takes every parked fetch (close): the caller answers them. */
  takeAll(): ParkedFetch[] {
    const all = [...this.parked.values()];
    for (const f of all) this.unpark(f.id);
    return all;
  }

  /** Periodic work: retention, expiry of idle producers, and the producer-state snapshot. */
  enforceRetention(nowMs: number): number {
    if (this.closed) return 0;
    this.producers.expire(nowMs, this.producerIdleExpiryMs);
    if (this.bytesSinceSnapshot >= PRODUCER_SNAPSHOT_INTERVAL_BYTES) this.snapshotProducers();
    return this.log.enforceRetention(nowMs);
  }

  async close(remove: boolean): Promise<void> {
    const wasOpen = !this.closed;
    this.closed = true;
    if (wasOpen && !remove && this.bytesSinceSnapshot > 0) this.snapshotProducers();
    try {
      await this.log.close();
    } finally {
      if (remove) await fs.promises.rm(this.log.dir, { recursive: true, force: true });
    }
  }
}
