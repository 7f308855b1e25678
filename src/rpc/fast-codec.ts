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

const encodeFetchResponse = (value: FetchResponse): Buffer => view(FetchResponse.encode(value).finish());

/** The generated sluice.v1.Broker definition with the hot paths' serializers replaced. */
export const FastBrokerService = {
  ...BrokerService,
  produce: {
    ...BrokerService.produce,
    requestSerialize: (value: ProduceRequest): Buffer => view(ProduceRequest.encode(value).finish()),
    requestDeserialize: (value: Buffer): ProduceRequest => decodeProduceRequest(value),
  },
  fetch: { ...BrokerService.fetch, responseSerialize: encodeFetchResponse, responseDeserialize: decodeFetchResponse },
  subscribe: { ...BrokerService.subscribe, responseSerialize: encodeFetchResponse, responseDeserialize: decodeFetchResponse },
} as const satisfies typeof BrokerService;

/** A Broker client using FastBrokerService's serializers. */
export const FastBrokerClient = makeGenericClientConstructor(FastBrokerService, 'sluice.v1.Broker') as unknown as typeof BrokerClient;
