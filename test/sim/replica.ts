/**
 * The replica under test: one node of one Raft group as the simulator drives it. `SimReplica` is the
 * reference driver around the pure core, written to the partition's contract: persist (to a simulated
 * disk whose unsynced writes a crash loses), then send, then apply; the high watermark is the commit
 * index + 1 and moves only after the Ready that carries the commit is durable; an acks=all produce is
 * answered once its run is committed. The simulator talks to a replica only through
 * `ReplicaUnderTest` and reports to it through `ReplicaHost`, so a real partition actor with the same
 * surface (its Raft driver over the simulated disk) can be plugged in instead.
 *
 * Driver bug modes (`DRIVER_BUGS`) break that contract on purpose; the simulator's checkers must catch
 * each of them (test/sim/sim.test.ts).
 */
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import {
  type ConfChange,
  type Entry,
  type HardState,
  MemoryStorage,
  type Message,
  type PersistedState,
  RaftNode,
  type RaftOptions,
  type Ready,
  type Snapshot,
  bootstrapState,
  lastIndexOf,
} from '../../src/raft/index.js';
import { type Checkers, InvariantViolation, chainHash, contentId, dataContentId, encodeApp, snapshotApp } from './checkers.js';
import type { Prng } from './prng.js';

/**
 * A group's first state as a partition has it: an empty log whose first entry will be index 0, under
 * a snapshot at index -1 holding the bootstrap configuration (a joining learner: empty voters).
 */
function bootstrapFromZero(voters: readonly NodeId[]): PersistedState {
  return {
    hardState: { term: 0 as Term, vote: 0 as NodeId, commit: -1 as Offset },
    snapshot: { index: -1 as Offset, term: 0 as Term, conf: { voters: [...voters].sort((a, b) => a - b), learners: [] }, data: new Uint8Array(0) },
    entries: [],
  };
}

export const DRIVER_BUGS = [
  /** acks=all is answered when the produce is appended, before it is persisted (or committed). */
  'ack-before-persist',
  /** A Ready's messages are sent before its writes are synced (a crash then forgets a vote or an ack). */
  'send-before-persist',
  /** The high watermark is the log end + 1, not the commit index + 1 (readers see uncommitted records). */
  'hw-from-log-end',
  /**
   * Partition replica only: a restarted replica's high watermark is settled at once, though a crash
   * lost the commit it had learned (the strict restart check must catch it going back).
   */
  'hw-restart-settled',
] as const;
export type DriverBug = (typeof DRIVER_BUGS)[number];

/** What a replica tells the simulator (its checkers, network and trace). */
export interface ReplicaHost {
  readonly checkers: Checkers;
  readonly rng: Prng;
  now(): number;
  quiet(): boolean;
  /** Options for a (re)started core: the simulator's per-seed configuration. */
  raftOptions(id: number): RaftOptions;
  note(text: string | (() => string), a: number, b: number, c: number): void;
  send(m: Message): void;
  /** A leader's commit index moved from `from` to `to` (before its Ready is persisted). */
  leaderCommitted(r: RaftNode, from: number, to: number): void;
  /** A committed run was applied (or, for a partition, shown to readers) by `replica`. */
  applied(replica: ReplicaUnderTest, e: Entry): void;
  crashed(replica: ReplicaUnderTest): void;
  /** The high watermark must never go back, even across a restart (else only within a run of the process). */
  readonly strictHwRestart: boolean;
  /** A restarted replica came back with a lower high watermark than it had shown (lenient mode). */
  hwRestartedLower(replica: ReplicaUnderTest): void;
  /** A ReadIndex came out of `replica`'s Ready. */
  readState(replica: ReplicaUnderTest, context: number, index: number): void;
}

/** The surface the simulator drives. */
export interface ReplicaUnderTest {
  readonly id: number;
  /** The core inside (the protocol checkers read its log and role); null while down. */
  readonly raft: RaftNode | null;
  /**
   * The durable disk as a `MemoryStorage` (what survives a crash), which the commit-durability and
   * persist-before-send checkers read; null for a replica on a real log (the partition: those two
   * properties are checked by their consequences, its crashes on SimFs).
   */
  readonly disk: { readonly storage: MemoryStorage } | null;
  /** Removed from its group (by a committed membership change): stopped for good. */
  readonly removed: boolean;
  /** A step at which this replica wants its node crashed (0 = none): figure-8-like histories. */
  readonly crashAt: number;
  /** A Ready is written and waits for its fsync: the replica takes no input until then. */
  busy(): boolean;
  /** Starts (recovers) from the durable disk; a real partition opens asynchronously. */
  start(): void | Promise<void>;
  crash(): void;
  /** Removed from the group: stopped for good. */
  stop(): void;
  tick(): void;
  step(m: Message): void;
  /** Handles the core's Ready, if any: write, and sync now or later (`fsyncDone`). */
  processReady(): void;
  fsyncDone(): void;
  /** acks=all produce of a batch of `count` records with content id `id`: its first offset. */
  produce(data: Uint8Array, count: number): number;
  /**
   * Leader only: proposes one membership change, taken at once (both cores take input at any time).
   * Throws when the replica refuses it (a change is pending, the leader has not committed in its term,
   * the change does not apply).
   */
  proposeConfChange(cc: ConfChange): void;
  /** One past the last offset readers may see. */
  highWatermark(): number;
  /** Compacts the applied prefix into a snapshot; returns its index, or 0 when nothing was compacted. */
  compact(): number;
}

