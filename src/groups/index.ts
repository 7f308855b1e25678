/**
 * Public surface of src/groups: consumer groups (coordinator, member sessions, committed offsets in
 * `__consumer_offsets`, the sticky assignor). Sees the broker only through BrokerApi; never imports
 * gRPC, src/rpc, src/shard, src/partition or src/storage.
 */
export { GroupCoordinator, type GroupCoordinatorOptions } from './coordinator.js';
export { MemberSession, type DeliveryChunk, type SessionMessage, type SessionOptions, type SessionTransport } from './member-session.js';
export { OffsetsStore, offsetsPartitionFor, OFFSETS_TOPIC_CONFIGS, type InternalTopicCreator, type OffsetWrite } from './offsets-store.js';
export { OffsetsStm, type CommittedOffsetEntry } from './offsets-stm.js';
export { encodeOffsetKey, encodeOffsetValue, decodeOffsetKey, decodeOffsetValue, OFFSETS_FORMAT_VERSION } from './offsets-codec.js';
export { assign, movedPartitions, type Assignment, type AssignorMember } from './assignor.js';
export * from './constants.js';
export type * from './types.js';
