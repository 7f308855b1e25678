/**
 * Goal: no produce payload, however malformed, crashes a shard, hangs, or writes anything it then
 * refuses; the high watermark moves by exactly the records of the payloads that were accepted.
 * Method: fast-check (seed printed on failure) feeds random bytes and bit-flipped/truncated/extended
 * valid batches to one partition; each produce either succeeds or fails with a typed SluiceError;
 * afterwards (once committed) the partition's high watermark equals the sum of accepted record counts and the shard
 * has never restarted.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Broker } from '../../src/broker/index.js';
import { SluiceError } from '../../src/errors.js';
import { batchOf, openBroker } from './helpers.js';

let broker: Broker;
beforeAll(async () => {
  broker = await openBroker({ shards: 1 });
  await broker.createTopic('fuzz', 1, 1, {});
});
afterAll(() => broker.close());

const valid = batchOf(3);
const payload = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 300 }),
  fc.record({ at: fc.nat(valid.length - 1), bit: fc.integer({ min: 0, max: 7 }) }).map(({ at, bit }) => {
    const b = Buffer.from(valid);
    b[at] ^= 1 << bit;
    return b;
  }),
  fc.nat(valid.length).map((n) => valid.subarray(0, n)),
  fc.uint8Array({ minLength: 1, maxLength: 40 }).map((tail) => Buffer.concat([valid, tail])),
);

it('accepts or refuses every payload with a typed error, and counts exactly', async () => {
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(payload, async (bytes) => {
      try {
        const r = await broker.produce({ topic: 'fuzz', partition: 0, batches: bytes, acks: 'leader' });
        accepted += r.lastOffset - r.baseOffset + 1;
      } catch (err) {
        expect(err).toBeInstanceOf(SluiceError);
        expect(['CORRUPT_BATCH', 'RECORD_TOO_LARGE', 'UNSUPPORTED_MAGIC', 'UNSUPPORTED_COMPRESSION', 'TOO_MANY_RECORDS']).toContain((err as SluiceError).code);
      }
    }),
    { numRuns: 400 },
  );
  // acks=leader answers before commit; one acks=all produce commits everything before it (one voter
  // commits in log order), so the high watermark is then exact.
  await broker.produce({ topic: 'fuzz', partition: 0, batches: batchOf(1), acks: 'all' });
  const d = await broker.describeTopic('fuzz');
  // + the first term's no-op at offset 0 and the final batch.
  expect(d.partitions[0].highWatermark).toBe(accepted + 2);
  expect(broker.shardRestarts()).toEqual([0]);
});
