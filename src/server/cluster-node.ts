/**
 * The controller in `sluice serve` (issue 11): opens this node's `Controller` (group 0 over the Raft
 * transport, forwarding over `sluice.cluster.v1.Controller/Submit`), and keeps the Broker's replicas in
 * step with the metadata: `replicasOf` at start, `replicaOps` for every applied event, and the leaders
 * the Broker sees reported back to the controller. Readiness: a controller leader is known and this
 * node (with this data dir's uuid) is registered.
 *
 * Replica operations run one at a time, in the order of the events, so a close never overtakes the open
 * it undoes. Records this node's log held before a restart are re-applied as the log replays; the
 * replicas they name exist already (or were never created), so their opens are never `fresh` (a fresh
 * open would start that replica empty). Replica-set changes (`replicasChanged`) met in that replay are
 * not carried out one by one: once the replay is applied, the replicas held here are synced with the
 * final metadata, so a replica removed and re-added in the replayed records is not deleted and reopened.
 *
 * Replica-set changes (docs/cluster.md "Moves"): the metadata says what a partition's voters and
 * learners should be, the partition's Raft configuration is the truth for who votes, and the node that
 * LEADS the partition reconciles them, one single-server change at a time (`nextConfChange`), on every
 * `reconfigure`, on gaining leadership, and every CLUSTER_CONF_RECONCILE_INTERVAL_MS while they differ.
 * A replica added here opens as a learner with an empty log and the configuration it was given, so it
 * never votes or leads before its promotion. A replica removed from here is closed (and its data
 * deleted) only once the metadata moved past the removal: the controller takes the next step only after
 * the leader's Raft configuration shows the removal committed.
 *
 * Until this node's registration with its data dir's uuid is applied, no replica operation runs: the
 * records before it describe an earlier incarnation of the node id (a wiped disk), whose replicas are
 * lost, and opening them from an empty disk could make this node vote as a replica it no longer is.
 */
import { CLUSTER_CONF_RECONCILE_INTERVAL_MS, CLUSTER_RECONCILE_INTERVAL_MS, CLUSTER_REPLICAS_RPC_TIMEOUT_MS, CONTROLLER_QUIESCE, CONTROLLER_REQUEST_TIMEOUT_MS } from '../constants.js';
import { SluiceError, isSluiceError, toSluiceError } from '../errors.js';
import type { GroupId, PeerDirectory, RaftTransport } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { BrokerLogger } from '../broker/index.js';
import {
  Controller,
  ControllerExecutor,
  nextConfChange,
  replicaOps,
  replicasOf,
  validateControllerVoters,
  type LeaderMembership,
  type MetadataEvent,
  type PartitionState,
  type ReplicaOp,
  type ReplicaProgress,
} from '../controller/index.js';
import { GrpcReplicasClient } from '../rpc/replicas-service.js';
import { GrpcControllerForwarder } from '../rpc/controller-service.js';
import type { ReplicaHost, ReplicaMembership, ReplicaSpec, ReplicaStatus } from './replica-host.js';
import { StartupError } from './errors.js';
import { emptyLogDecider } from './controller-join.js';

export interface ClusterNodeOptions {
  readonly nodeId: NodeId;
  readonly dataDir: string;
  readonly voters: readonly NodeId[];
  readonly peers: PeerDirectory;
  readonly transport: RaftTransport;
  readonly host: ReplicaHost;
  readonly shards: number;
  readonly logger?: BrokerLogger;
  /** Test hook: controller timing. */
  readonly controllerTiming?: { tickMs?: number; electionTicks?: number; heartbeatTicks?: number };
  /** Leader balancing by the controller leader's executor (default on). */
  readonly balanceLeaders?: boolean;
}

/**
 * The executor's view of partition replicas across the cluster: this node's through its ReplicaHost,
 * other nodes' over `sluice.cluster.v1.Replicas`.
 */
class ClusterReplicaProgress implements ReplicaProgress {
  constructor(
    private readonly me: NodeId,
    private readonly host: ReplicaHost,
    private readonly client: GrpcReplicasClient,
  ) {}

