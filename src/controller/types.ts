/**
 * The controller's view of the cluster: plain data, built only by applying committed metadata records
 * (./metadata-stm.ts), identical on every node that applied the same log prefix.
 */
import type { GroupId } from '../cluster/types.js';
import type { SluiceError } from '../errors.js';
import type { NodeId } from '../model/index.js';

export type NodeLifecycle = 'active' | 'decommissioning' | 'decommissioned';

/** A registered node, as the metadata log knows it (gossip knows whether it is alive). */
export interface NodeRecordState {
  readonly id: NodeId;
  /** The uuid of its current incarnation (a wiped disk registers a new one). */
  readonly uuid: string;
  readonly address: string;
  /** '' when not configured. */
  readonly rack: string;
  readonly shards: number;
  readonly state: NodeLifecycle;
  /** 1 at first registration, +1 each time the id comes back with a new uuid. */
  readonly incarnation: number;
}

/** Replicas and the shard each lives on: `shards[i]` is the shard of `nodes[i]` on that node. */
export interface Assignment {
  readonly nodes: readonly NodeId[];
  readonly shards: readonly number[];
}

export interface PartitionState {
  readonly topic: string;
  readonly topicId: string;
  readonly partition: number;
  /** The partition's Raft group: cluster-unique, never reused. */
  readonly group: GroupId;
  /** Voters; `voters.nodes[0]` is the preferred leader. */
  readonly voters: Assignment;
  /** Replicas being added (a move in progress): they replicate but do not vote. */
  readonly learners: Assignment;
  /**
   * Nodes whose replica was lost: the node came back with a new uuid (a wiped disk). Such a replica must
   * be rebuilt from the others and must never be counted as a vote until it was removed and re-added.
   */
  readonly lost: readonly NodeId[];
  /** 0 = unknown. */
  readonly leader: NodeId;
  readonly leaderEpoch: number;
  /** The target of a move in progress, or null. */
  readonly target: Assignment | null;
}

export interface TopicState {
  readonly name: string;
  readonly topicId: string;
  readonly replicationFactor: number;
  readonly configs: Readonly<Record<string, string>>;
  readonly createdMs: number;
  readonly partitions: readonly PartitionState[];
}

/**
 * What applying one record changed, in order. A node consumes these to open, reconfigure and close its
 * replicas (./local-view.ts turns them into the operations for one node).
 */
export type MetadataEvent =
  | { readonly type: 'nodeRegistered'; readonly node: NodeRecordState }
  | { readonly type: 'nodeUpdated'; readonly node: NodeRecordState }
  /** A known id with a new uuid: every replica it held is now lost (`lost` lists their groups). */
  | { readonly type: 'nodeReincarnated'; readonly node: NodeRecordState; readonly lost: readonly GroupId[] }
  | { readonly type: 'nodeStateChanged'; readonly node: NodeRecordState; readonly before: NodeLifecycle }
  | { readonly type: 'topicCreated'; readonly topic: TopicState }
  | { readonly type: 'topicDeleted'; readonly topic: TopicState }
  | { readonly type: 'configsChanged'; readonly topic: TopicState }
  | { readonly type: 'partitionsAdded'; readonly topic: TopicState; readonly partitions: readonly PartitionState[] }
  /** Voters, learners, lost or the move target of one partition changed (one reassignment step). */
  | { readonly type: 'replicasChanged'; readonly before: PartitionState; readonly partition: PartitionState }
  | { readonly type: 'leaderChanged'; readonly partition: PartitionState };

/** Applying a record either changes the state (events, maybe none) or is refused, deterministically. */
export interface ApplyOutcome {
  readonly events: readonly MetadataEvent[];
  /** Null when applied; otherwise why the record changed nothing (the same on every node). */
  readonly error: SluiceError | null;
}
