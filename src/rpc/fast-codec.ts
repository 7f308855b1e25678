/**
 * Zero-copy (de)serializers for the two hot messages, swapped into the generated service definition.
 * ts-proto's generated code copies `bytes` twice more than needed: `Buffer.from(writer.finish())`
 * copies a fresh array, and decoding copies every bytes field out of the message. For a 1 MiB
 * FetchResponse or a 110 KB ProduceRequest that is a memcpy and a garbage buffer per request on the
 * broker's main thread. Here encoded output is wrapped, not copied, and `record_batch(es)` are views
 * into the received message (grpc-js hands each deserializer a fresh buffer that nothing reuses), as
 * are the keys, values and header values of structured records in a ProduceRequest.
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { sizeOfUnsignedVarint, writeUnsignedVarint } from '../batch/varint.js';
import { hasEnvelopeRoom } from '../batch/envelope-room.js';
import { ENVELOPE_TAIL_BYTES } from '../constants.js';
import type { Header, Record } from './gen/sluice/v1/records.js';
import type { EncodedRecords } from './structured-produce.js';
import { BrokerService, FetchResponse, ProduceRequest, ProduceStreamRequest, type BrokerClient } from './gen/sluice/v1/broker.js';

const EMPTY = Buffer.alloc(0);

/**
 * FetchResponses whose `records` field the shard already encoded (FetchInput format 'pb-records'):
 * the encoder splices these bytes in as field 1 instead of encoding `records`.
 */
const encodedRecords = new WeakMap<FetchResponse, Uint8Array>();

export function withEncodedRecords(m: FetchResponse, records: Uint8Array): FetchResponse {
  encodedRecords.set(m, records);
  return m;
}

/** Bytes of the pre-encoded records of `m` (0 when it has none). */
export function encodedRecordsBytes(m: FetchResponse): number {
  return encodedRecords.get(m)?.byteLength ?? 0;
}

function view(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function skip(reader: BinaryReader, tag: number): boolean {
  if ((tag & 7) === 4 || tag === 0) return false;
  reader.skip(tag & 7);
  return true;
}

function decodeHeader(reader: BinaryReader, length: number): Header {
  const end = reader.pos + length;
  const h: Header = { key: '', value: undefined };
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 10) h.key = reader.string();
    else if (tag === 18) h.value = view(reader.bytes());
    else if (!skip(reader, tag)) break;
  }
  return h;
}

/**
 * One structured Record with key, value and header values as views into the received message (the
 * generated decoder copies each: two small Buffer copies per record, 1,000 records per request).
 */
function decodeRecord(reader: BinaryReader, length: number): Record {
  const end = reader.pos + length;
  const r: Record = { key: undefined, value: undefined, headers: [], timestampMs: 0n, offset: 0n };
  while (reader.pos < end) {
    const tag = reader.uint32();
    if (tag === 10) r.key = view(reader.bytes());
    else if (tag === 18) r.value = view(reader.bytes());
    else if (tag === 26) r.headers.push(decodeHeader(reader, reader.uint32()));
    else if (tag === 32) r.timestampMs = reader.int64() as bigint;
    else if (tag === 40) r.offset = reader.int64() as bigint;
    else if (!skip(reader, tag)) break;
  }
  return r;
}

export function decodeProduceRequest(input: Uint8Array): ProduceRequest {
  const reader = new BinaryReader(input);
  const m: ProduceRequest = { topic: '', partition: undefined, records: [], recordBatch: EMPTY, acks: 0, producerId: undefined, producerEpoch: 0, baseSequence: 0 };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 10) m.topic = reader.string();
    else if (tag === 16) m.partition = reader.int32();
    else if (tag === 26) m.records.push(decodeRecord(reader, reader.uint32()));
    else if (tag === 34) m.recordBatch = view(reader.bytes());
    else if (tag === 40) m.acks = reader.int32();
    else if (tag === 48) m.producerId = reader.int64() as bigint;
    else if (tag === 56) m.producerEpoch = reader.int32();
    else if (tag === 64) m.baseSequence = reader.int32();
    else if (!skip(reader, tag)) break;
  }
  return m;
}

