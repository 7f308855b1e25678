/**
 * The seams between the cluster's parts (issue 11), fixed first so that membership, the Raft
 * transport, the controller and the partitions can be built side by side and plugged together.
 *
 * Decisions (the reasons are in ARCHITECTURE.md, "Cluster"):
 * - A node is identified by a positive integer (`--node-id`); it is also its Raft `NodeId` in every
 *   group it belongs to. 0 is never a node (Raft uses it for "nobody").
 * - Cluster traffic rides the client gRPC port, in internal services of package `sluice.cluster.v1`.
 * - Every Raft group has a cluster-unique `GroupId`: 0 is the controller group; a partition's group id
 *   is assigned by the controller when the partition is created and never reused.
 * - Gossip informs, Raft decides (DESIGN.md decision 4): membership answers "where is node N and does
 *   it look alive"; it never elects, and it never changes a group's voters.
 */
import type { NodeId } from '../model/index.js';
import type { Message } from '../raft/index.js';

/** A Raft group's cluster-wide id. */
export type GroupId = number;

/** The controller's Raft group. */
export const CONTROLLER_GROUP_ID: GroupId = 0;

/** What gossip knows about one node. */
export interface NodeInfo {
  readonly id: NodeId;
  /** Generated on the node's first start and kept in its data dir: a wiped disk gets a new one. */
  readonly uuid: string;
  /** host:port that other nodes and clients dial (gRPC, clients and cluster traffic alike). */
  readonly address: string;
  /** '' when not configured. */
  readonly rack: string;
  readonly shards: number;
  /** alive: answering probes; suspect: missed probes, not yet refuted; dead: declared failed. */
  readonly state: 'alive' | 'suspect' | 'dead';
  /** SWIM incarnation: only the node itself raises it (to refute a suspicion). */
  readonly incarnation: number;
  /**
   * The node began a graceful stop: it still serves, but is no target for leaderships (another
   * stopping node's hand-off, leader balancing). Absent means false. Only the node itself sets it.
   */
  readonly leaving?: boolean;
}

/** Membership, as every other part of the node sees it. Implemented by gossip. */
export interface PeerDirectory {
  readonly self: NodeInfo;
  /** Every node ever seen in this cluster, this one included, by id. */
  members(): readonly NodeInfo[];
  get(id: NodeId): NodeInfo | undefined;
  /** Called after any change (join, state change, address change). Returns an unsubscribe function. */
  onChange(listener: (node: NodeInfo) => void): () => void;
  /**
   * Drops a dead member from the table, for a node that left for good (the controller decommissioned
   * it): it is listed and dialled no more until it speaks again. Returns whether it was dropped.
   */
  forget?(id: NodeId): boolean;
}

/**
 * Carries Raft messages of many groups between this node and its peers. Sends never block and never
 * throw: a message to an unreachable peer is dropped (Raft retries), and a full per-peer queue drops
 * too (bounded memory). Messages to one peer are delivered in the order sent, or not at all.
 */
export interface RaftTransport {
  /** Send `msg` (to `msg.to`) for group `group`. `msg.entries[i].data` travels byte for byte. */
  send(group: GroupId, msg: Message): void;
  /** Deliver every message for `group` that arrives from a peer to `handler`. One handler per group. */
  register(group: GroupId, handler: (msg: Message) => void): () => void;
}
