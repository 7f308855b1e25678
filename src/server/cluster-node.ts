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
 * open would start that replica empty).
 */
import { CLUSTER_RECONCILE_INTERVAL_MS, CONTROLLER_REQUEST_TIMEOUT_MS } from '../constants.js';
import { isSluiceError, toSluiceError } from '../errors.js';
import type { GroupId, PeerDirectory, RaftTransport } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { BrokerLogger } from '../broker/index.js';
import { Controller, replicaOps, replicasOf, validateControllerVoters, type MetadataEvent, type PartitionState, type ReplicaOp } from '../controller/index.js';
import { GrpcControllerForwarder } from '../rpc/controller-service.js';
import type { ReplicaHost, ReplicaSpec, ReplicaStatus } from './replica-host.js';
import { StartupError } from './errors.js';

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
}

export class ClusterNode {
  private chain: Promise<void> = Promise.resolve();
  /** Opens that failed (a full disk, a shard restarting): retried by the reconcile timer, by group. */
  private readonly failedOpens = new Map<GroupId, ReplicaSpec>();
  private readonly reporting = new Set<GroupId>();
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: Array<() => void> = [];
  private closed = false;
  /**
   * Set once this start's registration is applied here. The leader appended it after this node
   * started, so every record committed before the restart (every topic that existed) is applied too:
   * a read barrier, after which an unknown topic is really unknown.
   */
  private caughtUp = false;

  private constructor(
    readonly controller: Controller,
    private readonly forwarder: GrpcControllerForwarder,
    private readonly o: ClusterNodeOptions,
    /** The last index of the metadata log at open: events up to it are replays. */
    private readonly replayedTo: number,
  ) {
    this.unsubscribe.push(controller.onEvent((e, index) => this.onEvent(e, index)));
    this.unsubscribe.push(o.host.onLeaderChange((s) => this.maybeReport(s)));
    // Whatever was applied before the subscription above (the snapshot, and records applied as the
    // controller opened) is opened here; opens are idempotent per group.
    this.enqueue(replicasOf(controller.state, o.nodeId).map((op) => (op.op === 'open' ? { ...op, fresh: false } : op)));
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
        // The Broker in cluster mode never reads topics.json; an old single-node one is imported once.
        importTopicTable: true,
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
    for (const p of this.controller.state.partitions()) if (p.group === group) return p;
    return undefined;
  }

  private onEvent(e: MetadataEvent, index: number): void {
    if (e.type === 'partitionsAdded') {
      const count = e.topic.partitions.length;
      this.chain = this.chain.then(() => this.o.host.setPartitionCount(e.topic.name, count));
    }
    const ops = replicaOps(this.o.nodeId, e);
    this.enqueue(index <= this.replayedTo ? ops.map((op) => (op.op === 'open' ? { ...op, fresh: false } : op)) : ops);
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
      } else {
        // 'reconfigure' (a move step) and 'lost' (a wiped node's old replica) need moves, which `sluice
        // serve` does not run yet (docs/cluster.md "Not yet").
        i++;
        this.o.logger?.warn({ op: op.op, topic: op.partition.topic, partition: op.partition.partition }, 'replica operation not supported yet; ignored');
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

  /** Retries failed opens and leader reports that did not land (the controller had no leader). */
  private reconcile(): void {
    if (this.closed) return;
    if (this.failedOpens.size > 0) {
      const specs = [...this.failedOpens.values()];
      this.chain = this.chain.then(async () => {
        for (const s of specs) if (this.failedOpens.get(s.group) === s) await this.open([s]);
      });
    }
    const leading = this.o.host.replicaStatus().filter((s) => s.role === 'leader');
    if (leading.length === 0) return;
    // One pass over the metadata, not one per replica: a node may lead thousands of partitions.
    const byGroup = new Map(this.controller.state.partitions().map((p) => [p.group, p]));
    for (const s of leading) this.maybeReport(s, byGroup);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const u of this.unsubscribe) u();
    await this.chain.catch(() => {});
    await this.controller.close();
    this.forwarder.close();
  }
}
