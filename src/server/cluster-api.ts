/**
 * The BrokerApi of a node in cluster mode (issue 11): what src/rpc serves when `sluice serve` runs in a
 * cluster. It sits over the Broker (which hosts this node's replicas) and the controller:
 *
 * - Admin (create/delete topic, configs, partitions) goes to the controller, which forwards it to its
 *   leader; list/describe/metadata answer from the controller's applied state plus the replicas' status
 *   (leader, epoch, replicas, in-sync replicas) and gossip (nodes, alive).
 * - Produce and ListOffsets go to the partition's leader: here when this node leads it, else forwarded
 *   once over gRPC (src/rpc/forward.ts). Fetch is served by any replica here (a follower serves up to
 *   its high watermark, which is committed data) and forwarded only when this node holds none.
 *   Subscribe is a loop of such fetches, so it too works on any node.
 * - A request another node forwarded here uses the `local` view: answered by this node's replicas or
 *   refused with NOT_LEADER, whose ErrorInfo names the leader's id, address and epoch.
 *
 * Consumer groups (src/groups) use `internalView()`: the routed API for user topics, this node's own
 * replicas for `__consumer_offsets` (a coordinator writes and replays only the offsets partitions it
 * leads, never through another node), `createInternalTopic` through the controller, and
 * `coordinatorPlacement()` (OffsetsPlacement below: which offsets partitions this node leads with
 * its term's entries committed, and who leads the others). The controller leader creates the offsets
 * topic once the cluster has formed (OFFSETS_TOPIC_CHECK_MS; idempotent); a group RPC before that
 * creates it too.
 */
import { CLUSTER_PRODUCER_ID_NODE_SHIFT_BITS, CLUSTER_ROUTE_STATUS_CACHE_MS, CLUSTER_TOPIC_LEADERS_WAIT_MS } from '../constants.js';
import { SluiceError, isSluiceError } from '../errors.js';
import type { GroupId, PeerDirectory } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type {
  BrokerApi,
  BrokerInfo,
  ClusterMetadata,
  FetchInput,
  FetchResult,
  ListOffsetsResult,
  OffsetSpec,
  PartitionInfo,
  ProduceInput,
  ProduceResult,
  ProducerIdentity,
  ReassignmentsView,
  RecommissionView,
  TopicDescription,
  TopicSummary,
} from '../broker/types.js';
import type { FetchChain } from '../broker/index.js';
import { StickyPartitioner, firstKeyOfRecords, firstRecordKey } from '../broker/partitioner.js';
import { logConfigFor, refuseInternalTopic, validateTopicName, validateUserTopicName } from '../broker/validate.js';
import { logConfigToTopicConfigs } from '../storage/index.js';
import type { Controller, PartitionState, TopicState } from '../controller/index.js';
import * as moves from './cluster-moves.js';
import type { PeerBrokers } from '../rpc/forward.js';
import { OFFSETS_PARTITIONS, OFFSETS_REPLICATION_FACTOR_MAX, OFFSETS_TOPIC, OFFSETS_TOPIC_CHECK_MS, OFFSETS_TOPIC_CONFIGS } from '../groups/index.js';
import type { CoordinatorAddress, CoordinatorPlacement, PlacementSource } from '../groups/index.js';
import type { ReplicaHost, ReplicaStatus } from './replica-host.js';

export interface ClusterApiDeps {
  readonly nodeId: NodeId;
  readonly core: BrokerApi & ReplicaHost;
  readonly controller: Controller;
  readonly peers: PeerDirectory;
  /** The cluster id gossip learned (or founded). */
  readonly clusterId: () => string;
  readonly clients: PeerBrokers;
  /** This node's HTTP address, for GetMetadata's own entry. */
  readonly httpAddress: string;
  /**
   * Why this node cannot yet tell that a topic does not exist (not caught up with the controller's
   * metadata since it started), or null. Until null, an unknown topic or partition is
   * METADATA_NOT_READY (retriable), never UNKNOWN_TOPIC: a client that took UNKNOWN_TOPIC as final
   * would give up on (or, worse, re-use the sequences of) a write the cluster may hold.
   */
  readonly metadataNotReady?: () => string | null;
}

interface Route {
  readonly partition: PartitionState;
  /** This node's replica, when it holds one. */
  readonly local: ReplicaStatus | undefined;
  readonly leader: NodeId;
  readonly epoch: number;
}

