/**
 * Goal: the one-pass structured produce (src/rpc/structured-produce.ts) writes exactly the batch the
 * generic path writes (decode records into objects, toRecordInputs, encodeBatch), byte for byte, and
 * hands anything it does not take to the generic path instead of deciding it differently.
 * Method: fast-check over random ProduceRequests encoded by the generated ts-proto encoder (records with
 * and without keys, values, headers, timestamps; idempotence fields), both paths on the same bytes;
 * hand-made messages for each give-up case; the lazy deserializer against the generic decoder.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ProduceRequest } from '../../src/rpc/gen/sluice/v1/broker.js';
import { decodeProduceRequest, decodeProduceRequestLazy, encodedProduceRecords, recordsOf } from '../../src/rpc/fast-codec.js';
import { countEncodedRecords, encodeRecordsBatch } from '../../src/rpc/structured-produce.js';
import { toRecordInputs } from '../../src/rpc/convert.js';
import { encodeBatch } from '../../src/batch/index.js';
import { BATCH_RECORDS_MAX } from '../../src/constants.js';

const NOW = 1_700_000_000_000;
const bytes = fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u));
const record = fc.record({
  key: fc.option(bytes, { nil: undefined }),
  value: fc.option(bytes, { nil: undefined }),
  headers: fc.array(fc.record({ key: fc.string({ unit: 'grapheme' }), value: fc.option(bytes, { nil: undefined }) }), { maxLength: 3 }),
  timestampMs: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 2n ** 45n })),
  offset: fc.bigInt({ min: 0n, max: 2n ** 40n }),
});
const producer = fc.option(fc.record({
  producerId: fc.bigInt({ min: 0n, max: 2n ** 62n }),
  producerEpoch: fc.integer({ min: 0, max: 32767 }),
  baseSequence: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
}), { nil: undefined });

/** What the generic path builds from the same bytes. */
function generic(wire: Uint8Array, p: { producerId: bigint; producerEpoch: number; baseSequence: number } | undefined): Buffer {
  const inputs = toRecordInputs(decodeProduceRequest(wire).records);
  return encodeBatch(inputs, { ...(p ?? {}), baseTimestampMs: inputs[0]!.timestampMs ?? NOW });
}

describe('one-pass structured produce', () => {
  it('writes the same batch as decode + toRecordInputs + encodeBatch, byte for byte', () => {
    fc.assert(fc.property(fc.array(record, { minLength: 1, maxLength: 6 }), producer, fc.string(), (records, p, topic) => {
      const wire = ProduceRequest.encode({ topic, partition: 0, records, recordBatch: Buffer.alloc(0), acks: 2, producerEpoch: 0, baseSequence: 0 }).finish();
      const encoded = countEncodedRecords(wire)!;
      expect(encoded.count).toBe(records.length);
      const fast = encodeRecordsBatch(encoded, p, NOW);
      expect(fast).not.toBeNull();
      expect(fast!.equals(generic(wire, p))).toBe(true);
    }), { numRuns: 300 });
  });

  it('finds records wherever they sit in the message (fields in any order, repeated scalars)', () => {
    const a = ProduceRequest.encode({ topic: 't', partition: 1, records: [{ key: Buffer.from('k'), value: Buffer.from('v1'), headers: [], timestampMs: 5n, offset: 0n }], recordBatch: Buffer.alloc(0), acks: 1, producerEpoch: 0, baseSequence: 0 }).finish();
    const b = ProduceRequest.encode({ topic: '', records: [{ key: undefined, value: Buffer.from('v2'), headers: [{ key: 'h', value: undefined }], timestampMs: 0n, offset: 0n }], recordBatch: Buffer.alloc(0), acks: 0, producerEpoch: 0, baseSequence: 0 }).finish();
    const wire = Buffer.concat([a, b]); // protobuf: concatenated messages merge; records append
    expect(encodeRecordsBatch(countEncodedRecords(wire)!, undefined, NOW)!.equals(generic(wire, undefined))).toBe(true);
  });

  it('gives the cases it does not own to the generic path', () => {
    const wireOf = (records: Parameters<typeof ProduceRequest.encode>[0]['records']) =>
      ProduceRequest.encode({ topic: 't', records, recordBatch: Buffer.alloc(0), acks: 2, producerEpoch: 0, baseSequence: 0 }).finish();
    const one = (over: object) => ({ key: undefined, value: Buffer.from('x'), headers: [], timestampMs: 0n, offset: 0n, ...over });
    const fast = (wire: Uint8Array, p?: { producerId: bigint; producerEpoch: number; baseSequence: number }) => encodeRecordsBatch(countEncodedRecords(wire)!, p, NOW);
    // A negative or huge timestamp: the generic path's range check and message decide.
    expect(fast(wireOf([one({ timestampMs: -1n })]))).toBeNull();
    expect(fast(wireOf([one({ timestampMs: 2n ** 60n })]))).toBeNull();
    // Header keys that are not valid UTF-8, or start with a BOM the string decoder drops.
    // Hand-made: ProduceRequest { records: [{ value: 'x', headers: [{ key: <keyBytes> }] }] }.
    const field = (tag: number, body: number[]) => [tag, body.length, ...body];
    const header = (keyBytes: number[]) => Buffer.from(field(0x1a, [...field(0x12, [0x78]), ...field(0x1a, field(0x0a, keyBytes))]));
    expect(fast(header([0xff]))).toBeNull();
    expect(fast(header([0xef, 0xbb, 0xbf]))).toBeNull();
    expect(fast(header([0x61]))).not.toBeNull();
    // Producer fields out of the v2 header's ranges, and more records than a batch may hold.
    expect(fast(wireOf([one({})]), { producerId: 1n, producerEpoch: 40_000, baseSequence: 0 })).toBeNull();
    expect(fast(wireOf([one({})]), { producerId: -1n, producerEpoch: 0, baseSequence: 0 })).toBeNull();
    expect(fast(wireOf(Array.from({ length: BATCH_RECORDS_MAX + 1 }, () => one({}))))).toBeNull();
    // Truncated messages are not the fast path's to judge either.
    const wire = wireOf([one({}), one({})]);
    expect(countEncodedRecords(wire.subarray(0, wire.length - 1))).toBeNull();
  });

  it('leaves records encoded in the server-side deserializer and decodes them on demand like ts-proto', () => {
    fc.assert(fc.property(fc.array(record, { maxLength: 4 }), fc.string(), (records, topic) => {
      const req = { topic, partition: 3, records, recordBatch: Buffer.alloc(0), acks: 2, producerId: 7n, producerEpoch: 1, baseSequence: 9 };
      const wire = ProduceRequest.encode(req).finish();
      const lazy = decodeProduceRequestLazy(wire);
      const full = ProduceRequest.decode(wire);
      expect({ ...lazy, records: recordsOf(lazy) }).toEqual(full);
      expect(encodedProduceRecords(lazy)?.count ?? 0).toBe(records.length);
    }), { numRuns: 200 });
  });
});
