/**
 * Replica moves, decommission, recommission and rebalance as client requests in cluster mode
 * (docs/cluster.md "Moves"): validated at the edge of the cluster layer, then handed to the controller,
 * whose leader plans them against its applied state and records them; its executor carries them out
 * step by step.
 * `reassignments` answers from this node's applied metadata.
 */
import { SluiceError } from '../errors.js';
import { NODE_ID_MAX, TOPIC_REPLICATION_FACTOR_MAX } from '../constants.js';
import type { NodeId } from '../model/index.js';
import type { ReassignmentsView, RecommissionView } from '../broker/types.js';
import { refuseInternalTopic, validateTopicName } from '../broker/validate.js';
import type { Controller } from '../controller/index.js';

function nodeIdOk(n: unknown): boolean {
  return Number.isSafeInteger(n) && (n as number) > 0 && (n as number) <= NODE_ID_MAX;
}

export async function movePartition(controller: Controller, topic: string, partition: number, replicas: number[], deadlineMs?: number): Promise<void> {
  validateTopicName(topic);
  refuseInternalTopic(topic, 'move');
  if (!Number.isInteger(partition) || partition < 0) throw new SluiceError('UNKNOWN_PARTITION', `partition must be a non-negative integer, got ${String(partition)}`);
  if (!Array.isArray(replicas) || replicas.length === 0 || replicas.length > TOPIC_REPLICATION_FACTOR_MAX || !replicas.every(nodeIdOk)) {
    throw new SluiceError('INVALID_REQUEST', `a move needs 1 to ${TOPIC_REPLICATION_FACTOR_MAX} positive node ids, got [${String(replicas)}]`);
  }
  if (new Set(replicas).size !== replicas.length) throw new SluiceError('INVALID_REQUEST', `a move needs distinct node ids, got [${replicas.join(',')}]`);
  await controller.movePartition(topic, partition, replicas as NodeId[], deadlineMs);
}

export async function decommissionNode(controller: Controller, nodeId: number, deadlineMs?: number): Promise<void> {
  if (!nodeIdOk(nodeId)) throw new SluiceError('INVALID_REQUEST', `a node id is a positive integer, got ${String(nodeId)}`);
  await controller.decommission(nodeId, deadlineMs);
}

/**
 * Recommission: once the controller has recorded it the node is active (a success means exactly
 * that); the replica count is this node's applied view.
 */
export async function recommissionNode(controller: Controller, nodeId: number, deadlineMs?: number): Promise<RecommissionView> {
  if (!nodeIdOk(nodeId)) throw new SluiceError('INVALID_REQUEST', `a node id is a positive integer, got ${String(nodeId)}`);
  const before = await controller.recommission(nodeId, deadlineMs);
  const replicas = controller.state.partitions().filter((p) => p.voters.nodes.includes(nodeId as NodeId) || p.learners.nodes.includes(nodeId as NodeId)).length;
  return { previousState: before, node: { nodeId, state: 'active', replicas } };
}

export function rebalance(controller: Controller, deadlineMs?: number): Promise<number> {
  return controller.rebalance(deadlineMs);
}

export function reassignments(controller: Controller): ReassignmentsView {
  const state = controller.state;
  const parts = state.partitions();
  return {
    reassignments: parts
      .filter((p) => p.target !== null || p.lost.length > 0 || p.learners.nodes.length > 0)
      .map((p) => ({
        topic: p.topic,
        partition: p.partition,
        replicas: [...p.voters.nodes],
        learners: [...p.learners.nodes],
        target: [...(p.target?.nodes ?? [])],
        lost: [...p.lost],
        leader: p.leader,
      })),
    nodes: state.nodes().map((n) => ({
      nodeId: n.id,
      state: n.state,
      replicas: parts.filter((p) => p.voters.nodes.includes(n.id) || p.learners.nodes.includes(n.id)).length,
    })),
  };
}