/** The routed API (for clients) and the local one (for requests forwarded here). */
export function clusterApis(deps: ClusterApiDeps): { routed: BrokerApi; local: BrokerApi } {
  const status = new StatusCache(deps.core);
  const routed = new ClusterApi(deps, status, true);
  routed.startOffsetsTopicCheck();
  return { routed, local: new ClusterApi(deps, status, false) };
}

/** The Broker's replica status by group, rebuilt at most every CLUSTER_ROUTE_STATUS_CACHE_MS or on a leader change. */
class StatusCache {
  private byGroup: Map<GroupId, ReplicaStatus> | null = null;
  private builtMs = 0;

  constructor(private readonly host: ReplicaHost) {
    host.onLeaderChange(() => {
      this.byGroup = null;
    });
  }

  get(group: GroupId): ReplicaStatus | undefined {
    const now = Date.now();
    if (this.byGroup === null || now - this.builtMs > CLUSTER_ROUTE_STATUS_CACHE_MS) {
      this.byGroup = new Map(this.host.replicaStatus().map((s) => [s.group, s]));
      this.builtMs = now;
    }
    return this.byGroup.get(group);
  }
}

class ClusterApi implements BrokerApi {
  private readonly partitioner = new StickyPartitioner();
  private internal: (BrokerApi & PlacementSource & { createInternalTopic: ClusterApi['createInternalTopic'] }) | null = null;
  private placement: OffsetsPlacement | null = null;
  private offsetsTopicTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly d: ClusterApiDeps,
    private readonly status: StatusCache,
    /** False for requests forwarded here: answer locally or refuse, never forward again. */
    private readonly routing: boolean,
  ) {}

  // --- Routing -------------------------------------------------------------------------------------

  private topicState(name: string): TopicState {
    validateTopicName(name);
    const t = this.d.controller.state.topic(name);
    if (t === undefined) {
      this.checkMetadataReady();
      throw new SluiceError('UNKNOWN_TOPIC', `topic '${name}' does not exist`);
    }
    return t;
  }

  private checkMetadataReady(): void {
    const why = this.d.metadataNotReady?.() ?? null;
    if (why !== null) throw new SluiceError('METADATA_NOT_READY', why);
  }

  private route(topic: string, partition: number): Route {
    const t = this.topicState(topic);
    const p = t.partitions[partition];
    if (p === undefined) this.checkMetadataReady();
    if (p === undefined) throw new SluiceError('UNKNOWN_PARTITION', `partition ${partition} of topic '${topic}' does not exist (it has ${t.partitions.length})`);
    const local = this.status.get(p.group);
    // The replica's own view is fresher than the metadata once it has seen this epoch.
    if (local !== undefined && local.leader !== 0 && local.epoch >= p.leaderEpoch) return { partition: p, local, leader: local.leader, epoch: local.epoch };
    return { partition: p, local, leader: p.leader, epoch: p.leaderEpoch };
  }

  private addressOf(node: NodeId): string | undefined {
    return this.d.peers.get(node)?.address ?? this.d.controller.state.node(node)?.address;
  }

  private notLeader(r: Route): SluiceError {
    const p = r.partition;
    const name = `${p.topic}/${p.partition}`;
    const address = r.leader === 0 ? '' : (this.addressOf(r.leader) ?? '');
    const info = { leader_id: String(r.leader), leader_address: address, leader_epoch: String(r.epoch) };
    if (r.leader === 0 || r.leader === this.d.nodeId) {
      return new SluiceError('NOT_LEADER', `node ${this.d.nodeId} cannot serve ${name}: no leader is known yet (an election is under way); retry shortly`, { info: { ...info, leader_id: '0', leader_address: '' } });
    }
    return new SluiceError('NOT_LEADER', `node ${this.d.nodeId} does not lead ${name}: its leader is node ${r.leader} at ${address || '(address unknown)'}, epoch ${r.epoch}`, { info });
  }

  /** Runs `work` on the leader's node: forwarded when routing, else refused with NOT_LEADER. */
  private toLeader<T>(r: Route, work: (address: string) => Promise<T>): Promise<T> {
    if (!this.routing || r.leader === 0 || r.leader === this.d.nodeId) return Promise.reject(this.notLeader(r));
    const address = this.addressOf(r.leader);
    const alive = this.d.peers.get(r.leader)?.state !== 'dead';
    if (address === undefined || !alive) return Promise.reject(this.notLeader(r));
    return work(address);
  }

  /**
   * Runs `local` on this node's replica; a NOT_LEADER from it is forwarded (routing) or named, and so is
   * any error `alsoForward` accepts (a follower's fetch of a range it does not hold).
   */
  private async here<T>(topic: string, partition: number, local: () => Promise<T>, remote: (address: string) => Promise<T>, alsoForward?: (err: unknown) => boolean): Promise<T> {
    try {
      return await local();
    } catch (err) {
      if (!isSluiceError(err, 'NOT_LEADER') && !(this.routing && alsoForward?.(err) === true)) throw err;
    }
    return this.toLeader(this.route(topic, partition), remote);
  }

  private leadsHere(r: Route): boolean {
    return r.local !== undefined && (r.local.role === 'leader' || r.leader === this.d.nodeId);
  }

  async produce(input: ProduceInput): Promise<ProduceResult> {
    const partition = input.partition ?? this.pick(input);
    const r = this.route(input.topic, partition);
    const routed = input.partition === partition ? input : { ...input, partition };
    const remote = (address: string): Promise<ProduceResult> => this.d.clients.produce(address, routed);
    if (this.leadsHere(r) || (!this.routing && r.local !== undefined)) return this.here(input.topic, partition, () => this.d.core.produce(routed), remote);
    return this.toLeader(r, remote);
  }

  /** A partition for a produce without one, from the controller's partition count (as the single node picks). */
  private pick(input: ProduceInput): number {
    const count = this.topicState(input.topic).partitions.length;
    const key = input.batches !== undefined ? firstRecordKey(input.batches) : firstKeyOfRecords(input.records ?? []);
    return this.partitioner.pick(input.topic, count, key);
  }

  async fetch(input: FetchInput, signal?: AbortSignal, chain?: FetchChain): Promise<FetchResult> {
    const r = this.route(input.topic, input.partition);
    const remote = (address: string): Promise<FetchResult> => this.d.clients.fetch(address, input, signal);
    // A follower's log may start later than the leader's (it was sent a snapshot): what it does not hold,
    // the leader answers.
    const outOfRange = (err: unknown): boolean => isSluiceError(err, 'OFFSET_OUT_OF_RANGE') && r.leader !== this.d.nodeId;
    if (r.local !== undefined && r.local.role !== 'offline') return this.here(input.topic, input.partition, () => this.d.core.fetch(input, signal, chain), remote, outOfRange);
    return this.toLeader(r, remote);
  }

  async listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<ListOffsetsResult> {
    const r = this.route(topic, partition);
    const remote = (address: string): Promise<ListOffsetsResult> => this.d.clients.listOffsets(address, topic, partition, spec);
    if (this.leadsHere(r) || (!this.routing && r.local !== undefined)) return this.here(topic, partition, () => this.d.core.listOffsets(topic, partition, spec), remote);
    return this.toLeader(r, remote);
  }

  // --- Admin through the controller ----------------------------------------------------------------

  async createTopic(name: string, partitions: number, replicationFactor: number, configs: Record<string, string>, deadlineMs?: number): Promise<TopicDescription> {
    validateUserTopicName(name);
    await this.d.controller.createTopic(name, partitions, replicationFactor === 0 ? 1 : replicationFactor, configs, deadlineMs);
    await this.leadersOf(name);
    return this.describeTopic(name);
  }

  async deleteTopic(name: string, deadlineMs?: number): Promise<void> {
    validateTopicName(name);
    refuseInternalTopic(name, 'delete');
    await this.d.controller.deleteTopic(name, deadlineMs);
  }

  async alterTopicConfig(name: string, set: Record<string, string>, remove: string[], deadlineMs?: number): Promise<Record<string, string>> {
    validateTopicName(name);
    refuseInternalTopic(name, 'change the configs of');
    const t = await this.d.controller.alterConfigs(name, set, remove, deadlineMs);
    return effectiveConfigs(t);
  }

  async createPartitions(name: string, totalPartitions: number, deadlineMs?: number): Promise<TopicDescription> {
    validateTopicName(name);
    refuseInternalTopic(name, 'add partitions to');
    await this.d.controller.addPartitions(name, totalPartitions, deadlineMs);
    await this.leadersOf(name);
    return this.describeTopic(name);
  }

  // Replica moves (src/server/cluster-moves.ts).
  movePartition(topic: string, partition: number, replicas: number[], deadlineMs?: number): Promise<void> {
    return moves.movePartition(this.d.controller, topic, partition, replicas, deadlineMs);
  }

  decommissionNode(nodeId: number, deadlineMs?: number): Promise<void> {
    return moves.decommissionNode(this.d.controller, nodeId, deadlineMs);
  }

  recommissionNode(nodeId: number, deadlineMs?: number): Promise<RecommissionView> {
    return moves.recommissionNode(this.d.controller, nodeId, deadlineMs);
  }

  rebalance(deadlineMs?: number): Promise<number> {
    return moves.rebalance(this.d.controller, deadlineMs);
  }

  async reassignments(): Promise<ReassignmentsView> {
    return moves.reassignments(this.d.controller);
  }

  /**
   * Waits (bounded) until every partition of `name` has a leader in the metadata, so a client's first
   * produce after CreateTopic finds one. Past the bound the answer goes out anyway (leader 0).
   */
  private leadersOf(name: string): Promise<void> {
    const done = (): boolean => {
      const t = this.d.controller.state.topic(name);
      return t === undefined || t.partitions.every((p) => p.leader !== 0);
    };
    if (done()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        off();
        resolve();
      };
      const timer = setTimeout(finish, CLUSTER_TOPIC_LEADERS_WAIT_MS);
      const off = this.d.controller.onEvent(() => {
        if (done()) finish();
      });
    });
  }

  async listTopics(): Promise<TopicSummary[]> {
    return this.d.controller.state.topics().map((t) => ({ name: t.name, partitionCount: t.partitions.length, replicationFactor: t.replicationFactor }));
  }

  /**
   * Leader, epoch and replicas from the metadata and the replicas here; offsets and in-sync replicas
   * from each partition's leader (asked once per leader node; a node that does not answer leaves its
   * partitions with what this node knows).
   */
  async describeTopic(name: string): Promise<TopicDescription> {
    const t = this.topicState(name);
    const exact = await this.d.core.describeTopic(name).catch(() => null);
    const described = this.describeLocal(t, exact);
    if (!this.routing) return described;
    const byLeader = new Map<NodeId, number[]>();
    for (const p of described.partitions) {
      if (p.leader === 0 || p.leader === this.d.nodeId) continue;
      byLeader.set(p.leader as NodeId, [...(byLeader.get(p.leader as NodeId) ?? []), p.partition]);
    }
    await Promise.all(
      [...byLeader].map(async ([leader, parts]) => {
        const address = this.addressOf(leader);
        if (address === undefined) return;
        const theirs = await this.d.clients.describeTopic(address, name).catch(() => null);
        if (theirs === null) return;
        for (const i of parts) {
          const q = theirs.partitions.find((x) => x.partition === i);
          if (q !== undefined && q.leader === leader) described.partitions[i] = q;
        }
      }),
    );
    return described;
  }

  private describeLocal(t: TopicState, exact: TopicDescription | null): TopicDescription {
    const partitions = t.partitions.map((p): PartitionInfo => {
      const r = this.route(t.name, p.partition);
      const own = exact?.partitions.find((x) => x.partition === p.partition);
      return {
        partition: p.partition,
        logStartOffset: own?.logStartOffset ?? r.local?.logStartOffset ?? 0,
        highWatermark: own?.highWatermark ?? r.local?.highWatermark ?? 0,
        leader: r.leader,
        leaderEpoch: r.epoch,
        replicas: [...p.voters.nodes],
        inSyncReplicas: r.local?.role === 'leader' ? [...r.local.inSync] : [],
        sizeBytes: own?.sizeBytes ?? 0,
        damagedRanges: own?.damagedRanges ?? 0,
      };
    });
    return { name: t.name, partitions, replicationFactor: t.replicationFactor, configs: effectiveConfigs(t) };
  }

  async metadata(topics?: string[]): Promise<ClusterMetadata> {
    const state = this.d.controller.state;
    const names = topics !== undefined && topics.length > 0 ? topics : state.topics().map((t) => t.name);
    const group = this.d.controller.membership;
    const role = (id: number): 'voter' | 'learner' | '' => (group.voters.includes(id as NodeId) ? 'voter' : group.learners.includes(id as NodeId) ? 'learner' : '');
    const brokers: BrokerInfo[] = this.d.peers.members().map((n) => ({
      nodeId: n.id,
      grpcAddress: n.address,
      httpAddress: n.id === this.d.nodeId ? this.d.httpAddress : '',
      rack: n.rack,
      alive: n.state !== 'dead',
      state: n.state,
      nodeUuid: n.uuid,
      controllerRole: role(n.id),
    }));
    return {
      clusterId: this.d.clusterId(),
      controllerId: this.d.controller.leaderId,
      brokers: brokers.sort((a, b) => a.nodeId - b.nodeId),
      topics: names.map((n) => this.describeLocal(this.topicState(n), null)),
    };
  }

  // --- The rest ------------------------------------------------------------------------------------

  /**
   * Producer ids from this node's allocator, with the node id in the high bits so that ids handed out
   * by different nodes never collide. A producer name fences its older epochs on the node that
   * answered (the controller does not hand out id blocks yet).
   */
  async initProducer(name?: string): Promise<ProducerIdentity> {
    const own = await this.d.core.initProducer(name);
    const shift = BigInt(CLUSTER_PRODUCER_ID_NODE_SHIFT_BITS);
    if (own.producerId >= 1n << shift) throw new SluiceError('INTERNAL', `producer id ${own.producerId} of node ${this.d.nodeId} does not fit in ${CLUSTER_PRODUCER_ID_NODE_SHIFT_BITS} bits`);
    return { producerId: (BigInt(this.d.nodeId) << shift) | own.producerId, producerEpoch: own.producerEpoch };
  }

  // --- Consumer groups ------------------------------------------------------------------------------

  /**
   * The view the group coordinator uses: routed like this API for user topics; internal (`__`) topics'
   * data calls go to this node's own replicas only (a coordinator writes and replays only offsets
   * partitions it leads: a NOT_LEADER there means it lost them, and forwarding would hide that).
   */
  internalView(): BrokerApi {
    if (this.internal !== null) return this.internal;
    const core = this.d.core.internalView?.() ?? this.d.core;
    const internalTopic = (topic: string): boolean => typeof topic === 'string' && topic.startsWith('__');
    this.internal = {
      createTopic: (n, p, rf, c) => this.createTopic(n, p, rf, c),
      createInternalTopic: (n, p, c) => this.createInternalTopic(n, p, c),
      deleteTopic: (n) => this.deleteTopic(n),
      listTopics: () => this.listTopics(),
      describeTopic: (n) => this.describeTopic(n),
      alterTopicConfig: (n, set, remove) => this.alterTopicConfig(n, set, remove),
      createPartitions: (n, total) => this.createPartitions(n, total),
      produce: (input) => (internalTopic(input.topic) ? core.produce(input) : this.produce(input)),
      fetch: (input, signal, chain) => (internalTopic(input.topic) ? core.fetch(input, signal, chain) : this.fetch(input, signal, chain)),
      listOffsets: (t, p, spec) => (internalTopic(t) ? core.listOffsets(t, p, spec) : this.listOffsets(t, p, spec)),
      metadata: (topics) => this.metadata(topics),
      initProducer: (name) => this.initProducer(name),
      close: () => this.close(),
      coordinatorPlacement: () => (this.placement ??= new OffsetsPlacement(this.d, (p) => this.coordinatorOf(p))),
    };
    return this.internal;
  }

  /**
   * Creates an internal topic through the controller, replicated on min(OFFSETS_REPLICATION_FACTOR_MAX,
   * registered active nodes): the factor never shrinks because a node is down at that moment (the
   * controller then refuses, and this says to retry). TOPIC_ALREADY_EXISTS when another node won the race.
   */
  async createInternalTopic(name: string, partitions: number, configs: Record<string, string>): Promise<TopicDescription> {
    validateTopicName(name);
    if (!name.startsWith('__')) throw new SluiceError('INVALID_TOPIC_NAME', `internal topic names start with '__', got '${name}'`);
    const rf = this.internalReplicationFactor();
    try {
      await this.d.controller.createTopic(name, partitions, rf, configs);
    } catch (err) {
      if (!isSluiceError(err, 'REPLICATION_FACTOR_TOO_LARGE')) throw err;
      throw new SluiceError('UNAVAILABLE', `cannot create ${name} yet: it is replicated on ${rf} nodes and fewer are alive now (${err.message}); retry when they are`, { cause: err });
    }
    await this.leadersOf(name);
    return this.describeTopic(name);
  }

  private internalReplicationFactor(): number {
    const registered = this.d.controller.state.nodes().filter((n) => n.state === 'active').length;
    return Math.max(1, Math.min(OFFSETS_REPLICATION_FACTOR_MAX, registered));
  }

  /**
   * On the controller leader, every OFFSETS_TOPIC_CHECK_MS until it exists: creates `__consumer_offsets`
   * once the cluster has formed (as many registered nodes as the offsets topic's replication factor
   * wants, or as there are controller voters), so a group's first join finds it replicated.
   */
  startOffsetsTopicCheck(): void {
    let creating = false;
    const check = (): void => {
      const c = this.d.controller;
      if (c.state.topic(OFFSETS_TOPIC) !== undefined) {
        // Internal topics cannot be deleted: once it exists, there is nothing left to check.
        if (this.offsetsTopicTimer !== null) clearInterval(this.offsetsTopicTimer);
        this.offsetsTopicTimer = null;
        return;
      }
      if (creating || c.leaderId !== this.d.nodeId) return;
      // Formed: as many nodes registered (and alive) as the offsets topic wants to be replicated on.
      const want = Math.min(OFFSETS_REPLICATION_FACTOR_MAX, Math.max(1, c.membership.voters.length));
      const alive = c.state.nodes().filter((n) => n.state === 'active' && (n.id === this.d.nodeId || this.d.peers.get(n.id)?.state === 'alive'));
      if (alive.length < want || this.internalReplicationFactor() > alive.length) return;
      creating = true;
      this.createInternalTopic(OFFSETS_TOPIC, OFFSETS_PARTITIONS, { ...OFFSETS_TOPIC_CONFIGS })
        .catch(() => {
          // Already created by a group's first use, or the controller is changing leader: checked again.
        })
        .finally(() => {
          creating = false;
        });
    };
    this.offsetsTopicTimer = setInterval(check, OFFSETS_TOPIC_CHECK_MS);
    this.offsetsTopicTimer.unref();
  }

  /** Who leads offsets partition `partition`, as this node knows it. */
  private coordinatorOf(partition: number): CoordinatorAddress {
    if (this.d.controller.state.topic(OFFSETS_TOPIC)?.partitions[partition] === undefined) return { nodeId: 0, address: '' };
    const r = this.route(OFFSETS_TOPIC, partition);
    if (r.leader === 0) return { nodeId: 0, address: '' };
    return { nodeId: r.leader, address: this.addressOf(r.leader) ?? '' };
  }

  offlinePartitions(): string[] {
    return this.d.core.offlinePartitions?.() ?? [];
  }

  close(): Promise<void> {
    if (this.offsetsTopicTimer !== null) clearInterval(this.offsetsTopicTimer);
    this.placement?.close();
    return this.d.core.close();
  }
}

