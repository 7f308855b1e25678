/**
 * The controller driver: runs the pure `RaftNode` of group 0 (CONTROLLER_GROUP_ID) over the durable
 * metadata log, applies committed records to the local `MetadataStm`, and emits its change events. Every
 * node runs one (a voter or, for now, only the voters; see docs/controller.md); admin requests on any node
 * are forwarded to the controller leader through a `ControllerForwarder`.
 *
 * The loop (`pump`) is the etcd-raft driver contract on the main thread: inputs (messages, ticks,
 * proposals) are queued and handed to the core only between Readys; each Ready is persisted (hard
 * state, then entries, fdatasynced) BEFORE its messages are sent and its committed records applied,
 * then acknowledged with `advance()`.
 *
 * With `quiesce` (sluice serve: gossip is the failure detector) the group goes silent when idle: the
 * core's quiescence, woken by proposals, by any message, by gossip's changes about a member
 * (`wakeFor`), and by a quiesced voter's periodic probe of its leader (`maybeProbeLeader`).
 *
 * Requests on the leader are carried out one at a time: planned against the applied state, proposed,
 * and answered once their record is applied here (with the state machine's verdict), so the next plan
 * sees the previous one's effect and placement stays balanced.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  CONTROLLER_INBOX_MESSAGES_MAX,
  CONTROLLER_QUIESCE_PROBE_MS,
  CONTROLLER_REGISTER_RETRY_MS_MAX,
  CONTROLLER_REGISTER_RETRY_MS_MIN,
  CONTROLLER_REQUEST_TIMEOUT_MS,
  CONTROLLER_REQUESTS_PENDING_MAX,
  CONTROLLER_SNAPSHOT_INTERVAL_ENTRIES,
  CONTROLLER_TICK_MS,
  CONTROLLER_VOTERS_MAX,
} from '../constants.js';
import { SluiceError, isSluiceError, toSluiceError, type ErrorCode, ERROR_CODES } from '../errors.js';
import { CONTROLLER_GROUP_ID, type PeerDirectory, type RaftTransport } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import { controlBatch } from '../partition/control-batch.js';
import { RaftNode, type ConfChange, type Entry, type Message, type Ready, type Snapshot, type SoftState } from '../raft/index.js';
import type { LogOpenOptions } from '../storage/index.js';
import { TopicTable, CLUSTER_DIR, TOPICS_FILE } from '../broker/topic-table.js';
import type { ControllerRequest, ImportTopicsRecord, MetadataRecord, SubmitRequest, SubmitResponse } from '../rpc/gen/sluice/cluster/v1/controller.js';
import { MetadataLog, controllerLogStateOnDisk, type ControllerLogState } from './metadata-log.js';
import { MetadataStm } from './metadata-stm.js';
import { planRecords } from './plan-request.js';
import { decodeRecordBatch, encodeRecordBatch } from './record-codec.js';
import { decodeSnapshot, encodeSnapshot } from './snapshot.js';
import type { ApplyOutcome, MetadataEvent, NodeLifecycle, TopicState } from './types.js';

/** Carries a request to the controller on node `leader` (the gRPC wire is `sluice.cluster.v1.Controller/Submit`). */
export interface ControllerForwarder {
  /** Rejects (retriably) when the node cannot be reached. */
  submit(leader: NodeId, req: SubmitRequest): Promise<SubmitResponse>;
}

export interface ControllerOptions {
  readonly nodeId: NodeId;
  readonly dataDir: string;
  /** The controller group's voters: 1, 3 or 5 node ids (`--controller-voters`, or the first ids). */
  readonly voters: readonly NodeId[];
  /** What this node registers: its uuid (from its data dir), address, rack and shard count. */
  readonly self: { readonly uuid: string; readonly address: string; readonly rack: string; readonly shards: number };
  readonly transport: RaftTransport;
  readonly forwarder: ControllerForwarder;
  /** Liveness from gossip; without it every registered node counts as live. */
  readonly peers?: PeerDirectory;
  /**
   * The group quiesces when idle (default false; docs/controller.md "Timing and quiescence"). Needs
   * `peers`: its changes (a member turning suspect, dead, alive again) wake the group, or a quiesced
   * follower of a dead leader would never campaign.
   */
  readonly quiesce?: boolean;
  /** With `quiesce`: how often a quiesced voter that follows probes its leader (default CONTROLLER_QUIESCE_PROBE_MS). */
  readonly quiesceProbeMs?: number;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  /** Randomness for election timeouts (default Math.random). */
  readonly random?: () => number;
  readonly requestTimeoutMs?: number;
  readonly nowMs?: () => number;
  readonly newTopicId?: () => string;
  /** Import `<dataDir>/__cluster/topics.json` into the metadata on first start (default true). */
  readonly importTopicTable?: boolean;
  /**
   * This node's controller log is new and the group already exists: a node that was wiped, or a founding
   * voter's data dir lost. It then starts empty, registers through forwarding, and the leader makes it
   * a fresh learner (a founding voter is promoted back once caught up). Implied for nodes that are not
   * voters. Never set it on the first start of a new cluster's voters: they found the group.
   */
  readonly join?: boolean;
  /**
   * For a voter of a group of 3 or 5 whose controller log is empty (a first start, or a wiped disk) and
   * `join` is not set: decides whether it founds the group or joins it as a learner. Until it resolves
   * the node takes no Raft message (it can neither vote nor campaign). 'found' only when a majority
   * of the voters are known to hold no metadata records (`emptyLogDecision`); 'join' when any voter
   * holds some. Without it such a voter founds, as on a first start.
   */
  readonly decideEmptyLog?: (signal: AbortSignal) => Promise<'found' | 'join'>;
  /** Applied entries between two snapshots (default CONTROLLER_SNAPSHOT_INTERVAL_ENTRIES). */
  readonly snapshotIntervalEntries?: number;
  readonly logOpenOptions?: LogOpenOptions;
}

