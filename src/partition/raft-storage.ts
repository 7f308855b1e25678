/**
 * The Raft log's storage interface (etcd-raft's `Storage`: firstIndex, lastIndex, term(i),
 * entries(lo, hi, bytesMax), snapshot) over a `PartitionLog` on the shard thread. An entry is a RUN:
 * one v2 batch is one entry covering offsets `index .. index + count - 1`, all of one term, so the
 * Raft path does no per-record work. Index = offset, term = partitionLeaderEpoch.
 *
 * `term(i)` answers from the leader-epoch checkpoint (memory, no I/O). `entries()` reads whole batches
 * by offset and slices them by their headers (no record decode).
 *
 * The interface is declared here as `RaftStorageLike` until src/raft exports its own (branch
 * raft-runs); then this class implements that one and the local declaration goes.
 */
import assert from 'node:assert/strict';
import { asBuffer, batchSizeAt, readInt64, OFF_LAST_OFFSET_DELTA, OFF_LEADER_EPOCH } from '../batch/codec.js';
import { SluiceError } from '../errors.js';
import type { PartitionLog } from '../storage/index.js';
import type { EpochCheckpoint } from '../storage/epoch-checkpoint.js';
import type { SnapshotMeta } from '../storage/snapshot-meta.js';

/** One Raft entry as a run of records: exactly one v2 batch. */
export interface RaftRun {
  index: number;
  count: number;
  term: number;
  /** The batch, byte for byte as stored (a view into the read buffer). */
  data: Uint8Array;
}

export interface RaftStorageLike {
  firstIndex(): number;
  lastIndex(): number;
  term(index: number): number;
  entries(lo: number, hi: number, bytesMax: number): RaftRun[];
  snapshot(): SnapshotMeta;
}

export class PartitionRaftStorage implements RaftStorageLike {
  constructor(
    private readonly log: PartitionLog,
    private readonly epochs: EpochCheckpoint,
    private readonly snap: () => SnapshotMeta,
  ) {}

  /** The first index still in the log (the snapshot covers everything before). */
  firstIndex(): number {
    return this.log.logStartOffset;
  }

  lastIndex(): number {
    return this.log.nextOffset - 1;
  }

  /** Term of the entry holding offset `index`; the snapshot's term for its last index. No I/O. */
  term(index: number): number {
    const s = this.snap();
    if (index === s.index) return s.term;
    if (index < this.firstIndex() || index > this.lastIndex()) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `index ${index} is outside [${this.firstIndex()}, ${this.lastIndex()}] of ${this.log.dir}`);
    }
    const t = this.epochs.epochAt(index);
    assert.ok(t >= 0, `no epoch recorded for index ${index} of ${this.log.dir}`);
    return t;
  }

  /**
   * Runs (whole batches) holding offsets [lo, hi), at least one when any exists, then as many as fit
   * `bytesMax`. `lo` may fall inside a batch (the run returned then starts before it: the caller asked
   * for an index whose batch it needs whole).
   */
  entries(lo: number, hi: number, bytesMax: number): RaftRun[] {
    const out: RaftRun[] = [];
    let offset = lo;
    let bytes = 0;
    while (offset < hi) {
      const r = this.log.read(offset, Math.max(1, bytesMax - bytes), hi);
      const buf = asBuffer(r.data);
      if (buf.length === 0) break;
      for (let pos = 0; pos < buf.length; ) {
        const size = batchSizeAt(buf, pos);
        if (out.length > 0 && bytes + size > bytesMax) return out;
        const index = readInt64(buf, pos);
        out.push({ index, count: buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA) + 1, term: buf.readInt32BE(pos + OFF_LEADER_EPOCH), data: buf.subarray(pos, pos + size) });
        bytes += size;
        pos += size;
      }
      offset = r.nextOffset;
      if (bytes >= bytesMax) break;
    }
    return out;
  }

  snapshot(): SnapshotMeta {
    return this.snap();
  }
}