/** Received ProduceRequests whose structured records were left encoded (see decodeProduceRequestLazy). */
const lazyRecords = new WeakMap<ProduceRequest, EncodedRecords>();

/** The still-encoded structured records of a request decoded by decodeProduceRequestLazy, if any. */
export function encodedProduceRecords(m: ProduceRequest): EncodedRecords | undefined {
  return lazyRecords.get(m);
}

/**
 * The broker's ProduceRequest deserializer: like decodeProduceRequest, but structured records stay in
 * the message (counted, not decoded; `records` is empty) for ./structured-produce.ts to write straight
 * into a v2 batch. `recordsOf` gives them as objects when the generic path needs them.
 */
export function decodeProduceRequestLazy(input: Uint8Array): ProduceRequest {
  const reader = new BinaryReader(input);
  let count = 0;
  let bytes = 0;
  const m: ProduceRequest = { topic: '', partition: undefined, records: [], recordBatch: EMPTY, acks: 0, producerId: undefined, producerEpoch: 0, baseSequence: 0 };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 10) m.topic = reader.string();
    else if (tag === 16) m.partition = reader.int32();
    else if (tag === 26) {
      const n = reader.uint32();
      if (reader.pos + n > reader.len) throw new RangeError('premature EOF'); // as the generic decoder says
      reader.pos += n;
      count++;
      bytes += n;
    }
    else if (tag === 34) m.recordBatch = view(reader.bytes());
    else if (tag === 40) m.acks = reader.int32();
    else if (tag === 48) m.producerId = reader.int64() as bigint;
    else if (tag === 56) m.producerEpoch = reader.int32();
    else if (tag === 64) m.baseSequence = reader.int32();
    else if (!skip(reader, tag)) break;
  }
  if (count > 0) lazyRecords.set(m, { message: input, count, bytes });
  return m;
}

/** The records of a request, as objects: decoded now if decodeProduceRequestLazy left them encoded. */
export function recordsOf(m: ProduceRequest): Record[] {
  const encoded = lazyRecords.get(m);
  return encoded === undefined ? m.records : decodeProduceRequest(encoded.message).records;
}

export function decodeFetchResponse(input: Uint8Array): FetchResponse {
  const reader = new BinaryReader(input);
  const m: FetchResponse = { records: [], recordBatches: EMPTY, highWatermark: 0n, logStartOffset: 0n, nextOffset: 0n };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 10) m.records.push(decodeRecord(reader, reader.uint32()));
    else if (tag === 18) m.recordBatches = view(reader.bytes());
    else if (tag === 24) m.highWatermark = reader.int64() as bigint;
    else if (tag === 32) m.logStartOffset = reader.int64() as bigint;
    else if (tag === 40) m.nextOffset = reader.int64() as bigint;
    else if (!skip(reader, tag)) break;
  }
  return m;
}


const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const safe = (v: bigint): boolean => v >= 0n && v <= MAX_SAFE;

const bytesField = (n: number): number => 1 + sizeOfUnsignedVarint(n) + n;

/** Encoded size of each record, or null when one needs the generated encoder (an int64 outside [0, 2^53)). */
function recordsSizes(records: Record[]): number[] | null {
  const sizes = new Array<number>(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    if (!safe(r.timestampMs) || !safe(r.offset)) return null;
    let n = 0;
    if (r.key !== undefined) n += bytesField(r.key.byteLength);
    if (r.value !== undefined) n += bytesField(r.value.byteLength);
    for (const h of r.headers) {
      let hn = 0;
      if (h.key !== '') hn += bytesField(Buffer.byteLength(h.key, 'utf8'));
      if (h.value !== undefined) hn += bytesField(h.value.byteLength);
      n += 1 + sizeOfUnsignedVarint(hn) + hn;
    }
    if (r.timestampMs !== 0n) n += 1 + sizeOfUnsignedVarint(Number(r.timestampMs));
    if (r.offset !== 0n) n += 1 + sizeOfUnsignedVarint(Number(r.offset));
    sizes[i] = n;
  }
  return sizes;
}

