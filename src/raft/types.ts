/**
 * Public types of the pure Raft core. Everything here is plain data: it can be persisted, posted between
 * threads, or compared in a test. The core never mutates an Entry, Message or Snapshot after creating
 * it, so drivers (and the simulator) may share them by reference.
 */
import type { NodeId, Offset, Term } from '../model/index.js';

/** What an entry carries. `noop` is the leader's first entry of each term (it occupies an offset). */
export type EntryKind = 'data' | 'conf' | 'noop';

/** One membership change at a time (see docs/raft.md "Membership"). */
export type ConfChangeType = 'addVoter' | 'addLearner' | 'remove';

export interface ConfChange {
  readonly type: ConfChangeType;
  readonly node: NodeId;
}

/** The configuration: who votes, who only replicates. A node is in at most one of the two lists. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/**
 * A run of log entries of one term (DESIGN.md decision 3): log index = Kafka offset, every record is one
 * Raft entry, and a batch is a run of `count` consecutive entries `index .. index + count - 1`, all of
 * term `term`, carried and stored as one unit. The core never does per-record work and never looks inside
 * `data`: it trusts `count`.
 *
 * Runs are atomic: a replica holds all of a run or none of it, and a run is never split. The batch
 * boundaries of one term are the same on every replica, because every run of term T was cut by T's
 * leader and is copied verbatim; so truncations (and snapshots, and commit points) fall on run
 * boundaries. The core asserts this where it can see it; the simulator checks it on every write.
 */
export interface Entry {
  /** The first index of the run; for a partition this is the batch's baseOffset. */
  readonly index: Offset;
  /** Entries (records) in the run, >= 1. `data`: lastOffsetDelta + 1; `noop` and `conf`: 1. */
  readonly count: number;
  /** The term (leader epoch) of the leader that created the run. */
  readonly term: Term;
  readonly kind: EntryKind;
  /**
   * The payload, opaque to the core: a RecordBatch v2 (bytes as received) for `data`; for `noop` and
   * `conf` what `RaftOptions.controlData` made of it (empty by default). Replicas store it verbatim.
   */
  readonly data: Uint8Array;
  /** Set only for `conf` entries. */
  readonly change: ConfChange | null;
}

/** The last index of a run. */
export function lastIndexOf(e: Entry): number {
  return e.index + e.count - 1;
}

/** The state that must be durable before any message of the same Ready is sent. */
export interface HardState {
  readonly term: Term;
  /** 0 = voted for nobody in `term`. */
  readonly vote: NodeId;
  readonly commit: Offset;
}

export interface Snapshot {
  /** Last index covered; the log restarts at index + 1. */
  readonly index: Offset;
  readonly term: Term;
  /** The configuration as of `index`. */
  readonly conf: ConfState;
  /** Opaque state-machine image, produced by the driver in `compact()`. */
  readonly data: Uint8Array;
}

/** Message types. Numbers (not strings) because they are compared on the hot path. */
export const MessageType = {
  App: 1,
  AppResp: 2,
  Vote: 3,
  VoteResp: 4,
  PreVote: 5,
  PreVoteResp: 6,
  Heartbeat: 7,
  HeartbeatResp: 8,
  Snap: 9,
  TimeoutNow: 10,
  /**
   * A heartbeat after which the leader stays silent (quiescence, `RaftOptions.quiesce`): the follower
   * answers it like a heartbeat and stops its election clock until anything else happens.
   */
  Quiesce: 11,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

export const MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(MessageType).map(([k, v]) => [v, k]),
);

/**
 * One message between peers. All fields are always present (unused ones are 0 / empty) so every message
 * has one hidden class.
 */