interface PendingProposal {
  readonly term: number;
  readonly kind: 'data' | 'conf';
  readonly resolve: (outcome: ApplyOutcome) => void;
  readonly reject: (err: SluiceError) => void;
}

interface AppliedWaiter {
  readonly index: number;
  readonly resolve: () => void;
}

type Input =
  | { readonly kind: 'found' }
  | { readonly kind: 'msg'; readonly msg: Message }
  | { readonly kind: 'tick' }
  | { readonly kind: 'wake'; readonly node: NodeId; readonly down: boolean }
  | { readonly kind: 'propose'; readonly record: MetadataRecord; readonly pending: PendingProposal }
  | { readonly kind: 'conf'; readonly change: ConfChange; readonly pending: PendingProposal };

/** What an empty-log voter that joins logs, and /readyz says until it is a voter again. */
export const EMPTY_LOG_JOIN_MESSAGE =
  'controller log empty and the cluster already has metadata: joining the controller group as a learner; it becomes a voter again once caught up';

/**
 * The rule for a voter whose controller log is empty (docs/controller.md "Bootstrap"): `states` holds
 * what the other voters answered (their `ControllerLogState`; absent: no answer). Any voter with
 * records: the group exists, join it. A majority of the voters (this one counted, its log being empty)
 * known to hold none: nothing was ever committed (a commit needs a majority), so founding cannot lose
 * a record nor vote twice in a term. Otherwise: not known yet (null), ask again.
 */
export function emptyLogDecision(self: NodeId, voters: readonly NodeId[], states: ReadonlyMap<NodeId, ControllerLogState>): 'found' | 'join' | null {
  let without = voters.includes(self) ? 1 : 0;
  for (const v of voters) {
    if (v === self) continue;
    const s = states.get(v);
    if (s === 'records') return 'join';
    if (s !== undefined) without++;
  }
  return without >= Math.floor(voters.length / 2) + 1 ? 'found' : null;
}

/** Checks the voter list: 1, 3 or 5 distinct positive ids. */
export function validateControllerVoters(voters: readonly number[]): void {
  const ok = voters.every((v) => Number.isSafeInteger(v) && v > 0) && new Set(voters).size === voters.length;
  if (!ok || voters.length === 0 || voters.length > CONTROLLER_VOTERS_MAX || voters.length % 2 === 0) {
    throw new SluiceError('INVALID_CONFIG', `controller voters must be 1, 3 or 5 distinct positive node ids, got [${voters.join(',')}]`);
  }
}

/** The default voters: the first 1, 3 or 5 of the known node ids (all of them up to 5, rounded down to odd). */
export function defaultControllerVoters(nodeIds: readonly number[]): NodeId[] {
  const ids = [...new Set(nodeIds)].sort((a, b) => a - b);
  const n = Math.min(CONTROLLER_VOTERS_MAX, ids.length % 2 === 0 ? ids.length - 1 : ids.length);
  return ids.slice(0, Math.max(1, n)) as NodeId[];
}

function errorCodeOf(s: string): ErrorCode {
  return (ERROR_CODES as readonly string[]).includes(s) ? (s as ErrorCode) : 'INTERNAL';
}

export class Controller {
  readonly nodeId: NodeId;
  /** Replaced once, when an undecided voter founds the group (`found`); before that it has no configuration. */
  private raft: RaftNode;
  private stm: MetadataStm;
  private readonly opts: ControllerOptions;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private inbox: Input[] = [];
  private inboxMessages = 0;
  private pumping: Promise<void> | null = null;
  private readonly pending = new Map<number, PendingProposal>();
  private waiters: AppliedWaiter[] = [];
  private applied: number;
  /** The last index of the Ready in which this node became leader (its no-op): plans wait to apply it. */
  private leaderStart = 0;
  private leaderChain: Promise<unknown> = Promise.resolve();
  private requestsQueued = 0;
  private readonly eventListeners = new Set<(e: MetadataEvent, index: number) => void>();
  private readonly leaderListeners = new Set<(leader: NodeId) => void>();
  private leaderWaiters: Array<() => void> = [];
  private readonly timer: NodeJS.Timeout;
  private unregister: () => void = () => {};
  private unsubscribePeers: () => void = () => {};
  /** Ticks a quiesced follower has been quiet since its last probe (`quiesceProbeMs`). */
  private quietTicks = 0;
  private readonly quietProbeTicks: number;
  /** A joining node takes no Raft messages until the leader has made it a fresh learner. */
  private raftAttached = false;
  /** Where to forward when no leader is known: the last hint, else the voters in turn. */
  private hint: NodeId = 0 as NodeId;
  private probe = 0;
  private closed = false;
  private failed: SluiceError | null = null;
  private readonly importRecord: ImportTopicsRecord | null;
  /**
   * An empty log's progress: 'deciding' (a voter asking the others, `decideEmptyLog`), 'joining' (taking
   * no Raft message until the leader has applied its join and made it a learner), or null (founded,
   * restarted over its own log, or admitted).
   */
  private emptyLog: 'deciding' | 'joining' | null = null;
  /** This start began as a voter with an empty log and joins (rather than founds) the group. */
  private emptyLogRejoin = false;
  /** Aborts `decideEmptyLog` on close. */
  private readonly decided = new AbortController();
  /** Resolves once an undecided voter has decided (at once for every other node). */
  private decisionMade: () => void = () => {};
  private readonly decision: Promise<void> = new Promise((resolve) => (this.decisionMade = resolve));
  /** Resolves once this node's registration is applied (never rejects; see `registrationError`). */
  readonly registered: Promise<void>;
  registrationError: SluiceError | null = null;

