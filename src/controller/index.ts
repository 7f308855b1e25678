/** Public surface of the controller: cluster metadata in its own Raft group. See docs/controller.md. */
export { Controller, EMPTY_LOG_JOIN_MESSAGE, defaultControllerVoters, emptyLogDecision, readTopicTableImport, validateControllerVoters, type ControllerForwarder, type ControllerOptions } from './controller.js';
export { MetadataStm, METADATA_RECORD_VERSION, FIRST_PARTITION_GROUP_ID, applyStep, type MetadataImage } from './metadata-stm.js';
export { MetadataLog, METADATA_DIR, controllerLogStateOnDisk, type ControllerLogState } from './metadata-log.js';
export { encodeSnapshot, decodeSnapshot } from './snapshot.js';
export { encodeRecordBatch, decodeRecordBatch } from './record-codec.js';
export { planRecords, type PlanContext } from './plan-request.js';
export {
  PlacementLoad,
  placementNodes,
  placePartitions,
  planLeaderBalance,
  planDecommission,
  planMove,
  planRebalance,
  nextStep,
  type PlacementNode,
  type LeaderTransfer,
  type PartitionMove,
} from './placement.js';
export { replicaOps, replicasOf, shardOf, nextConfChange, membershipMatches, type ReplicaOp, type RaftMembership, type MembershipChange } from './local-view.js';
export type * from './types.js';
export { ControllerExecutor, caughtUp, type ExecutorOptions, type LeaderMembership, type ReplicaProgress } from './executor.js';
