/**
 * Public surface of src/shard: the main-thread host of one shard worker, the rings and the message
 * protocol. Only src/broker imports this; the worker entry (shard-worker.ts) is loaded by file name.
 */
export { ShardHost, FetchChain, shardWorkerFile, type ShardHostOptions, type ProduceReply, type FetchReply } from './shard-host.js';
export { RingReader, RingWriter, createRingBuffers, type RingBuffers, type RingSlot } from './ring.js';
export type { PartitionKey, PartitionSpec } from './protocol.js';
export { ThreadStatsSampler, GC_KINDS, type ThreadStats } from './thread-stats.js';
