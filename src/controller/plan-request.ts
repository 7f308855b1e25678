/**
 * Turns an admin request into the metadata records that carry it out, on the controller leader,
 * against the state it has applied. This is where requests are validated (every bad input gets a
 * SluiceError with a stable code and nothing is written) and where placement runs, so the records are
 * complete: applying them needs no choice, no clock and no randomness (those come in through `ctx`).
 *
 * A record can still be refused at apply time when the state moved between planning and commit (two
 * requests racing); the state machine decides that identically on every node.
 */
import { CONTROLLER_REBALANCE_MOVES_MAX, TOPIC_PARTITIONS_MAX, TOPIC_REPLICATION_FACTOR_MAX } from '../constants.js';
import { SluiceError } from '../errors.js';
import type { NodeId } from '../model/index.js';
import { logConfigFor, validatePartitionCount, validateTopicName } from '../broker/validate.js';
import { NodeState, ReassignStep, type ControllerRequest, type CreateTopicRequest, type MetadataRecord } from '../rpc/gen/sluice/cluster/v1/controller.js';
import { METADATA_RECORD_VERSION, fromAssignment, type MetadataStm } from './metadata-stm.js';
import { PlacementLoad, placementNodes, placePartitions, planDecommission, planMove, planRebalance } from './placement.js';
import type { TopicState } from './types.js';

export interface PlanContext {
  /** Whether gossip sees the node alive (placement uses live, active nodes only). */
  readonly live: (id: NodeId) => boolean;
  readonly nowMs: number;
  /** A fresh topic id (a UUID). */
  readonly newTopicId: () => string;
}

function rec(record: MetadataRecord['record']): MetadataRecord {
  return { version: METADATA_RECORD_VERSION, record };
}

function topicOf(stm: MetadataStm, name: string): TopicState {
  const t = stm.topic(name);
  if (t === undefined) throw new SluiceError('UNKNOWN_TOPIC', `topic '${name}' does not exist`);
  return t;
}

/** 0 (protobuf's unset) means 1. */
function replicationFactorOf(rf: number): number {
  const n = rf === 0 ? 1 : rf;
  if (!(Number.isInteger(n) && n >= 1 && n <= TOPIC_REPLICATION_FACTOR_MAX)) {
    throw new SluiceError('INVALID_REPLICATION_FACTOR', `replication factor must be from 1 to ${TOPIC_REPLICATION_FACTOR_MAX}, got ${rf}`);
  }
  return n;
}