/** A node's disk: `storage` is what is durable (the core reads it); `pending` is written, not yet synced. */
interface Disk {
  storage: MemoryStorage;
  pending: { snapshot: Snapshot | null; entries: readonly Entry[]; hs: HardState | null }[];
}

interface PendingAck {
  readonly index: number;
  readonly count: number;
  readonly term: number;
  readonly id: number;
}

export class SimReplica implements ReplicaUnderTest {
  raft: RaftNode | null = null;
  readonly disk: Disk;
  removed = false;
  /** A Ready written to disk but not yet synced (and so not yet sent or applied). */
  unsynced: Ready | null = null;
  appIndex = 0;
  appHash = 0;
  /** Highest commit index this node has reported in a Ready (to see a leader's commit advance). */
  durableCommitSeen = 0;
  /** A crash scheduled right after this node became leader (figure-8-like histories), or 0. */
  crashAt = 0;
  private hw = 0;
  private acks: PendingAck[] = [];

  constructor(
    readonly id: number,
    voters: readonly NodeId[],
    private readonly host: ReplicaHost,
    private readonly bugs: ReadonlySet<DriverBug>,
    /** Start the log at index 0 as a partition's does (snapshot -1), not at bootstrapState's 1. */
    fromZero = false,
  ) {
    this.disk = { storage: new MemoryStorage(fromZero ? bootstrapFromZero(voters) : bootstrapState(voters)), pending: [] };
    if (fromZero) this.durableCommitSeen = -1;
  }

  busy(): boolean {
    return this.unsynced !== null;
  }

  start(): void {
    const st = this.disk.storage;
    this.raft = new RaftNode(this.host.raftOptions(this.id), st);
    const app = snapshotApp(st.snapshot());
    this.appIndex = app.index;
    this.appHash = app.hash;
    // The high watermark restarts from the durable commit, which every exposed one is at or below.
    const hs = st.hardState();
    this.setHw(this.bugs.has('hw-from-log-end') ? st.lastIndex() + 1 : Math.max(hs.commit, st.snapshot().index) + 1, true);
  }

  crash(): void {
    this.crashAt = 0;
    this.raft = null;
    this.unsynced = null;
    this.disk.pending = []; // unsynced writes are lost
    this.acks = []; // the clients see their connection drop: no answer
    this.host.crashed(this);
    this.host.note(`crash ${this.id}`, 1, this.id, 0);
  }

  stop(): void {
    this.removed = true;
    this.raft = null;
    this.unsynced = null;
    this.acks = [];
  }

  tick(): void {
    this.raft!.tick();
  }

  step(m: Message): void {
    this.raft!.step(m);
  }

  highWatermark(): number {
    return this.hw;
  }

  proposeConfChange(cc: ConfChange): void {
    this.raft!.proposeConfChange(cc);
  }

  produce(data: Uint8Array, count: number): number {
    const r = this.raft!;
    const index = r.propose(data, count);
    const ack: PendingAck = { index, count, term: r.getTerm(), id: dataContentId(data) };
    if (this.bugs.has('ack-before-persist')) this.host.checkers.onAcked(this.id, ack.index, ack.count, ack.term, ack.id);
    else this.acks.push(ack);
    return index;
  }

  private syncDisk(): void {
    const d = this.disk;
    const st = d.storage;
    for (const w of d.pending) {
      if (w.snapshot !== null) st.applySnapshot(w.snapshot);
      if (w.entries.length > 0) {
        const first = w.entries[0].index;
        if (first > st.lastIndex() + 1 || first <= st.snapshot().index) {
          throw new InvariantViolation('persistence', `node ${this.id}: write at ${first} leaves a gap in the durable log`);
        }
        this.host.checkers.onPersist(this.id, w.entries, st.term(first - 1));
        st.append(w.entries);
      }
      if (w.hs !== null) st.setHardState(w.hs);
    }
    d.pending = [];
  }

