/**
 * The seam between the cluster layer (src/server: controller, routing) and a node's Broker in cluster
 * mode (issue 11; the design is fixed in the session's cluster design, these types verbatim). The
 * controller decides which replicas a node hosts; the Broker opens them on its shards, carries their
 * Raft messages over the node's `RaftTransport`, and reports what each replica knows.
 */
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';

/** One replica this node must host (from the controller's ReplicaOp 'open'). */
export interface ReplicaSpec {
  readonly topic: string;
  readonly topicId: string;
  readonly partition: number;
  /** The topic's partition count (for produce without a partition and describe), as the controller knows it. */
  readonly partitionCount: number;
  readonly group: GroupId;
  /** The shard of this node that hosts it (controller placement; taken modulo the shard count if larger). */
  readonly shard: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** The topic's explicit configs (as in topics.json). */
  readonly configs: Readonly<Record<string, string>>;
  /** New replica that must start empty (new partition, replica added/rebuilt); false = reopen on restart. */
  readonly fresh: boolean;
}

export type ReplicaRole = 'leader' | 'follower' | 'candidate' | 'precandidate' | 'learner' | 'offline';

export interface ReplicaStatus {
  readonly group: GroupId;
  readonly topic: string;
  readonly partition: number;
  readonly role: ReplicaRole;
  /** The leader this replica knows, 0 = none. */
  readonly leader: NodeId;
  /** The leader epoch (= Raft term). */
  readonly epoch: number;
  readonly highWatermark: number;
  readonly logStartOffset: number;
  readonly logEndOffset: number;
  /** On the leader only: the voters whose match index is within REPLICA_ISR_LAG_OFFSETS_MAX of its log end (itself included). */
  readonly inSync: readonly NodeId[];
  /**
   * The group is quiesced here (as of the shard's last stats, at most SHARD_STATS_INTERVAL_MS old). A
   * quiesced follower held its leader's whole log when the leader went quiet. Absent means false.
   */
  readonly quiesced?: boolean;
}

/** What the cluster layer (src/server) asks of a node's Broker in cluster mode. */
export interface ReplicaHost {
  /** Idempotent per group: an already open group is left alone. Rejects (having opened none of the failed ones) with the error. */
  openReplicas(specs: readonly ReplicaSpec[]): Promise<void>;
  /** Closes the replicas; `remove` deletes their data. Unknown groups are ignored. */
  closeReplicas(groups: readonly GroupId[], remove: boolean): Promise<void>;
  /** The topic's configs changed: every replica of it here takes them. */
  setReplicaConfigs(topic: string, configs: Readonly<Record<string, string>>): Promise<void>;
  /** The partition count of a topic grew (partitions added elsewhere). */
  setPartitionCount(topic: string, partitionCount: number): void;
  /** Status of every replica here, as of the last shard stats (at most the stats interval old). */
  replicaStatus(): ReplicaStatus[];
  /** Called when a replica here becomes leader, or sees a new leader/epoch. Returns an unsubscribe. */
  onLeaderChange(listener: (s: ReplicaStatus) => void): () => void;
  /**
   * Added after the design (optional, so other implementations need not have it): on the leader of
   * `group` here, hand leadership to voter `to` (leader balancing). Resolves once the replica's Raft
   * core took the transfer; the new leader shows through `onLeaderChange`. NOT_LEADER when this
   * replica does not lead; a transfer that does not complete within an election timeout is dropped.
   */
  transferLeadership?(group: GroupId, to: NodeId): Promise<void>;
  /**
   * Added for replica-set changes (optional, like `transferLeadership`): on the leader of `group` here,
   * propose one membership change of its Raft group. Resolves once the core appended it (it commits
   * later; see `replicaMembership`). NOT_LEADER on a follower; PROPOSAL_DROPPED (retriable) while an
   * earlier change is uncommitted; INVALID_REQUEST when it does not apply.
   */
  proposeConfChange?(group: GroupId, change: ReplicaConfChange): Promise<void>;
  /** The Raft membership and progress of the replicas of `groups` held here (unknown groups are left out). */
  replicaMembership?(groups: readonly GroupId[]): Promise<ReplicaMembership[]>;
  /**
   * Added for quiescence (optional): the failure detector's view of `nodes` changed (suspect, dead,
   * alive again, a new incarnation). Quiesced replicas of groups with one of them as a member wake
   * (docs/raft.md "Quiescence"): gossip informs, Raft decides. `down`: they turned suspect or dead.
   */
  peersChanged?(nodes: readonly NodeId[], down?: boolean): void;
}

/** One single-server membership change of a partition's Raft group. */
export interface ReplicaConfChange {
  readonly type: 'addVoter' | 'addLearner' | 'remove';
  readonly node: NodeId;
}

/** A replica's view of its group's Raft membership (the truth for who votes). */
export interface ReplicaMembership {
  readonly group: GroupId;
  readonly role: ReplicaRole;
  /** The leader this replica knows, 0 = none. */
  readonly leader: NodeId;
  readonly epoch: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** A membership change is appended but not yet committed. */
  readonly confPending: boolean;
  readonly commit: number;
  readonly lastIndex: number;
  /** Leader only: each member's match index (itself: its last index); empty on a follower. */
  readonly match: ReadonlyMap<NodeId, number>;
}