  private ask(node: NodeId, groups: readonly GroupId[]): Promise<ReplicaMembership[]> {
    if (node === this.me) return this.host.replicaMembership?.(groups) ?? Promise.resolve([]);
    return this.client.membership(node, groups);
  }

  async membership(hint: NodeId, groups: readonly GroupId[]): Promise<ReadonlyMap<GroupId, LeaderMembership>> {
    const out = new Map<GroupId, LeaderMembership>();
    const follow = new Map<NodeId, GroupId[]>();
    for (const m of await this.ask(hint, groups)) {
      if (m.role === 'leader') out.set(m.group, m);
      else if (m.leader !== 0 && m.leader !== hint) {
        let list = follow.get(m.leader);
        if (list === undefined) follow.set(m.leader, (list = []));
        list.push(m.group);
      }
    }
    // Once, to the leader a follower named (the metadata's leader was stale).
    await Promise.all(
      [...follow].map(async ([node, gs]) => {
        for (const m of await this.ask(node, gs).catch(() => [])) if (m.role === 'leader') out.set(m.group, m);
      }),
    );
    return out;
  }

  async transferLeadership(group: GroupId, leader: NodeId, to: NodeId): Promise<void> {
    if (leader === this.me) {
      if (this.host.transferLeadership === undefined) throw new SluiceError('UNAVAILABLE', 'this node cannot transfer leadership');
      return this.host.transferLeadership(group, to);
    }
    return this.client.transferLeadership(leader, group, to);
  }
}

export class ClusterNode {
  private chain: Promise<void> = Promise.resolve();
  /** Opens that failed (a full disk, a shard restarting): retried by the reconcile timer, by group. */
  private readonly failedOpens = new Map<GroupId, ReplicaSpec>();
  private readonly reporting = new Set<GroupId>();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: Array<() => void> = [];
  private closed = false;
  /** Groups whose Raft membership the leader here must check against the metadata. */
  private readonly confDirty = new Set<GroupId>();
  private confRunning = false;
  private confTimer: NodeJS.Timeout | null = null;
  /** Replicas removed from this node in the metadata, closed once the metadata moves past the removal. */
  private readonly pendingClose = new Map<GroupId, PartitionState>();
  /** This node's registration with its current uuid is applied: replica operations may run. */
  private registeredHere: boolean;
  /** The records this node's log held at open are still being re-applied. */
  private replaying: boolean;

  private readonly replicasClient: GrpcReplicasClient;
  /** Moves, decommissions, lost-replica rebuilds and leader balancing; acts only on the controller leader. */
  readonly executor: ControllerExecutor;
  /**
   * Set once this start's registration is applied here. The leader appended it after this node
   * started, so every record committed before the restart (every topic that existed) is applied too:
   * a read barrier, after which an unknown topic is really unknown.
   */
  private caughtUp = false;
  /** The end of an empty-log rejoin was logged. */
  private rejoinLogged = false;

  private constructor(
    readonly controller: Controller,
    private readonly forwarder: GrpcControllerForwarder,
    private readonly o: ClusterNodeOptions,
    /** The last index of the metadata log at open: events up to it are replays. */
    private readonly replayedTo: number,
  ) {
    this.replicasClient = new GrpcReplicasClient((id) => o.peers.get(id)?.address ?? controller.state.node(id)?.address, CLUSTER_REPLICAS_RPC_TIMEOUT_MS);
    this.executor = new ControllerExecutor(controller, new ClusterReplicaProgress(o.nodeId, o.host, this.replicasClient), {
      balanceLeaders: o.balanceLeaders,
      // A stopping node (gossip's `leaving`) is handed no leaderships back.
      live: (id) => id === o.nodeId || (o.peers.get(id)?.state === 'alive' && o.peers.get(id)?.leaving !== true),
    });
    this.registeredHere = controller.state.node(o.nodeId)?.uuid === o.peers.self.uuid;
    this.replaying = controller.appliedIndex < replayedTo;
    this.unsubscribe.push(controller.onEvent((e, index) => this.onEvent(e, index)));
    this.unsubscribe.push(
      o.host.onLeaderChange((s) => {
        this.maybeReport(s);
        if (s.role === 'leader' && s.leader === o.nodeId) this.markConfDirty(s.group);
      }),
    );
    // Gossip informs: a member turning suspect, dead or alive again wakes the quiesced replicas of its
    // groups here, so a follower of a dead leader campaigns (docs/raft.md "Quiescence").
    this.unsubscribe.push(o.peers.onChange((n) => o.host.peersChanged?.([n.id], n.state !== 'alive')));
    // Whatever was applied before the subscription above (the snapshot, and records applied as the
    // controller opened) is opened here; opens are idempotent per group.
    if (this.registeredHere) this.enqueue(replicasOf(controller.state, o.nodeId).map((op) => (op.op === 'open' ? { ...op, fresh: false } : op)));
    this.timer = setInterval(() => this.reconcile(), CLUSTER_RECONCILE_INTERVAL_MS);
    this.timer.unref();
    void controller.registered.then(() => {
      this.caughtUp = controller.registrationError === null;
    });
  }

