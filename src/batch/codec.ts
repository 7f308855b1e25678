/**
 * Kafka RecordBatch v2 codec. Two audiences:
 *  - the broker's hot path (`validateBatches`, `patchBatch`, `readBatchHeader`): header and CRC checks
 *    only, never a record decode, no allocation per batch;
 *  - clients and tests (`encodeBatch`, `decodeBatch`): full record encoding, compression included.
 * Layout and field offsets: see ./types.ts.
 */
import { crc32c } from '@node-rs/crc32';
import { SluiceError } from '../errors.js';
import { BATCH_RECORDS_MAX } from '../constants.js';
import { compress, decompress, isSupportedCompression, compressionName } from './compression.js';
import { readVarint, readVarlong, sizeOfVarint, sizeOfVarlong, writeVarint, writeVarlong, type Cursor } from './varint.js';
import type { BatchHeader, BatchesSummary, DecodedRecord, EncodeOptions, Header, RecordInput } from './types.js';
import { Compression } from './types.js';

/** Fixed header size of a v2 batch; the records start here. */
export const BATCH_HEADER_BYTES = 61;
/** baseOffset + batchLength: what must be read to know a batch's size. */
export const BATCH_LOG_OVERHEAD_BYTES = 12;
export const MAGIC_V2 = 2;

// Field offsets from the batch start.
export const OFF_BASE_OFFSET = 0;
export const OFF_LENGTH = 8;
export const OFF_LEADER_EPOCH = 12;
export const OFF_MAGIC = 16;
export const OFF_CRC = 17;
export const OFF_ATTRIBUTES = 21;
export const OFF_LAST_OFFSET_DELTA = 23;
export const OFF_BASE_TIMESTAMP = 27;
export const OFF_MAX_TIMESTAMP = 35;
export const OFF_PRODUCER_ID = 43;
export const OFF_PRODUCER_EPOCH = 51;
export const OFF_BASE_SEQUENCE = 53;
export const OFF_RECORD_COUNT = 57;

const COMPRESSION_MASK = 0x07;
const TIMESTAMP_TYPE_MASK = 0x08;
const TRANSACTIONAL_MASK = 0x10;
const CONTROL_MASK = 0x20;
const TWO_32 = 2 ** 32;

/** A zero-copy Buffer view of any Uint8Array (Buffer methods are the fastest big-endian readers in Node). */
export function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

/** Reads a big-endian int64 as a JS number (exact below 2^53, which offsets and timestamps stay under). */
export function readInt64(buf: Buffer, pos: number): number {
  return buf.readInt32BE(pos) * TWO_32 + buf.readUInt32BE(pos + 4);
}

export function writeInt64(buf: Buffer, pos: number, value: number): void {
  const hi = Math.floor(value / TWO_32);
  buf.writeInt32BE(hi, pos);
  buf.writeUInt32BE(value - hi * TWO_32, pos + 4);
}

/** Total bytes of the batch starting at `pos` (batchLength + 12); needs 12 readable bytes. */
export function batchSizeAt(buf: Buffer, pos: number): number {
  return buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
}

/** CRC-32C of attributes..end, as stored in the crc field. */
export function computeBatchCrc(buf: Buffer, pos: number, sizeBytes: number): number {
  return crc32c(buf.subarray(pos + OFF_ATTRIBUTES, pos + sizeBytes)) >>> 0;
}

