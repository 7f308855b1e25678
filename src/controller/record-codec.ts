/**
 * A metadata record in the log: one v2 batch holding one record whose value is the protobuf
 * `MetadataRecord`. The batch is built with its final baseOffset (the log index) and
 * partitionLeaderEpoch (the term), so every replica stores the leader's bytes verbatim.
 */
import { decodeBatch, encodeBatch } from '../batch/index.js';
import { SluiceError } from '../errors.js';
import { MetadataRecord } from '../rpc/gen/sluice/cluster/v1/controller.js';

export function encodeRecordBatch(record: MetadataRecord, index: number, term: number, nowMs: number): Uint8Array {
  const value = MetadataRecord.encode(record).finish();
  return encodeBatch([{ key: null, value, timestampMs: nowMs }], { baseOffset: index, partitionLeaderEpoch: term, baseTimestampMs: nowMs });
}

/** The record of a committed data run. A batch that does not decode is a corrupt log, never skipped. */
export function decodeRecordBatch(data: Uint8Array, index: number): MetadataRecord {
  try {
    const b = decodeBatch(data);
    const value = b.records.length === 1 ? b.records[0].value : null;
    if (value === null) throw new Error(`expected one record with a value, found ${b.records.length} records`);
    return MetadataRecord.decode(value);
  } catch (err) {
    throw new SluiceError('LOG_CORRUPT', `metadata record at index ${index} does not decode: ${(err as Error).message}`, { cause: err });
  }
}
