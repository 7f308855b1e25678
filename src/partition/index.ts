/**
 * Public surface of src/partition: the partition actor that runs inside a shard worker. Imported only
 * by src/shard; never by the main thread's broker or by src/rpc.
 */
export { PartitionActor, partitionDir, TEST_CRASH_AFTER_APPEND_ENV, type ParkedFetch } from './partition-actor.js';
export { ProducerStateTable, NO_PRODUCER_ID, type BatchIdentity, type CheckResult } from './producer-state.js';
export { PRODUCER_SNAPSHOT_FILE, type ProducerStateRecovery } from './producer-state-store.js';
