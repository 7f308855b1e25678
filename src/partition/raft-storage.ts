/**
 * src/raft's `RaftStorage` over a `PartitionLog` on the shard thread. An entry is a RUN: one v2 batch
 * is one entry covering offsets `index .. index + count - 1`, all of one term, so the Raft path does no
 * per-record work. Index = offset, term = partitionLeaderEpoch.
 *
 * `term(i)` answers from the leader-epoch checkpoint (memory, no I/O). `entries()` reads whole batches
 * by offset and cuts them by their headers (no record decode); only control batches (Raft's no-op and
 * membership entries, one record each) are decoded, to tell a no-op from a conf change.
 */
import { asBuffer, batchSizeAt, readInt64, OFF_ATTRIBUTES, OFF_LAST_OFFSET_DELTA, OFF_LEADER_EPOCH } from '../batch/codec.js';
import type { Entry, HardState, RaftInitialState, RaftStorage, Snapshot } from '../raft/index.js';
import type { NodeId, Offset, Term } from '../model/index.js';
import type { PartitionLog } from '../storage/index.js';
import type { EpochCheckpoint } from '../storage/epoch-checkpoint.js';
import type { SnapshotMeta } from '../storage/snapshot-meta.js';
import type { StoredHardState } from '../storage/hard-state.js';
import { readControl } from './control-batch.js';

const CONTROL_BIT = 0x20;
const EMPTY = new Uint8Array(0);

export class PartitionRaftStorage implements RaftStorage {
  constructor(
    private readonly log: PartitionLog,
    private readonly epochs: EpochCheckpoint,
    private readonly snap: () => SnapshotMeta,
    private readonly hardState: () => StoredHardState,
    /**
     * The commit index to start from, when the driver knows more than the snapshot: a group whose only
     * member is this voter has every persisted entry on a majority (of one), so it passes lastIndex();
     * a member of a larger group passes the commit its HardState recorded. Undefined: the snapshot
     * index (the commit is re-learned from the leader).
     */
    private readonly commitAtOpen?: number,
    /** The conf runs after the snapshot, read from the log at open (`confRunsAfter`). */
    private readonly confRunsAtOpen: readonly Entry[] = [],
  ) {}

  /**
   * HardState as persisted (commit = `commitAtOpen`, else the snapshot index: the rest is re-learned
   * from the leader), and the conf runs after the snapshot, which the core applies over the
   * snapshot's configuration (apply at append): without them a restarted replica would fall back to
   * the snapshot's configuration and count votes and commits in a group that no longer exists.
   */
  initialState(): RaftInitialState {
    const hs = this.hardState();
    const snapshot = this.snapshot();
    const hard: HardState = { term: hs.term as Term, vote: hs.vote as NodeId, commit: (this.commitAtOpen ?? snapshot.index) as Offset };
    return { hardState: hard, snapshot, confEntries: this.confRunsAtOpen };
  }

  firstIndex(): number {
    return this.log.logStartOffset;
  }

  lastIndex(): number {
    return this.log.nextOffset - 1;
  }

  /** Term of the entry holding offset `i`; the snapshot's term at its index; -1 outside. No I/O. */
  term(i: number): number {
    const s = this.snap();
    if (i === s.index) return s.term;
    if (i < this.firstIndex() || i > this.lastIndex()) return -1;
    return this.epochs.epochAt(i);
  }

  /**
   * Whole runs from the one containing `lo`, none starting after `hi`, at least one, then while
   * `bytesMax` and `countMax` allow.
   */
  entries(lo: number, hi: number, bytesMax: number, countMax: number): readonly Entry[] {
    const out: Entry[] = [];
    let offset = lo;
    let bytes = 0;
    while (offset <= hi && offset <= this.lastIndex() && out.length < countMax) {
      const r = this.log.read(offset, Math.max(1, bytesMax - bytes));
      const buf = asBuffer(r.data);
      if (buf.length === 0) break;
      for (let pos = 0; pos < buf.length; ) {
        const size = batchSizeAt(buf, pos);
        const index = readInt64(buf, pos);
        if (index > hi || out.length >= countMax || (out.length > 0 && bytes + size > bytesMax)) return out;
        out.push(toEntry(buf.subarray(pos, pos + size), index));
        bytes += size;
        pos += size;
      }
      offset = r.nextOffset;
    }
    return out;
  }

  snapshot(): Snapshot {
    const m = this.snap();
    return { index: m.index as Offset, term: m.term as Term, conf: { voters: m.voters as NodeId[], learners: m.learners as NodeId[] }, data: EMPTY };
  }
}

/** One batch as a Raft run; only a control batch is decoded (a no-op or a membership change). */
function toEntry(batch: Buffer, index: number): Entry {
  const term = batch.readInt32BE(OFF_LEADER_EPOCH) as Term;
  const count = batch.readInt32BE(OFF_LAST_OFFSET_DELTA) + 1;
  if ((batch.readInt16BE(OFF_ATTRIBUTES) & CONTROL_BIT) === 0) return { index: index as Offset, count, term, kind: 'data', data: batch, change: null };
  const c = readControl(batch);
  return { index: index as Offset, count, term, kind: c.kind === 'conf' ? 'conf' : 'noop', data: batch, change: c.change };
}

/**
 * The membership changes in `log` after `snapshotIndex`, in order (what `initialState` hands the core):
 * a header walk finds the control batches, and only those are read. Called once, at open.
 */
export function confRunsAfter(log: PartitionLog, snapshotIndex: number): Entry[] {
  const out: Entry[] = [];
  for (const at of log.controlBatchOffsetsFrom(snapshotIndex + 1)) {
    const buf = asBuffer(log.read(at, 1).data);
    if (buf.length === 0) continue;
    const e = toEntry(buf.subarray(0, batchSizeAt(buf, 0)), readInt64(buf, 0));
    if (e.kind === 'conf' && e.index > snapshotIndex) out.push(e);
  }
  return out;
}