function writeBytesField(out: Buffer, pos: number, tag: number, b: Uint8Array): number {
  out[pos++] = tag;
  pos = writeUnsignedVarint(out, pos, b.byteLength);
  out.set(b, pos);
  return pos + b.byteLength;
}

function writeRecord(out: Buffer, pos: number, r: Record): number {
  if (r.key !== undefined) pos = writeBytesField(out, pos, 10, r.key);
  if (r.value !== undefined) pos = writeBytesField(out, pos, 18, r.value);
  for (const h of r.headers) {
    const keyBytes = h.key === '' ? 0 : Buffer.byteLength(h.key, 'utf8');
    let hn = 0;
    if (h.key !== '') hn += bytesField(keyBytes);
    if (h.value !== undefined) hn += bytesField(h.value.byteLength);
    out[pos++] = 26;
    pos = writeUnsignedVarint(out, pos, hn);
    if (h.key !== '') {
      out[pos++] = 10;
      pos = writeUnsignedVarint(out, pos, keyBytes);
      pos += out.write(h.key, pos, 'utf8');
    }
    if (h.value !== undefined) pos = writeBytesField(out, pos, 18, h.value);
  }
  if (r.timestampMs !== 0n) {
    out[pos++] = 32;
    pos = writeUnsignedVarint(out, pos, Number(r.timestampMs));
  }
  if (r.offset !== 0n) {
    out[pos++] = 40;
    pos = writeUnsignedVarint(out, pos, Number(r.offset));
  }
  return pos;
}

/**
 * ProduceRequest with a record_batch (the raw fast path): sized first, written once, the batch copied
 * once. The generated encoder grows its buffer by doubling (a copy per step) and copies it again in
 * finish(): about four copies of a 110 KB batch per request on the producer. Structured records are
 * sized first and written in place too (no fork/join per record). Anything unusual (a negative
 * partition, an int64 outside [0, 2^53)) goes through the generated encoder.
 */
export function encodeProduceRequest(m: ProduceRequest): Buffer {
  const plan = planProduceRequest(m);
  if (plan === null) return view(ProduceRequest.encode(m).finish());
  const out = Buffer.allocUnsafe(plan.size);
  writeProduceRequest(m, plan, out, 0);
  return out;
}

/**
 * ProduceStreamRequest: the request written once, as encodeProduceRequest writes it, after a head of
 * the id and the request's length (no copy of the inner message). Ids beyond 2^53 or an unusual
 * request go through the generated encoder.
 */
export function encodeProduceStreamRequest(m: ProduceStreamRequest): Buffer {
  const plan = m.request === undefined || m.id > MAX_SAFE ? null : planProduceRequest(m.request);
  if (plan === null) return view(ProduceStreamRequest.encode(m).finish());
  const size = plan.size;
  const id = Number(m.id);
  const head = (id === 0 ? 0 : 1 + sizeOfUnsignedVarint(id)) + 1 + sizeOfUnsignedVarint(size);
  const out = Buffer.allocUnsafe(head + size);
  let pos = 0;
  if (id !== 0) {
    out[pos++] = 8;
    pos = writeUnsignedVarint(out, pos, id);
  }
  out[pos++] = 18;
  pos = writeUnsignedVarint(out, pos, size);
  writeProduceRequest(m.request!, plan, out, pos);
  return out;
}

/**
 * The broker's ProduceStreamRequest deserializer: the request inside decoded as a unary Produce's is
 * (decodeProduceRequestLazy), its bytes views into the received message.
 */
export function decodeProduceStreamRequest(input: Uint8Array): ProduceStreamRequest {
  const reader = new BinaryReader(input);
  const m: ProduceStreamRequest = { id: 0n, request: undefined };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 8) m.id = BigInt(reader.uint64());
    else if (tag === 18) {
      const n = reader.uint32();
      if (reader.pos + n > reader.len) throw new RangeError('premature EOF');
      m.request = decodeProduceRequestLazy(input.subarray(reader.pos, reader.pos + n));
      reader.pos += n;
    } else if (!skip(reader, tag)) break;
  }
  return m;
}

/** A ProduceRequest's encoded size and its records' sizes, as planProduceRequest measured them. */
interface ProducePlan {
  size: number;
  topicBytes: number;
  recordSizes: number[] | null;
}

