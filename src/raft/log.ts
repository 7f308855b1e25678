/**
 * The Raft log of one node as the core sees it: the persisted log, read through `RaftStorage`, followed
 * by the unstable tail (runs appended but not yet handed out and persisted), and possibly a snapshot
 * received from the leader and not yet persisted (etcd-raft's `raftLog` + `unstable`, our own code).
 *
 * Invariants (asserted where they can break):
 * - the log is storage[.. offset - 1] ++ unstable, and unstable[0].index === offset when non-empty;
 *   storage may still hold entries >= offset (a truncated suffix) until the driver persists the Ready
 *   whose first run starts at `offset`; the core never reads them;
 * - with an unstable snapshot, the log is that snapshot ++ unstable, and storage is not read at all;
 * - runs are contiguous and whole; a truncation starts at a run boundary (types.ts `Entry`).
 *
 * Membership is "apply at append" (Raft dissertation 4.1): the configuration in force is the one in the
 * last conf run of the log, committed or not, else the one at the compaction point. `confs` lists them
 * so that a truncation can revert the configuration.
 */
import assert from 'node:assert/strict';
import type { NodeId, Offset, Term } from '../model/index.js';
import type { RaftStorage } from './storage.js';
import { type ConfChange, type ConfState, type Entry, type Snapshot, type StorageAck, lastIndexOf } from './types.js';

export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter((n) => n !== cc.node);
  const learners = conf.learners.filter((n) => n !== cc.node);
  if (cc.type === 'addVoter') voters.push(cc.node);
  else if (cc.type === 'addLearner') learners.push(cc.node);
  voters.sort((a, b) => a - b);
  learners.sort((a, b) => a - b);
  return { voters, learners };
}

export class RaftLog {
  readonly storage: RaftStorage;
  /** Runs not yet persisted; unstable[0].index === offset. */
  unstable: Entry[] = [];
  /** The index the unstable tail starts at (lastIndex() + 1 when it is empty). */
  offset: number;
  /** A snapshot received from the leader and not yet persisted. */
  unstableSnapshot: Snapshot | null = null;
  /**
   * Asynchronous storage writes: the last index handed out in a Ready (its runs are being persisted;
   * the next Ready starts after it), whether `unstableSnapshot` was handed out, and the write
   * generation, which changes whenever runs handed out are cut or the log is replaced by a snapshot
   * (a storage acknowledgement of an older generation is stale). Unused in synchronous mode.
   */
  inProgress: number;
  snapshotInProgress = false;
  gen = 0;
  /** The configuration at the compaction point the core knows of, and that point. */
  private baseConf: ConfState;
  private baseIndex: number;
  /** Conf runs after `baseIndex`, ascending by index, with the configuration each one produces. */
  confs: { index: number; conf: ConfState }[] = [];

  constructor(storage: RaftStorage, snapshot: Snapshot, confEntries: readonly Entry[]) {
    this.storage = storage;
    this.baseConf = snapshot.conf;
    this.baseIndex = snapshot.index;
    const last = storage.lastIndex();
    assert.ok(last >= snapshot.index, 'raft: storage ends before its snapshot');
    this.offset = last + 1;
    this.inProgress = last;
    for (const e of confEntries) {
      assert.ok(e.kind === 'conf' && e.index > snapshot.index && e.index <= last, 'raft: bad persisted conf entry');
      this.noteConf(e);
    }
  }

  firstIndex(): number {
    const s = this.unstableSnapshot;
    return s !== null ? s.index + 1 : this.storage.firstIndex();
  }

  lastIndex(): number {
    const n = this.unstable.length;
    return n > 0 ? lastIndexOf(this.unstable[n - 1]) : this.offset - 1;
  }