function planCreate(r: CreateTopicRequest, stm: MetadataStm, ctx: PlanContext): MetadataRecord[] {
  validateTopicName(r.name);
  validatePartitionCount(r.partitions);
  const rf = replicationFactorOf(r.replicationFactor);
  logConfigFor(r.configs);
  if (stm.topic(r.name) !== undefined) throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic '${r.name}' already exists`);
  const nodes = placementNodes(stm.nodes(), ctx.live);
  const assignments = placePartitions(nodes, PlacementLoad.of(stm.partitions()), r.partitions, rf);
  return [
    rec({
      $case: 'createTopic',
      value: {
        name: r.name,
        topicId: ctx.newTopicId(),
        replicationFactor: rf,
        configs: { ...r.configs },
        partitions: assignments.map(fromAssignment),
        createdMs: BigInt(Math.trunc(ctx.nowMs)),
      },
    }),
  ];
}

function planAddPartitions(name: string, total: number, stm: MetadataStm, ctx: PlanContext): MetadataRecord[] {
  const t = topicOf(stm, name);
  if (!(Number.isInteger(total) && total > t.partitions.length && total <= TOPIC_PARTITIONS_MAX)) {
    throw new SluiceError('INVALID_PARTITIONS', `'${name}' has ${t.partitions.length} partitions; the new count must be above that and at most ${TOPIC_PARTITIONS_MAX}, got ${total}`);
  }
  const nodes = placementNodes(stm.nodes(), ctx.live);
  const assignments = placePartitions(nodes, PlacementLoad.of(stm.partitions()), total - t.partitions.length, t.replicationFactor);
  return [rec({ $case: 'addPartitions', value: { name, topicId: t.topicId, partitions: assignments.map(fromAssignment) } })];
}

function planMovePartition(name: string, partition: number, replicas: readonly number[], stm: MetadataStm): MetadataRecord[] {
  const t = topicOf(stm, name);
  const p = t.partitions[partition];
  if (p === undefined) throw new SluiceError('UNKNOWN_PARTITION', `topic '${name}' has no partition ${partition}`);
  if (p.target !== null) throw new SluiceError('REASSIGNMENT_IN_PROGRESS', `${name}/${partition} is already moving to [${p.target.nodes.join(',')}]`);
  const target = planMove(p, replicas as NodeId[], stm.nodes(), PlacementLoad.of(stm.partitions()));
  return [rec({ $case: 'reassignStep', value: { groupId: p.group, step: ReassignStep.REASSIGN_STEP_BEGIN, nodeId: 0, shard: 0, target: fromAssignment(target) } })];
}

/**
 * Decommission: the node stops taking replicas, and every partition on it starts a move off it. Asked
 * again (the executor does, and an operator may), it starts moves for partitions that were busy before,
 * and once the node holds nothing it marks it decommissioned. `continueOnly` (the executor's re-ask)
 * plans nothing unless the node is still decommissioning when the request is planned: a recommission
 * that landed in between is not undone by a stale re-ask.
 */
function planDecommissionNode(nodeId: number, continueOnly: boolean, stm: MetadataStm, ctx: PlanContext): MetadataRecord[] {
  const node = stm.node(nodeId as NodeId);
  if (node === undefined) throw new SluiceError('UNKNOWN_NODE', `node ${nodeId} is not registered`);
  const out: MetadataRecord[] = [];
  if (node.state === 'decommissioned') return out;
  if (continueOnly && node.state !== 'decommissioning') return out;
  const holds = stm.partitions().some((p) => p.voters.nodes.includes(node.id) || p.learners.nodes.includes(node.id));
  // Asked again once the moves are done: the node is decommissioned and may leave.
  if (node.state === 'decommissioning' && !holds) return [rec({ $case: 'nodeState', value: { nodeId, state: NodeState.NODE_STATE_DECOMMISSIONED } })];
  if (node.state === 'active') out.push(rec({ $case: 'nodeState', value: { nodeId, state: NodeState.NODE_STATE_DECOMMISSIONING } }));
  const candidates = placementNodes(stm.nodes(), ctx.live).filter((n) => n.id !== nodeId);
  const racks = new Map(stm.nodes().map((n) => [n.id, n.rack]));
  // Partitions already moving keep their move; the executor re-plans them once it completes.
  const moves = planDecommission(stm.partitions().filter((p) => p.target === null), candidates, nodeId as NodeId, racks);
  for (const m of moves) {
    out.push(rec({ $case: 'reassignStep', value: { groupId: m.group, step: ReassignStep.REASSIGN_STEP_BEGIN, nodeId: 0, shard: 0, target: fromAssignment(m.to) } }));
  }
  return out;
}

/**
 * Recommission: the node becomes active again. A decommissioning node stops being drained: the moves
 * its decommission began are ordinary moves by now and run to their end (cancelling one half-way would
 * need a move back, which `rebalance` does better), and since the executor re-plans only for
 * decommissioning nodes, no new move off it starts.
 *
 * An active node gets the record too, which applies as a no-op (no event): so the record at the index
 * the request returns always says what this request did (a `nodeStateChanged` event there, or none),
 * which is how `Controller.recommission` tells a caller the state before, even on a node that lags.
 */
function planRecommissionNode(nodeId: number, stm: MetadataStm): MetadataRecord[] {
  if (stm.node(nodeId as NodeId) === undefined) throw new SluiceError('UNKNOWN_NODE', `node ${nodeId} is not registered`);
  return [rec({ $case: 'nodeState', value: { nodeId, state: NodeState.NODE_STATE_ACTIVE } })];
}

export function planRecords(req: ControllerRequest, stm: MetadataStm, ctx: PlanContext): MetadataRecord[] {
  const r = req.request;
  if (r === undefined) throw new SluiceError('INVALID_REQUEST', 'empty controller request');
  switch (r.$case) {
    case 'registerNode':
      return [rec({ $case: 'registerNode', value: r.value })];
    case 'join':
      if (r.value.node === undefined) throw new SluiceError('INVALID_REQUEST', 'join request without a node');
      return [rec({ $case: 'registerNode', value: r.value.node })];
    case 'createTopic':
      return planCreate(r.value, stm, ctx);
    case 'deleteTopic': {
      const t = topicOf(stm, r.value.name);
      return [rec({ $case: 'deleteTopic', value: { name: t.name, topicId: r.value.topicId || t.topicId } })];
    }
    case 'alterConfigs': {
      const t = topicOf(stm, r.value.name);
      const merged: Record<string, string> = { ...t.configs };
      for (const k of r.value.delete) delete merged[k];
      Object.assign(merged, r.value.set);
      logConfigFor(merged);
      return [rec({ $case: 'alterConfigs', value: { ...r.value, topicId: r.value.topicId || t.topicId } })];
    }
    case 'addPartitions':
      return planAddPartitions(r.value.name, r.value.partitions, stm, ctx);
    case 'movePartition':
      return planMovePartition(r.value.name, r.value.partition, r.value.replicas, stm);
    case 'leaderReport':
      return [rec({ $case: 'leaderReport', value: r.value })];
    case 'decommission':
      return planDecommissionNode(r.value.nodeId, r.value.continueOnly, stm, ctx);
    case 'recommission':
      return planRecommissionNode(r.value.nodeId, stm);
    case 'reassignStep': {
      if (r.value.step === undefined) throw new SluiceError('INVALID_REQUEST', 'reassign step request without a step');
      return [rec({ $case: 'reassignStep', value: r.value.step })];
    }
    case 'importTopics':
      return stm.imported ? [] : [rec({ $case: 'importTopics', value: r.value })];
    case 'rebalance':
      return planRebalance(stm.partitions(), placementNodes(stm.nodes(), ctx.live), CONTROLLER_REBALANCE_MOVES_MAX, new Map(stm.nodes().map((n) => [n.id, n.rack]))).map((m) =>
        rec({ $case: 'reassignStep', value: { groupId: m.group, step: ReassignStep.REASSIGN_STEP_BEGIN, nodeId: 0, shard: 0, target: fromAssignment(m.to) } }),
      );
  }
}