/**
 * Sizes a ProduceRequest, or null when it needs the generated encoder: anything unusual (a negative
 * partition, an int64 outside [0, 2^53)).
 */
function planProduceRequest(m: ProduceRequest): ProducePlan | null {
  if ((m.partition !== undefined && m.partition < 0) || m.acks < 0) return null;
  if ((m.producerId !== undefined && !safe(m.producerId)) || m.producerEpoch < 0 || m.baseSequence < 0) return null;
  const recordSizes = m.records.length > 0 ? recordsSizes(m.records) : null;
  if (m.records.length > 0 && recordSizes === null) return null;
  const topicBytes = Buffer.byteLength(m.topic, 'utf8');
  const batchBytes = m.recordBatch.byteLength;
  let size = 0;
  if (topicBytes > 0) size += 1 + sizeOfUnsignedVarint(topicBytes) + topicBytes;
  if (m.partition !== undefined) size += 1 + sizeOfUnsignedVarint(m.partition);
  if (recordSizes !== null) for (const n of recordSizes) size += 1 + sizeOfUnsignedVarint(n) + n;
  if (batchBytes > 0) size += 1 + sizeOfUnsignedVarint(batchBytes) + batchBytes;
  if (m.acks !== 0) size += 1 + sizeOfUnsignedVarint(m.acks);
  if (m.producerId !== undefined) size += 1 + sizeOfUnsignedVarint(Number(m.producerId));
  if (m.producerEpoch !== 0) size += 1 + sizeOfUnsignedVarint(m.producerEpoch);
  if (m.baseSequence !== 0) size += 1 + sizeOfUnsignedVarint(m.baseSequence);
  return { size, topicBytes, recordSizes };
}

/** Writes a ProduceRequest that planProduceRequest sized at `pos` of `out`; returns the end. */
function writeProduceRequest(m: ProduceRequest, plan: ProducePlan, out: Buffer, pos: number): number {
  if (plan.topicBytes > 0) {
    out[pos++] = 10;
    pos = writeUnsignedVarint(out, pos, plan.topicBytes);
    pos += out.write(m.topic, pos, 'utf8');
  }
  if (m.partition !== undefined) {
    out[pos++] = 16;
    pos = writeUnsignedVarint(out, pos, m.partition);
  }
  if (plan.recordSizes !== null) {
    for (let i = 0; i < m.records.length; i++) {
      out[pos++] = 26;
      pos = writeUnsignedVarint(out, pos, plan.recordSizes[i]!);
      pos = writeRecord(out, pos, m.records[i]!);
    }
  }
  const batchBytes = m.recordBatch.byteLength;
  if (batchBytes > 0) {
    out[pos++] = 34;
    pos = writeUnsignedVarint(out, pos, batchBytes);
    out.set(m.recordBatch, pos);
    pos += batchBytes;
  }
  if (m.acks !== 0) {
    out[pos++] = 40;
    pos = writeUnsignedVarint(out, pos, m.acks);
  }
  if (m.producerId !== undefined) {
    out[pos++] = 48;
    pos = writeUnsignedVarint(out, pos, Number(m.producerId));
  }
  if (m.producerEpoch !== 0) {
    out[pos++] = 56;
    pos = writeUnsignedVarint(out, pos, m.producerEpoch);
  }
  if (m.baseSequence !== 0) {
    out[pos++] = 64;
    pos = writeUnsignedVarint(out, pos, m.baseSequence);
  }
  return pos;
}

/**
 * FetchResponse with raw record_batches (Fetch and Subscribe with `raw`): one allocation and one copy
 * of the batches on the broker's main thread instead of the generated encoder's doubling buffer plus
 * finish() copy. Structured records, or offsets outside [0, 2^53), use the generated encoder.
 */
