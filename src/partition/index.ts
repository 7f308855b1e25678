/**
 * Public surface of src/partition: the partition (log + Raft replica + high watermark + parked
 * fetches) that runs inside a shard worker. Imported only by src/shard; never by the main thread's
 * broker or by src/rpc.
 */
export { Partition, partitionDir, LOCAL_NODE_ID, TEST_CRASH_AFTER_APPEND_ENV, type PartitionEffects, type PartitionIdentity, type PartitionRaftOptions, type PartitionTimers, type ReplicaOptions, type PartitionDriverBug, PARTITION_DRIVER_BUGS, type PeerMessage, type ProduceOk, type PartitionMembership } from './partition.js';
export { NotLeaderError } from './errors.js';
export { PartitionRaftStorage } from './raft-storage.js';
export { controlBatch, readControl, CONTROL_TYPE_CONF, CONTROL_TYPE_NOOP } from './control-batch.js';
export { ProducerStateTable, NO_PRODUCER_ID, type BatchIdentity, type CheckResult } from './producer-state.js';
export { PRODUCER_SNAPSHOT_FILE, type ProducerStateRecovery } from './producer-state-store.js';
