/**
 * Zero-copy (de)serializers for the two hot messages, swapped into the generated service definition.
 * ts-proto's generated code copies `bytes` twice more than needed: `Buffer.from(writer.finish())`
 * copies a fresh array, and decoding copies every bytes field out of the message. For a 1 MiB
 * FetchResponse or a 110 KB ProduceRequest that is a memcpy and a garbage buffer per request on the
 * broker's main thread. Here encoded output is wrapped, not copied, and `record_batch(es)` are views
 * into the received message (grpc-js hands each deserializer a fresh buffer that nothing reuses).
 */
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { Record } from './gen/sluice/v1/records.js';
import { BrokerService, FetchResponse, ProduceRequest, type BrokerClient } from './gen/sluice/v1/broker.js';

const EMPTY = Buffer.alloc(0);

function view(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function skip(reader: BinaryReader, tag: number): boolean {
  if ((tag & 7) === 4 || tag === 0) return false;
  reader.skip(tag & 7);
  return true;
}

export function decodeProduceRequest(input: Uint8Array): ProduceRequest {
  const reader = new BinaryReader(input);
  const m: ProduceRequest = { topic: '', partition: undefined, records: [], recordBatch: EMPTY, acks: 0 };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 10) m.topic = reader.string();
    else if (tag === 16) m.partition = reader.int32();
    else if (tag === 26) m.records.push(Record.decode(reader, reader.uint32()));
    else if (tag === 34) m.recordBatch = view(reader.bytes());
    else if (tag === 40) m.acks = reader.int32();
    else if (!skip(reader, tag)) break;
  }
  return m;
}

export function decodeFetchResponse(input: Uint8Array): FetchResponse {
  const reader = new BinaryReader(input);
  const m: FetchResponse = { records: [], recordBatches: EMPTY, highWatermark: 0n, logStartOffset: 0n, nextOffset: 0n };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === 10) m.records.push(Record.decode(reader, reader.uint32()));
    else if (tag === 18) m.recordBatches = view(reader.bytes());
    else if (tag === 24) m.highWatermark = reader.int64() as bigint;
    else if (tag === 32) m.logStartOffset = reader.int64() as bigint;
    else if (tag === 40) m.nextOffset = reader.int64() as bigint;
    else if (!skip(reader, tag)) break;
  }
  return m;
}

/** Bytes of `v` (0 <= v < 2^53) as a protobuf varint. */
function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const safe = (v: bigint): boolean => v >= 0n && v <= MAX_SAFE;

/**
 * ProduceRequest with a record_batch (the raw fast path): sized first, written once, the batch copied
 * once. The generated encoder grows its buffer by doubling (a copy per step) and copies it again in
 * finish(): about four copies of a 110 KB batch per request on the producer. Anything unusual
 * (structured records, a negative partition) goes through the generated encoder.
 */
export function encodeProduceRequest(m: ProduceRequest): Buffer {
  if (m.records.length > 0 || (m.partition !== undefined && m.partition < 0) || m.acks < 0) return view(ProduceRequest.encode(m).finish());
  const topicBytes = Buffer.byteLength(m.topic, 'utf8');
  const batchBytes = m.recordBatch.byteLength;
  let size = 0;
  if (topicBytes > 0) size += 1 + varintSize(topicBytes) + topicBytes;
  if (m.partition !== undefined) size += 1 + varintSize(m.partition);
  if (batchBytes > 0) size += 1 + varintSize(batchBytes) + batchBytes;
  if (m.acks !== 0) size += 1 + varintSize(m.acks);
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  if (topicBytes > 0) {
    out[pos++] = 10;
    pos = writeVarint(out, pos, topicBytes);
    pos += out.write(m.topic, pos, 'utf8');
  }
  if (m.partition !== undefined) {
    out[pos++] = 16;
    pos = writeVarint(out, pos, m.partition);
  }
  if (batchBytes > 0) {
    out[pos++] = 34;
    pos = writeVarint(out, pos, batchBytes);
    out.set(m.recordBatch, pos);
    pos += batchBytes;
  }
  if (m.acks !== 0) {
    out[pos++] = 40;
    pos = writeVarint(out, pos, m.acks);
  }
  return out;
}

/**
 * FetchResponse with raw record_batches (Fetch and Subscribe with `raw`): one allocation and one copy
 * of the batches on the broker's main thread instead of the generated encoder's doubling buffer plus
 * finish() copy. Structured records, or offsets outside [0, 2^53), use the generated encoder.
 */
export function encodeFetchResponse(m: FetchResponse): Buffer {
  if (m.records.length > 0 || !safe(m.highWatermark) || !safe(m.logStartOffset) || !safe(m.nextOffset)) {
    return view(FetchResponse.encode(m).finish());
  }
  const batchBytes = m.recordBatches.byteLength;
  const hw = Number(m.highWatermark);
  const ls = Number(m.logStartOffset);
  const next = Number(m.nextOffset);
  let size = 0;
  if (batchBytes > 0) size += 1 + varintSize(batchBytes) + batchBytes;
  if (hw !== 0) size += 1 + varintSize(hw);
  if (ls !== 0) size += 1 + varintSize(ls);
  if (next !== 0) size += 1 + varintSize(next);
  const out = Buffer.allocUnsafe(size);
  let pos = 0;
  if (batchBytes > 0) {
    out[pos++] = 18;
    pos = writeVarint(out, pos, batchBytes);
    out.set(m.recordBatches, pos);
    pos += batchBytes;
  }
  if (hw !== 0) {
    out[pos++] = 24;
    pos = writeVarint(out, pos, hw);
  }
  if (ls !== 0) {
    out[pos++] = 32;
    pos = writeVarint(out, pos, ls);
  }
  if (next !== 0) {
    out[pos++] = 40;
    pos = writeVarint(out, pos, next);
  }
  return out;
}

/** The generated sluice.v1.Broker definition with the hot paths' serializers replaced. */
export const FastBrokerService = {
  ...BrokerService,
  produce: {
    ...BrokerService.produce,
    requestSerialize: encodeProduceRequest,
    requestDeserialize: (value: Buffer): ProduceRequest => decodeProduceRequest(value),
  },
  fetch: { ...BrokerService.fetch, responseSerialize: encodeFetchResponse, responseDeserialize: decodeFetchResponse },
  subscribe: { ...BrokerService.subscribe, responseSerialize: encodeFetchResponse, responseDeserialize: decodeFetchResponse },
} as const satisfies typeof BrokerService;

/** A Broker client using FastBrokerService's serializers. */
export const FastBrokerClient = makeGenericClientConstructor(FastBrokerService, 'sluice.v1.Broker') as unknown as typeof BrokerClient;
