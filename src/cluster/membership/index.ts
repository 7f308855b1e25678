/**
 * Public surface of src/cluster/membership: node identity in the data dir and SWIM gossip over gRPC
 * (a pure core, swim.ts, and its driver, gossip.ts, which implements PeerDirectory).
 */
export { Swim, supersedes, type SwimConfig, type SwimAction, type MemberChange, type ProbeMessage, type AckMessage, type IndirectProbeMessage, type IndirectAckMessage } from './swim.js';
export { Gossip, DEFAULT_GOSSIP_TIMING, type GossipOptions } from './gossip.js';
export { loadOrCreateIdentity, readIdentity, writeIdentity, nodeFile, NODE_FILE, type NodeIdentity } from './identity.js';
export { NOOP_MEMBERSHIP_PROBE, type MembershipProbe, type MembershipLogger, type GossipTiming } from './types.js';
export { MembershipService } from '../../rpc/gen/sluice/cluster/v1/membership.js';
