/** Public surface of the Raft transport between nodes. See README.md and docs/cluster.md "Raft transport". */
export { GrpcRaftTransport, RaftTransportServiceDefinition, RAFT_TRANSPORT_METHOD_PATH, type RaftTransportOptions, type RaftTransportLogger } from './transport.js';
export { NOOP_RAFT_TRANSPORT_PROBE, RAFT_TRANSPORT_DROP_REASONS, type RaftTransportProbe, type RaftTransportDropReason } from './probe.js';
export { encodeFrame, decodeFrame, messageSize, type DecodedFrame, type StreamHello } from './codec.js';
