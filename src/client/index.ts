/**
 * Public surface of src/client: the TypeScript client (Producer, Consumer, Admin) over gRPC. Never
 * imports the broker core at run time (src/broker, src/shard, src/partition, src/storage); it shares
 * only the batch codec, the partitioner and types with it.
 */
export { Admin, type CreateTopicOptions, type OffsetQuery, type Reassignments, type Recommission } from './admin.js';
export { Consumer, decodeFetched, type ConsumerOptions } from './consumer.js';
export {
  GroupConsumer,
  GroupAdmin,
  type GroupConsumerOptions,
  type GroupBatch,
  type GroupDescription,
  type CommitSpec,
  type ResetTarget,
  type TopicPartitionRef,
} from './group-consumer.js';
export { Producer, type ProducerOptions } from './producer.js';
export { Connection, brokerList, DEFAULT_BROKER, type ClientOptions } from './connection.js';
export type * from './types.js';