/**
 * Which offsets partitions this node may coordinate: those whose replica here is the leader and has
 * committed an entry of its own term. The replica's log end when it is first seen leading at an epoch
 * includes that term's no-op (a leader appends it on election, and receives nothing from earlier
 * leaders after), so once the high watermark reaches it every entry an earlier leader acknowledged is
 * committed here and a replay up to the high watermark has them all.
 */
class OffsetsPlacement implements CoordinatorPlacement {
  readonly nodeId: number;
  /** group -> the epoch first seen leading and the log end then. */
  private readonly tenure = new Map<GroupId, { epoch: number; logEnd: number }>();
  private readonly listeners = new Set<() => void>();
  private readonly unsubscribe: Array<() => void> = [];

  constructor(
    private readonly d: ClusterApiDeps,
    readonly coordinatorOf: (partition: number) => CoordinatorAddress,
  ) {
    this.nodeId = d.nodeId;
    const notify = (): void => {
      for (const l of this.listeners) l();
    };
    this.unsubscribe.push(d.core.onLeaderChange(notify));
    this.unsubscribe.push(d.controller.onEvent(notify));
  }

  leaderships(): (number | null)[] {
    const t = this.d.controller.state.topic(OFFSETS_TOPIC);
    if (t === undefined) return [];
    const byGroup = new Map(this.d.core.replicaStatus().map((s) => [s.group, s]));
    return t.partitions.map((p) => {
      const s = byGroup.get(p.group);
      if (s === undefined || s.role !== 'leader' || s.leader !== this.d.nodeId) {
        this.tenure.delete(p.group);
        return null;
      }
      let seen = this.tenure.get(p.group);
      if (seen === undefined || seen.epoch !== s.epoch) this.tenure.set(p.group, (seen = { epoch: s.epoch, logEnd: s.logEndOffset }));
      return s.highWatermark >= seen.logEnd ? s.epoch : null;
    });
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    this.listeners.clear();
  }
}

function effectiveConfigs(t: TopicState): Record<string, string> {
  return logConfigToTopicConfigs(logConfigFor({ ...t.configs }));
}
