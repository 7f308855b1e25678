/**
 * What one node must do with its replicas, from the cluster-wide metadata events: the event stream the
 * broker consumes to open, reconfigure and close partition replicas on its shards. Pure.
 */
import type { NodeId } from '../model/index.js';
import type { MetadataStm } from './metadata-stm.js';
import type { MetadataEvent, PartitionState, TopicState } from './types.js';

export type ReplicaOp =
  /**
   * Open this node's replica of `partition` on `shard`, with the voters and learners the partition
   * lists. `fresh`: a new replica that starts empty (a new partition, or a replica being added or
   * rebuilt); otherwise one that exists on disk (a restart).
   */
  | { readonly op: 'open'; readonly partition: PartitionState; readonly shard: number; readonly fresh: boolean }
  /** The replica set changed and this node still holds a replica: apply the new voters/learners. */
  | { readonly op: 'reconfigure'; readonly partition: PartitionState }
  /**
   * This node's replica was lost (the node came back with a new uuid): it must not vote or serve
   * until the controller removed it and added it back as a learner.
   */
  | { readonly op: 'lost'; readonly partition: PartitionState }
  /** This node no longer holds the partition: close the replica and delete its data. */
  | { readonly op: 'close'; readonly partition: PartitionState }
  /** The topic's configs changed: every replica this node holds of it takes them. */
  | { readonly op: 'configs'; readonly topic: TopicState };

/** The shard of `node`'s replica of `p`, or -1 when it holds none (voter or learner). */
export function shardOf(p: PartitionState, node: NodeId): number {
  const v = p.voters.nodes.indexOf(node);
  if (v >= 0) return p.voters.shards[v];
  const l = p.learners.nodes.indexOf(node);
  return l >= 0 ? p.learners.shards[l] : -1;
}

function holds(p: PartitionState, node: NodeId): boolean {
  return shardOf(p, node) >= 0;
}

/** The replicas `node` must open at start: every partition it holds that is not lost. */
export function replicasOf(stm: MetadataStm, node: NodeId): ReplicaOp[] {
  return stm
    .partitions()
    .filter((p) => holds(p, node) && !p.lost.includes(node))
    .map((p) => ({ op: 'open', partition: p, shard: shardOf(p, node), fresh: false }));
}

/** The operations `node` must carry out for one event. */
export function replicaOps(node: NodeId, e: MetadataEvent): ReplicaOp[] {
  switch (e.type) {
    case 'topicCreated':
      return e.topic.partitions.filter((p) => holds(p, node)).map((p) => ({ op: 'open', partition: p, shard: shardOf(p, node), fresh: true }));
    case 'partitionsAdded':
      return e.partitions.filter((p) => holds(p, node)).map((p) => ({ op: 'open', partition: p, shard: shardOf(p, node), fresh: true }));
    case 'topicDeleted':
      return e.topic.partitions.filter((p) => holds(p, node)).map((p) => ({ op: 'close', partition: p }));
    case 'configsChanged':
      return e.topic.partitions.some((p) => holds(p, node)) ? [{ op: 'configs', topic: e.topic }] : [];
    case 'replicasChanged': {
      const before = holds(e.before, node);
      const after = holds(e.partition, node);
      if (!before && after) return [{ op: 'open', partition: e.partition, shard: shardOf(e.partition, node), fresh: true }];
      if (before && !after) return [{ op: 'close', partition: e.partition }];
      if (!after) return [];
      if (e.partition.lost.includes(node) && !e.before.lost.includes(node)) return [{ op: 'lost', partition: e.partition }];
      return [{ op: 'reconfigure', partition: e.partition }];
    }
    default:
      return [];
  }
}

/** A partition's Raft membership as its leader sees it. */
export interface RaftMembership {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** One single-server membership change. */
export interface MembershipChange {
  readonly type: 'addVoter' | 'addLearner' | 'remove';
  readonly node: NodeId;
}

/**
 * The next single-server change that brings the Raft membership `have` (the truth for who votes) toward
 * the metadata's voters and learners of `p` (what it should be), proposed by the partition's leader
 * `self`; null when they agree, or when only the leader itself would go (it must hand leadership over
 * first). Adds before removals, so the replica count never dips during a move. A voter the metadata
 * lists as a learner is removed, never demoted in place: a replica re-added after its disk was wiped
 * must not inherit the match index of the log it lost. Pure.
 */
export function nextConfChange(p: PartitionState, have: RaftMembership, self: NodeId): MembershipChange | null {
  const wantV = p.voters.nodes;
  const wantL = p.learners.nodes;
  for (const n of wantL) if (have.voters.includes(n) && n !== self) return { type: 'remove', node: n };
  for (const n of wantL) if (!have.voters.includes(n) && !have.learners.includes(n)) return { type: 'addLearner', node: n };
  for (const n of wantV) if (have.learners.includes(n)) return { type: 'addVoter', node: n };
  for (const n of wantV) if (!have.voters.includes(n) && !have.learners.includes(n)) return { type: 'addLearner', node: n };
  for (const n of [...have.voters, ...have.learners]) if (n !== self && !wantV.includes(n) && !wantL.includes(n)) return { type: 'remove', node: n };
  return null;
}

/** Whether the Raft membership is exactly the metadata's (as sets). */
export function membershipMatches(p: PartitionState, have: RaftMembership): boolean {
  const same = (a: readonly NodeId[], b: readonly NodeId[]): boolean => a.length === b.length && a.every((x) => b.includes(x));
  return same(p.voters.nodes, have.voters) && same(p.learners.nodes, have.learners);
}
