/**
 * Goal: the zero-copy serializers in src/rpc/fast-codec.ts decode exactly what the generated ts-proto
 * code decodes. Method: fast-check properties over random ProduceRequests and FetchResponses,
 * encoded with the generated encoder and decoded by both decoders.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FetchResponse, ProduceRequest, ProduceStreamRequest } from '../../src/rpc/gen/sluice/v1/broker.js';
import {
  decodeFetchResponse,
  decodeProduceRequest,
  decodeProduceStreamRequest,
  encodeFetchResponse,
  encodeProduceRequest,
  encodeProduceStreamRequest,
  recordsOf,
} from '../../src/rpc/fast-codec.js';
import { withEnvelopeRoom } from '../../src/batch/envelope-room.js';

const bytes = fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u));
const record = fc.record({
  key: fc.option(bytes, { nil: undefined }),
  value: fc.option(bytes, { nil: undefined }),
  headers: fc.array(fc.record({ key: fc.string(), value: fc.option(bytes, { nil: undefined }) }), { maxLength: 3 }),
  timestampMs: fc.bigInt({ min: 0n, max: 2n ** 53n }),
  offset: fc.bigInt({ min: 0n, max: 2n ** 53n }),
});
const int64 = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
/** The idempotent-producer fields, including values the fast encoder hands to the generated one. */
const idempotence = {
  producerId: fc.option(fc.oneof(int64, fc.bigInt({ min: 0n, max: 2n ** 53n }), fc.constant(0n)), { nil: undefined }),
  producerEpoch: fc.oneof(fc.constant(0), fc.integer({ min: -2, max: 32767 })),
  baseSequence: fc.oneof(fc.constant(0), fc.integer({ min: -2, max: 2 ** 31 - 1 })),
};

/** ProduceRequests for the encoders, including values the fast encoder hands to the generated one. */
const encodableProduceRequest = fc.record({
  topic: fc.string({ unit: 'binary', maxLength: 40 }),
  partition: fc.option(fc.integer({ min: -5, max: 2 ** 31 - 1 }), { nil: undefined }),
  records: fc.array(record, { maxLength: 2 }),
  recordBatch: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
  acks: fc.integer({ min: 0, max: 3 }),
  ...idempotence,
});

describe('fast codec', () => {
  it('decodes ProduceRequest like ts-proto', () => {
    fc.assert(fc.property(
      fc.record({ topic: fc.string(), partition: fc.option(fc.integer({ min: -5, max: 1000 }), { nil: undefined }), records: fc.array(record, { maxLength: 4 }), recordBatch: bytes, acks: fc.integer({ min: 0, max: 3 }), ...idempotence }),
      (req) => {
        const wire = ProduceRequest.encode(req).finish();
        expect(decodeProduceRequest(wire)).toEqual(ProduceRequest.decode(wire));
      },
    ));
  });

  it('encodes ProduceRequest byte for byte like ts-proto', () => {
    fc.assert(fc.property(
      encodableProduceRequest,
      (req) => {
        expect(Buffer.from(encodeProduceRequest(req)).equals(Buffer.from(ProduceRequest.encode(req).finish()))).toBe(true);
      },
    ));
  });

  it('encodes ProduceStreamRequest byte for byte like ts-proto, and the broker decodes it as ts-proto does', () => {
    const id = fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: 2n ** 53n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    fc.assert(fc.property(fc.record({ id, request: fc.option(encodableProduceRequest, { nil: undefined }) }), (m) => {
      const wire = Buffer.from(ProduceStreamRequest.encode(m).finish());
      expect(Buffer.from(encodeProduceStreamRequest(m)).equals(wire)).toBe(true);
      const fast = decodeProduceStreamRequest(wire);
      const generated = ProduceStreamRequest.decode(wire);
      expect(fast.id).toBe(generated.id);
      if (generated.request === undefined) expect(fast.request).toBeUndefined();
      else expect({ ...fast.request!, records: recordsOf(fast.request!) }).toEqual(generated.request);
    }));
  });

  it('encodes FetchResponse byte for byte like ts-proto', () => {
    const offset = fc.oneof(int64, fc.bigInt({ min: 0n, max: 2n ** 53n }), fc.constant(0n));
    fc.assert(fc.property(
      fc.record({ records: fc.array(record, { maxLength: 2 }), recordBatches: fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)), highWatermark: offset, logStartOffset: offset, nextOffset: offset }),
      (res) => {
        expect(Buffer.from(encodeFetchResponse(res)).equals(Buffer.from(FetchResponse.encode(res).finish()))).toBe(true);
      },
    ));
  });

  it('encodes FetchResponse around batches with envelope room (no copy) byte for byte like ts-proto, and leaves the batches intact', () => {
    const offset = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 53n - 1n }), fc.constant(0n));
    fc.assert(fc.property(
      fc.record({ recordBatches: fc.uint8Array({ minLength: 1, maxLength: 20_000 }), highWatermark: offset, logStartOffset: offset, nextOffset: offset }),
      (res) => {
        const roomy = withEnvelopeRoom(res.recordBatches.length);
        roomy.set(res.recordBatches);
        const m = { ...res, records: [], recordBatches: roomy };
        const wire = encodeFetchResponse(m);
        expect(wire.buffer).toBe(roomy.buffer); // framed in place: a view, not a copy
        expect(Buffer.from(wire).equals(Buffer.from(FetchResponse.encode(m).finish()))).toBe(true);
        expect(roomy.equals(Buffer.from(res.recordBatches))).toBe(true);
        // Encoding again (another message over the same read) gives the same bytes.
        expect(Buffer.from(encodeFetchResponse({ ...m, highWatermark: 0n })).equals(Buffer.from(FetchResponse.encode({ ...m, highWatermark: 0n }).finish()))).toBe(true);
      },
    ));
  });

  it('decodes FetchResponse like ts-proto', () => {
    fc.assert(fc.property(
      fc.record({ records: fc.array(record, { maxLength: 4 }), recordBatches: bytes, highWatermark: int64, logStartOffset: int64, nextOffset: int64 }),
      (res) => {
        const wire = FetchResponse.encode(res).finish();
        expect(decodeFetchResponse(wire)).toEqual(FetchResponse.decode(wire));
      },
    ));
  });
});