  static async start(o: ClusterNodeOptions): Promise<ClusterNode> {
    try {
      validateControllerVoters(o.voters);
    } catch (err) {
      throw new StartupError(`${(err as Error).message} (--controller-voters, SLUICE_CONTROLLER_VOTERS)`);
    }
    let controller: Controller | null = null;
    const forwarder = new GrpcControllerForwarder((id) => o.peers.get(id)?.address ?? controller?.state.node(id)?.address, CONTROLLER_REQUEST_TIMEOUT_MS);
    const self = o.peers.self;
    try {
      controller = await Controller.open({
        nodeId: o.nodeId,
        dataDir: o.dataDir,
        voters: o.voters,
        self: { uuid: self.uuid, address: self.address, rack: self.rack, shards: o.shards },
        transport: o.transport,
        forwarder,
        peers: o.peers,
        // Gossip is the failure detector that wakes the quiesced group (docs/controller.md "Timing and quiescence").
        quiesce: CONTROLLER_QUIESCE,
        // The Broker in cluster mode never reads topics.json; an old single-node one is imported once.
        importTopicTable: true,
        // A voter with an empty log (a first start, or a wiped disk) founds or joins by what the others hold.
        decideEmptyLog: emptyLogDecider({ nodeId: o.nodeId, voters: o.voters, peers: o.peers, ask: (v, ms) => forwarder.logState(v, o.nodeId, ms), logger: o.logger }),
        ...o.controllerTiming,
      });
    } catch (err) {
      forwarder.close();
      if (isSluiceError(err)) throw new StartupError(`cannot start the controller: ${err.message}`, { cause: err });
      throw err;
    }
    o.logger?.info({ nodeId: o.nodeId, voters: o.voters }, 'controller started');
    return new ClusterNode(controller, forwarder, o, controller.lastLogIndex);
  }

  /** Why this node is not ready as a cluster member, or null. */
  notReady(): string | null {
    const c = this.controller;
    if (c.failure !== null) return `the controller stopped: ${c.failure.message}`;
    if (c.registrationError !== null) return `the controller refused to register node ${this.o.nodeId}: ${c.registrationError.message}`;
    // Until an empty-log voter has decided, and (when it joined) until it is a voter again.
    const rejoin = c.rejoinStatus;
    if (rejoin !== null) return rejoin;
    if (c.leaderId === 0) return `the controller group has no leader yet (voters ${this.o.voters.join(',')}: a majority of them must be up and reachable)`;
    const me = c.state.node(this.o.nodeId);
    if (me === undefined || me.uuid !== this.o.peers.self.uuid) return `node ${this.o.nodeId} is not registered with the controller yet (controller leader: node ${c.leaderId})`;
    return null;
  }

  /**
   * Why this node cannot yet tell that a topic does not exist (it has not caught up with the
   * controller's metadata since it started), or null once it can. See `caughtUp`.
   */
  metadataNotReady(): string | null {
    if (this.caughtUp) return null;
    const c = this.controller;
    const leader = c.leaderId === 0 ? 'no controller leader is known yet' : `controller leader: node ${c.leaderId}`;
    return `node ${this.o.nodeId} has not caught up with the cluster metadata since it started (applied up to index ${c.appliedIndex}; ${leader}); retry shortly`;
  }

