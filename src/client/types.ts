/** Types the client hands to and gets from applications. Offsets are numbers (safe below 2^53). */
import type { Header } from '../batch/types.js';

export type { Header } from '../batch/types.js';
export type {
  Acks,
  BrokerInfo,
  ClusterMetadata,
  PartitionInfo,
  ProduceResult,
  TopicDescription,
  TopicSummary,
} from '../broker/types.js';

/** Bytes, or a string sent as UTF-8. */
export type Bytes = Uint8Array | string;

export interface ProducerRecord {
  /** null or absent: no key (partitioned sticky round-robin). */
  key?: Bytes | null;
  /** null: a tombstone (distinct from an empty value). */
  value: Bytes | null;
  headers?: Header[] | Record<string, Bytes | null>;
  /** Default: now. */
  timestampMs?: number;
  /** Default: by key hash (murmur2, as the broker and Kafka), else sticky. */
  partition?: number;
}

export interface RecordMetadata {
  topic: string;
  partition: number;
  /** -1 with acks 'none'. */
  offset: number;
}

export interface ConsumedRecord {
  topic: string;
  partition: number;
  offset: number;
  timestampMs: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: Header[];
}

/** Where a consumer starts: earliest, latest, an offset, N before the end, or the first at/after a time. */
export type StartOffset = 'earliest' | 'latest' | number | { fromEnd: number } | { timestampMs: number };
