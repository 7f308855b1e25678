/**
 * Public surface of src/batch: the Kafka RecordBatch v2 codec. Owns the byte format only; it never
 * imports from src/storage, src/broker or anything with I/O.
 */
export {
  encodeBatch,
  decodeBatch,
  decodeBatches,
  decodeStoredBatch,
  decodeStoredBatches,
  readBatchHeader,
  validateBatches,
  validateBatchAt,
  patchBatch,
  computeBatchCrc,
  asBuffer,
  BATCH_HEADER_BYTES,
  BATCH_LOG_OVERHEAD_BYTES,
  MAGIC_V2,
  type DecodedBatch,
  type DecodeOptions,
} from './codec.js';
export { isSupportedCompression, compressionName } from './compression.js';
export { Compression } from './types.js';
export type { BatchHeader, BatchesSummary, DecodedRecord, EncodeOptions, Header, RecordInput } from './types.js';
