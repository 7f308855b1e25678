/**
 * The leader-epoch checkpoint (Kafka's leader-epoch-checkpoint): for each Raft term (=
 * partitionLeaderEpoch) present in the log, the first offset written in it, ascending. It answers
 * "term at offset i" without I/O (the RaftStorage adapter's `term(i)`), and it is what a follower
 * compares when it looks for the point where its log diverges from the leader's.
 *
 * Durability: an epoch is recorded (file replaced atomically, ./atomic-file.ts) BEFORE the first batch
 * of that epoch is written, so after a crash the file can only be ahead of the log, never behind;
 * `reconcile` then drops epochs that start at or after the recovered log end. A missing file with a
 * non-empty log (a data dir from before Raft) is rebuilt from the batch headers.
 */
import assert from 'node:assert/strict';
import { SluiceError } from '../errors.js';
import { isNonNegativeInt, readStateFile, writeStateFile } from './atomic-file.js';
import { NODE_FS, type StorageFs } from './io.js';

export const EPOCH_CHECKPOINT_FILE = 'leader-epoch-checkpoint.json';
const VERSION = 1;

export interface EpochEntry {
  epoch: number;
  startOffset: number;
}

export class EpochCheckpoint {
  private constructor(
    private readonly dir: string,
    private entries: EpochEntry[],
    private readonly fs: StorageFs,
  ) {}

  /** Loads the file; null when there is none (the caller rebuilds from the log). */
  static load(dir: string, f: StorageFs = NODE_FS): EpochCheckpoint | null {
    const body = readStateFile(dir, EPOCH_CHECKPOINT_FILE, VERSION, f) as { entries?: unknown } | null;
    if (body === null) return null;
    const list = body.entries;
    const ok =
      Array.isArray(list) &&
      list.every((e: Partial<EpochEntry>, i) => isNonNegativeInt(e?.epoch) && isNonNegativeInt(e?.startOffset) && (i === 0 || (e.epoch! > list[i - 1].epoch && e.startOffset! > list[i - 1].startOffset)));
    if (!ok) throw new SluiceError('LOG_CORRUPT', `${dir}/${EPOCH_CHECKPOINT_FILE} is not an ascending list of (epoch, startOffset)`);
    return new EpochCheckpoint(dir, (list as EpochEntry[]).map((e) => ({ epoch: e.epoch, startOffset: e.startOffset })), f);
  }

  /**
   * A checkpoint built from scratch (e.g. by walking batch headers), persisted at once unless empty
   * (an empty log has nothing to record, and a new partition's open should not cost an fsync).
   */
  static create(dir: string, entries: EpochEntry[], f: StorageFs = NODE_FS): EpochCheckpoint {
    const cp = new EpochCheckpoint(dir, [], f);
    for (const e of entries) cp.entries.push({ ...e });
    if (cp.entries.length > 0) cp.persist();
    return cp;
  }

  get list(): readonly EpochEntry[] {
    return this.entries;
  }

  /** The newest epoch recorded, or -1. */
  get lastEpoch(): number {
    return this.entries.length === 0 ? -1 : this.entries[this.entries.length - 1].epoch;
  }

  /** The epoch of the batch holding `offset` (which must be inside the log), or -1 if none recorded. */
  epochAt(offset: number): number {
    let lo = 0;
    let hi = this.entries.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid].startOffset <= offset) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found < 0 ? -1 : this.entries[found].epoch;
  }

  /** Kafka's OffsetsForLeaderEpoch: the first offset after `epoch` ends (the next epoch's start), or `logEnd`. */
  endOffsetFor(epoch: number, logEnd: number): number {
    for (const e of this.entries) if (e.epoch > epoch) return e.startOffset;
    return logEnd;
  }

  /**
   * Records that `epoch` starts at `startOffset`. Call before writing the epoch's first batch. An epoch
   * equal to the last one is a no-op; a smaller one, or a start not after the last start, is a bug.
   */
  assign(epoch: number, startOffset: number): void {
    const last = this.entries[this.entries.length - 1];
    if (last && last.epoch === epoch) return;
    assert.ok(!last || (epoch > last.epoch && startOffset >= last.startOffset), `epoch ${epoch}@${startOffset} after ${last?.epoch}@${last?.startOffset}`);
    if (last && last.startOffset === startOffset) this.entries.pop(); // the older epoch wrote nothing
    this.entries.push({ epoch, startOffset });
    this.persist();
  }

  /** Drops epochs starting at or after `offset` (truncation of a divergent suffix, or recovery). */
  truncateFrom(offset: number): void {
    const before = this.entries.length;
    while (this.entries.length > 0 && this.entries[this.entries.length - 1].startOffset >= offset) this.entries.pop();
    if (this.entries.length !== before) this.persist();
  }

  /** Forgets epochs wholly below `logStart`, moving the first kept one's start up to it (retention). */
  truncateBefore(logStart: number): void {
    let drop = 0;
    while (drop + 1 < this.entries.length && this.entries[drop + 1].startOffset <= logStart) drop++;
    const first = this.entries[drop];
    if (drop === 0 && (!first || first.startOffset >= logStart)) return;
    this.entries = this.entries.slice(drop);
    if (this.entries[0].startOffset < logStart) this.entries[0] = { epoch: this.entries[0].epoch, startOffset: logStart };
    this.persist();
  }

  private persist(): void {
    writeStateFile(this.dir, EPOCH_CHECKPOINT_FILE, VERSION, { entries: this.entries }, this.fs);
  }
}