  processReady(): void {
    const r = this.raft;
    const host = this.host;
    if (r === null || this.unsynced !== null || !r.hasReady()) return;
    const rd = r.ready();
    if (r.getRole() === 'leader' && rd.hardState !== null && rd.hardState.commit > this.durableCommitSeen) {
      host.leaderCommitted(r, Math.max(this.durableCommitSeen, r.log.firstIndex() - 1), rd.hardState.commit);
    }
    if (rd.hardState !== null) this.durableCommitSeen = Math.max(this.durableCommitSeen, rd.hardState.commit);
    this.disk.pending.push({ snapshot: rd.snapshot, entries: rd.entries, hs: rd.hardState });
    if (rd.softState?.role === 'leader') {
      host.checkers.onLeader(r, r.getTerm());
      // New leaders that die young leave old-term entries half replicated: the figure-8 histories.
      if (!host.quiet() && host.rng.chance(0.08)) this.crashAt = host.now() + 1 + host.rng.int(4);
    }
    if (this.bugs.has('send-before-persist')) for (const m of rd.messages) host.send(m);
    this.unsynced = rd;
    if (host.quiet() || host.rng.chance(0.85)) this.fsyncDone();
  }

  /** The fsync of the pending Ready completed: send, apply, advance. */
  fsyncDone(): void {
    const rd = this.unsynced!;
    const r = this.raft!;
    const host = this.host;
    this.unsynced = null;
    this.syncDisk();
    if (rd.snapshot !== null) {
      host.checkers.onSnapshotInstall(this.id, rd.snapshot);
      const app = snapshotApp(rd.snapshot);
      this.appIndex = app.index;
      this.appHash = app.hash;
      host.note(() => `${this.id} installs snapshot @${rd.snapshot!.index}`, 2, this.id, rd.snapshot.index);
    }
    if (!this.bugs.has('send-before-persist')) for (const m of rd.messages) host.send(m);
    for (const e of rd.committedEntries) this.apply(e);
    for (const rs of rd.readStates) host.readState(this, rs.context, rs.index);
    r.advance();
    if (this.raft === null) return; // the replica removed itself
    const committed = rd.committedFrom <= rd.committedTo ? rd.committedTo : rd.snapshot !== null ? rd.snapshot.index : -1;
    if (this.bugs.has('hw-from-log-end')) this.setHw(r.log.lastIndex() + 1, false);
    else if (committed >= 0) this.setHw(committed + 1, false);
    if (committed >= 0) this.answerAcks(committed);
  }

  /**
   * Moves the high watermark and reports the newly visible runs to the checkers (no offset may ever be
   * shown with two different records).
   */
  private setHw(hw: number, restart: boolean): void {
    const checkers = this.host.checkers;
    checkers.onHighWatermark(this.id, hw, restart);
    const r = this.raft!;
    const lo = Math.max(this.hw, r.log.firstIndex());
    if (hw - 1 >= lo) for (const e of r.log.slice(lo, hw - 1, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY)) checkers.onVisible(this.id, e);
    this.hw = hw;
  }

  /** Answers the acks=all produces whose runs are committed (at or below `commit`). */
  private answerAcks(commit: number): void {
    if (this.acks.length === 0) return;
    const r = this.raft!;
    const keep: PendingAck[] = [];
    for (const a of this.acks) {
      if (a.index + a.count - 1 > commit) keep.push(a);
      else if (r.log.term(a.index) === a.term) this.host.checkers.onAcked(this.id, a.index, a.count, a.term, a.id);
      // else: the run was replaced before it committed; the client gets an error, not an ack
    }
    this.acks = keep;
  }

  private apply(e: Entry): void {
    if (e.index !== this.appIndex + 1) {
      throw new InvariantViolation('state machine safety', `node ${this.id} applies ${e.index} after ${this.appIndex}`);
    }
    const id = contentId(e);
    this.appIndex = lastIndexOf(e);
    this.appHash = chainHash(this.appHash, e.index, id * 1024 + e.count);
    this.host.checkers.onApply(this.id, e, this.appHash);
    this.host.note(() => `${this.id} applies ${e.index}+${e.count}@${e.term} ${e.kind}${e.kind === 'conf' ? ` ${e.change!.type} ${e.change!.node}` : ''}`, 3, this.id, e.index);
    this.host.applied(this, e);
  }

  /** Compacts the applied prefix into a snapshot: written atomically, then the log prefix is dropped. */
  compact(): number {
    const r = this.raft!;
    const s = r.log.firstIndex() - 1;
    if (this.appIndex - s < 4 || r.status().applied < this.appIndex) return 0;
    const snap = r.compact(this.appIndex, encodeApp(this.appIndex, this.appHash));
    this.disk.storage.compact(snap);
    return snap.index;
  }
}
