/**
 * Goal: the hand-written ConsumeResponse decoder of the TS client (zero-copy for records chunks) reads
 * exactly what ts-proto writes, for every response kind. Method: fast-check arbitrary chunks and other
 * responses, encoded with the generated codec, decoded both ways, compared.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeConsumeResponse } from '../../src/client/group-consumer.js';
import { ConsumeResponse } from '../../src/rpc/gen/sluice/v1/groups.js';

const i64 = fc.bigInt({ min: 0n, max: 2n ** 53n });
const bytes = fc.uint8Array({ maxLength: 64 }).map((u) => Buffer.from(u));
const record = fc.record({
  key: fc.option(bytes, { nil: undefined }),
  value: fc.option(bytes, { nil: undefined }),
  headers: fc.array(fc.record({ key: fc.string(), value: fc.option(bytes, { nil: undefined }) }), { maxLength: 2 }),
  timestampMs: i64,
  offset: i64,
});
const chunk = fc.record({
  topic: fc.string(),
  partition: fc.integer({ min: 0, max: 10_000 }),
  records: fc.array(record, { maxLength: 3 }),
  recordBatches: bytes,
  firstOffset: i64,
  nextOffset: i64,
  highWatermark: i64,
  generation: i64,
});

describe('ConsumeResponse decoding', () => {
  it('decodes records chunks exactly as ts-proto does (seeded)', () => {
    fc.assert(
      fc.property(chunk, (c) => {
        const wire = ConsumeResponse.encode({ response: { $case: 'records', value: c } }).finish();
        expect(decodeConsumeResponse(wire)).toEqual(ConsumeResponse.decode(wire));
      }),
      { seed: Number(process.env.SEED ?? 5), numRuns: 300 },
    );
  });

  it('falls back to ts-proto for every other response', () => {
    const others = [
      { response: { $case: 'joined' as const, value: { memberId: 'm', generation: 3n, sessionTimeoutMs: 100, rejoined: true } } },
      { response: { $case: 'revoke' as const, value: { generation: 2n, partitions: [{ topic: 't', partition: 1 }] } } },
      { response: { $case: 'commitResult' as const, value: { commitId: 9n, errorCode: 'STALE_GENERATION', errorMessage: 'x' } } },
    ];
    for (const m of others) {
      const wire = ConsumeResponse.encode(m).finish();
      expect(decodeConsumeResponse(wire)).toEqual(ConsumeResponse.decode(wire));
    }
  });
});
