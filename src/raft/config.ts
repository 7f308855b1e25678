/**
 * Raft options: `RaftOptions` (all optional but the identity), `FilledRaftOptions`, frozen defaults and a
 * `validate` that rejects inconsistent settings (etcd-raft `Config.validate()`).
 */
import {
  RAFT_ELECTION_TICKS_DEFAULT,
  RAFT_HEARTBEAT_TICKS_DEFAULT,
  RAFT_INFLIGHT_BYTES_MAX_DEFAULT,
  RAFT_INFLIGHT_MSGS_MAX_DEFAULT,
  RAFT_MSG_BYTES_MAX_DEFAULT,
  RAFT_MSG_ENTRIES_MAX_DEFAULT,
} from '../constants.js';
import { SluiceError } from '../errors.js';
import type { NodeId } from '../model/index.js';
import type { ConfChange } from './types.js';

/**
 * Deliberately broken code paths, used only by the simulator to prove that its checkers can fail.
 * They are injected per node through the options, never global state.
 */
export const RAFT_BUGS = [
  /** The leader commits an entry as soon as it has persisted it, with no quorum. */
  'commit-without-quorum',
  /** A node grants its vote again in a term in which it already voted for someone else. */
  'vote-twice',
  /** A follower keeps its conflicting entries instead of truncating them. */
  'no-truncate-on-conflict',
  /** A voter ignores the "candidate's log is at least as up to date" rule. */
  'vote-ignores-log',
  /** The leader commits entries of earlier terms by counting replicas (Raft paper figure 8). */
  'commit-old-term',
  /** ReadIndex answers at once, without confirming leadership with a quorum (stale reads). */
  'read-without-quorum',
] as const;
export type RaftBug = (typeof RAFT_BUGS)[number];

/** Builds the payload of a control run (noop / conf) at `index` in `term`. */
export type ControlDataFn = (kind: 'noop' | 'conf', index: number, term: number, change: ConfChange | null) => Uint8Array;

export interface RaftOptions {
  /** This node's id; must be > 0. */
  id: NodeId;
  electionTicks?: number;
  heartbeatTicks?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  inflightMsgsMax?: number;
  inflightBytesMax?: number;
  msgBytesMax?: number;
  msgEntriesMax?: number;
  /** Injected randomness in [0, 1); the only source the core uses (randomized election timeouts). */
  random?: () => number;
  /**
   * Materialize `Ready.committedEntries` (default true). A partition sets false: it needs only
   * `Ready.committedFrom/committedTo` to move its high watermark, not the bytes.
   */
  applyEntries?: boolean;
  /**
   * The payload of the core's own runs (the leader's no-op, membership changes), made when the core
   * appends one. A partition returns a one-record control batch so that every replica stores the same
   * bytes verbatim. Must be pure. Default: an empty payload.
   */
  controlData?: ControlDataFn;
  /**
   * Quiescence (default false; docs/raft.md "Quiescence"): a leader whose members have all persisted its
   * whole log and heard of its commit, with nothing pending, sends them one `Quiesce` and then stays
   * silent; a quiesced follower does not count down to an election. Any message (but the answers to a
   * Quiesce), proposal, transfer, read or campaign, and the driver's `wake()` end it. It only stops
   * messages and timers, so safety does not depend on it; liveness does: the driver must `wake()` the
   * groups of a node its failure detector turns suspect, dead, or alive again (gossip informs).
   */
  quiesce?: boolean;
  /**
   * Asynchronous storage writes (default false; docs/raft.md "Asynchronous storage writes", etcd-raft's
   * `AsyncStorageWrites`): the driver may keep taking input and calling `ready()` while earlier Readies
   * are still being persisted, and tells the core what became durable with `persisted(rd.ack)`, in the
   * order the Readies were handed out. `advance()` is not used. The core applies (and reports as
   * committed) only what is both committed and durable here.
   */
  asyncStorageWrites?: boolean;
  /** Test-only: deliberately broken code paths. */
  bugs?: readonly RaftBug[];
}

