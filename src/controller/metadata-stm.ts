/**
 * The metadata state machine: the cluster's metadata as a function of the controller log. Pure and
 * deterministic: no I/O, no clock, no randomness (a record carries every value that was chosen when it
 * was proposed: topic ids, placement, timestamps). Every node applies the same committed records in the
 * same order and ends with the same state, and a refused record is refused identically everywhere.
 *
 * What is decided here, at apply time, rather than by the proposer: partition group ids (from
 * `nextGroupId`, so two creates racing on the leader can never get the same id, and an id is never
 * reused, not even after a delete), and whether a record still makes sense against the state it lands
 * on (a create of a name that exists by then, a step of a move that another step overtook).
 *
 * Re-application is harmless: `apply(index, …)` ignores an index at or below `appliedIndex`, so a node
 * that restarts from a snapshot and replays the log after it cannot apply a record twice.
 */
import assert from 'node:assert/strict';
import { TOPIC_REPLICATION_FACTOR_MAX, TOPIC_TABLE_PARTITIONS_MAX, SHARDS_MAX } from '../constants.js';
import { SluiceError } from '../errors.js';
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import { validateTopicName } from '../broker/validate.js';
import {
  type AddPartitionsRecord,
  type AlterConfigsRecord,
  type CreateTopicRecord,
  type DeleteTopicRecord,
  type ImportTopicsRecord,
  type LeaderReportRecord,
  type MetadataRecord,
  type NodeStateRecord,
  type RegisterNodeRecord,
  type ReassignStepRecord,
  type ReplicaAssignment,
  NodeState,
  ReassignStep,
} from '../rpc/gen/sluice/cluster/v1/controller.js';
import type { ApplyOutcome, Assignment, MetadataEvent, NodeLifecycle, NodeRecordState, PartitionState, TopicState } from './types.js';

/** The record layout this release writes and reads (MetadataRecord.version). */
export const METADATA_RECORD_VERSION = 1;
/** The first group id handed to a partition (0 is the controller's own group). */
export const FIRST_PARTITION_GROUP_ID = 1;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const NO_EVENTS: readonly MetadataEvent[] = Object.freeze([]);
const EMPTY_ASSIGNMENT: Assignment = Object.freeze({ nodes: Object.freeze([]), shards: Object.freeze([]) });

function ok(events: readonly MetadataEvent[]): ApplyOutcome {
  return { events, error: null };
}

function refused(code: SluiceError['code'], message: string): ApplyOutcome {
  return { events: NO_EVENTS, error: new SluiceError(code, message) };
}

export function lifecycleOf(s: NodeState): NodeLifecycle | null {
  if (s === NodeState.NODE_STATE_ACTIVE) return 'active';
  if (s === NodeState.NODE_STATE_DECOMMISSIONING) return 'decommissioning';
  if (s === NodeState.NODE_STATE_DECOMMISSIONED) return 'decommissioned';
  return null;
}

export function nodeStateOf(l: NodeLifecycle): NodeState {
  return l === 'active' ? NodeState.NODE_STATE_ACTIVE : l === 'decommissioning' ? NodeState.NODE_STATE_DECOMMISSIONING : NodeState.NODE_STATE_DECOMMISSIONED;
}

export function toAssignment(a: ReplicaAssignment | undefined): Assignment {
  if (a === undefined) return EMPTY_ASSIGNMENT;
  return { nodes: a.replicas.map((n) => n as NodeId), shards: [...a.shards] };
}

export function fromAssignment(a: Assignment): ReplicaAssignment {
  return { replicas: [...a.nodes], shards: [...a.shards] };
}

/** Everything the state holds, as plain data (what a snapshot encodes; see ./snapshot.ts). */
export interface MetadataImage {
  appliedIndex: number;
  clusterId: string;
  nextGroupId: GroupId;
  imported: boolean;
  nodes: NodeRecordState[];
  topics: TopicState[];
}

