/**
 * Types shared by the coordinator, the member sessions and the front-end (src/rpc/groups-service.ts).
 * Transport-neutral: numbers for offsets, Uint8Array for bytes, SluiceError for failures.
 */
import type { TopicPartition } from './assignor.js';

export type { TopicPartition } from './assignor.js';

export type OffsetResetPolicy = 'earliest' | 'latest';

export interface JoinInput {
  groupId: string;
  /** Exactly one of topics (non-empty) and topicPattern. */
  topics?: string[];
  topicPattern?: string;
  instanceId?: string | null;
  /** 0 or absent: the default. */
  sessionTimeoutMs?: number;
}

export interface JoinResult {
  memberId: string;
  generation: number;
  sessionTimeoutMs: number;
  /** A static member took back its previous assignment (no rebalance). */
  rejoined: boolean;
}

export interface AssignedPartition extends TopicPartition {
  /** The committed offset, or null when the group has none (the session applies its reset policy). */
  committed: number | null;
}

/**
 * What the coordinator tells a member. Calls arrive in protocol order: joined first, then assign and
 * revoke as the assignment changes; fenced last (the member was removed: session timeout, a newer
 * instance with the same instance id, or the group was deleted).
 */
export interface MemberSink {
  joined(result: JoinResult): void;
  assign(generation: number, partitions: AssignedPartition[]): void;
  revoke(generation: number, partitions: TopicPartition[]): void;
  fenced(reason: Error): void;
}

export interface CommitOffset extends TopicPartition {
  offset: number;
  metadata?: string;
}

export type GroupState = 'EMPTY' | 'RECONCILING' | 'STABLE';

export interface MemberDescription {
  memberId: string;
  instanceId: string | null;
  generation: number;
  assigned: TopicPartition[];
  revoking: TopicPartition[];
  connected: boolean;
  topics: string[];
}

export interface PartitionLag extends TopicPartition {
  /** -1 when nothing is committed. */
  committedOffset: number;
  highWatermark: number;
  lag: number;
  owner: string | null;
}

export interface GroupDescription {
  groupId: string;
  state: GroupState;
  generation: number;
  members: MemberDescription[];
  partitions: PartitionLag[];
  coordinatorPartition: number;
}

export interface GroupSummary {
  groupId: string;
  state: GroupState;
  members: number;
}

export type ResetSpec =
  | { kind: 'earliest' }
  | { kind: 'latest' }
  | { kind: 'timestamp'; timestampMs: number }
  | { kind: 'offset'; offset: number };

export interface ResetPlanEntry extends TopicPartition {
  /** -1 when nothing was committed. */
  currentOffset: number;
  newOffset: number;
}

/** Where a group's coordinator is, as far as this node knows (cluster mode). */
export interface CoordinatorAddress {
  /** 0 when no leader of the offsets partition is known (an election is under way). */
  nodeId: number;
  /** '' when unknown. */
  address: string;
}

/**
 * Which offsets partitions this node coordinates (cluster mode; src/server/cluster-api.ts implements
 * it over the replicas' status). Without one, a coordinator owns every offsets partition (one node).
 */
export interface CoordinatorPlacement {
  /**
   * Per offsets partition: the leader epoch when this node leads it AND every entry of its log is
   * committed (the no-op of its own term is, so nothing an earlier leader acknowledged is missing from
   * a replay up to the high watermark); else null. A new epoch means a new tenure: reload.
   */
  leaderships(): readonly (number | null)[];
  /** The coordinator of offsets partition `partition` as this node knows it (for NOT_COORDINATOR). */
  coordinatorOf(partition: number): CoordinatorAddress;
  /** This node's id (a NOT_COORDINATOR while loading names this node). */
  readonly nodeId: number;
  /** Called when leadership may have changed; returns an unsubscribe. Progress of the high watermark is polled. */
  onChange(listener: () => void): () => void;
}

/** A BrokerApi (internal view) that knows where the coordinators are: cluster mode. */
export interface PlacementSource {
  coordinatorPlacement(): CoordinatorPlacement;
}
