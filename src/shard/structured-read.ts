/**
 * Structured reads, done on the shard: whole raw batches → the protobuf bytes of the `records` field
 * (`repeated sluice.v1.Record records = 1`) of a FetchResponse, so the main thread splices them into
 * the response with no decompression and no per-record objects. Decompression is bounded per batch by
 * BATCH_DECOMPRESSED_BYTES_MAX (src/batch), and the output by `maxBytes`: batches are added while the
 * output stays within it; a first batch larger than `maxBytes` is not encoded but reported
 * (`needBytes`), so the caller can reserve that much before it asks again. `nextOffset` is where the next read starts (after the last batch included).
 *
 * The layout written here is sluice.v1.Record's (key = 1, value = 2, headers = 3 {key = 1, value = 2},
 * timestamp_ms = 4, offset = 5); test/shard/structured-read.test.ts checks it against the generated
 * decoder. Control batches (Raft's entries) are skipped, as every reader does. This file owns the only copy of that layout outside src/rpc, because src/shard never
 * imports src/rpc.
 */
import { decodeStoredBatch, readBatchHeader } from '../batch/index.js';
import type { DecodedRecord } from '../batch/types.js';
import { sizeOfUnsignedVarint, writeUnsignedVarint } from '../batch/varint.js';

export interface StructuredRead {
  /** Concatenated `records` fields (tag 10, length, Record), ready to splice into a FetchResponse. */
  data: Buffer;
  records: number;
  nextOffset: number;
  /**
   * Set (and nothing else returned) when the first batch alone encodes to more than `maxBytes` (a
   * record of many MiB, a compressed batch that inflates far): the read must be asked again with at
   * least this many bytes, which the caller first reserves from its memory budget.
   */
  needBytes?: number;
}


const bytesField = (n: number): number => 1 + sizeOfUnsignedVarint(n) + n;

/** An int64 field as protobuf encodes it: negatives take ten bytes (two's complement), never here in practice. */
function int64Size(v: number): number {
  return v < 0 ? 10 : sizeOfUnsignedVarint(v);
}

function writeInt64(buf: Buffer, pos: number, v: number): number {
  if (v >= 0) return writeUnsignedVarint(buf, pos, v);
  let x = BigInt.asUintN(64, BigInt(v));
  while (x >= 128n) {
    buf[pos++] = Number(x & 127n) | 0x80;
    x >>= 7n;
  }
  buf[pos++] = Number(x);
  return pos;
}

interface Sized {
  record: DecodedRecord;
  headerKeys: Buffer[];
  headerSizes: number[];
  size: number;
}

function sizeRecord(record: DecodedRecord): Sized {
  let size = 0;
  if (record.key !== null) size += bytesField(record.key.length);
  if (record.value !== null) size += bytesField(record.value.length);
  const headerKeys: Buffer[] = [];
  const headerSizes: number[] = [];
  for (const h of record.headers) {
    const k = Buffer.from(h.key, 'utf8');
    let hn = 0;
    if (k.length > 0) hn += bytesField(k.length);
    if (h.value !== null) hn += bytesField(h.value.length);
    headerKeys.push(k);
    headerSizes.push(hn);
    size += 1 + sizeOfUnsignedVarint(hn) + hn;
  }
  if (record.timestampMs !== 0) size += 1 + int64Size(record.timestampMs);
  if (record.offset !== 0) size += 1 + int64Size(record.offset);
  return { record, headerKeys, headerSizes, size };
}

function writeBytes(out: Buffer, pos: number, tag: number, b: Uint8Array): number {
  out[pos++] = tag;
  pos = writeUnsignedVarint(out, pos, b.length);
  out.set(b, pos);
  return pos + b.length;
}

function writeRecord(out: Buffer, pos: number, s: Sized): number {
  const r = s.record;
  out[pos++] = 10; // FetchResponse.records
  pos = writeUnsignedVarint(out, pos, s.size);
  if (r.key !== null) pos = writeBytes(out, pos, 10, r.key);
  if (r.value !== null) pos = writeBytes(out, pos, 18, r.value);
  for (let i = 0; i < r.headers.length; i++) {
    out[pos++] = 26;
    pos = writeUnsignedVarint(out, pos, s.headerSizes[i]);
    if (s.headerKeys[i].length > 0) pos = writeBytes(out, pos, 10, s.headerKeys[i]);
    const v = r.headers[i].value;
    if (v !== null) pos = writeBytes(out, pos, 18, v);
  }
  if (r.timestampMs !== 0) {
    out[pos++] = 32;
    pos = writeInt64(out, pos, r.timestampMs);
  }
  if (r.offset !== 0) {
    out[pos++] = 40;
    pos = writeInt64(out, pos, r.offset);
  }
  return pos;
}

/**
 * Encodes the records at or after `fromOffset` of the whole batches in `batches` (as a read returns
 * them), up to `maxBytes` of output (always at least the first batch). A batch that fails its CRC or
 * cannot be decoded throws LOG_CORRUPT (the log holds it, so it is damage, not bad input).
 */
export function encodeStructuredRead(batches: Buffer, fromOffset: number, maxBytes: number): StructuredRead {
  const sized: Sized[] = [];
  let total = 0;
  let nextOffset = fromOffset;
  for (let pos = 0; pos < batches.length; ) {
    const header = readBatchHeader(batches, pos);
    if (header.isControl) {
      // Raft's own entries (leader no-op, membership): never shown as records, but read past.
      nextOffset = Math.max(nextOffset, header.baseOffset + header.lastOffsetDelta + 1);
      pos += header.sizeBytes;
      continue;
    }
    // Stored bytes are CRC-checked before they are served as decoded records (damage is LOG_CORRUPT).
    const decoded = decodeStoredBatch(batches, pos);
    const batchSized: Sized[] = [];
    let batchBytes = 0;
    for (const r of decoded.records) {
      if (r.offset < fromOffset) continue;
      const s = sizeRecord(r);
      batchSized.push(s);
      batchBytes += 1 + sizeOfUnsignedVarint(s.size) + s.size;
    }
    if (sized.length === 0 && batchBytes > maxBytes) return { data: Buffer.alloc(0), records: 0, nextOffset: fromOffset, needBytes: batchBytes };
    if (sized.length > 0 && total + batchBytes > maxBytes) break;
    for (const s of batchSized) sized.push(s);
    total += batchBytes;
    nextOffset = Math.max(nextOffset, header.baseOffset + header.lastOffsetDelta + 1);
    pos += header.sizeBytes;
  }
  const data = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const s of sized) pos = writeRecord(data, pos, s);
  return { data, records: sized.length, nextOffset };
}
