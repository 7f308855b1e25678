/**
 * The partition's Raft replica while it is a one-voter group (replication factor 1), as a pure state
 * machine in the etcd style: no I/O, no timers, no clocks. The partition (./partition.ts) is its
 * driver: it writes the log, persists what `ready()` asks, reports `persisted()`, and only then
 * answers acks=all and moves the high watermark.
 *
 * Why a one-voter replica here and not src/raft's RaftNode yet: the core is being changed to keep
 * entries as runs of records behind a storage interface (branch raft-runs); until that lands this
 * class is the stand-in, with the same contract as the core's Ready (persist, then send, then apply)
 * so the driver does not change when RaftNode replaces it. With one voter, an index is committed
 * exactly when its one voter persisted it, the no-op a new leader appends is not needed to commit
 * earlier terms (every persisted entry is on a majority of one), and there are no messages to send.
 *
 * Index = Kafka offset; term = partitionLeaderEpoch. Indexes here are "next offset" style ends:
 * `lastIndex` is the last offset appended, `commitIndex` the last committed one (-1 = none).
 */
import assert from 'node:assert/strict';
import type { StoredHardState } from '../storage/hard-state.js';

export type ReplicaRole = 'follower' | 'leader';

/** What the driver must do next, in this order: persist hardState, sync up to `syncTo`, then apply. */
export interface ReplicaReady {
  /** Write atomically BEFORE anything of the new term is appended or sent. */
  hardState: StoredHardState | null;
  /** The log must be fdatasynced through this offset (inclusive); -1 = nothing to sync. */
  syncTo: number;
  /** Messages to peers, sent only AFTER the above is durable. Always empty with one voter. */
  messages: never[];
}

export class SingleVoterReplica {
  private hs: StoredHardState;
  private hsDirty = false;
  role: ReplicaRole = 'follower';
  private last: number;
  private persistedTo: number;
  private commit: number;

  /** `lastIndex`: the last offset in the recovered log (all of it persisted: recovery keeps only synced-or-surviving bytes). */
  constructor(
    readonly id: number,
    hardState: StoredHardState,
    lastIndex: number,
  ) {
    this.hs = { ...hardState };
    this.last = lastIndex;
    this.persistedTo = lastIndex;
    // What survived a restart is on disk, and the one voter is a majority: it is committed.
    this.commit = lastIndex;
  }

  get term(): number {
    return this.hs.term;
  }

  get hardState(): StoredHardState {
    return this.hs;
  }

  get commitIndex(): number {
    return this.commit;
  }

  get lastIndex(): number {
    return this.last;
  }

  /** A one-voter election: the next term, voting for itself; a majority of one at once. */
  campaign(): void {
    this.hs = { term: this.hs.term + 1, vote: this.id };
    this.hsDirty = true;
    this.role = 'leader';
  }

  /** The leader appended entries through `lastIndex` (not yet durable). */
  appended(lastIndex: number): void {
    assert.equal(this.role, 'leader', 'only a leader appends');
    assert.ok(lastIndex >= this.last, `append ending at ${lastIndex} is before the log end ${this.last}`);
    this.last = lastIndex;
  }

  /** With a relaxed flush policy, an append counts as persisted once it reached the OS. */
  appendedDurable(lastIndex: number): void {
    this.appended(lastIndex);
    this.persisted(lastIndex);
  }

  hasReady(): boolean {
    return this.hsDirty || this.persistedTo < this.last;
  }

  ready(): ReplicaReady {
    const rd: ReplicaReady = { hardState: this.hsDirty ? { ...this.hs } : null, syncTo: this.persistedTo < this.last ? this.last : -1, messages: [] };
    this.hsDirty = false;
    return rd;
  }

  /** The driver could not write the HardState of the last Ready: it stays pending for the next one. */
  hardStateNotPersisted(): void {
    this.hsDirty = true;
  }

  /** The driver made the log durable through `index`; with one voter that commits it. */
  persisted(index: number): void {
    if (index <= this.persistedTo) return;
    assert.ok(index <= this.last, `persisted ${index} beyond the log end ${this.last}`);
    this.persistedTo = index;
    this.commit = index;
  }

  tick(): void {
    // One voter: no heartbeats to send, no election to time out.
  }
}