export function encodeFetchResponse(m: FetchResponse): Buffer {
  const records = encodedRecords.get(m) ?? EMPTY;
  if (m.records.length > 0 || !safe(m.highWatermark) || !safe(m.logStartOffset) || !safe(m.nextOffset)) {
    // Rare path: let the generated encoder do it all, with the shard's records decoded back.
    const full = records.byteLength > 0 ? { ...m, records: [...m.records, ...decodeFetchResponse(records).records] } : m;
    return view(FetchResponse.encode(full).finish());
  }
  const batchBytes = m.recordBatches.byteLength;
  const hw = Number(m.highWatermark);
  const ls = Number(m.logStartOffset);
  const next = Number(m.nextOffset);
  if (records.byteLength === 0 && batchBytes > 0 && hasEnvelopeRoom(m.recordBatches)) return encodeAround(m.recordBatches, hw, ls, next);
  let size = records.byteLength;
  if (batchBytes > 0) size += 1 + sizeOfUnsignedVarint(batchBytes) + batchBytes;
  if (hw !== 0) size += 1 + sizeOfUnsignedVarint(hw);
  if (ls !== 0) size += 1 + sizeOfUnsignedVarint(ls);
  if (next !== 0) size += 1 + sizeOfUnsignedVarint(next);
  const out = Buffer.allocUnsafe(size);
  out.set(records, 0);
  let pos = records.byteLength;
  if (batchBytes > 0) {
    out[pos++] = 18;
    pos = writeUnsignedVarint(out, pos, batchBytes);
    out.set(m.recordBatches, pos);
    pos += batchBytes;
  }
  writeOffsetFields(out, pos, hw, ls, next);
  return out;
}

/** FetchResponse fields 3-5 (high watermark, log start, next offset; proto3 omits zeros) at `pos`; returns the end. */
function writeOffsetFields(out: Uint8Array, pos: number, hw: number, ls: number, next: number): number {
  if (hw !== 0) {
    out[pos++] = 24;
    pos = writeUnsignedVarint(out, pos, hw);
  }
  if (ls !== 0) {
    out[pos++] = 32;
    pos = writeUnsignedVarint(out, pos, ls);
  }
  if (next !== 0) {
    out[pos++] = 40;
    pos = writeUnsignedVarint(out, pos, next);
  }
  return pos;
}

/**
 * The same bytes as the copying path, written around batches the main thread copied out of the shard's
 * ring with room to spare (src/batch/envelope-room.ts): field 2's tag and length before them, fields
 * 3-5 after, and a view of the whole returned. The batches are not copied; grpc-js's own framing copy
 * is then the only one. Two messages sharing the batches (two subscribers of one read) are safe: the
 * room holds one envelope at a time, and grpc-js copies each serialized message before the next
 * serialize runs (both in one synchronous call).
 */
function encodeAround(batches: Uint8Array, hw: number, ls: number, next: number): Buffer {
  const head = 1 + sizeOfUnsignedVarint(batches.byteLength);
  const start = batches.byteOffset - head;
  const out = Buffer.from(batches.buffer, start, head + batches.byteLength + ENVELOPE_TAIL_BYTES);
  out[0] = 18;
  writeUnsignedVarint(out, 1, batches.byteLength);
  let pos = head + batches.byteLength;
  return out.subarray(0, writeOffsetFields(out, pos, hw, ls, next));
}

/** The generated sluice.v1.Broker definition with the hot paths' serializers replaced. */
export const FastBrokerService = {
  ...BrokerService,
  produce: {
    ...BrokerService.produce,
    requestSerialize: encodeProduceRequest,
    // The broker's side: structured records stay encoded until the one-pass batch writer reads them.
    requestDeserialize: (value: Buffer): ProduceRequest => decodeProduceRequestLazy(value),
  },
  produceStream: {
    ...BrokerService.produceStream,
    requestSerialize: encodeProduceStreamRequest,
    requestDeserialize: (value: Buffer): ProduceStreamRequest => decodeProduceStreamRequest(value),
  },
  fetch: { ...BrokerService.fetch, responseSerialize: encodeFetchResponse, responseDeserialize: decodeFetchResponse },
  subscribe: { ...BrokerService.subscribe, responseSerialize: encodeFetchResponse, responseDeserialize: decodeFetchResponse },
} as const satisfies typeof BrokerService;

/** A Broker client using FastBrokerService's serializers. */
export const FastBrokerClient = makeGenericClientConstructor(FastBrokerService, 'sluice.v1.Broker') as unknown as typeof BrokerClient;