export interface Message {
  readonly type: MessageType;
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
  /** App: term of `index`. Vote/PreVote: candidate's last term. AppResp reject: hint term. */
  readonly logTerm: Term;
  /**
   * App: prevLogIndex = entries[0].index - 1 (the end of the run before the first one sent). Vote:
   * candidate's last index. AppResp: match index (the end of the last run held), or the rejected index.
   */
  readonly index: Offset;
  /** App: whole runs, contiguous, in order (a partition: v2 batches, byte for byte). */
  readonly entries: readonly Entry[];
  /** App/Heartbeat/Quiesce: leader's commit (capped for heartbeats at what the follower is known to hold). */
  readonly commit: Offset;
  readonly reject: boolean;
  /** AppResp reject: the follower's hint index (see fast backtracking in docs/raft.md). */
  readonly rejectHint: Offset;
  readonly snapshot: Snapshot | null;
  /** Heartbeat(+Resp): ReadIndex round id. Vote: 1 = forced by a leadership transfer. */
  readonly context: number;
}

export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader';

export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/** A linearizable read: it may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly index: Offset;
  readonly context: number;
}

/**
 * Asynchronous storage writes: what a Ready asks the driver to acknowledge once its snapshot and
 * entries are durable (`RaftNode.persisted`). `gen` is the log's write generation when the Ready was
 * made: a truncation of runs handed out earlier, or a snapshot install, starts a new one, and an
 * acknowledgement from an older generation is ignored (those bytes may be gone or rewritten).
 */
export interface StorageAck {
  readonly gen: number;
  /** The Ready carried a snapshot. */
  readonly snapshot: boolean;
  /** The last index and term of the Ready's entries; -1 when it had none. */
  readonly index: Offset;
  readonly term: Term;
}

/**
 * What the driver must do, in this order. Synchronous mode (the default): between `ready()` and
 * `advance()` the driver must not call `step`, `tick` or any proposal method (one Ready is in flight at
 * a time). With `RaftOptions.asyncStorageWrites` the driver keeps feeding input and may take further
 * Readies while earlier ones are being persisted; see `ack` and docs/raft.md.
 */
export interface Ready {
  /**
   * 1. PERSIST FIRST, before `entries`: a snapshot received from the leader. It replaces the whole
   * persisted log (discard every persisted entry) and the state machine.
   */
  readonly snapshot: Snapshot | null;
  /**
   * 2. PERSIST (append, then fsync): entries to write. If entries[0].index is at or below the last
   * persisted index, first truncate the persisted log from entries[0].index (a follower's conflict).
   */
  readonly entries: readonly Entry[];
  /** 2. PERSIST together with `entries` (same fsync), when non-null. */
  readonly hardState: HardState | null;
  /** 3. SEND only AFTER 1 and 2 are durable. Order within the array need not be kept. */
  readonly messages: readonly Message[];
  /**
   * 4. APPLY, after 1 and 2 are durable: indexes `committedFrom .. committedTo` (inclusive) are newly
   * committed; `committedFrom > committedTo` when nothing is. A partition only needs the range (its high
   * watermark becomes committedTo + 1), so it runs with `applyEntries: false` and the core never
   * re-reads what the leader just wrote.
   */
  readonly committedFrom: Offset;
  readonly committedTo: Offset;
  /**
   * 4. APPLY, in order: the runs of that range (read from storage or the unstable tail). Only with
   * `RaftOptions.applyEntries` (the default); empty otherwise.
   */
  readonly committedEntries: readonly Entry[];
  /** 5. Reads that may be served once `index` is applied. */
  readonly readStates: readonly ReadState[];
  /** Informational: leader/role changed since the last Ready. Nothing to persist. */
  readonly softState: SoftState | null;
  /**
   * Asynchronous storage writes only: once `snapshot` and `entries` are durable, and the acks of every
   * earlier Ready were given, pass this to `persisted()`. Null when there is nothing to acknowledge
   * (always null in synchronous mode). Answers (AppResp, VoteResp, PreVoteResp) must not be sent
   * before it: they may claim what it covers, and so may those of any LATER Ready (an append answer
   * to a resent append), so a driver sends answers in Ready order, each after the acks of its own and
   * every earlier Ready. Requests (appends, heartbeats, vote requests, snapshots) may go at once.
   */
  readonly ack: StorageAck | null;
}

/** A durable state as plain data (`bootstrapState()`; `MemoryStorage` is built from one). */
export interface PersistedState {
  readonly hardState: HardState;
  readonly snapshot: Snapshot;
  /** Runs after snapshot.index, contiguous. */
  readonly entries: readonly Entry[];
}
