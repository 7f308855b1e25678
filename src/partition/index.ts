/**
 * Public surface of src/partition: the partition actor that runs inside a shard worker. Imported only
 * by src/shard; never by the main thread's broker or by src/rpc.
 */
export { PartitionActor, partitionDir, type ParkedFetch } from './partition-actor.js';
