/**
 * The in-memory Raft log of one node: a snapshot (the compacted prefix) followed by entries.
 *
 * It also tracks what is durable: entries up to `persistedIndex` have been handed to the driver in a
 * Ready and acknowledged by `advance()`. A truncation below that point lowers it, so the next Ready
 * re-sends the replacement entries (the driver truncates its copy, see Ready.entries).
 *
 * Membership is "apply at append" (Raft dissertation 4.1): the configuration in force is the one in the
 * last conf entry of the log, committed or not, else the snapshot's. `confs` lists them so a truncation
 * can revert the configuration.
 */
import assert from 'node:assert/strict';
import type { NodeId, Offset, Term } from '../model/index.js';
import type { ConfChange, ConfState, Entry, Snapshot } from './types.js';

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
  snapshot: Snapshot;
  /** entries[i].index === snapshot.index + 1 + i */
  entries: Entry[];
  persistedIndex: number;
  /** A snapshot received from the leader and not yet handed out in a Ready. */
  unpersistedSnapshot: Snapshot | null = null;
  /** Conf entries in `entries`, ascending by index, with the configuration each one produces. */
  confs: { index: number; conf: ConfState }[] = [];

  constructor(snapshot: Snapshot, entries: readonly Entry[]) {
    this.snapshot = snapshot;
    this.entries = entries.slice();
    for (let i = 0; i < this.entries.length; i++) {
      assert.equal(this.entries[i].index, snapshot.index + 1 + i, 'persisted entries must be contiguous');
    }
    this.persistedIndex = this.lastIndex();
    for (const e of this.entries) this.noteConf(e);
  }

  firstIndex(): number {
    return this.snapshot.index + 1;
  }

  lastIndex(): number {
    return this.snapshot.index + this.entries.length;
  }

  lastTerm(): number {
    const n = this.entries.length;
    return n === 0 ? this.snapshot.term : this.entries[n - 1].term;
  }

  /** The term at `i`, or -1 when `i` is compacted away or beyond the end. */
  term(i: number): number {
    const s = this.snapshot.index;
    if (i === s) return this.snapshot.term;
    if (i < s || i > s + this.entries.length) return -1;
    return this.entries[i - s - 1].term;
  }

  entry(i: number): Entry {
    return this.entries[i - this.snapshot.index - 1];
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
    return n === 0 ? this.snapshot.conf : this.confs[n - 1].conf;
  }

  /** The configuration in force at index `i` (i >= snapshot.index). */
  confAt(i: number): ConfState {
    for (let k = this.confs.length - 1; k >= 0; k--) if (this.confs[k].index <= i) return this.confs[k].conf;
    return this.snapshot.conf;
  }

  lastConfIndex(): number {
    const n = this.confs.length;
    return n === 0 ? 0 : this.confs[n - 1].index;
  }

  private noteConf(e: Entry): void {
    if (e.kind === 'conf' && e.change !== null) this.confs.push({ index: e.index, conf: applyConfChange(this.conf(), e.change) });
  }

  append(e: Entry): void {
    assert.equal(e.index, this.lastIndex() + 1);
    this.entries.push(e);
    if (e.kind === 'conf') this.noteConf(e);
  }

  /** Drops every entry at index >= `from` (a follower's conflict). */
  truncateFrom(from: number): void {
    assert.ok(from > this.snapshot.index, 'cannot truncate into the snapshot');
    this.entries.length = from - this.snapshot.index - 1;
    if (this.persistedIndex >= from) this.persistedIndex = from - 1;
    while (this.confs.length > 0 && this.confs[this.confs.length - 1].index >= from) this.confs.pop();
  }

  /** Entries in [lo, hi] bounded by `bytesMax` and `countMax` (always at least one when lo <= hi). */
  slice(lo: number, hi: number, bytesMax: number, countMax: number): Entry[] {
    const s = this.snapshot.index + 1;
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i <= hi && out.length < countMax; i++) {
      const e = this.entries[i - s];
      bytes += e.data.length;
      if (out.length > 0 && bytes > bytesMax) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term` (or the snapshot index when
   * the search reaches the compacted prefix). Returns [index, termAtIndex].
   */
  findConflictByTerm(index: number, term: number): [number, number] {
    let i = Math.min(index, this.lastIndex());
    for (; i > this.snapshot.index; i--) {
      const t = this.entry(i).term;
      if (t <= term) return [i, t];
    }
    return [this.snapshot.index, this.snapshot.term];
  }

  /** Replaces the whole log by a snapshot from the leader. */
  restore(snap: Snapshot): void {
    this.snapshot = snap;
    this.entries = [];
    this.confs = [];
    this.persistedIndex = snap.index;
    this.unpersistedSnapshot = snap;
  }

  /** Drops the prefix up to `snap.index` (the driver compacted it into `snap`). */
  compact(snap: Snapshot): void {
    const drop = snap.index - this.snapshot.index;
    assert.ok(drop > 0 && snap.index <= this.lastIndex());
    this.entries.splice(0, drop);
    this.snapshot = snap;
    this.confs = this.confs.filter((c) => c.index > snap.index);
  }
}

export type { NodeId, Offset, Term };