/** Decodes the fixed 61-byte header at `pos`. Checks only that the bytes exist; no CRC check. */
export function readBatchHeader(data: Uint8Array, pos = 0): BatchHeader {
  const buf = asBuffer(data);
  if (pos < 0 || pos + BATCH_HEADER_BYTES > buf.length) {
    throw new SluiceError('CORRUPT_BATCH', `batch header at byte ${pos} is truncated (${buf.length - pos} bytes left)`);
  }
  const attributes = buf.readInt16BE(pos + OFF_ATTRIBUTES);
  return {
    baseOffset: readInt64(buf, pos + OFF_BASE_OFFSET),
    sizeBytes: batchSizeAt(buf, pos),
    partitionLeaderEpoch: buf.readInt32BE(pos + OFF_LEADER_EPOCH),
    magic: buf.readInt8(pos + OFF_MAGIC),
    crc: buf.readUInt32BE(pos + OFF_CRC),
    attributes,
    compression: (attributes & COMPRESSION_MASK) as Compression,
    lastOffsetDelta: buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA),
    baseTimestamp: readInt64(buf, pos + OFF_BASE_TIMESTAMP),
    maxTimestamp: readInt64(buf, pos + OFF_MAX_TIMESTAMP),
    producerId: buf.readBigInt64BE(pos + OFF_PRODUCER_ID),
    producerEpoch: buf.readInt16BE(pos + OFF_PRODUCER_EPOCH),
    baseSequence: buf.readInt32BE(pos + OFF_BASE_SEQUENCE),
    recordCount: buf.readInt32BE(pos + OFF_RECORD_COUNT),
    isTransactional: (attributes & TRANSACTIONAL_MASK) !== 0,
    isControl: (attributes & CONTROL_MASK) !== 0,
  };
}

/**
 * Checks one batch at `pos` without decoding records and returns its size. The order of checks makes
 * the error name the first thing wrong: truncation, length, size limit, magic, CRC, counts, codec.
 */