export class MetadataStm {
  private applied = 0;
  private cluster = '';
  private nextGroup: GroupId = FIRST_PARTITION_GROUP_ID;
  private importDone = false;
  private readonly nodeMap = new Map<NodeId, NodeRecordState>();
  private readonly topicMap = new Map<string, TopicState>();
  /** group -> topic name (the partition's index is its position in the topic). */
  private readonly groupMap = new Map<GroupId, string>();

  static fromImage(image: MetadataImage): MetadataStm {
    const s = new MetadataStm();
    s.applied = image.appliedIndex;
    s.cluster = image.clusterId;
    s.nextGroup = image.nextGroupId;
    s.importDone = image.imported;
    for (const n of image.nodes) s.nodeMap.set(n.id, n);
    for (const t of image.topics) s.putTopic(t);
    return s;
  }

  image(): MetadataImage {
    return {
      appliedIndex: this.applied,
      clusterId: this.cluster,
      nextGroupId: this.nextGroup,
      imported: this.importDone,
      nodes: this.nodes(),
      topics: this.topics(),
    };
  }

  // --- Reads ---------------------------------------------------------------------------------------

  get appliedIndex(): number {
    return this.applied;
  }

  get clusterId(): string {
    return this.cluster;
  }

  get nextGroupId(): GroupId {
    return this.nextGroup;
  }

  get imported(): boolean {
    return this.importDone;
  }

  /** Registered nodes by id. */
  nodes(): NodeRecordState[] {
    return [...this.nodeMap.values()].sort((a, b) => a.id - b.id);
  }

  node(id: NodeId): NodeRecordState | undefined {
    return this.nodeMap.get(id);
  }