  /** The last index that is durable and still part of this log (the leader counts itself up to it). */
  stableIndex(): number {
    return this.unstableSnapshot !== null ? -1 : this.offset - 1;
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  /** The term at `i` (any index inside a run), or -1 when `i` is compacted away or beyond the end. */
  term(i: number): number {
    if (i >= this.offset) {
      const k = this.findUnstable(i);
      return k < 0 ? -1 : this.unstable[k].term;
    }
    const s = this.unstableSnapshot;
    if (s !== null) return i === s.index ? s.term : -1;
    return this.storage.term(i);
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  conf(): ConfState {
    const n = this.confs.length;
    return n === 0 ? this.baseConf : this.confs[n - 1].conf;
  }

  /** The configuration in force at index `i` (i >= the compaction point). */
  confAt(i: number): ConfState {
    if (!(i >= this.baseIndex)) assert.fail(`raft: configuration at ${i} is compacted away`);
    for (let k = this.confs.length - 1; k >= 0; k--) if (this.confs[k].index <= i) return this.confs[k].conf;
    return this.baseConf;
  }

  lastConfIndex(): number {
    const n = this.confs.length;
    return n === 0 ? -1 : this.confs[n - 1].index;
  }

  private noteConf(e: Entry): void {
    if (e.kind === 'conf' && e.change !== null) this.confs.push({ index: e.index, conf: applyConfChange(this.conf(), e.change) });
  }

  /** Appends one run right after the last one. */
  append(e: Entry): void {
    if (!(e.count >= 1 && Number.isSafeInteger(e.count))) assert.fail(`raft: run at ${e.index} has count ${e.count}`);
    assert.equal(e.index, this.lastIndex() + 1, 'raft: runs must be contiguous');
    this.unstable.push(e);
    if (e.kind === 'conf') this.noteConf(e);
  }

  /**
   * Drops every run at index >= `from` (a follower's conflicting suffix). `from` must start a run:
   * the conflicting run's predecessor matched the leader, so it ends where the leader's does.
   */
  truncateFrom(from: number): void {
    assert.ok(from >= this.firstIndex(), 'raft: cannot truncate into the snapshot');
    if (from <= this.inProgress) {
      this.inProgress = from - 1;
      this.gen++;
    }
    if (from >= this.offset) {
      const k = this.findUnstable(from);
      if (!(k >= 0 && this.unstable[k].index === from)) assert.fail(`raft: truncation at ${from} is not on a run boundary`);
      this.unstable.length = k;
    } else {
      // Into the persisted log: the next Ready's first run starts at `from`, which tells the driver to
      // truncate its copy there (storage asserts the run boundary on its side).
      this.unstable = [];
      this.offset = from;
    }
    while (this.confs.length > 0 && this.confs[this.confs.length - 1].index >= from) this.confs.pop();
  }

  /**
   * Whole runs covering [lo, hi], the first being the run that contains `lo`, bounded by `bytesMax`
   * (data bytes) and `countMax` (runs); at least one run when lo <= hi.
   */
  slice(lo: number, hi: number, bytesMax: number, countMax: number): readonly Entry[] {
    let out: Entry[] = [];
    let bytes = 0;
    if (lo < this.offset) {
      assert.equal(this.unstableSnapshot, null, 'raft: read below an unpersisted snapshot');
      const stored = this.storage.entries(lo, Math.min(hi, this.offset - 1), bytesMax, countMax);
      if (!(stored.length > 0 && stored[0].index <= lo && lastIndexOf(stored[0]) >= lo)) assert.fail(`raft: storage has no run at ${lo}`);
      const end = lastIndexOf(stored[stored.length - 1]);
      if (end < Math.min(hi, this.offset - 1) || hi < this.offset) return stored; // a limit stopped the read, or done
      assert.equal(end, this.offset - 1, 'raft: a persisted run overlaps the unstable tail');
      out = stored.slice();
      for (const e of out) bytes += e.data.length;
    }
    const k0 = this.findUnstable(Math.max(lo, this.offset));
    for (let k = k0; k >= 0 && k < this.unstable.length && out.length < countMax; k++) {
      const e = this.unstable[k];
      if (e.index > hi) break;
      bytes += e.data.length;
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`, or the compaction point
   * when the search reaches it. Terms never decrease along a log, so this is a binary search over
   * `term()` (a few cheap lookups, never a walk over records). Returns [index, termAtIndex].
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    let lo = this.firstIndex() - 1;
    let hi = Math.min(index, this.lastIndex());
    if (hi <= lo) return [lo, this.term(lo)];
    const th = this.term(hi);
    if (th <= term) return [hi, th];
    // Invariant: term(hi) > term; answer in [lo, hi).
    while (hi - lo > 1) {
      const mid = lo + Math.floor((hi - lo) / 2);
      if (this.term(mid) <= term) lo = mid;
      else hi = mid;
    }
    return [lo, this.term(lo)];
  }

  /** Replaces the whole log by a snapshot from the leader (persisted by the next Ready). */
  restore(snap: Snapshot): void {
    this.unstableSnapshot = snap;
    this.snapshotInProgress = false;
    this.gen++;
    this.unstable = [];
    this.offset = snap.index + 1;
    this.inProgress = snap.index;
    this.baseConf = snap.conf;
    this.baseIndex = snap.index;
    this.confs = [];
  }

  /** The driver compacted (or will compact) the log up to `snap.index`: forget older configurations. */
  compacted(snap: Snapshot): void {
    if (!(snap.index > this.baseIndex && snap.index <= this.lastIndex())) assert.fail(`raft: bad compaction index ${snap.index}`);
    this.baseConf = snap.conf;
    this.baseIndex = snap.index;
    this.confs = this.confs.filter((c) => c.index > snap.index);
  }

  /** What the leader sends a follower that needs compacted entries. */
  snapshotForSend(): Snapshot {
    return this.unstableSnapshot ?? this.storage.snapshot();
  }

  /** The driver persisted everything handed out up to `lastIndex` (and the snapshot, if any). */
  stableTo(lastIndex: number, snapshot: boolean): void {
    assert.equal(this.lastIndex(), lastIndex, 'raft: the log changed between ready() and advance()');
    if (snapshot) this.unstableSnapshot = null;
    this.unstable = [];
    this.offset = lastIndex + 1;
    assert.equal(this.storage.lastIndex(), lastIndex, 'raft: advance() before the Ready was persisted to storage');
  }

  /** Asynchronous storage writes: the unstable runs not handed out yet (a new array), marked handed out. */
  takeUnwritten(): readonly Entry[] {
    const u = this.unstable;
    const k = this.inProgress < this.offset ? 0 : this.findUnstable(this.inProgress) + 1;
    if (k === 0 && this.inProgress >= this.offset) assert.fail(`raft: handed-out index ${this.inProgress} is not in the unstable tail`);
    this.inProgress = this.lastIndex();
    return k >= u.length ? [] : u.slice(k);
  }

  /**
   * Asynchronous storage writes: the driver made a Ready's snapshot and runs durable. Ignored when
   * stale: another generation (what it wrote was cut or replaced since), or runs no longer in the
   * unstable tail under the same term. Everything up to `ack.index` is stable then: the driver
   * persists Readies in order, so the earlier runs are durable too. Returns whether the stable index
   * moved.
   */
  stableToAsync(ack: StorageAck): boolean {
    if (ack.gen !== this.gen) return false;
    let moved = false;
    if (ack.snapshot && this.unstableSnapshot !== null && this.snapshotInProgress) {
      this.unstableSnapshot = null;
      this.snapshotInProgress = false;
      moved = true;
    }
    if (ack.index < this.offset || this.unstableSnapshot !== null) return moved;
    const k = this.findUnstable(ack.index);
    if (k < 0 || this.unstable[k].term !== ack.term || lastIndexOf(this.unstable[k]) !== ack.index) return moved;
    this.unstable = this.unstable.slice(k + 1);
    this.offset = ack.index + 1;
    return true;
  }

  /** The position in `unstable` of the run containing `i`, or -1. */
  private findUnstable(i: number): number {
    const u = this.unstable;
    let lo = 0;
    let hi = u.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = u[mid];
      if (i < e.index) hi = mid - 1;
      else if (i > e.index + e.count - 1) lo = mid + 1;
      else return mid;
    }
    return -1;
  }
}

export type { NodeId, Offset, Term };