  private constructor(
    opts: ControllerOptions,
    private readonly log: MetadataLog,
    importRecord: ImportTopicsRecord | null,
    join: boolean,
    deciding: boolean,
  ) {
    this.opts = opts;
    this.nodeId = opts.nodeId;
    this.timeoutMs = opts.requestTimeoutMs ?? CONTROLLER_REQUEST_TIMEOUT_MS;
    this.now = opts.nowMs ?? Date.now;
    this.importRecord = importRecord;
    const snap = log.snapshot();
    this.stm = snap.data.length > 0 ? decodeSnapshot(snap.data) : new MetadataStm();
    this.applied = snap.index;
    this.raft = this.newRaft();
    // Until a joining node has received its first snapshot (index 0: an empty log, no configuration) it
    // must hear nothing from the group: the leader may still remember an older log of this node id.
    if (deciding) this.emptyLog = 'deciding';
    else if (join && log.snapshotIndex === 0) this.emptyLog = 'joining';
    else this.attachRaft();
    this.emptyLogRejoin = this.emptyLog === 'joining' && opts.voters.includes(opts.nodeId);
    const tickMs = opts.tickMs ?? CONTROLLER_TICK_MS;
    this.quietProbeTicks = Math.max(1, Math.ceil((opts.quiesceProbeMs ?? CONTROLLER_QUIESCE_PROBE_MS) / tickMs));
    // Gossip informs: a member's node turning suspect, dead or alive again wakes a quiesced group.
    if (opts.quiesce === true) this.unsubscribePeers = opts.peers!.onChange((n) => this.push({ kind: 'wake', node: n.id, down: n.state !== 'alive' }));
    this.timer = setInterval(() => this.push({ kind: 'tick' }), tickMs);
    // A one-voter group need not wait an election timeout to lead.
    if (opts.voters.length === 1 && opts.voters[0] === opts.nodeId) this.raft.campaign();
    this.kick();
    if (deciding) void this.decide();
    else this.decisionMade();
    this.registered = this.registerLoop();
  }

  private newRaft(): RaftNode {
    const o = this.opts;
    // Pre-vote and check-quorum are on (the core's defaults), as for partitions.
    return new RaftNode(
      { id: o.nodeId, electionTicks: o.electionTicks, heartbeatTicks: o.heartbeatTicks, random: o.random ?? Math.random, controlData: controlBatch, quiesce: o.quiesce === true },
      this.log,
    );
  }

  /**
   * Why this node is not (yet) a full member of the controller group, or null: still deciding between
   * founding and joining, or rejoining as a learner until it is a voter again (a founding voter) or
   * admitted (any other node).
   */
  get rejoinStatus(): string | null {
    if (this.emptyLog === 'deciding') return `controller log empty: asking the other controller voters (${this.opts.voters.filter((v) => v !== this.nodeId).join(', ')}) whether the cluster already has metadata`;
    if (this.emptyLogRejoin && !this.membership.voters.includes(this.nodeId)) {
      return EMPTY_LOG_JOIN_MESSAGE;
    }
    return null;
  }

  /** This start began as a voter with an empty log and joined the group (it was, or still is, a learner). */
  get joinedWithEmptyLog(): boolean {
    return this.emptyLogRejoin;
  }

  /** The decision of an undecided voter (`decideEmptyLog`), once. */
  private async decide(): Promise<void> {
    let choice: 'found' | 'join';
    try {
      choice = await this.opts.decideEmptyLog!(this.decided.signal);
    } catch {
      return; // closed while deciding
    }
    if (this.closed || this.failed) return;
    if (choice === 'join') {
      this.emptyLog = 'joining';
      this.emptyLogRejoin = true;
      this.decisionMade();
    } else {
      // `found` resolves the decision once the core is rebuilt, so registration sees it attached.
      this.push({ kind: 'found' });
    }
  }

  /** Between Readys (in the pump): the empty log becomes a founding voter's, with a core built over it. */
  private found(): void {
    if (this.emptyLog !== 'deciding') return;
    this.log.refound(this.opts.voters);
    this.raft = this.newRaft();
    this.emptyLog = null;
    this.attachRaft();
    this.decisionMade();
  }

  private attachRaft(): void {
    if (this.raftAttached || this.closed) return;
    this.raftAttached = true;
    if (this.emptyLog === 'joining') this.emptyLog = null;
    this.unregister = this.opts.transport.register(CONTROLLER_GROUP_ID, (msg) => this.onMessage(msg));
  }