  /** The partition of `group` in the applied metadata, or undefined. */
  partitionOfGroup(group: GroupId): PartitionState | undefined {
    // By the group index, not a scan of every partition: this runs on every leader change reported here.
    return this.controller.state.partitionByGroup(group);
  }

  private onEvent(e: MetadataEvent, index: number): void {
    if (!this.registeredHere) {
      // Records of an earlier incarnation of this id (or of the time before this node joined).
      this.maybeRegistered();
      return;
    }
    if (e.type === 'partitionsAdded') {
      const count = e.topic.partitions.length;
      this.chain = this.chain.then(() => this.o.host.setPartitionCount(e.topic.name, count));
    }
    this.flushPendingClose(e);
    const replay = index <= this.replayedTo;
    let ops = replicaOps(this.o.nodeId, e);
    if (replay) ops = e.type === 'replicasChanged' ? [] : ops.map((op) => (op.op === 'open' ? { ...op, fresh: false } : op));
    if (e.type === 'replicasChanged') {
      this.markConfDirty(e.partition.group);
      ops = ops.filter((op) => {
        if (op.op !== 'close') return true;
        this.pendingClose.set(op.partition.group, op.partition);
        return false;
      });
    }
    this.enqueue(ops);
    if (this.replaying && index >= this.replayedTo) this.endReplay();
  }

  /**
   * Once the applied metadata names this node with its own uuid (its registration applied, or a
   * snapshot that holds it installed), its replicas follow the metadata from there on.
   */
  private maybeRegistered(): void {
    if (this.registeredHere || this.controller.state.node(this.o.nodeId)?.uuid !== this.o.peers.self.uuid) return;
    this.registeredHere = true;
    this.enqueue(replicasOf(this.controller.state, this.o.nodeId).map((op) => (op.op === 'open' ? { ...op, fresh: false } : op)));
  }

  /** A later change of a partition whose replica was removed here: the removal is committed, close it. */
  private flushPendingClose(e: MetadataEvent): void {
    if (this.pendingClose.size === 0) return;
    const groups: GroupId[] = [];
    const touched = e.type === 'replicasChanged' || e.type === 'leaderChanged' ? [e.partition] : e.type === 'topicDeleted' ? e.topic.partitions : [];
    for (const p of touched) {
      const was = this.pendingClose.get(p.group);
      if (was === undefined || (e.type === 'leaderChanged' && p.target !== null)) continue;
      this.pendingClose.delete(p.group);
      groups.push(p.group);
    }
    if (groups.length > 0) this.chain = this.chain.then(() => this.o.host.closeReplicas(groups, true)).catch((err: unknown) => this.o.logger?.error({ err }, 'closing removed replicas failed'));
  }

  /**
   * The replay of this node's own log is applied: the replicas held here follow the final metadata (the
   * replica-set changes met during the replay were not carried out one by one).
   */
  private endReplay(): void {
    this.replaying = false;
    if (!this.registeredHere) return;
    const state = this.controller.state;
    const desired = replicasOf(state, this.o.nodeId).map((op) => (op.op === 'open' ? { ...op, fresh: false } : op));
    const want = new Set(desired.flatMap((op) => (op.op === 'open' ? [op.partition.group] : [])));
    this.chain = this.chain
      .then(async () => {
        const drop: GroupId[] = [];
        for (const s of this.o.host.replicaStatus()) {
          if (want.has(s.group)) continue;
          const p = state.partitionByGroup(s.group);
          if (p !== undefined && p.target !== null && !p.lost.includes(this.o.nodeId)) this.pendingClose.set(s.group, p);
          else drop.push(s.group);
        }
        if (drop.length > 0) await this.o.host.closeReplicas(drop, true);
      })
      .catch((err: unknown) => this.o.logger?.error({ err }, 'closing replicas after the replay failed'));
    this.enqueue(desired);
  }

  // --- Raft membership: the partition leader reconciles it with the metadata ----------------------

  private markConfDirty(group: GroupId): void {
    this.confDirty.add(group);
    this.scheduleConf(0);
  }

  private scheduleConf(ms: number): void {
    if (this.confTimer !== null || this.closed) return;
    this.confTimer = setTimeout(() => {
      this.confTimer = null;
      void this.reconcileConf();
    }, ms);
    this.confTimer.unref();
  }