export function validateBatchAt(buf: Buffer, pos: number, maxBatchBytes: number, recordsMax = BATCH_RECORDS_MAX): number {
  const left = buf.length - pos;
  if (left < BATCH_LOG_OVERHEAD_BYTES) {
    throw new SluiceError('CORRUPT_BATCH', `truncated batch at byte ${pos}: ${left} bytes cannot hold baseOffset and batchLength`);
  }
  const batchLength = buf.readInt32BE(pos + OFF_LENGTH);
  if (batchLength < BATCH_HEADER_BYTES - BATCH_LOG_OVERHEAD_BYTES) {
    throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} has invalid batchLength ${batchLength}`);
  }
  const size = batchLength + BATCH_LOG_OVERHEAD_BYTES;
  if (size > maxBatchBytes) {
    throw new SluiceError('RECORD_TOO_LARGE', `batch at byte ${pos} is ${size} bytes, over the limit of ${maxBatchBytes}`);
  }
  if (size > left) {
    throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} declares ${size} bytes but only ${left} remain (length mismatch)`);
  }
  const magic = buf.readInt8(pos + OFF_MAGIC);
  if (magic !== MAGIC_V2) {
    throw new SluiceError('UNSUPPORTED_MAGIC', `batch at byte ${pos} has magic ${magic}; only v2 (magic 2) is supported`);
  }
  const stored = buf.readUInt32BE(pos + OFF_CRC);
  const actual = computeBatchCrc(buf, pos, size);
  if (stored !== actual) {
    throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} fails its CRC-32C (stored ${stored}, computed ${actual})`);
  }
  const recordCount = buf.readInt32BE(pos + OFF_RECORD_COUNT);
  const lastOffsetDelta = buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA);
  if (recordCount > recordsMax) {
    throw new SluiceError('TOO_MANY_RECORDS', `batch at byte ${pos} declares ${recordCount} records, over the limit of ${recordsMax}`);
  }
  if (recordCount < 1 || lastOffsetDelta !== recordCount - 1) {
    throw new SluiceError(
      'CORRUPT_BATCH',
      `batch at byte ${pos} has recordCount ${recordCount} and lastOffsetDelta ${lastOffsetDelta}; expected lastOffsetDelta = recordCount - 1 >= 0`,
    );
  }
  const codec = buf.readInt16BE(pos + OFF_ATTRIBUTES) & COMPRESSION_MASK;
  if (!isSupportedCompression(codec)) {
    throw new SluiceError('UNSUPPORTED_COMPRESSION', `batch at byte ${pos} uses unsupported compression ${compressionName(codec)}`);
  }
  return size;
}

/**
 * Validates every batch in a buffer of concatenated batches (header, length, CRC, limits) and sums what
 * an append needs. Throws the first problem as a typed SluiceError; never modifies `data`.
 */
export function validateBatches(data: Uint8Array, maxBatchBytes: number, recordsMax = BATCH_RECORDS_MAX): BatchesSummary {
  const buf = asBuffer(data);
  if (buf.length === 0) throw new SluiceError('CORRUPT_BATCH', 'no batches: the buffer is empty');
  let pos = 0;
  let batchCount = 0;
  let recordCount = 0;
  let offsetCount = 0;
  let maxTimestamp = -1;
  while (pos < buf.length) {
    const size = validateBatchAt(buf, pos, maxBatchBytes, recordsMax);
    batchCount++;
    recordCount += buf.readInt32BE(pos + OFF_RECORD_COUNT);
    offsetCount += buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA) + 1;
    const ts = readInt64(buf, pos + OFF_MAX_TIMESTAMP);
    if (ts > maxTimestamp) maxTimestamp = ts;
    pos += size;
  }
  return { batchCount, recordCount, offsetCount, maxTimestamp, sizeBytes: pos };
}

/** Assigns baseOffset and partitionLeaderEpoch in place. Both lie outside the CRC, which stays valid. */
export function patchBatch(data: Uint8Array, pos: number, baseOffset: number, leaderEpoch: number): void {
  const buf = asBuffer(data);
  writeInt64(buf, pos + OFF_BASE_OFFSET, baseOffset);
  buf.writeInt32BE(leaderEpoch, pos + OFF_LEADER_EPOCH);
}

// --- Encoding -----------------------------------------------------------------------------------

interface SizedHeader {
  key: Buffer;
  value: Uint8Array | null;
}

const EMPTY_HEADERS: Header[] = [];

function sizeOfBytes(b: Uint8Array | null): number {
  return b === null ? 1 : sizeOfVarint(b.length) + b.length;
}

function writeBytes(out: Buffer, pos: number, b: Uint8Array | null): number {
  if (b === null) return writeVarint(out, pos, -1);
  pos = writeVarint(out, pos, b.length);
  out.set(b, pos);
  return pos + b.length;
}

/**
 * Encodes records into one v2 batch (magic 2, CRC-32C set). Offsets in the batch are relative; the log
 * assigns the real baseOffset on append. Record timestamps default to the batch's base timestamp.
 */
export function encodeBatch(records: RecordInput[], options: EncodeOptions = {}): Buffer {
  if (records.length === 0) throw new SluiceError('INVALID_REQUEST', 'a batch needs at least one record');
  if (records.length > BATCH_RECORDS_MAX) {
    throw new SluiceError('TOO_MANY_RECORDS', `${records.length} records exceed the limit of ${BATCH_RECORDS_MAX} per batch`);
  }
  const codec = options.compression ?? Compression.None;
  if (!isSupportedCompression(codec)) throw new SluiceError('UNSUPPORTED_COMPRESSION', `compression ${compressionName(codec)} is not supported`);
  const baseTimestamp = options.baseTimestampMs ?? records[0].timestampMs ?? Date.now();
  let maxTimestamp = -Infinity;
  const headerKeys: SizedHeader[][] = new Array(records.length);
  const bodySizes = new Array<number>(records.length);
  let recordsBytes = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const ts = r.timestampMs ?? baseTimestamp;
    if (ts > maxTimestamp) maxTimestamp = ts;
    const headers = r.headers ?? EMPTY_HEADERS;
    const sized: SizedHeader[] = headers.map((h) => ({ key: Buffer.from(h.key, 'utf8'), value: h.value }));
    headerKeys[i] = sized;
    let body = 1 + sizeOfVarlong(ts - baseTimestamp) + sizeOfVarint(i) + sizeOfBytes(r.key) + sizeOfBytes(r.value) + sizeOfVarint(sized.length);
    for (const h of sized) body += sizeOfBytes(h.key) + sizeOfBytes(h.value);
    bodySizes[i] = body;
    recordsBytes += sizeOfVarint(body) + body;
  }
  // Uncompressed records go straight after the header; compressed ones through a scratch buffer.
  const direct = codec === Compression.None;
  const recordsBuf = Buffer.allocUnsafe(direct ? BATCH_HEADER_BYTES + recordsBytes : recordsBytes);
  let pos = direct ? BATCH_HEADER_BYTES : 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    pos = writeVarint(recordsBuf, pos, bodySizes[i]);
    recordsBuf[pos++] = 0; // record attributes: unused
    pos = writeVarlong(recordsBuf, pos, (r.timestampMs ?? baseTimestamp) - baseTimestamp);
    pos = writeVarint(recordsBuf, pos, i);
    pos = writeBytes(recordsBuf, pos, r.key);
    pos = writeBytes(recordsBuf, pos, r.value);
    pos = writeVarint(recordsBuf, pos, headerKeys[i].length);
    for (const h of headerKeys[i]) {
      pos = writeBytes(recordsBuf, pos, h.key);
      pos = writeBytes(recordsBuf, pos, h.value);
    }
  }
  let out: Buffer;
  if (direct) {
    out = recordsBuf;
  } else {
    const packed = compress(codec, recordsBuf);
    out = Buffer.allocUnsafe(BATCH_HEADER_BYTES + packed.length);
    packed.copy(out, BATCH_HEADER_BYTES);
  }
  writeInt64(out, OFF_BASE_OFFSET, options.baseOffset ?? 0);
  out.writeInt32BE(out.length - BATCH_LOG_OVERHEAD_BYTES, OFF_LENGTH);
  out.writeInt32BE(options.partitionLeaderEpoch ?? -1, OFF_LEADER_EPOCH);
  out.writeInt8(MAGIC_V2, OFF_MAGIC);
  out.writeInt16BE(codec | (options.control ? CONTROL_MASK : 0), OFF_ATTRIBUTES);
  out.writeInt32BE(records.length - 1, OFF_LAST_OFFSET_DELTA);
  writeInt64(out, OFF_BASE_TIMESTAMP, baseTimestamp);
  writeInt64(out, OFF_MAX_TIMESTAMP, maxTimestamp);
  out.writeBigInt64BE(options.producerId ?? -1n, OFF_PRODUCER_ID);
  out.writeInt16BE(options.producerEpoch ?? -1, OFF_PRODUCER_EPOCH);
  out.writeInt32BE(options.baseSequence ?? -1, OFF_BASE_SEQUENCE);
  out.writeInt32BE(records.length, OFF_RECORD_COUNT);
  out.writeUInt32BE(computeBatchCrc(out, 0, out.length), OFF_CRC);
  return out;
}

// --- Decoding -----------------------------------------------------------------------------------

export interface DecodedBatch {
  header: BatchHeader;
  records: DecodedRecord[];
}

export interface DecodeOptions {
  /** Check the CRC before decoding (default true). */
  verifyCrc?: boolean;
}

function readBytes(buf: Buffer, c: Cursor, what: string): Buffer | null {
  const len = readVarint(buf, c);
  if (len < 0) {
    if (len === -1) return null;
    throw new SluiceError('CORRUPT_BATCH', `${what} has negative length ${len}`);
  }
  if (c.pos + len > c.end) throw new SluiceError('CORRUPT_BATCH', `${what} of ${len} bytes runs past the end of its record`);
  const out = buf.subarray(c.pos, c.pos + len);
  c.pos += len;
  return out;
}

function decodeRecord(buf: Buffer, c: Cursor, header: BatchHeader, index: number): DecodedRecord {
  const bodyLen = readVarint(buf, c);
  if (bodyLen < 1 || c.pos + bodyLen > c.end) {
    throw new SluiceError('CORRUPT_BATCH', `record ${index} declares ${bodyLen} bytes, past the end of the records`);
  }
  const rc: Cursor = { pos: c.pos, end: c.pos + bodyLen };
  rc.pos++; // record attributes
  const delta = readVarlong(buf, rc);
  // LogAppendTime (attributes bit 3): every record's timestamp is the batch's maxTimestamp, as in Kafka.
  const timestampMs = (header.attributes & TIMESTAMP_TYPE_MASK) !== 0 ? header.maxTimestamp : header.baseTimestamp + delta;
  const offset = header.baseOffset + readVarint(buf, rc);
  const key = readBytes(buf, rc, 'key');
  const value = readBytes(buf, rc, 'value');
  const headerCount = readVarint(buf, rc);
  if (headerCount < 0 || headerCount > rc.end - rc.pos) throw new SluiceError('CORRUPT_BATCH', `record ${index} has invalid header count ${headerCount}`);
  const headers: Header[] = new Array(headerCount);
  for (let h = 0; h < headerCount; h++) {
    const k = readBytes(buf, rc, 'header key');
    if (k === null) throw new SluiceError('CORRUPT_BATCH', `record ${index} has a null header key`);
    headers[h] = { key: k.toString('utf8'), value: readBytes(buf, rc, 'header value') };
  }
  if (rc.pos !== rc.end) throw new SluiceError('CORRUPT_BATCH', `record ${index} has ${rc.end - rc.pos} trailing bytes`);
  c.pos = rc.end;
  return { offset, timestampMs, key, value, headers };
}

/**
 * Decodes one batch at `pos`, including compressed ones. Keys, values and header values are views into
 * `data` (or into the decompressed copy): copy them if the buffer will be reused.
 */
export function decodeBatch(data: Uint8Array, pos = 0, options: DecodeOptions = {}): DecodedBatch {
  const buf = asBuffer(data);
  const header = readBatchHeader(buf, pos);
  if (header.magic !== MAGIC_V2) throw new SluiceError('UNSUPPORTED_MAGIC', `batch at byte ${pos} has magic ${header.magic}`);
  if (header.sizeBytes < BATCH_HEADER_BYTES || pos + header.sizeBytes > buf.length) {
    throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} declares ${header.sizeBytes} bytes but ${buf.length - pos} remain`);
  }
  if (options.verifyCrc !== false && computeBatchCrc(buf, pos, header.sizeBytes) !== header.crc) {
    throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} fails its CRC-32C`);
  }
  if (header.recordCount < 0 || header.recordCount > BATCH_RECORDS_MAX) {
    throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} declares ${header.recordCount} records`);
  }
  let body = buf.subarray(pos + BATCH_HEADER_BYTES, pos + header.sizeBytes);
  if (header.compression !== Compression.None) body = decompress(header.compression, body);
  const c: Cursor = { pos: 0, end: body.length };
  const records: DecodedRecord[] = new Array(header.recordCount);
  for (let i = 0; i < header.recordCount; i++) records[i] = decodeRecord(body, c, header, i);
  if (c.pos !== c.end) throw new SluiceError('CORRUPT_BATCH', `batch at byte ${pos} has ${c.end - c.pos} bytes after its last record`);
  return { header, records };
}