  /** Opens the controller log in `<dataDir>/__cluster/metadata` and starts the group. */
  static async open(opts: ControllerOptions): Promise<Controller> {
    validateControllerVoters(opts.voters);
    if (!(opts.nodeId > 0)) throw new SluiceError('INVALID_CONFIG', `node id must be a positive integer, got ${opts.nodeId}`);
    // A node outside the voters replicates the metadata as a learner: it always joins.
    const join = opts.join === true || !opts.voters.includes(opts.nodeId);
    if (join && opts.voters.length === 1 && opts.voters[0] === opts.nodeId) {
      throw new SluiceError('INVALID_CONFIG', `node ${opts.nodeId} is the only controller voter: there is no group to join`);
    }
    if (opts.quiesce === true && opts.peers === undefined) {
      throw new SluiceError('INVALID_CONFIG', 'the controller group quiesces only with a failure detector (peers) to wake it');
    }
    const importRecord = opts.importTopicTable === false ? null : readTopicTableImport(opts.dataDir, opts.nodeId, opts.self.shards);
    // A voter of a larger group with an empty log must not found the group on its own word: it opens
    // the log empty (as a joining node does) and decides once it has heard from the others.
    const deciding = !join && opts.decideEmptyLog !== undefined && opts.voters.length > 1 && controllerLogStateOnDisk(opts.dataDir) === 'empty';
    const log = await MetadataLog.open(opts.dataDir, opts.voters, join || deciding, opts.logOpenOptions);
    return new Controller(opts, log, importRecord, join, deciding);
  }

  // --- Reads ---------------------------------------------------------------------------------------

  /** The locally applied metadata (may lag the leader by the records not yet applied here). */
  get state(): MetadataStm {
    return this.stm;
  }

  get leaderId(): NodeId {
    return this.raft.getLeader() as NodeId;
  }

  get isLeader(): boolean {
    return this.raft.getRole() === 'leader';
  }

  get term(): number {
    return this.raft.getTerm();
  }

