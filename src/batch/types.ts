/**
 * Contract of the Kafka RecordBatch v2 codec (src/batch). The broker's hot path uses only
 * `validateBatches` + `patchBatch`; `encodeBatch`/`decodeBatch` serve clients, structured produce and tests.
 *
 * Layout (big-endian), offsets from the batch start:
 *   0 baseOffset int64 | 8 batchLength int32 | 12 partitionLeaderEpoch int32 | 16 magic int8 (=2)
 *   17 crc uint32 (CRC-32C of bytes 21..end) | 21 attributes int16 | 23 lastOffsetDelta int32
 *   27 baseTimestamp int64 | 35 maxTimestamp int64 | 43 producerId int64 | 51 producerEpoch int16
 *   53 baseSequence int32 | 57 recordCount int32 | 61 records...
 * batchLength counts the bytes after the batchLength field (total = batchLength + 12).
 */

/**
 * Compression codec ids as stored in attributes bits 0-2. A plain (not `const`) enum so that plain-JS
 * users of the package and test fixtures get the values at runtime too.
 */
export enum Compression {
  None = 0,
  Gzip = 1,
  Snappy = 2,
  Lz4 = 3,
  Zstd = 4,
}

export interface Header {
  key: string;
  /** null is kept distinct from an empty value. */
  value: Uint8Array | null;
}

/** A record as producers hand it in. */
export interface RecordInput {
  /** null = no key (distinct from an empty key). */
  key: Uint8Array | null;
  /** null = tombstone (distinct from an empty value). */
  value: Uint8Array | null;
  headers?: Header[];
  /** Milliseconds since the epoch; defaults to the batch's base timestamp. */
  timestampMs?: number;
}

/** A record as decoded from a batch: absolute offset and timestamp resolved. */
export interface DecodedRecord {
  offset: number;
  timestampMs: number;
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Header[];
}

/** The fixed 61-byte header, decoded. */
export interface BatchHeader {
  baseOffset: number;
  /** Total bytes of the batch on the wire: batchLength + 12. */
  sizeBytes: number;
  partitionLeaderEpoch: number;
  magic: number;
  crc: number;
  attributes: number;
  compression: Compression;
  lastOffsetDelta: number;
  baseTimestamp: number;
  maxTimestamp: number;
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
  recordCount: number;
  isTransactional: boolean;
  isControl: boolean;
}

export interface EncodeOptions {
  baseOffset?: number;
  partitionLeaderEpoch?: number;
  compression?: Compression;
  /** Defaults to the first record's timestamp, or Date.now() when records carry none. */
  baseTimestampMs?: number;
  producerId?: bigint;
  producerEpoch?: number;
  baseSequence?: number;
  /**
   * Sets the control bit (attributes bit 5): a batch of the log's own (Raft no-op, membership), which
   * every reader skips. Clients may not produce one.
   */
  control?: boolean;
}

/** What `validateBatches` learns from a buffer of one or more concatenated batches, without decoding records. */
export interface BatchesSummary {
  batchCount: number;
  recordCount: number;
  /** Sum over batches of (lastOffsetDelta + 1): the offsets the append will consume. */
  offsetCount: number;
  maxTimestamp: number;
  sizeBytes: number;
}