export interface FilledRaftOptions {
  readonly id: NodeId;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  readonly inflightMsgsMax: number;
  readonly inflightBytesMax: number;
  readonly msgBytesMax: number;
  readonly msgEntriesMax: number;
  readonly random: () => number;
  readonly applyEntries: boolean;
  readonly controlData: ControlDataFn;
  readonly quiesce: boolean;
  readonly asyncStorageWrites: boolean;
  readonly bugs: ReadonlySet<RaftBug>;
}

const EMPTY_DATA = new Uint8Array(0);

function emptyControlData(): Uint8Array {
  return EMPTY_DATA;
}

/** A fixed "random" source, so a core built without one is still deterministic. */
function constantHalf(): number {
  return 0.5;
}

export const RAFT_DEFAULTS = Object.freeze({
  electionTicks: RAFT_ELECTION_TICKS_DEFAULT,
  heartbeatTicks: RAFT_HEARTBEAT_TICKS_DEFAULT,
  preVote: true,
  checkQuorum: true,
  inflightMsgsMax: RAFT_INFLIGHT_MSGS_MAX_DEFAULT,
  inflightBytesMax: RAFT_INFLIGHT_BYTES_MAX_DEFAULT,
  msgBytesMax: RAFT_MSG_BYTES_MAX_DEFAULT,
  msgEntriesMax: RAFT_MSG_ENTRIES_MAX_DEFAULT,
});

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_CONFIG', `raft: ${message}`);
}

function positiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) throw invalid(`${name} must be a positive integer, got ${v}`);
}

/** Fills defaults and rejects inconsistent combinations with a clear message. */
export function validateRaftOptions(o: RaftOptions): FilledRaftOptions {
  const f: FilledRaftOptions = {
    id: o.id,
    electionTicks: o.electionTicks ?? RAFT_DEFAULTS.electionTicks,
    heartbeatTicks: o.heartbeatTicks ?? RAFT_DEFAULTS.heartbeatTicks,
    preVote: o.preVote ?? RAFT_DEFAULTS.preVote,
    checkQuorum: o.checkQuorum ?? RAFT_DEFAULTS.checkQuorum,
    inflightMsgsMax: o.inflightMsgsMax ?? RAFT_DEFAULTS.inflightMsgsMax,
    inflightBytesMax: o.inflightBytesMax ?? RAFT_DEFAULTS.inflightBytesMax,
    msgBytesMax: o.msgBytesMax ?? RAFT_DEFAULTS.msgBytesMax,
    msgEntriesMax: o.msgEntriesMax ?? RAFT_DEFAULTS.msgEntriesMax,
    random: o.random ?? constantHalf,
    applyEntries: o.applyEntries ?? true,
    controlData: o.controlData ?? emptyControlData,
    quiesce: o.quiesce ?? false,
    asyncStorageWrites: o.asyncStorageWrites ?? false,
    bugs: new Set(o.bugs ?? []),
  };
  positiveInt('id', f.id);
  positiveInt('electionTicks', f.electionTicks);
  positiveInt('heartbeatTicks', f.heartbeatTicks);
  positiveInt('inflightMsgsMax', f.inflightMsgsMax);
  positiveInt('inflightBytesMax', f.inflightBytesMax);
  positiveInt('msgBytesMax', f.msgBytesMax);
  positiveInt('msgEntriesMax', f.msgEntriesMax);
  if (f.electionTicks <= f.heartbeatTicks) {
    throw invalid(`electionTicks (${f.electionTicks}) must be greater than heartbeatTicks (${f.heartbeatTicks})`);
  }
  if (f.msgBytesMax > f.inflightBytesMax) {
    throw invalid(`msgBytesMax (${f.msgBytesMax}) must not exceed inflightBytesMax (${f.inflightBytesMax})`);
  }
  for (const b of f.bugs) if (!(RAFT_BUGS as readonly string[]).includes(b)) throw invalid(`unknown bug ${b}`);
  return f;
}
