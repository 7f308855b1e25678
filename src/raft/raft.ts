/**
 * The pure Raft core (etcd-raft style). Inputs: `step(message)`, `tick()`, proposals. Outputs: `ready()`
 * (what to persist, send and apply), acknowledged with `advance()`. No timers, no I/O, no clock; the only
 * randomness is `options.random`. See docs/raft.md for the state machine and the persistence contract.
 */
import assert from 'node:assert/strict';
import { RAFT_READ_INDEX_PENDING_MAX } from '../constants.js';
import { SluiceError } from '../errors.js';
import type { NodeId, Offset, Term } from '../model/index.js';
import { type FilledRaftOptions, type RaftOptions, validateRaftOptions } from './config.js';
import { RaftLog } from './log.js';
import { Progress } from './progress.js';
import type { RaftStorage } from './storage.js';
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type EntryKind,
  type HardState,
  type Message,
  MessageType as MT,
  type PersistedState,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
  type StorageAck,
  lastIndexOf,
} from './types.js';

const EMPTY_ENTRIES: readonly Entry[] = Object.freeze([]);
const EMPTY_DATA = new Uint8Array(0);
/** An index that names no entry (log indexes are offsets, which start at 0). */
const NO_ENTRY = -1;
/** Vote.context value: the vote is forced by a leadership transfer and ignores the leader lease. */
const CONTEXT_TRANSFER = 1;

/**
 * The durable state of a brand-new node.
 *
 * A founding member (`voters` non-empty) starts from a snapshot at index 1, term 1 that holds the initial
 * configuration, so that the configuration is never missing from a replica's log prefix. A joining node
 * (`voters` empty) starts with an empty log at index 0 and no configuration: the leader finds index 0
 * compacted on its side and sends it a snapshot first, which carries the configuration.
 */
export function bootstrapState(voters: readonly NodeId[], learners: readonly NodeId[] = []): PersistedState {
  const conf: ConfState = { voters: [...voters].sort((a, b) => a - b), learners: [...learners].sort((a, b) => a - b) };
  const base = voters.length > 0 ? 1 : 0;
  return {
    hardState: { term: base as Term, vote: 0 as NodeId, commit: base as Offset },
    snapshot: { index: base as Offset, term: base as Term, conf, data: EMPTY_DATA },
    entries: [],
  };
}

interface PendingRead {
  readonly context: number;
  readonly index: number;
  readonly seq: number;
  readonly acks: Set<number>;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly leader: NodeId;
  readonly term: Term;
  readonly vote: NodeId;
  readonly commit: Offset;
  readonly applied: Offset;
  readonly firstIndex: Offset;
  readonly lastIndex: Offset;
  readonly conf: ConfState;
}

export class RaftNode {
  readonly id: NodeId;
  readonly log: RaftLog;
  private readonly cfg: FilledRaftOptions;
  private term = 0;
  private vote = 0;
  private commit = 0;
  private applied = 0;
  private role: Role = 'follower';
  private leader = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTicks = 0;
  private readonly votes = new Map<number, boolean>();
  private progress = new Map<number, Progress>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  private pendingReads: PendingRead[] = [];
  private readSeq = 0;
  private transferee = 0;
  /** Quiescence (`RaftOptions.quiesce`): no heartbeats (leader) or election clock (follower) until woken. */
  private quiesced = false;
  private prevHard: HardState;
  private prevSoft: SoftState;
  /**
   * Leader: the commit moved and the followers have not been told yet. Told once, when the next Ready
   * is made (every answer that moves the commit used to send each follower an append of its own: with
   * answers arriving one by one, that tripled the messages at replication factor 3).
   */
  private commitBcastPending = false;
  private readyOut: { lastIndex: number; snapshot: boolean; appliedTo: number; hard: HardState; soft: SoftState } | null = null;

  /**
   * A node over its persisted log. Every persisted entry is read through `storage`; the core keeps only
   * the unpersisted tail in memory. The driver writes `storage` (from each Ready) and nobody else does.
   */
  constructor(options: RaftOptions, storage: RaftStorage) {
    this.cfg = validateRaftOptions(options);
    this.id = this.cfg.id;
    const init = storage.initialState();
    this.log = new RaftLog(storage, init.snapshot, init.confEntries);
    this.term = init.hardState.term;
    this.vote = init.hardState.vote;
    this.commit = Math.max(init.hardState.commit, init.snapshot.index);
    assert.ok(this.commit <= this.log.lastIndex(), 'persisted commit beyond the persisted log');
    this.applied = init.snapshot.index;
    this.prevHard = init.hardState;
    this.prevSoft = { leader: 0 as NodeId, role: 'follower' };
    this.resetRandomizedElectionTicks();
  }

  // --- Inputs ------------------------------------------------------------------------------------