  /** The controller group's voters and learners as this node knows them. */
  get membership(): { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] } {
    return this.raft.status().conf;
  }

  /**
   * The last index of this node's metadata log. Read right after `open`, it tells records this node
   * held before a restart (re-applied as the log replays) from new ones.
   */
  get lastLogIndex(): number {
    return this.raft.log.lastIndex();
  }

  /** What this node's controller log holds (answered to a voter deciding whether to found or join). */
  get logState(): ControllerLogState {
    return this.log.state;
  }

  /** The last log index applied to `state`. */
  get appliedIndex(): number {
    return this.applied;
  }

  /** Whether the group is quiesced here (no heartbeats, no election clock; docs/controller.md). */
  get quiesced(): boolean {
    return this.raft.isQuiesced();
  }

  /** Why the controller stopped (a storage failure, a record it cannot read), or null. */
  get failure(): SluiceError | null {
    return this.failed;
  }

  /** Every applied change, with the index of its record. Returns an unsubscribe function. */
  onEvent(listener: (e: MetadataEvent, index: number) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Called with the new leader (0 = none known) whenever it changes. */
  onLeaderChange(listener: (leader: NodeId) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  // --- Admin requests (any node) -------------------------------------------------------------------

  // The admin requests take the deadline of the client call they serve (wall-clock ms; see `submit`).

  async createTopic(name: string, partitions: number, replicationFactor: number, configs: Record<string, string> = {}, deadlineMs?: number): Promise<TopicState> {
    await this.submit({ request: { $case: 'createTopic', value: { name, partitions, replicationFactor, configs } } }, deadlineMs);
    return this.topicOrThrow(name);
  }

  async deleteTopic(name: string, deadlineMs?: number): Promise<void> {
    await this.submit({ request: { $case: 'deleteTopic', value: { name, topicId: '' } } }, deadlineMs);
  }

  async alterConfigs(name: string, set: Record<string, string>, del: readonly string[] = [], deadlineMs?: number): Promise<TopicState> {
    await this.submit({ request: { $case: 'alterConfigs', value: { name, topicId: '', set, delete: [...del] } } }, deadlineMs);
    return this.topicOrThrow(name);
  }

  async addPartitions(name: string, total: number, deadlineMs?: number): Promise<TopicState> {
    await this.submit({ request: { $case: 'addPartitions', value: { name, partitions: total } } }, deadlineMs);
    return this.topicOrThrow(name);
  }

  /** Starts moving a partition to `replicas` (first = preferred leader); the steps follow as records. */
  async movePartition(name: string, partition: number, replicas: readonly number[], deadlineMs?: number): Promise<void> {
    await this.submit({ request: { $case: 'movePartition', value: { name, partition, replicas: [...replicas] } } }, deadlineMs);
  }

  async decommission(nodeId: number, deadlineMs?: number): Promise<void> {
    await this.submit({ request: { $case: 'decommission', value: { nodeId, continueOnly: false } } }, deadlineMs);
  }

  /**
   * Makes a decommissioning or decommissioned node active again (an active one: its record applies as
   * a no-op); once this resolves the node is active as of the controller's record. Resolves with its
   * state before, as the log had it: the event of our record, at the index `submit` returns, says what
   * it changed (this node's own view before the request may lag the leader's).
   */
  async recommission(nodeId: number, deadlineMs?: number): Promise<NodeLifecycle> {
    let changedAt = -1;
    let before: NodeLifecycle = 'active';
    const off = this.onEvent((e, index) => {
      if (e.type === 'nodeStateChanged' && e.node.id === nodeId && e.node.state === 'active') {
        changedAt = index;
        before = e.before;
      }
    });
    const local = this.stm.node(nodeId as NodeId)?.state ?? 'active';
    try {
      const index = await this.submit({ request: { $case: 'recommission', value: { nodeId } } }, deadlineMs);
      // A node still joining the controller group applies nothing yet: its own view is all it has.
      if (!this.raftAttached) return local;
      // Our record applied with no event: the node was active already.
      return changedAt === index ? before : 'active';
    } finally {
      off();
    }
  }

  /** Starts moves that even out replica counts over the live nodes; resolves with how many. */
  async rebalance(deadlineMs?: number): Promise<number> {
    const before = this.stm.partitions().filter((p) => p.target !== null).length;
    await this.submit({ request: { $case: 'rebalance', value: {} } }, deadlineMs);
    return Math.max(0, this.stm.partitions().filter((p) => p.target !== null).length - before);
  }

  async reportLeader(group: number, leader: number, epoch: number): Promise<void> {
    await this.submit({ request: { $case: 'leaderReport', value: { groupId: group, leader, epoch } } });
  }

  /**
   * Carries out `req` on the controller leader (here, or forwarded) and resolves with the index of its
   * last record once this node has applied it, so the caller reads its own write from `state`.
   */
  async submit(req: ControllerRequest, callDeadlineMs?: number): Promise<number> {
    // The deadline of the client call this serves, when it has one (wall-clock ms; Infinity or NaN:
    // none): past it nothing is sent again, so a request the client gave up on cannot land after the
    // client's next one. Without it a decommission re-sent after the operator's recommission started
    // the drain again (chaos finding E). Unset (the executor, groups, tests), the controller's own
    // request timeout is the only bound. It is passed explicitly, not through AsyncLocalStorage, which
    // on Node 20 would turn on promise hooks for the whole process (every promise, every produce).
    const bounded = callDeadlineMs !== undefined && Number.isFinite(callDeadlineMs);
    const deadline = this.now() + (bounded ? Math.max(0, Math.min(this.timeoutMs, callDeadlineMs - Date.now())) : this.timeoutMs);
    // Hints followed without a pause: two nodes with stale views could otherwise bounce a request.
    let hops = 0;
    for (;;) {
      this.checkRunning();
      if (this.isLeader) return this.onLeader(req, deadline);
      const leader = this.forwardTarget();
      if (leader === 0) {
        await this.leaderChange(deadline);
        continue;
      }
      let resp: SubmitResponse;
      try {
        resp = await withDeadline(this.opts.forwarder.submit(leader, { request: req, fromNode: this.nodeId }), deadline - this.now(), 'forwarding to the controller leader');
      } catch (err) {
        const e = toSluiceError(err);
        if (!e.retriable || this.now() >= deadline) throw e;
        this.hint = 0 as NodeId;
        await this.leaderChange(Math.min(deadline, this.now() + (this.opts.tickMs ?? CONTROLLER_TICK_MS)));
        continue;
      }
      if (resp.errorCode === '') {
        const index = Number(resp.index);
        // A joining node applies nothing until it takes Raft messages (after this very answer).
        if (this.raftAttached) await this.waitApplied(index, deadline);
        return index;
      }
      const e = new SluiceError(errorCodeOf(resp.errorCode), resp.errorMessage);
      if (e.code === 'PROPOSAL_DROPPED' && this.now() < deadline) {
        // Not applied anywhere (its index holds another leader's entry): safe to send again.
        await this.leaderChange(Math.min(deadline, this.now() + (this.opts.tickMs ?? CONTROLLER_TICK_MS)));
        continue;
      }
      if (e.code === 'NOT_LEADER' && this.now() < deadline) {
        this.hint = (resp.leaderHint !== this.nodeId ? resp.leaderHint : 0) as NodeId;
        if (this.hint !== 0 && hops++ < 2) continue;
        await this.leaderChange(Math.min(deadline, this.now() + (this.opts.tickMs ?? CONTROLLER_TICK_MS)));
        continue;
      }
      throw e;
    }
  }

  /**
   * Where to forward: the leader Raft tells us of; else the last hint another node gave; else, for a
   * node that takes no Raft messages yet (joining), the other voters in turn. 0: wait for a leader.
   */
  private forwardTarget(): NodeId {
    if (this.leaderId !== 0) return this.leaderId;
    if (this.hint !== 0) return this.hint;
    if (this.raftAttached) return 0 as NodeId;
    const others = this.opts.voters.filter((v) => v !== this.nodeId);
    return others[this.probe++ % others.length];
  }

  /** The server side of forwarding: what `Controller/Submit` runs on the node it reached. */
  async handleSubmit(req: SubmitRequest): Promise<SubmitResponse> {
    if (req.request === undefined) return { index: 0n, errorCode: 'INVALID_REQUEST', errorMessage: 'SubmitRequest without a request', leaderHint: 0 };
    if (!this.isLeader) {
      return { index: 0n, errorCode: 'NOT_LEADER', errorMessage: `node ${this.nodeId} is not the controller leader (leader: ${this.leaderId || 'unknown'})`, leaderHint: this.leaderId };
    }
    try {
      const index = await this.onLeader(req.request, this.now() + this.timeoutMs);
      return { index: BigInt(index), errorCode: '', errorMessage: '', leaderHint: 0 };
    } catch (err) {
      const e = toSluiceError(err);
      return { index: 0n, errorCode: e.code, errorMessage: e.message, leaderHint: e.code === 'NOT_LEADER' ? this.leaderId : 0 };
    }
  }

  /** Stops the group and closes the log. Pending requests fail with SHUTTING_DOWN. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.unsubscribePeers();
    this.decided.abort();
    this.decisionMade();
    this.unregister();
    while (this.pumping) await this.pumping;
    this.failAll(new SluiceError('SHUTTING_DOWN', `the controller on node ${this.nodeId} is closing`));
    await this.log.close();
  }

  // --- Leader side ---------------------------------------------------------------------------------

  /** Runs after the requests queued before it; plans against the applied state, proposes, waits for apply. */
  private onLeader(req: ControllerRequest, deadline: number): Promise<number> {
    if (this.requestsQueued >= CONTROLLER_REQUESTS_PENDING_MAX) {
      return Promise.reject(new SluiceError('QUEUE_FULL', `${CONTROLLER_REQUESTS_PENDING_MAX} controller requests are queued on node ${this.nodeId}`));
    }
    this.requestsQueued++;
    const run = this.leaderChain.then(() => this.execute(req, deadline));
    this.leaderChain = run.catch(() => {}).finally(() => this.requestsQueued--);
    return run;
  }

  private async execute(req: ControllerRequest, deadline: number): Promise<number> {
    this.checkRunning();
    if (!this.isLeader) throw new SluiceError('NOT_LEADER', `node ${this.nodeId} is no longer the controller leader`);
    // Plan against everything committed before this term: a new leader first applies its predecessors'
    // records, which it knows are committed once its own no-op is.
    await this.waitApplied(Math.max(this.leaderStart, this.raft.getCommit()), deadline);
    const records = planRecords(req, this.stm, { live: (id) => this.isLive(id), nowMs: this.now(), newTopicId: this.opts.newTopicId ?? crypto.randomUUID });
    let index = this.applied;
    for (const record of records) {
      const outcome = await this.propose(record, deadline);
      if (outcome.error) throw outcome.error;
      index = this.applied;
    }
    if (req.request?.$case === 'join') index = await this.admitLearner(req.request.value.node!.nodeId as NodeId, deadline);
    return index;
  }

  /**
   * Makes a joining node a fresh learner of the controller group. A member whose log was lost must be
   * removed first: the group remembers how far its old log reached (its match index), and a replica
   * that lost what it once acknowledged must never be counted again as holding it.
   */
  private async admitLearner(id: NodeId, deadline: number): Promise<number> {
    if (id === this.nodeId) throw new SluiceError('INVALID_REQUEST', `node ${id} leads the controller group; its log is not empty`);
    const conf = this.raft.status().conf;
    if (conf.voters.includes(id) || conf.learners.includes(id)) await this.proposeConf({ type: 'remove', node: id }, deadline);
    return this.proposeConf({ type: 'addLearner', node: id }, deadline);
  }

  /** Proposes one membership change and resolves with its index once applied; retries while another is pending. */
  private async proposeConf(change: ConfChange, deadline: number): Promise<number> {
    for (;;) {
      try {
        await withDeadline(
          new Promise<ApplyOutcome>((resolve, reject) => this.push({ kind: 'conf', change, pending: { term: 0, kind: 'conf', resolve, reject } })),
          deadline - this.now(),
          `waiting for the controller membership change (${change.type} ${change.node}) to commit`,
        );
        return this.applied;
      } catch (err) {
        if (!isSluiceError(err, 'PROPOSAL_DROPPED') || !this.isLeader) throw err;
        await this.waitApplied(this.applied + 1, deadline);
      }
    }
  }

  /** A founding voter that rejoined as a learner votes again once it holds everything committed. */
  private maybePromote(): void {
    if (!this.isLeader || this.raft.confChangePending() || this.applied < this.leaderStart) return;
    const commit = this.raft.getCommit();
    for (const l of this.raft.status().conf.learners) {
      if (!this.opts.voters.includes(l) || this.raft.matchOf(l) < commit) continue;
      try {
        this.raft.proposeConfChange({ type: 'addVoter', node: l });
      } catch {
        // Refused for now (a transfer, an uncommitted term): the next tick tries again.
      }
      return;
    }
  }

  private propose(record: MetadataRecord, deadline: number): Promise<ApplyOutcome> {
    return withDeadline(
      new Promise<ApplyOutcome>((resolve, reject) => this.push({ kind: 'propose', record, pending: { term: 0, kind: 'data', resolve, reject } })),
      deadline - this.now(),
      'waiting for the metadata record to commit',
    );
  }

  /**
   * Whether placement may put a replica on node `id`: gossip holds it alive or only suspects it. A
   * suspicion is not a verdict (SWIM refutes most of them on a loaded machine), and refusing a create
   * with REPLICATION_FACTOR_TOO_LARGE for a node that is up made creates flicker. A replica placed on a
   * node that does turn out dead is like one whose node fails later: it catches up when the node
   * returns, or an operator moves it (`sluice topic move`, `cluster decommission`).
   */
  private isLive(id: NodeId): boolean {
    const peers = this.opts.peers;
    if (peers === undefined) return true;
    if (id === this.nodeId) return true;
    const state = peers.get(id)?.state;
    return state === 'alive' || state === 'suspect';
  }

  // --- The driver loop -----------------------------------------------------------------------------

  private onMessage(msg: Message): void {
    if (this.closed || this.failed) return;
    // A full inbox drops: Raft re-sends what matters (a bounded queue, not memory growth).
    if (this.inboxMessages >= CONTROLLER_INBOX_MESSAGES_MAX) return;
    this.inboxMessages++;
    this.push({ kind: 'msg', msg });
  }

  private push(input: Input): void {
    if (this.closed || this.failed) {
      if (input.kind === 'propose' || input.kind === 'conf') input.pending.reject(this.failed ?? new SluiceError('SHUTTING_DOWN', 'the controller is closing'));
      return;
    }
    this.inbox.push(input);
    this.kick();
  }

  private kick(): void {
    if (this.pumping !== null) return;
    this.pumping = this.pump()
      .catch((err) => this.fail(toSluiceError(err)))
      .finally(() => {
        this.pumping = null;
      });
  }

  private async pump(): Promise<void> {
    for (;;) {
      if (this.failed) return;
      const batch = this.inbox;
      this.inbox = [];
      for (const input of batch) this.handle(input);
      if (!this.raft.hasReady()) {
        if (this.inbox.length === 0) return;
        continue;
      }
      const rd = this.raft.ready();
      await this.handleReady(rd);
      this.raft.advance();
      this.maybeCompact();
    }
  }

  private handle(input: Input): void {
    switch (input.kind) {
      case 'msg':
        this.inboxMessages--;
        this.raft.step(input.msg);
        return;
      case 'found':
        this.found();
        return;
      case 'tick':
        this.raft.tick();
        this.maybeProbeLeader();
        this.maybePromote();
        return;
      case 'wake':
        this.wakeFor(input.node, input.down);
        return;
      case 'propose':
        this.proposeNow(input.record, input.pending);
        return;
      case 'conf':
        this.proposeConfNow(input.change, input.pending);
        return;
    }
  }

  /**
   * Gossip's view of `node` changed: a quiesced group with it as a voter or learner wakes, so a
   * follower of a dead leader campaigns (counting half its lease as spent when that leader's node
   * turned suspect or dead) and a leader heartbeats a member that came back. Everything that must
   * reach the leader wakes the group by itself: proposals and membership changes in the core, and a
   * forwarded request is a proposal on the leader.
   */
  private wakeFor(node: NodeId, down: boolean): void {
    if (!this.raft.isQuiesced()) return;
    const conf = this.raft.log.conf();
    if (!conf.voters.includes(node) && !conf.learners.includes(node)) return;
    this.raft.wake(down && node === this.raft.getLeader());
  }

  /**
   * A quiesced voter that follows wakes every `quiesceProbeMs` (its append answer makes a live leader
   * heartbeat once and quiesce again): gossip cannot see a leader whose controller stopped in a live
   * process, and that leader would otherwise hold the group silent for good.
   */
  private maybeProbeLeader(): void {
    if (!this.raft.isQuiesced() || this.raft.getRole() !== 'follower' || !this.raft.log.conf().voters.includes(this.nodeId)) {
      this.quietTicks = 0;
      return;
    }
    if (++this.quietTicks < this.quietProbeTicks) return;
    this.quietTicks = 0;
    this.raft.wake();
  }

  private proposeConfNow(change: ConfChange, p: PendingProposal): void {
    try {
      const index = this.raft.proposeConfChange(change);
      this.pending.set(index, { ...p, term: this.raft.getTerm() });
    } catch (err) {
      p.reject(toSluiceError(err));
    }
  }

  /** Builds the batch with its final index and term (the core appends it at lastIndex + 1). */
  private proposeNow(record: MetadataRecord, p: PendingProposal): void {
    if (this.raft.getRole() !== 'leader') {
      p.reject(new SluiceError('NOT_LEADER', `node ${this.nodeId} is no longer the controller leader`));
      return;
    }
    const index = this.raft.log.lastIndex() + 1;
    const term = this.raft.getTerm();
    try {
      const got = this.raft.propose(encodeRecordBatch(record, index, term, this.now()));
      if (got !== index) throw new SluiceError('INTERNAL', `proposal landed at ${got}, expected ${index}`);
    } catch (err) {
      p.reject(toSluiceError(err));
      return;
    }
    this.pending.set(index, { ...p, term });
  }

  private async handleReady(rd: Ready): Promise<void> {
    if (rd.snapshot) this.installSnapshot(rd.snapshot);
    if (rd.hardState) this.log.writeHardState(rd.hardState);
    if (rd.entries.length > 0) await this.log.append(rd.entries);
    this.log.settleJoining();
    if (this.closed) return;
    for (const m of rd.messages) this.opts.transport.send(CONTROLLER_GROUP_ID, m);
    for (const e of rd.committedEntries) this.applyEntry(e);
    if (rd.committedTo > this.applied) this.applied = rd.committedTo;
    this.wakeWaiters();
    if (rd.softState) this.onSoftState(rd.softState);
  }

  /**
   * Snapshots the applied state and compacts the log once enough entries were applied since the last
   * snapshot. Between Readys (the core's `compact()` requires it), on every node independently.
   */
  private maybeCompact(): void {
    const every = this.opts.snapshotIntervalEntries ?? CONTROLLER_SNAPSHOT_INTERVAL_ENTRIES;
    if (this.applied - this.log.snapshotIndex < every || this.applied > this.raft.status().applied) return;
    const snap = this.raft.compact(this.applied, encodeSnapshot(this.stm));
    this.log.compact(snap);
  }

  /** A snapshot from the leader replaces the log and the state (the founding one is the empty state). */
  private installSnapshot(snap: Snapshot): void {
    this.log.installSnapshot(snap);
    this.stm = snap.data.length > 0 ? decodeSnapshot(snap.data) : new MetadataStm();
    this.applied = snap.index;
  }

  private applyEntry(e: Entry): void {
    let outcome: ApplyOutcome = { events: [], error: null };
    if (e.kind === 'data') {
      const record = decodeRecordBatch(e.data, e.index);
      outcome = this.stm.apply(e.index, record);
      for (const ev of outcome.events) for (const l of this.eventListeners) l(ev, e.index);
    }
    this.applied = e.index + e.count - 1;
    const p = this.pending.get(e.index);
    if (p === undefined) return;
    this.pending.delete(e.index);
    // Our proposal's index now holds another leader's entry: it was lost, never applied.
    if (p.term !== e.term || (e.kind === 'data') !== (p.kind === 'data')) p.reject(new SluiceError('PROPOSAL_DROPPED', `the controller record at index ${e.index} was replaced by a later leader's`));
    else p.resolve(outcome);
  }

  private onSoftState(s: SoftState): void {
    if (s.role === 'leader') this.leaderStart = this.raft.log.lastIndex();
    for (const l of this.leaderListeners) l(s.leader);
    const waiters = this.leaderWaiters;
    this.leaderWaiters = [];
    for (const w of waiters) w();
  }

  private wakeWaiters(): void {
    if (this.waiters.length === 0) return;
    const still: AppliedWaiter[] = [];
    for (const w of this.waiters) {
      if (w.index <= this.applied) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private waitApplied(index: number, deadline: number): Promise<void> {
    if (index <= this.applied) return Promise.resolve();
    return withDeadline(new Promise<void>((resolve) => this.waiters.push({ index, resolve })), deadline - this.now(), `waiting to apply metadata index ${index}`);
  }

  /** Resolves at the next leader change, or at `until`, whichever comes first; rejects past the request deadline. */
  private leaderChange(until: number): Promise<void> {
    this.checkRunning();
    const ms = until - this.now();
    if (ms <= 0) return Promise.reject(new SluiceError('TIMEOUT', `no controller leader within ${this.timeoutMs} ms`));
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done(): void {
        clearTimeout(t);
        self.leaderWaiters = self.leaderWaiters.filter((w) => w !== done);
        resolve();
      }
      this.leaderWaiters.push(done);
    });
  }

  private checkRunning(): void {
    if (this.failed) throw this.failed;
    if (this.closed) throw new SluiceError('SHUTTING_DOWN', `the controller on node ${this.nodeId} is closed`);
  }

  private fail(err: SluiceError): void {
    if (this.failed) return;
    this.failed = err;
    clearInterval(this.timer);
    this.decisionMade();
    this.failAll(err);
  }

  private failAll(err: SluiceError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const input of this.inbox) if (input.kind === 'propose' || input.kind === 'conf') input.pending.reject(err);
    this.inbox = [];
    const w = this.leaderWaiters;
    this.leaderWaiters = [];
    for (const f of w) f();
  }

  private topicOrThrow(name: string): TopicState {
    const t = this.stm.topic(name);
    if (t === undefined) throw new SluiceError('UNKNOWN_TOPIC', `topic '${name}' is not in the applied metadata`);
    return t;
  }

  /**
   * Registers this node (id, uuid, address, rack, shards), retrying with backoff until it is applied,
   * then imports an old topics.json once.
   */
  private async registerLoop(): Promise<void> {
    const self = this.opts.self;
    let backoff = CONTROLLER_REGISTER_RETRY_MS_MIN;
    await this.decision;
    const node = { nodeId: this.nodeId, uuid: self.uuid, address: self.address, rack: self.rack, shards: self.shards };
    // A joining node with an empty log registers and is admitted as a learner in one request, and only
    // then takes Raft messages.
    const steps: ControllerRequest[] = [this.raftAttached ? { request: { $case: 'registerNode', value: node } } : { request: { $case: 'join', value: { node } } }];
    if (this.importRecord !== null) steps.push({ request: { $case: 'importTopics', value: this.importRecord } });
    for (const req of steps) {
      for (;;) {
        if (this.closed || this.failed) return;
        if (req.request?.$case === 'importTopics' && this.stm.imported) break;
        try {
          await this.submit(req);
          if (req.request?.$case === 'join') this.attachRaft();
          break;
        } catch (err) {
          const e = toSluiceError(err);
          if (!e.retriable && !isSluiceError(e, 'TIMEOUT')) {
            this.registrationError = e;
            return;
          }
        }
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, CONTROLLER_REGISTER_RETRY_MS_MAX);
      }
    }
  }
}

/** Rejects with TIMEOUT after `ms`; never leaves a timer behind. */
function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (ms <= 0) {
    // Whatever `p` does later must not become an unhandled rejection.
    p.catch(() => {});
    return Promise.reject(new SluiceError('TIMEOUT', `timed out ${what}`));
  }
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new SluiceError('TIMEOUT', `timed out ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/**
 * A single-node data dir from before the controller: its topics.json becomes an import record (the
 * node is the only replica of every partition, on the shard the table placed it on).
 */
export function readTopicTableImport(dataDir: string, nodeId: NodeId, shards: number): ImportTopicsRecord | null {
  if (!fs.existsSync(path.join(dataDir, CLUSTER_DIR, TOPICS_FILE))) return null;
  const table = TopicTable.load(dataDir);
  return {
    clusterId: table.clusterId,
    topics: table.all().map((t) => ({
      name: t.name,
      topicId: t.topicId,
      replicationFactor: 1,
      configs: { ...t.configs },
      // Shards beyond today's shard count fold back onto it.
      partitions: t.placement.map((s) => ({ replicas: [nodeId], shards: [s < shards ? s : s % shards] })),
      createdMs: BigInt(Math.trunc(t.createdMs)),
    })),
  };
}
