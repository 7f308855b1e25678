/**
 * What the Raft transport reports (Redpanda's `-probe`): src/metrics implements it with prom-client;
 * the transport never imports prom-client. Calls are per frame, not per message, so the hot path pays
 * one call per peer per event-loop turn.
 */
import type { NodeId } from '../../model/index.js';

/**
 * Why messages were not sent or not delivered:
 * - `backpressure`: the peer's in-flight budget is full (its stream is backed up);
 * - `unreachable`: no stream to the peer (not yet connected, reconnecting, or it just closed);
 * - `too_large`: one message larger than a frame may be;
 * - `unknown_group`: received for a group with no handler on this node;
 * - `closed`: sent after the transport was closed.
 */
export type RaftTransportDropReason = 'backpressure' | 'unreachable' | 'too_large' | 'unknown_group' | 'closed';

export const RAFT_TRANSPORT_DROP_REASONS: readonly RaftTransportDropReason[] = Object.freeze(['backpressure', 'unreachable', 'too_large', 'unknown_group', 'closed']);

export interface RaftTransportProbe {
  frameSent(peer: NodeId, bytes: number, messages: number): void;
  frameReceived(peer: NodeId, bytes: number, messages: number): void;
  dropped(peer: NodeId, reason: RaftTransportDropReason, messages: number): void;
  /** A stream to `peer` became the pair's stream (dialed or accepted). */
  streamOpened(peer: NodeId): void;
  /** A stream was closed because the peer sent a bad frame or hello. */
  streamRejected(peer: NodeId): void;
}

export const NOOP_RAFT_TRANSPORT_PROBE: RaftTransportProbe = Object.freeze({
  frameSent() {},
  frameReceived() {},
  dropped() {},
  streamOpened() {},
  streamRejected() {},
});