  /** Advances logical time by one tick: elections for followers, heartbeats and check-quorum for leaders. */
  tick(): void {
    if (this.quiesced) return;
    if (this.role === 'leader') this.tickLeader();
    else this.tickElection();
  }

  /** Starts an election now (pre-vote first when enabled), as if the election timeout had fired. */
  campaign(): void {
    this.unquiesce();
    if (this.role !== 'leader') this.startCampaign(this.cfg.preVote ? 'pre' : 'election');
  }

  /**
   * Appends one record batch of `count` records as one run. Leader only; returns the run's first index
   * (its baseOffset); its term is `getTerm()`. The core never reads `data`: the driver stamps baseOffset
   * and partitionLeaderEpoch into the batch header (outside the CRC) before it persists the Ready.
   */
  propose(data: Uint8Array, count = 1): Offset {
    this.assertCanPropose();
    this.unquiesce();
    const e = this.appendEntry('data', data, null, count);
    this.bcastAppend(false);
    return e.index;
  }

  /** Appends several record batches as consecutive runs (`counts[i]` records each, default 1); returns the first index. */
  proposeBatch(datas: readonly Uint8Array[], counts?: readonly number[]): Offset {
    this.assertCanPropose();
    this.unquiesce();
    assert.ok(counts === undefined || counts.length === datas.length, 'raft: one count per batch');
    const first = this.log.lastIndex() + 1;
    for (let i = 0; i < datas.length; i++) this.appendEntry('data', datas[i], null, counts === undefined ? 1 : counts[i]);
    this.bcastAppend(false);
    return first as Offset;
  }

  /**
   * Proposes one membership change. Refused unless this leader has committed an entry of its own term
   * and every earlier change is committed (single-server changes, docs/raft.md "Membership").
   */
  proposeConfChange(cc: ConfChange): Offset {
    this.assertCanPropose();
    if (this.log.term(this.commit) !== this.term) {
      throw new SluiceError('PROPOSAL_DROPPED', 'raft: leader has not committed an entry in its term yet');
    }
    if (this.log.lastConfIndex() > this.commit) {
      throw new SluiceError('PROPOSAL_DROPPED', 'raft: a membership change is still uncommitted');
    }
    this.validateConfChange(cc);
    this.unquiesce();
    const e = this.appendEntry('conf', EMPTY_DATA, cc);
    this.maybeCommit();
    this.bcastAppend(true);
    return e.index;
  }

  /** Hands leadership to `target` (a voter): it campaigns at once when its log is up to date. */
  transferLeadership(target: NodeId): void {
    if (this.role !== 'leader') throw this.notLeader();
    if (target === this.id || target === this.transferee) return;
    if (!this.log.conf().voters.includes(target)) {
      throw new SluiceError('INVALID_REQUEST', `raft: transfer target ${target} is not a voter`);
    }
    this.unquiesce();
    this.transferee = target;
    this.electionElapsed = 0;
    const pr = this.progress.get(target)!;
    if (pr.match === this.log.lastIndex()) this.send(MT.TimeoutNow, target, 0, 0, EMPTY_ENTRIES, 0, false, 0, null, 0);
    else this.sendAppendLoop(target);
  }

  /**
   * ReadIndex: a linearizable read with no log write. Once a quorum confirms this leader, a ReadState
   * with `context` comes out of ready(); serve the read after applying its index.
   */
  readIndex(context: number): void {
    if (this.role !== 'leader') throw this.notLeader();
    if (this.log.term(this.commit) !== this.term) {
      throw new SluiceError('PROPOSAL_DROPPED', 'raft: leader has not committed an entry in its term yet');
    }
    if (this.log.conf().voters.length === 1 || this.cfg.bugs.has('read-without-quorum')) {
      this.readStates.push({ index: this.commit as Offset, context });
      return;
    }
    if (this.pendingReads.length >= RAFT_READ_INDEX_PENDING_MAX) throw new SluiceError('QUEUE_FULL', 'raft: too many pending reads');
    this.unquiesce();
    const seq = ++this.readSeq;
    this.pendingReads.push({ context, index: this.commit, seq, acks: new Set([this.id]) });
    this.bcastHeartbeat(seq);
  }

  /**
   * Makes the snapshot for compacting the log up to `index` (<= applied, the end of a run) with
   * state-machine image `data`. The driver persists it and then drops the log prefix from storage
   * (`storage.firstIndex()` moves then); the core forgets older configurations at once.
   */
  compact(index: number, data: Uint8Array): Snapshot {
    if (!(index <= this.applied && index >= this.log.firstIndex())) assert.fail(`raft: bad compaction index ${index}`);
    const snap: Snapshot = {
      index: index as Offset,
      term: this.log.term(index) as Term,
      conf: this.log.confAt(index),
      data,
    };
    this.log.compacted(snap);
    return snap;
  }