  /** Topics by name. */
  topics(): TopicState[] {
    return [...this.topicMap.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  topic(name: string): TopicState | undefined {
    return this.topicMap.get(name);
  }

  partitionByGroup(group: GroupId): PartitionState | undefined {
    const name = this.groupMap.get(group);
    return name === undefined ? undefined : this.topicMap.get(name)!.partitions.find((p) => p.group === group);
  }

  /** Every partition of every topic, by topic name then partition. */
  partitions(): PartitionState[] {
    return this.topics().flatMap((t) => t.partitions);
  }

  // --- Apply ---------------------------------------------------------------------------------------

  /**
   * Applies the record committed at log index `index`. Indexes must grow; one at or below the applied
   * index was applied already (a replay after restart) and changes nothing.
   */
  apply(index: number, record: MetadataRecord): ApplyOutcome {
    if (index <= this.applied) return ok(NO_EVENTS);
    this.applied = index;
    if (record.version !== METADATA_RECORD_VERSION) {
      // A newer node wrote it: applying it by guess could diverge from nodes that understand it.
      throw new SluiceError('UNSUPPORTED_VERSION', `metadata record at index ${index} has version ${record.version}; this node reads version ${METADATA_RECORD_VERSION}`);
    }
    const r = record.record;
    if (r === undefined) throw new SluiceError('UNSUPPORTED_VERSION', `metadata record at index ${index} holds a record type this node does not know`);
    switch (r.$case) {
      case 'registerNode':
        return this.registerNode(r.value);
      case 'createTopic':
        return this.createTopic(r.value);
      case 'deleteTopic':
        return this.deleteTopic(r.value);
      case 'alterConfigs':
        return this.alterConfigs(r.value);
      case 'addPartitions':
        return this.addPartitions(r.value);
      case 'reassignStep':
        return this.reassignStep(r.value);
      case 'leaderReport':
        return this.leaderReport(r.value);
      case 'nodeState':
        return this.nodeState(r.value);
      case 'importTopics':
        return this.importTopics(r.value);
    }
  }

  private registerNode(r: RegisterNodeRecord): ApplyOutcome {
    if (!(r.nodeId > 0)) return refused('INVALID_REQUEST', `node id must be positive, got ${r.nodeId}`);
    if (r.uuid === '') return refused('INVALID_REQUEST', `node ${r.nodeId} registered without a uuid`);
    if (!(r.shards >= 1 && r.shards <= SHARDS_MAX)) return refused('INVALID_REQUEST', `node ${r.nodeId} has ${r.shards} shards; 1 to ${SHARDS_MAX} allowed`);
    const id = r.nodeId as NodeId;
    const old = this.nodeMap.get(id);
    if (old === undefined) {
      const node: NodeRecordState = { id, uuid: r.uuid, address: r.address, rack: r.rack, shards: r.shards, state: 'active', incarnation: 1 };
      this.nodeMap.set(id, node);
      return ok([{ type: 'nodeRegistered', node }]);
    }
    if (old.uuid === r.uuid) {
      if (old.address === r.address && old.rack === r.rack && old.shards === r.shards) return ok(NO_EVENTS);
      const node: NodeRecordState = { ...old, address: r.address, rack: r.rack, shards: r.shards };
      this.nodeMap.set(id, node);
      return ok([{ type: 'nodeUpdated', node }]);
    }
    // A new incarnation under an old id (a wiped disk): whatever it held is gone, so none of its replicas
    // may vote or serve as the replica it was. They are marked lost and must be rebuilt (remove, add as
    // learner, promote) from the others.
    const node: NodeRecordState = { ...old, uuid: r.uuid, address: r.address, rack: r.rack, shards: r.shards, incarnation: old.incarnation + 1 };
    this.nodeMap.set(id, node);
    const lost: GroupId[] = [];
    const events: MetadataEvent[] = [];
    for (const p of this.partitions()) {
      if (!p.voters.nodes.includes(id) && !p.learners.nodes.includes(id)) continue;
      if (p.lost.includes(id)) continue;
      lost.push(p.group);
      const after: PartitionState = { ...p, lost: [...p.lost, id].sort((a, b) => a - b) };
      this.putPartition(after);
      events.push({ type: 'replicasChanged', before: p, partition: after });
    }
    return ok([{ type: 'nodeReincarnated', node, lost }, ...events]);
  }

  /** Checks one assignment against the registered nodes; '' when valid. */
  private assignmentProblem(a: ReplicaAssignment, rf: number): string {
    if (a.replicas.length !== rf) return `${a.replicas.length} replicas where the replication factor is ${rf}`;
    if (a.shards.length !== a.replicas.length) return `${a.replicas.length} replicas but ${a.shards.length} shards`;
    if (new Set(a.replicas).size !== a.replicas.length) return `a node appears twice in [${a.replicas.join(',')}]`;
    for (let i = 0; i < a.replicas.length; i++) {
      const node = this.nodeMap.get(a.replicas[i] as NodeId);
      if (node === undefined) return `node ${a.replicas[i]} is not registered`;
      if (!(a.shards[i] < node.shards)) return `node ${node.id} has no shard ${a.shards[i]}`;
    }
    return '';
  }

  private topicProblem(r: CreateTopicRecord): string {
    try {
      validateTopicName(r.name);
    } catch (err) {
      return (err as Error).message;
    }
    if (!UUID.test(r.topicId)) return `topic id ${JSON.stringify(r.topicId)} is not a uuid`;
    if (!(r.replicationFactor >= 1 && r.replicationFactor <= TOPIC_REPLICATION_FACTOR_MAX)) return `replication factor ${r.replicationFactor} is outside 1..${TOPIC_REPLICATION_FACTOR_MAX}`;
    if (!(r.partitions.length >= 1 && r.partitions.length <= TOPIC_TABLE_PARTITIONS_MAX)) return `${r.partitions.length} partitions`;
    for (let p = 0; p < r.partitions.length; p++) {
      const problem = this.assignmentProblem(r.partitions[p], r.replicationFactor);
      if (problem !== '') return `partition ${p}: ${problem}`;
    }
    return '';
  }

  private newPartition(topic: string, topicId: string, partition: number, a: ReplicaAssignment): PartitionState {
    const group = this.nextGroup++;
    return { topic, topicId, partition, group, voters: toAssignment(a), learners: EMPTY_ASSIGNMENT, lost: [], leader: 0 as NodeId, leaderEpoch: 0, target: null };
  }

  private createTopic(r: CreateTopicRecord): ApplyOutcome {
    if (this.topicMap.has(r.name)) return refused('TOPIC_ALREADY_EXISTS', `topic '${r.name}' already exists`);
    const problem = this.topicProblem(r);
    if (problem !== '') return refused('INVALID_REQUEST', `create topic '${r.name}': ${problem}`);
    for (const t of this.topicMap.values()) {
      if (t.topicId === r.topicId) return refused('INVALID_REQUEST', `topic id ${r.topicId} is taken by '${t.name}'`);
    }
    const topic: TopicState = {
      name: r.name,
      topicId: r.topicId,
      replicationFactor: r.replicationFactor,
      configs: { ...r.configs },
      createdMs: Number(r.createdMs),
      partitions: r.partitions.map((a, p) => this.newPartition(r.name, r.topicId, p, a)),
    };
    this.putTopic(topic);
    return ok([{ type: 'topicCreated', topic }]);
  }

  /** The topic a record names, checking its id when the record carries one. */
  private named(name: string, topicId: string): TopicState | SluiceError {
    const t = this.topicMap.get(name);
    if (t === undefined || (topicId !== '' && t.topicId !== topicId)) return new SluiceError('UNKNOWN_TOPIC', `topic '${name}' does not exist`);
    return t;
  }

  private deleteTopic(r: DeleteTopicRecord): ApplyOutcome {
    const t = this.named(r.name, r.topicId);
    if (t instanceof SluiceError) return { events: NO_EVENTS, error: t };
    this.topicMap.delete(t.name);
    for (const p of t.partitions) this.groupMap.delete(p.group);
    return ok([{ type: 'topicDeleted', topic: t }]);
  }

  private alterConfigs(r: AlterConfigsRecord): ApplyOutcome {
    const t = this.named(r.name, r.topicId);
    if (t instanceof SluiceError) return { events: NO_EVENTS, error: t };
    const configs: Record<string, string> = { ...t.configs };
    for (const k of r.delete) delete configs[k];
    for (const [k, v] of Object.entries(r.set)) configs[k] = v;
    const topic: TopicState = { ...t, configs };
    this.topicMap.set(t.name, topic);
    return ok([{ type: 'configsChanged', topic }]);
  }

  private addPartitions(r: AddPartitionsRecord): ApplyOutcome {
    const t = this.named(r.name, r.topicId);
    if (t instanceof SluiceError) return { events: NO_EVENTS, error: t };
    if (r.partitions.length === 0) return refused('INVALID_PARTITIONS', `add partitions to '${r.name}': none given`);
    if (t.partitions.length + r.partitions.length > TOPIC_TABLE_PARTITIONS_MAX) return refused('INVALID_PARTITIONS', `'${r.name}' would exceed ${TOPIC_TABLE_PARTITIONS_MAX} partitions`);
    for (let i = 0; i < r.partitions.length; i++) {
      const problem = this.assignmentProblem(r.partitions[i], t.replicationFactor);
      if (problem !== '') return refused('INVALID_REQUEST', `add partitions to '${r.name}': partition ${t.partitions.length + i}: ${problem}`);
    }
    const added = r.partitions.map((a, i) => this.newPartition(t.name, t.topicId, t.partitions.length + i, a));
    const topic: TopicState = { ...t, partitions: [...t.partitions, ...added] };
    this.putTopic(topic);
    return ok([{ type: 'partitionsAdded', topic, partitions: added }]);
  }

  private reassignStep(r: ReassignStepRecord): ApplyOutcome {
    const p = this.partitionByGroup(r.groupId);
    if (p === undefined) return refused('UNKNOWN_PARTITION', `no partition has group ${r.groupId}`);
    const next = applyStep(p, r, (id) => this.nodeMap.get(id));
    if (next instanceof SluiceError) return { events: NO_EVENTS, error: next };
    this.putPartition(next);
    return ok([{ type: 'replicasChanged', before: p, partition: next }]);
  }

  private leaderReport(r: LeaderReportRecord): ApplyOutcome {
    const p = this.partitionByGroup(r.groupId);
    if (p === undefined) return refused('UNKNOWN_PARTITION', `no partition has group ${r.groupId}`);
    // Reports race (the old and the new leader both report); only a newer epoch wins.
    if (r.epoch < p.leaderEpoch || (r.epoch === p.leaderEpoch && r.leader === p.leader)) return ok(NO_EVENTS);
    if (r.epoch === p.leaderEpoch && p.leader !== 0) return refused('INVALID_REQUEST', `two leaders reported for group ${r.groupId} in epoch ${r.epoch}`);
    const next: PartitionState = { ...p, leader: r.leader as NodeId, leaderEpoch: r.epoch };
    this.putPartition(next);
    return ok([{ type: 'leaderChanged', partition: next }]);
  }

  private nodeState(r: NodeStateRecord): ApplyOutcome {
    const old = this.nodeMap.get(r.nodeId as NodeId);
    if (old === undefined) return refused('UNKNOWN_NODE', `node ${r.nodeId} is not registered`);
    const state = lifecycleOf(r.state);
    if (state === null) return refused('INVALID_REQUEST', `unknown node state ${r.state}`);
    if (state === old.state) return ok(NO_EVENTS);
    if (state === 'decommissioned') {
      const held = this.partitions().filter((p) => p.voters.nodes.includes(old.id) || p.learners.nodes.includes(old.id));
      if (old.state !== 'decommissioning') return refused('INVALID_REQUEST', `node ${old.id} must be decommissioning before it is decommissioned`);
      if (held.length > 0) return refused('INVALID_REQUEST', `node ${old.id} still holds ${held.length} replicas`);
    }
    const node: NodeRecordState = { ...old, state };
    this.nodeMap.set(node.id, node);
    return ok([{ type: 'nodeStateChanged', node, before: old.state }]);
  }

  private importTopics(r: ImportTopicsRecord): ApplyOutcome {
    if (this.importDone) return ok(NO_EVENTS);
    this.importDone = true;
    if (this.cluster === '') this.cluster = r.clusterId;
    const events: MetadataEvent[] = [];
    for (const t of r.topics) {
      const out = this.createTopic(t);
      // An imported topic that no longer fits (a name taken since) is skipped, the same way everywhere.
      events.push(...out.events);
    }
    return ok(events);
  }

  // --- Internals -----------------------------------------------------------------------------------

  private putTopic(t: TopicState): void {
    this.topicMap.set(t.name, t);
    for (const p of t.partitions) this.groupMap.set(p.group, t.name);
    for (const p of t.partitions) if (p.group >= this.nextGroup) this.nextGroup = p.group + 1;
  }

  private putPartition(p: PartitionState): void {
    const t = this.topicMap.get(p.topic);
    assert.ok(t !== undefined && t.partitions[p.partition]?.group === p.group, `partition ${p.topic}/${p.partition} is not in the table`);
    const partitions = [...t.partitions];
    partitions[p.partition] = p;
    this.topicMap.set(t.name, { ...t, partitions });
  }
}

function without(a: Assignment, node: NodeId): Assignment {
  const i = a.nodes.indexOf(node);
  if (i < 0) return a;
  return { nodes: a.nodes.filter((_, j) => j !== i), shards: a.shards.filter((_, j) => j !== i) };
}

function withNode(a: Assignment, node: NodeId, shard: number): Assignment {
  return { nodes: [...a.nodes, node], shards: [...a.shards, shard] };
}

function sameSet(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/**
 * One reassignment step on a partition: the pure rule, shared by the state machine (apply) and the
 * planners (what the next step would do). Returns the new partition, or why the step does not apply.
 */
export function applyStep(p: PartitionState, r: ReassignStepRecord, nodeOf: (id: NodeId) => NodeRecordState | undefined): PartitionState | SluiceError {
  const node = r.nodeId as NodeId;
  const bad = (m: string): SluiceError => new SluiceError('INVALID_REQUEST', `group ${p.group} (${p.topic}/${p.partition}): ${m}`);
  const isVoter = p.voters.nodes.includes(node);
  const isLearner = p.learners.nodes.includes(node);
  switch (r.step) {
    case ReassignStep.REASSIGN_STEP_BEGIN: {
      if (p.target !== null) return new SluiceError('REASSIGNMENT_IN_PROGRESS', `${p.topic}/${p.partition} is already moving to [${p.target.nodes.join(',')}]`);
      const t = toAssignment(r.target);
      if (t.nodes.length === 0 || t.nodes.length !== t.shards.length || new Set(t.nodes).size !== t.nodes.length) return bad('the target must list distinct nodes, one shard each');
      for (let i = 0; i < t.nodes.length; i++) {
        const n = nodeOf(t.nodes[i]);
        if (n === undefined) return new SluiceError('UNKNOWN_NODE', `node ${t.nodes[i]} is not registered`);
        if (!(t.shards[i] < n.shards)) return bad(`node ${n.id} has no shard ${t.shards[i]}`);
      }
      return { ...p, target: t };
    }
    case ReassignStep.REASSIGN_STEP_ADD_LEARNER: {
      if (isVoter || isLearner) return bad(`node ${node} already holds a replica`);
      const n = nodeOf(node);
      if (n === undefined) return new SluiceError('UNKNOWN_NODE', `node ${node} is not registered`);
      if (!(r.shard < n.shards)) return bad(`node ${node} has no shard ${r.shard}`);
      return { ...p, learners: withNode(p.learners, node, r.shard) };
    }
    case ReassignStep.REASSIGN_STEP_PROMOTE: {
      if (!isLearner) return bad(`node ${node} is not a learner`);
      const shard = p.learners.shards[p.learners.nodes.indexOf(node)];
      return { ...p, learners: without(p.learners, node), voters: withNode(p.voters, node, shard) };
    }
    case ReassignStep.REASSIGN_STEP_REMOVE: {
      if (!isVoter && !isLearner) return bad(`node ${node} holds no replica`);
      if (isVoter && p.voters.nodes.length === 1) return bad(`node ${node} is the last voter`);
      return { ...p, voters: without(p.voters, node), learners: without(p.learners, node), lost: p.lost.filter((x) => x !== node), leader: p.leader === node ? (0 as NodeId) : p.leader };
    }
    case ReassignStep.REASSIGN_STEP_COMPLETE: {
      if (p.target === null) return bad('no move in progress');
      if (!sameSet(p.voters.nodes, p.target.nodes) || p.learners.nodes.length > 0) return bad(`replicas [${p.voters.nodes.join(',')}] are not yet the target [${p.target.nodes.join(',')}]`);
      // Target order (preferred leader first), each replica on the shard it actually lives on.
      const nodes = p.target.nodes;
      return { ...p, voters: { nodes, shards: nodes.map((n) => p.voters.shards[p.voters.nodes.indexOf(n)]) }, target: null };
    }
    case ReassignStep.REASSIGN_STEP_CANCEL: {
      if (p.target === null) return bad('no move in progress');
      return { ...p, target: null };
    }
    default:
      return bad(`unknown step ${r.step}`);
  }
}
