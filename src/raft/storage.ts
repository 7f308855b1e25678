/**
 * The persisted Raft log, as the core sees it (modelled on etcd-raft's `Storage`; our own code).
 *
 * The core keeps only what is NOT yet persisted in memory (the unstable tail, and a snapshot received
 * from the leader but not yet written); every persisted entry is read through `RaftStorage`. A driver
 * owns the storage and is the only one that writes it: it applies `Ready.snapshot` / `Ready.entries` /
 * `Ready.hardState`, fsyncs, and only then calls `RaftNode.advance()`. The core never writes storage
 * and never calls it between `ready()` and `advance()` in a way that depends on the write.
 *
 * Two implementations: `PartitionLog` (src/storage, on the shard thread; terms from its leader-epoch
 * checkpoint, entries = the partition's v2 batches, one run per batch) and `MemoryStorage` below (tests
 * and the simulator).
 *
 * Every index below is a log index (= offset). All methods are synchronous and must be cheap enough to
 * call on the hot path: `term()`, `firstIndex()` and `lastIndex()` do no I/O per call.
 */
import assert from 'node:assert/strict';
import { type Entry, type HardState, type PersistedState, type Snapshot, lastIndexOf } from './types.js';

/** What a restarting node reads once, in its constructor. */
export interface RaftInitialState {
  /** Term, vote and commit as last persisted (commit may lag: it is re-learned from the leader). */
  readonly hardState: HardState;
  /**
   * The latest snapshot's metadata: index and term of the last compacted entry and the configuration in
   * force at that index. For a partition, `data` may be empty (the log itself is the state machine).
   */
  readonly snapshot: Snapshot;
  /**
   * The `conf` runs persisted after `snapshot.index`, ascending. Membership takes effect when appended,
   * so a restarting node needs them without reading the whole log; a partition collects them (control
   * batches) during its recovery scan. Usually empty or a handful.
   */
  readonly confEntries: readonly Entry[];
}

export interface RaftStorage {
  initialState(): RaftInitialState;
  /** The first index still in the log: snapshot.index + 1. */
  firstIndex(): number;
  /** The last persisted index (the end of the last run), or snapshot.index when the log is empty. */
  lastIndex(): number;
  /**
   * The term of index `i`, for any `i` inside a run (not only its first index). `snapshot.index` answers
   * the snapshot's term. Returns -1 when `i < snapshot.index` (compacted) or `i > lastIndex()`.
   * Must be cheap: a partition answers it from its leader-epoch list (epoch -> first offset), no I/O.
   */
  term(i: number): number;
  /**
   * Whole runs, in order and contiguous, the first being the run that CONTAINS `lo` (lo need not be a
   * run start), none starting after `hi`. Stops before the run that would take the total `data` bytes
   * past `bytesMax` or the number of runs past `countMax`, but always returns at least one run when
   * `firstIndex() <= lo <= min(hi, lastIndex())`. The core calls it only for persisted indexes.
   */
  entries(lo: number, hi: number, bytesMax: number, countMax: number): readonly Entry[];
  /** The latest persisted snapshot (sent to a follower that needs compacted entries). */
  snapshot(): Snapshot;
}

/**
 * An in-memory `RaftStorage`: the "disk" of the scenario tests, the simulator and the benchmark. It also
 * has the write side a driver needs (`append`, `setHardState`, `applySnapshot`, `compact`), each of
 * which asserts the contract a real log must keep (continuity, truncation on a run boundary, never into
 * the snapshot).
 */
export class MemoryStorage implements RaftStorage {
  private hs: HardState;
  private snap: Snapshot;
  /** runs[k + 1].index === lastIndexOf(runs[k]) + 1; runs[0].index === snap.index + 1. */
  private runs: Entry[];
  /** lastIndex(), cached: append checks continuity run by run. */
  private end: number;

  constructor(state: PersistedState) {
    this.hs = state.hardState;
    this.snap = state.snapshot;
    this.runs = [];
    this.end = state.snapshot.index;
    if (state.entries.length > 0) this.append(state.entries);
  }

  initialState(): RaftInitialState {
    return { hardState: this.hs, snapshot: this.snap, confEntries: this.runs.filter((e) => e.kind === 'conf') };
  }

  firstIndex(): number {
    return this.snap.index + 1;
  }

  lastIndex(): number {
    return this.end;
  }

  term(i: number): number {
    if (i === this.snap.index) return this.snap.term;
    const k = this.find(i);
    return k < 0 ? -1 : this.runs[k].term;
  }

  entries(lo: number, hi: number, bytesMax: number, countMax: number): readonly Entry[] {
    const out: Entry[] = [];
    let bytes = 0;
    for (let k = this.find(lo); k >= 0 && k < this.runs.length && out.length < countMax; k++) {
      const e = this.runs[k];
      if (e.index > hi) break;
      bytes += e.data.length;
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  hardState(): HardState {
    return this.hs;
  }

  /** Every persisted run (tests and checkers). */
  allEntries(): readonly Entry[] {
    return this.runs;
  }

  // --- The driver's write side ---------------------------------------------------------------------

  /** Appends runs; when the first one overlaps the log, truncates from its index first (a conflict). */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0].index;
    if (first <= this.snap.index) assert.fail(`storage: write at ${first} is inside the snapshot (${this.snap.index})`);
    if (first > this.end + 1) assert.fail(`storage: write at ${first} leaves a gap after ${this.end}`);
    if (first <= this.end) {
      const k = this.find(first);
      if (this.runs[k].index !== first) assert.fail(`storage: truncation at ${first} is not on a run boundary`);
      this.runs.length = k;
      this.end = first - 1;
    }
    const runs = this.runs;
    let end = this.end;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k];
      if (e.index !== end + 1 || !(e.count >= 1)) assert.fail(`storage: run at ${e.index} is not contiguous`);
      runs.push(e);
      end += e.count;
    }
    this.end = end;
  }

  setHardState(hs: HardState): void {
    this.hs = hs;
  }

  /** Replaces the whole log by a snapshot received from the leader. */
  applySnapshot(snap: Snapshot): void {
    this.snap = snap;
    this.runs = [];
    this.end = snap.index;
  }

  /** Drops the runs up to `snap.index` (which must end a run), after the snapshot is durable. */
  compact(snap: Snapshot): void {
    if (snap.index <= this.snap.index || snap.index > this.end) assert.fail(`storage: bad compaction index ${snap.index}`);
    const k = this.find(snap.index);
    if (lastIndexOf(this.runs[k]) !== snap.index) assert.fail(`storage: compaction at ${snap.index} is not on a run boundary`);
    this.runs = this.runs.slice(k + 1);
    this.snap = snap;
  }

  /** The position in `runs` of the run containing `i`, or -1. */
  private find(i: number): number {
    const runs = this.runs;
    let lo = 0;
    let hi = runs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const e = runs[mid];
      if (i < e.index) hi = mid - 1;
      else if (i > e.index + e.count - 1) lo = mid + 1;
      else return mid;
    }
    return -1;
  }
}