  step(m: Message): void {
    // The answers to a Quiesce, and a Quiesce itself, keep a group quiet; anything else is news.
    if (this.quiesced && m.type !== MT.Quiesce && m.type !== MT.HeartbeatResp) this.unquiesce();
    if (m.term > this.term) {
      if (m.type === MT.Vote || m.type === MT.PreVote) {
        const inLease = this.cfg.checkQuorum && this.leader !== 0 && this.electionElapsed < this.cfg.electionTicks;
        if (m.context !== CONTEXT_TRANSFER && inLease) return;
      }
      if (m.type === MT.PreVote || (m.type === MT.PreVoteResp && !m.reject)) {
        // Never change term for a pre-vote: that is the point of pre-voting.
      } else if (m.type === MT.App || m.type === MT.Heartbeat || m.type === MT.Quiesce || m.type === MT.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, 0);
      }
    } else if (m.term < this.term) {
      if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === MT.App || m.type === MT.Heartbeat || m.type === MT.Quiesce)) {
        // A stale leader cut off for a while: tell it our term so it steps down. The response claims
        // no entry (index -1: offsets start at 0, so 0 would claim the first one). The stale leader
        // may have been elected again in our term by the time it arrives, and would then take the
        // index as this node's match: an empty follower counted as holding offset 0 (a commit
        // counted on it, or a heartbeat committing past its log; simulator seed 1374).
        this.send(MT.AppResp, m.from, 0, NO_ENTRY, EMPTY_ENTRIES, 0, false, 0, null, 0);
      } else if (m.type === MT.PreVote) {
        this.send(MT.PreVoteResp, m.from, 0, 0, EMPTY_ENTRIES, 0, true, 0, null, 0);
      }
      return;
    }
    if (m.type === MT.Vote || m.type === MT.PreVote) {
      this.handleVote(m);
      return;
    }
    if (this.role === 'leader') this.stepLeader(m);
    else if (this.role === 'follower') this.stepFollower(m);
    else this.stepCandidate(m);
  }

  // --- Outputs -----------------------------------------------------------------------------------

  hasReady(): boolean {
    const log = this.log;
    // What the log has to hand out: its unstable tail (synchronous mode), or only the part of it not
    // handed out yet (asynchronous storage writes).
    const logOut = this.cfg.asyncStorageWrites
      ? log.lastIndex() > log.inProgress || (log.unstableSnapshot !== null && !log.snapshotInProgress)
      : log.unstable.length > 0 || log.unstableSnapshot !== null;
    return (
      logOut ||
      this.commitBcastPending ||
      this.msgs.length > 0 ||
      this.applicableCommit() > this.applied ||
      this.readStates.length > 0 ||
      this.hardChanged() ||
      this.prevSoft.leader !== this.leader ||
      this.prevSoft.role !== this.role
    );
  }

  /** Tells the followers of a commit that moved since the last Ready (one append each, with it). */
  private flushCommitBcast(): void {
    if (!this.commitBcastPending) return;
    this.commitBcastPending = false;
    if (this.role === 'leader') this.bcastAppend(true);
  }

  /**
   * What may be applied: the commit; with asynchronous storage writes only what is also durable here
   * (a replica never applies what it could lose in a crash). In synchronous mode the Ready's own writes
   * are durable before anything of it is applied.
   */
  private applicableCommit(): number {
    return this.cfg.asyncStorageWrites ? Math.min(this.commit, this.log.stableIndex()) : this.commit;
  }

  /**
   * Synchronous mode: the whole unstable tail, acknowledged with `advance()` (no input until then).
   * Asynchronous storage writes: only what was not handed out yet, marked handed out at once (the
   * core takes input again right away), with an `ack` for `persisted()`; the HardState and soft state
   * are reported once per change.
   */
  ready(): Ready {
    assert.equal(this.readyOut, null, 'raft: ready() called twice without advance()');
    this.flushCommitBcast();
    const log = this.log;
    const async = this.cfg.asyncStorageWrites;
    let snapshot: Snapshot | null = log.unstableSnapshot;
    let entries: readonly Entry[] = log.unstable.length > 0 ? log.unstable : EMPTY_ENTRIES;
    if (async) {
      snapshot = snapshot !== null && !log.snapshotInProgress ? snapshot : null;
      if (snapshot !== null) log.snapshotInProgress = true;
      entries = log.lastIndex() > log.inProgress ? log.takeUnwritten() : EMPTY_ENTRIES;
    }
    const lo = Math.max(this.applied + 1, log.firstIndex());
    const to = Math.max(this.applicableCommit(), lo - 1);
    const committed = to >= lo && this.cfg.applyEntries ? log.slice(lo, to, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY) : EMPTY_ENTRIES;
    const hard: HardState = { term: this.term as Term, vote: this.vote as NodeId, commit: this.commit as Offset };
    const soft: SoftState = { leader: this.leader as NodeId, role: this.role };
    const softChanged = this.prevSoft.leader !== soft.leader || this.prevSoft.role !== soft.role;
    const last = entries.length > 0 ? entries[entries.length - 1] : null;
    const rd: Ready = {
      snapshot,
      entries,
      hardState: this.hardChanged() ? hard : null,
      messages: this.msgs,
      committedFrom: lo as Offset,
      committedTo: to as Offset,
      committedEntries: committed,
      readStates: this.readStates,
      softState: softChanged ? soft : null,
      ack:
        !async || (snapshot === null && last === null)
          ? null
          : { gen: log.gen, snapshot: snapshot !== null, index: (last === null ? -1 : lastIndexOf(last)) as Offset, term: (last === null ? 0 : last.term) as Term },
    };
    this.msgs = [];
    this.readStates = [];
    if (async) {
      this.applied = to;
      this.prevHard = hard;
      this.prevSoft = soft;
    } else {
      this.readyOut = { lastIndex: log.lastIndex(), snapshot: snapshot !== null, appliedTo: to, hard, soft };
    }
    return rd;
  }

  /**
   * Asynchronous storage writes: a Ready's snapshot and entries are durable (`rd.ack`; acks in the
   * order the Readies were handed out). A stale ack (its runs were cut or replaced since) is ignored.
   * The leader counts itself up to what is durable, which may commit. The driver checks `hasReady()`.
   */
  persisted(ack: StorageAck): void {
    assert.ok(this.cfg.asyncStorageWrites, 'raft: persisted() is for asynchronous storage writes');
    if (!this.log.stableToAsync(ack)) return;
    if (this.role === 'leader') {
      const self = this.progress.get(this.id)!;
      if (self.maybeUpdate(this.log.stableIndex()) && this.maybeCommit()) this.commitBcastPending = true;
    }
  }

  /** The driver has persisted, sent and applied the last Ready. */
  advance(): void {
    assert.ok(!this.cfg.asyncStorageWrites, 'raft: advance() is for synchronous storage writes');
    const out = this.readyOut;
    assert.ok(out !== null, 'raft: advance() without ready()');
    this.readyOut = null;
    this.log.stableTo(out.lastIndex, out.snapshot);
    this.applied = out.appliedTo;
    this.prevHard = out.hard;
    this.prevSoft = out.soft;
    if (this.role === 'leader') {
      // The leader counts itself only for what it has persisted.
      const self = this.progress.get(this.id)!;
      if (self.maybeUpdate(out.lastIndex) && this.maybeCommit()) this.commitBcastPending = true;
    }
  }

  /** Cheap accessors for drivers and checkers (status() allocates). */
  getRole(): Role {
    return this.role;
  }

  getTerm(): number {
    return this.term;
  }

  getCommit(): number {
    return this.commit;
  }

  getLeader(): number {
    return this.leader;
  }

  /** The node a leadership transfer in progress hands the group to; 0 when none (proposals are refused meanwhile). */
  getTransferee(): number {
    return this.transferee;
  }

  /**
   * Leader only: the highest index known to be persisted on `id` (its match index), or -1 when this node
   * is not the leader or `id` is not a member. Lets a driver promote a learner once it caught up.
   */
  matchOf(id: NodeId): number {
    if (this.role !== 'leader') return -1;
    return this.progress.get(id)?.match ?? -1;
  }

  /** Whether a membership change is appended but not yet committed (a new one would be refused). */
  confChangePending(): boolean {
    return this.log.lastConfIndex() > this.commit;
  }

  /** Whether the group is quiesced here (`RaftOptions.quiesce`): no heartbeats or election clock. */
  isQuiesced(): boolean {
    return this.quiesced;
  }

  /**
   * The driver's wake-up (a no-op when not quiesced), when its failure detector's view of a member
   * changed (suspect, dead, alive again): a leader heartbeats again from the next tick; a follower's
   * election clock starts from zero, so it campaigns one election timeout later if its leader is really
   * gone, and it tells its leader it is awake (an append answer claiming what it holds, which it
   * acknowledged before quiescing), so a live leader that saw no change heartbeats (or quiesces the
   * group again) before that timeout: otherwise two woken followers would depose a healthy, silent leader.
   * `leaderDown`: the detector's change is that this follower's leader turned suspect or dead.
   */
  wake(leaderDown = false): void {
    if (!this.quiesced) return;
    this.unquiesce();
    // The detector suspects this follower's leader: half the lease is taken as spent already, so the
    // followers (woken by the same suspicion at about the same time) campaign and grant after half an
    // election timeout to one and a half, not one to two, on top of the detection time. A live leader
    // answers the message below within a tick or two and resets the clock long before.
    if (leaderDown && this.role === 'follower') this.electionElapsed = this.cfg.electionTicks >> 1;
    if (this.role === 'follower' && this.leader !== 0 && this.log.unstable.length === 0) {
      this.send(MT.AppResp, this.leader, 0, this.log.lastIndex(), EMPTY_ENTRIES, 0, false, 0, null, 0);
    }
  }

  /** Ends quiescence: every input but the answers to a Quiesce, and the driver's `wake()`. */
  private unquiesce(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    // Check-quorum counts only answers heard after waking: the marks from before the quiet are stale.
    for (const pr of this.progress.values()) pr.recentActive = false;
  }

  status(): RaftStatus {
    return {
      id: this.id,
      role: this.role,
      leader: this.leader as NodeId,
      term: this.term as Term,
      vote: this.vote as NodeId,
      commit: this.commit as Offset,
      applied: this.applied as Offset,
      firstIndex: this.log.firstIndex() as Offset,
      lastIndex: this.log.lastIndex() as Offset,
      conf: this.log.conf(),
    };
  }

  // --- Roles -------------------------------------------------------------------------------------

  private promotable(): boolean {
    return this.log.conf().voters.includes(this.id);
  }

  private resetRandomizedElectionTicks(): void {
    const e = this.cfg.electionTicks;
    this.randomizedElectionTicks = e + Math.floor(this.cfg.random() * e);
  }

  private resetCommon(): void {
    this.quiesced = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.resetRandomizedElectionTicks();
    this.votes.clear();
    this.transferee = 0;
    this.pendingReads = [];
  }

  private becomeFollower(term: number, leader: number): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = 0;
    }
    this.resetCommon();
    this.role = 'follower';
    this.leader = leader;
  }

  private becomePreCandidate(): void {
    this.resetCommon();
    this.role = 'preCandidate';
    this.leader = 0;
  }

  private becomeCandidate(): void {
    this.resetCommon();
    this.term += 1;
    this.vote = this.id;
    this.role = 'candidate';
    this.leader = 0;
  }

  private becomeLeader(): void {
    this.resetCommon();
    this.role = 'leader';
    this.leader = this.id;
    this.progress = new Map();
    this.syncProgress();
    this.progress.get(this.id)!.match = this.log.stableIndex();
    // The no-op lets this leader commit (and so learn the commit point of) earlier terms' entries.
    this.appendEntry('noop', EMPTY_DATA, null);
    this.bcastAppend(true);
  }

  private startCampaign(kind: 'pre' | 'election' | 'transfer'): void {
    if (!this.promotable()) return;
    let voteTerm: number;
    let type: MT;
    if (kind === 'pre') {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
      type = MT.PreVote;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
      type = MT.Vote;
    }
    if (this.poll(this.id, true) === 'won') {
      if (kind === 'pre') this.startCampaign('election');
      else this.becomeLeader();
      return;
    }
    const ctx = kind === 'transfer' ? CONTEXT_TRANSFER : 0;
    for (const v of this.log.conf().voters) {
      if (v === this.id) continue;
      this.msgs.push(this.msg(type, v, voteTerm, this.log.lastTerm(), this.log.lastIndex(), EMPTY_ENTRIES, 0, false, 0, null, ctx));
    }
  }

  private poll(from: number, granted: boolean): 'won' | 'lost' | 'pending' {
    this.votes.set(from, granted);
    const voters = this.log.conf().voters;
    let yes = 0;
    let no = 0;
    for (const v of voters) {
      const g = this.votes.get(v);
      if (g === true) yes++;
      else if (g === false) no++;
    }
    const q = (voters.length >> 1) + 1;
    return yes >= q ? 'won' : no >= q ? 'lost' : 'pending';
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.electionElapsed >= this.randomizedElectionTicks && this.promotable()) {
      this.electionElapsed = 0;
      this.startCampaign(this.cfg.preVote ? 'pre' : 'election');
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, 0);
        return;
      }
      this.transferee = 0; // a transfer that did not finish within an election timeout is abandoned
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      if (this.canQuiesce()) {
        this.bcastQuiesce();
        this.quiesced = true;
        return;
      }
      const n = this.pendingReads.length;
      this.bcastHeartbeat(n > 0 ? this.pendingReads[n - 1].seq : 0);
    }
  }

  /**
   * Whether this leader may go quiet: quiescence is on, nothing is pending (a transfer, a read, an
   * unpersisted or uncommitted entry), and every other member has persisted the whole log, is being
   * replicated to normally, and answered since the last check-quorum round (so a member that is down
   * keeps its groups heartbeating, and a leader cut off from its followers keeps checking its quorum).
   */
  private canQuiesce(): boolean {
    if (!this.cfg.quiesce || this.transferee !== 0 || this.pendingReads.length > 0) return false;
    const last = this.log.lastIndex();
    if (this.commit !== last || this.log.unstable.length > 0) return false;
    for (const [id, pr] of this.progress) {
      if (pr.match !== last) return false;
      if (id !== this.id && (!pr.recentActive || pr.state !== 'replicate')) return false;
    }
    return true;
  }

  private bcastQuiesce(): void {
    for (const id of this.progress.keys()) {
      if (id !== this.id) this.send(MT.Quiesce, id, 0, 0, EMPTY_ENTRIES, this.commit, false, 0, null, 0);
    }
  }

  /** Check-quorum: were a majority of voters heard from since the last round? Resets the marks. */
  private quorumActive(): boolean {
    const voters = this.log.conf().voters;
    let active = 0;
    for (const v of voters) {
      const pr = this.progress.get(v);
      if (v === this.id || (pr !== undefined && pr.recentActive)) active++;
      if (pr !== undefined && v !== this.id) pr.recentActive = false;
    }
    for (const [id, pr] of this.progress) if (!voters.includes(id as NodeId)) pr.recentActive = false;
    return active >= (voters.length >> 1) + 1;
  }

  // --- Message handling --------------------------------------------------------------------------

  private handleVote(m: Message): void {
    const pre = m.type === MT.PreVote;
    const bugs = this.cfg.bugs;
    const canVote =
      this.vote === m.from ||
      (this.vote === 0 && this.leader === 0) ||
      (pre && m.term > this.term) ||
      (!pre && bugs.has('vote-twice'));
    const upToDate = this.log.isUpToDate(m.index, m.logTerm) || bugs.has('vote-ignores-log');
    const respType = pre ? MT.PreVoteResp : MT.VoteResp;
    if (canVote && upToDate) {
      this.msgs.push(this.msg(respType, m.from, m.term, 0, 0, EMPTY_ENTRIES, 0, false, 0, null, 0));
      if (!pre) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send(respType, m.from, 0, 0, EMPTY_ENTRIES, 0, true, 0, null, 0);
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case MT.App:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleAppend(m);
        break;
      case MT.Heartbeat:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        break;
      case MT.Quiesce:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleHeartbeat(m);
        // Only a follower that holds exactly what the leader committed goes quiet (it always should:
        // the leader quiesces only once this member acknowledged its whole log).
        if (this.cfg.quiesce && this.commit === m.commit && this.log.lastIndex() === this.commit) this.quiesced = true;
        break;
      case MT.Snap:
        this.electionElapsed = 0;
        this.leader = m.from;
        this.handleSnapshot(m);
        break;
      case MT.TimeoutNow:
        this.startCampaign('transfer');
        break;
      default:
        break; // stale responses from an earlier role
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case MT.App:
      case MT.Heartbeat:
      case MT.Quiesce:
      case MT.Snap:
        this.becomeFollower(m.term, m.from);
        this.stepFollower(m);
        break;
      case MT.VoteResp:
      case MT.PreVoteResp: {
        if ((m.type === MT.PreVoteResp) !== (this.role === 'preCandidate')) return;
        const r = this.poll(m.from, !m.reject);
        if (r === 'won') {
          if (this.role === 'preCandidate') this.startCampaign('election');
          else this.becomeLeader();
        } else if (r === 'lost') {
          this.becomeFollower(this.term, 0);
        }
        break;
      }
      default:
        break;
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === MT.AppResp) this.handleAppResp(m);
    else if (m.type === MT.HeartbeatResp) this.handleHeartbeatResp(m);
  }

  private handleAppend(m: Message): void {
    const log = this.log;
    if (m.index < this.commit) {
      this.send(MT.AppResp, m.from, 0, this.commit, EMPTY_ENTRIES, 0, false, 0, null, 0);
      return;
    }
    if (!log.matchTerm(m.index, m.logTerm)) {
      const [hintIndex, hintTerm] = log.findConflictByTerm(Math.min(m.index, log.lastIndex()), m.logTerm);
      this.send(MT.AppResp, m.from, hintTerm, m.index, EMPTY_ENTRIES, 0, true, hintIndex, null, 0);
      return;
    }
    const ents = m.entries;
    let i = 0;
    for (; i < ents.length; i++) {
      const e = ents[i];
      const t = log.term(e.index);
      if (t === e.term) {
        // Same term, same leader, same cut: a run held at all is held whole, with the same boundaries.
        if (log.term(lastIndexOf(e)) !== e.term) assert.fail(`raft: run ${e.index}+${e.count}@${e.term} is split on this replica`);
        continue;
      }
      if (t !== -1) {
        assert.ok(e.index > this.commit, 'raft: conflict with a committed entry');
        if (this.cfg.bugs.has('no-truncate-on-conflict')) {
          while (i < ents.length && ents[i].index <= log.lastIndex()) i++;
          if (i < ents.length && ents[i].index !== log.lastIndex() + 1) i = ents.length; // cannot append past a kept run
        } else {
          log.truncateFrom(e.index);
        }
      }
      break;
    }
    for (; i < ents.length; i++) log.append(ents[i]);
    const lastNew = ents.length > 0 ? lastIndexOf(ents[ents.length - 1]) : m.index;
    this.commitTo(Math.min(m.commit, lastNew));
    this.send(MT.AppResp, m.from, 0, lastNew, EMPTY_ENTRIES, 0, false, 0, null, 0);
  }

  private handleHeartbeat(m: Message): void {
    this.commitTo(m.commit);
    this.send(MT.HeartbeatResp, m.from, 0, 0, EMPTY_ENTRIES, 0, false, 0, null, m.context);
  }

  private handleSnapshot(m: Message): void {
    const snap = m.snapshot!;
    if (snap.index <= this.commit) {
      this.send(MT.AppResp, m.from, 0, this.commit, EMPTY_ENTRIES, 0, false, 0, null, 0);
      return;
    }
    if (this.log.matchTerm(snap.index, snap.term)) {
      this.commitTo(snap.index); // we already hold the snapshot's entries: just fast-forward the commit
    } else {
      this.log.restore(snap);
      this.commit = snap.index;
    }
    this.send(MT.AppResp, m.from, 0, this.commit, EMPTY_ENTRIES, 0, false, 0, null, 0);
  }

  private commitTo(c: number): void {
    if (c > this.commit) {
      assert.ok(c <= this.log.lastIndex(), 'raft: commit beyond the log');
      this.commit = c;
    }
  }

  private handleAppResp(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      const hint = m.logTerm > 0 ? this.log.findConflictByTerm(m.rejectHint, m.logTerm)[0] : m.rejectHint;
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.sendAppendLoop(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (pr.maybeUpdate(m.index) || (pr.match === m.index && pr.state === 'probe')) {
      if (pr.state === 'probe') pr.becomeReplicate();
      else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) {
        pr.becomeProbe();
        pr.becomeReplicate();
      } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index);
      if (this.maybeCommit()) {
        this.commitBcastPending = true;
        this.sendAppendLoop(m.from);
      } else if (wasPaused && this.maybeSendAppend(m.from, true)) this.sendAppendLoop(m.from);
      else this.sendAppendLoop(m.from); // a paused follower may have missed the commit index: send it
      if (m.from === this.transferee && pr.match === this.log.lastIndex()) {
        this.send(MT.TimeoutNow, m.from, 0, 0, EMPTY_ENTRIES, 0, false, 0, null, 0);
      }
    }
  }

  private handleHeartbeatResp(m: Message): void {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    pr.probeSent = false;
    if (pr.state === 'snapshot') pr.becomeProbe();
    if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirst();
    if (pr.match < this.log.lastIndex()) this.maybeSendAppend(m.from, true);
    if (m.context > 0) this.ackReads(m.from, m.context);
  }

  private ackReads(from: number, seq: number): void {
    const voters = this.log.conf().voters;
    const q = (voters.length >> 1) + 1;
    for (const r of this.pendingReads) if (r.seq <= seq) r.acks.add(from);
    while (this.pendingReads.length > 0) {
      const r = this.pendingReads[0];
      let n = 0;
      for (const v of voters) if (r.acks.has(v)) n++;
      if (n < q) break;
      this.pendingReads.shift();
      this.readStates.push({ index: r.index as Offset, context: r.context });
    }
  }

  // --- Leader replication ------------------------------------------------------------------------

  private maybeCommit(): boolean {
    const voters = this.log.conf().voters;
    let idx: number;
    if (this.cfg.bugs.has('commit-without-quorum')) {
      idx = this.progress.get(this.id)!.match;
    } else {
      const matches = voters.map((v) => this.progress.get(v)?.match ?? -1).sort((a, b) => b - a);
      idx = matches[voters.length >> 1];
    }
    if (idx > this.commit && (this.log.term(idx) === this.term || this.cfg.bugs.has('commit-old-term'))) {
      this.commit = idx;
      return true;
    }
    return false;
  }

  private bcastAppend(sendIfEmpty: boolean): void {
    for (const id of this.progress.keys()) {
      if (id === this.id) continue;
      if (this.maybeSendAppend(id, sendIfEmpty)) this.sendAppendLoop(id);
    }
  }

  private bcastHeartbeat(context: number): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      this.send(MT.Heartbeat, id, 0, 0, EMPTY_ENTRIES, Math.min(pr.match, this.commit), false, 0, null, context);
    }
  }

  /** Sends appends to `to` while there are entries and the pipeline bounds allow. */
  private sendAppendLoop(to: number): void {
    while (this.maybeSendAppend(to, false));
  }

  /** Sends one append (or a snapshot); true when it carried entries and more may follow. */
  private maybeSendAppend(to: number, sendIfEmpty: boolean): boolean {
    const pr = this.progress.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const log = this.log;
    let prevIndex = pr.next - 1;
    let prevTerm = log.term(prevIndex);
    if (prevTerm < 0) {
      const snap = log.snapshotForSend();
      pr.becomeSnapshot(snap.index);
      this.send(MT.Snap, to, 0, 0, EMPTY_ENTRIES, 0, false, 0, snap, 0);
      return false;
    }
    const last = log.lastIndex();
    let ents: readonly Entry[] = EMPTY_ENTRIES;
    if (pr.next <= last) {
      const room = Math.max(1, Math.min(this.cfg.msgBytesMax, this.cfg.inflightBytesMax - pr.inflights.bytes));
      ents = log.slice(pr.next, last, room, this.cfg.msgEntriesMax);
      const first = ents[0].index;
      if (first !== pr.next) {
        // Backtracking can land inside a run: a run is sent whole, so start at its first index (the
        // compaction point ends a run, so its predecessor is still in the log).
        pr.next = first;
        prevIndex = first - 1;
        prevTerm = log.term(prevIndex);
        if (!(prevTerm >= 0)) assert.fail(`raft: run at ${first} starts inside the compacted prefix`);
      }
    }
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send(MT.App, to, prevTerm, prevIndex, ents, this.commit, false, 0, null, 0);
    if (pr.state === 'probe') {
      pr.probeSent = true;
    } else if (ents.length > 0) {
      let bytes = 0;
      for (const e of ents) bytes += e.data.length;
      const lastSent = lastIndexOf(ents[ents.length - 1]);
      pr.next = lastSent + 1;
      pr.inflights.add(lastSent, bytes);
    }
    return ents.length > 0;
  }

  // --- Log and configuration ---------------------------------------------------------------------

  private appendEntry(kind: EntryKind, data: Uint8Array, change: ConfChange | null, count = 1): Entry {
    const index = this.log.lastIndex() + 1;
    const payload = kind === 'data' ? data : this.cfg.controlData(kind, index, this.term, change);
    const e: Entry = { index: index as Offset, count, term: this.term as Term, kind, data: payload, change };
    this.log.append(e);
    if (kind === 'conf') this.syncProgress();
    return e;
  }

  /** Makes the leader's progress map follow the configuration in force. */
  private syncProgress(): void {
    const conf = this.log.conf();
    const members = new Set<number>([...conf.voters, ...conf.learners]);
    for (const id of members) {
      if (!this.progress.has(id)) {
        this.progress.set(id, new Progress(this.log.lastIndex() + 1, this.cfg.inflightMsgsMax, this.cfg.inflightBytesMax));
      }
    }
    for (const id of [...this.progress.keys()]) if (!members.has(id) && id !== this.id) this.progress.delete(id);
  }

  private validateConfChange(cc: ConfChange): void {
    const conf = this.log.conf();
    const isVoter = conf.voters.includes(cc.node);
    const isLearner = conf.learners.includes(cc.node);
    let problem = '';
    if (cc.node <= 0) problem = 'node id must be positive';
    else if (cc.type === 'remove' && cc.node === this.id) problem = 'the leader cannot remove itself; transfer leadership first';
    else if (cc.type === 'remove' && !isVoter && !isLearner) problem = `node ${cc.node} is not a member`;
    else if (cc.type === 'addVoter' && isVoter) problem = `node ${cc.node} is already a voter`;
    else if (cc.type === 'addLearner' && (isVoter || isLearner)) problem = `node ${cc.node} is already a member`;
    if (problem !== '') throw new SluiceError('INVALID_REQUEST', `raft: ${problem}`);
  }

  private assertCanPropose(): void {
    if (this.role !== 'leader') throw this.notLeader();
    if (this.transferee !== 0) throw new SluiceError('PROPOSAL_DROPPED', 'raft: leadership transfer in progress');
  }

  private notLeader(): SluiceError {
    return new SluiceError('NOT_LEADER', `raft: node ${this.id} is not the leader (leader: ${this.leader || 'unknown'})`);
  }

  private hardChanged(): boolean {
    const h = this.prevHard;
    return h.term !== this.term || h.vote !== this.vote || h.commit !== this.commit;
  }

  // --- Messages ----------------------------------------------------------------------------------

  private send(
    type: MT,
    to: number,
    logTerm: number,
    index: number,
    entries: readonly Entry[],
    commit: number,
    reject: boolean,
    rejectHint: number,
    snapshot: Snapshot | null,
    context: number,
  ): void {
    this.msgs.push(this.msg(type, to, this.term, logTerm, index, entries, commit, reject, rejectHint, snapshot, context));
  }

  private msg(
    type: MT,
    to: number,
    term: number,
    logTerm: number,
    index: number,
    entries: readonly Entry[],
    commit: number,
    reject: boolean,
    rejectHint: number,
    snapshot: Snapshot | null,
    context: number,
  ): Message {
    return {
      type,
      from: this.id,
      to: to as NodeId,
      term: term as Term,
      logTerm: logTerm as Term,
      index: index as Offset,
      entries,
      commit: commit as Offset,
      reject,
      rejectHint: rejectHint as Offset,
      snapshot,
      context,
    };
  }
}