  /** For each dirty group led here: propose the next membership change, or forget it when none is due. */
  private async reconcileConf(): Promise<void> {
    if (this.confRunning || this.closed) return;
    const host = this.o.host;
    if (host.replicaMembership === undefined || host.proposeConfChange === undefined) {
      this.confDirty.clear();
      return;
    }
    this.confRunning = true;
    try {
      const groups = [...this.confDirty];
      const seen = new Set<GroupId>();
      for (const m of await host.replicaMembership(groups)) {
        seen.add(m.group);
        const p = this.controller.state.partitionByGroup(m.group);
        if (m.role !== 'leader' || p === undefined) {
          this.confDirty.delete(m.group);
          continue;
        }
        if (m.confPending) continue;
        const change = nextConfChange(p, m, this.o.nodeId);
        if (change === null) {
          this.confDirty.delete(m.group);
          continue;
        }
        try {
          await host.proposeConfChange(m.group, change);
          this.o.logger?.info({ topic: p.topic, partition: p.partition, group: p.group, change }, 'partition membership change proposed');
        } catch (err) {
          const e = toSluiceError(err);
          if (e.code === 'NOT_LEADER' || e.code === 'UNKNOWN_PARTITION') this.confDirty.delete(m.group);
          (this.o.logger as { debug?: (o: object, m: string) => void } | undefined)?.debug?.({ group: m.group, code: e.code }, `membership change not proposed (retried): ${e.message}`);
        }
      }
      for (const g of groups) if (!seen.has(g)) this.confDirty.delete(g);
    } catch (err) {
      if (!this.closed) this.o.logger?.warn({ err }, 'reading partition membership failed (retried)');
    } finally {
      this.confRunning = false;
      if (this.confDirty.size > 0) this.scheduleConf(CLUSTER_CONF_RECONCILE_INTERVAL_MS);
    }
  }

  private spec(op: ReplicaOp & { op: 'open' }): ReplicaSpec {
    const p = op.partition;
    const topic = this.controller.state.topic(p.topic);
    return {
      topic: p.topic,
      topicId: p.topicId,
      partition: p.partition,
      partitionCount: topic?.partitions.length ?? p.partition + 1,
      group: p.group,
      shard: op.shard,
      voters: p.voters.nodes,
      learners: p.learners.nodes,
      configs: topic?.configs ?? {},
      fresh: op.fresh,
    };
  }

  /** Runs `ops` after everything queued before them, batching runs of opens and of closes. */
  private enqueue(ops: readonly ReplicaOp[]): void {
    if (ops.length === 0) return;
    this.chain = this.chain.then(() => this.apply(ops)).catch((err: unknown) => this.o.logger?.error({ err }, 'replica operation failed'));
  }

  private async apply(ops: readonly ReplicaOp[]): Promise<void> {
    const host = this.o.host;
    for (let i = 0; i < ops.length && !this.closed; ) {
      const op = ops[i];
      if (op.op === 'open') {
        const specs: ReplicaSpec[] = [];
        for (; i < ops.length && ops[i].op === 'open'; i++) specs.push(this.spec(ops[i] as ReplicaOp & { op: 'open' }));
        await this.open(specs);
      } else if (op.op === 'close') {
        const groups: GroupId[] = [];
        for (; i < ops.length && ops[i].op === 'close'; i++) groups.push((ops[i] as ReplicaOp & { op: 'close' }).partition.group);
        for (const g of groups) this.failedOpens.delete(g);
        await host.closeReplicas(groups, true);
      } else if (op.op === 'configs') {
        i++;
        await host.setReplicaConfigs(op.topic.name, op.topic.configs);
      } else if (op.op === 'lost') {
        // This node came back without the replica's data: whatever is open under its group goes; the
        // controller removes the replica and adds it back as a fresh learner.
        i++;
        this.failedOpens.delete(op.partition.group);
        await host.closeReplicas([op.partition.group], true);
      } else {
        // 'reconfigure': the leader here (if it is) brings the Raft membership to the metadata's.
        i++;
        this.markConfDirty(op.partition.group);
      }
    }
  }