/** Decodes every batch of a buffer of concatenated batches (e.g. a read or fetch result). */
export function decodeBatches(data: Uint8Array, options: DecodeOptions = {}): DecodedBatch[] {
  const buf = asBuffer(data);
  const out: DecodedBatch[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const batch = decodeBatch(buf, pos, options);
    out.push(batch);
    pos += batch.header.sizeBytes;
  }
  return out;
}

/**
 * Decodes batches that come from a log (a structured Fetch on the broker, a raw fetch in a client):
 * every batch's CRC-32C is verified, and any failure is LOG_CORRUPT naming the batch's offset. These
 * bytes passed validation when they were appended, so failing now means they were damaged at rest or
 * on the way: data loss, not a bad request (which CORRUPT_BATCH would tell the caller).
 */
export function decodeStoredBatches(data: Uint8Array): DecodedBatch[] {
  const buf = asBuffer(data);
  const out: DecodedBatch[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const batch = decodeStoredBatch(buf, pos);
    out.push(batch);
    pos += batch.header.sizeBytes;
  }
  return out;
}

/** One stored batch at `pos`, CRC-checked; any failure is LOG_CORRUPT (see decodeStoredBatches). */
export function decodeStoredBatch(data: Uint8Array, pos: number): DecodedBatch {
  const buf = asBuffer(data);
  try {
    return decodeBatch(buf, pos, { verifyCrc: true });
  } catch (err) {
    if (!(err instanceof SluiceError) || err.code === 'LOG_CORRUPT') throw err;
    const at = buf.length - pos >= BATCH_LOG_OVERHEAD_BYTES ? ` (baseOffset ${readInt64(buf, pos + OFF_BASE_OFFSET)})` : '';
    throw new SluiceError('LOG_CORRUPT', `stored batch${at} failed verification: ${err.message}`, { cause: err });
  }
}

/** True for the timestamp-type bit (LogAppendTime); exported for completeness of the attribute map. */
export function isLogAppendTime(attributes: number): boolean {
  return (attributes & TIMESTAMP_TYPE_MASK) !== 0;
}
