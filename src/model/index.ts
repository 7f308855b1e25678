/**
 * Branded ids and offsets, so an Offset cannot be passed where a Term goes.
 *
 * Offsets are plain JS numbers inside the process (safe integers up to 2^53, far past any log we will
 * write) because bigint arithmetic on the hot path is slow; they become `bigint` only at the protobuf
 * edge in src/rpc/ (ts-proto forceLong=bigint).
 */
export type Brand<T, B extends string> = T & { readonly __brand: B };

export type Offset = Brand<number, 'Offset'>;
export type Term = Brand<number, 'Term'>;
export type NodeId = Brand<number, 'NodeId'>;
export type PartitionId = Brand<number, 'PartitionId'>;
export type TopicName = Brand<string, 'TopicName'>;

export const asOffset = (n: number): Offset => n as Offset;
export const asTerm = (n: number): Term => n as Term;
export const asNodeId = (n: number): NodeId => n as NodeId;
export const asPartitionId = (n: number): PartitionId => n as PartitionId;
export const asTopicName = (s: string): TopicName => s as TopicName;

export { murmur2, partitionForKey } from './murmur2.js';