  private async open(specs: ReplicaSpec[]): Promise<void> {
    try {
      await this.o.host.openReplicas(specs);
      for (const s of specs) this.failedOpens.delete(s.group);
    } catch (err) {
      // openReplicas opened none of the failed ones: retry them (one by one) on the next reconcile.
      for (const s of specs) this.failedOpens.set(s.group, s);
      this.o.logger?.error({ err, groups: specs.map((s) => s.group) }, 'opening replicas failed; retrying');
    }
  }

  /** Reports this node's leadership of `s` when the metadata does not name it yet. */
  private maybeReport(s: ReplicaStatus, byGroup?: ReadonlyMap<GroupId, PartitionState>): void {
    if (this.closed || s.role !== 'leader' || s.leader !== this.o.nodeId || this.reporting.has(s.group)) return;
    const p = byGroup !== undefined ? byGroup.get(s.group) : this.partitionOfGroup(s.group);
    if (p === undefined || (p.leader === this.o.nodeId && p.leaderEpoch >= s.epoch)) return;
    this.reporting.add(s.group);
    this.controller.reportLeader(s.group, this.o.nodeId, s.epoch).then(
      () => this.reporting.delete(s.group),
      (err: unknown) => {
        this.reporting.delete(s.group);
        const e = toSluiceError(err);
        if (!this.closed) (this.o.logger as { debug?: (o: object, m: string) => void } | undefined)?.debug?.({ group: s.group, code: e.code }, `leader report failed (retried): ${e.message}`);
      },
    );
  }

  /** Logs once when an empty-log voter that joined as a learner is a controller voter again. */
  private noteRejoin(): void {
    const c = this.controller;
    if (this.rejoinLogged || !c.joinedWithEmptyLog || c.rejoinStatus !== null) return;
    this.rejoinLogged = true;
    this.o.logger?.info({ nodeId: this.o.nodeId, membership: c.membership }, 'controller empty-log rejoin done: this node is a voter of the controller group again');
  }

  /** Retries failed opens and leader reports that did not land (the controller had no leader). */
  private reconcile(): void {
    if (this.closed) return;
    if (this.failedOpens.size > 0) {
      const specs = [...this.failedOpens.values()];
      this.chain = this.chain.then(async () => {
        for (const s of specs) if (this.failedOpens.get(s.group) === s) await this.open([s]);
      });
    }
    this.maybeRegistered();
    if (this.replaying && this.controller.appliedIndex >= this.replayedTo) this.endReplay();
    this.noteRejoin();
    // Refused steps are normal (the state moved); persistent ones show here, for an operator.
    this.forgetDepartedNodes();
    const errs = this.executor.lastErrors;
    if (errs.length > 0) (this.o.logger as { debug?: (o: object, m: string) => void } | undefined)?.debug?.({ errors: errs.slice(0, 5).map((e) => e.message) }, 'controller executor pass had refusals');
    const leading = this.o.host.replicaStatus().filter((s) => s.role === 'leader');
    if (leading.length === 0) return;
    // One pass over the metadata, not one per replica: a node may lead thousands of partitions.
    const byGroup = new Map(this.controller.state.partitions().map((p) => [p.group, p]));
    for (const s of leading) {
      this.maybeReport(s, byGroup);
      // A move in progress: its membership is checked until the leader's matches (a lost wake-up).
      if (byGroup.get(s.group)?.target != null) this.markConfDirty(s.group);
    }
  }

  /**
   * Gossip informs, the controller decides: a member gossip holds as dead that the metadata says is
   * decommissioned left the cluster for good (a StatefulSet scaled down), so it leaves the member table
   * (`sluice cluster info`, the member gauges, reconnect attempts). It comes back if it ever speaks again.
   */
  private forgetDepartedNodes(): void {
    const peers = this.o.peers;
    if (peers.forget === undefined) return;
    for (const m of peers.members()) {
      if (m.state === 'dead' && this.controller.state.node(m.id)?.state === 'decommissioned') peers.forget(m.id);
    }
  }

    async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    if (this.confTimer !== null) clearTimeout(this.confTimer);
    this.executor.close();
    for (const u of this.unsubscribe) u();
    await this.chain.catch(() => {});
    await this.controller.close();
    this.forwarder.close();
    this.replicasClient.close();
  }
}
