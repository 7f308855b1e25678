/**
 * Goal: the shard's structured-read encoder (src/shard/structured-read.ts) writes exactly what the
 * generated sluice.v1 code would, respects `fromOffset` and `maxBytes`, and refuses a decompression
 * bomb instead of inflating it. Method: fast-check over records, codecs and read windows, decoding the
 * output with the generated FetchResponse decoder and comparing with the src/rpc main-thread decoder
 * (toPbRecords) it replaces; a gzip batch that inflates past BATCH_DECOMPRESSED_BYTES_MAX.
 */
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import zlib from 'node:zlib';
import { Compression, computeBatchCrc, encodeBatch } from '../../src/batch/index.js';
import type { RecordInput } from '../../src/batch/types.js';
import { BATCH_DECOMPRESSED_BYTES_MAX } from '../../src/constants.js';
import { encodeStructuredRead } from '../../src/shard/structured-read.js';
import { FetchResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { toPbRecords } from '../../src/rpc/convert.js';
import { isSluiceError } from '../../src/errors.js';

const seed = Number(process.env.SEED ?? Date.now() % 2 ** 31);
console.log(`structured-read.test seed=${seed} (replay with SEED=${seed})`);

const bytesOrNull = fc.option(fc.uint8Array({ maxLength: 64 }), { nil: null, freq: 4 });
const recordArb: fc.Arbitrary<RecordInput> = fc.record({
  key: bytesOrNull,
  value: fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null, freq: 5 }),
  headers: fc.array(fc.record({ key: fc.string({ maxLength: 10 }), value: bytesOrNull }), { maxLength: 3 }),
  timestampMs: fc.option(fc.integer({ min: 1_500_000_000_000, max: 1_900_000_000_000 }), { nil: undefined }),
});

/** Several batches at consecutive offsets, as a read returns them. */
function batchesOf(groups: RecordInput[][], codec: Compression, base: number): Buffer {
  let offset = base;
  const out: Buffer[] = [];
  for (const g of groups) {
    out.push(encodeBatch(g, { compression: codec, baseOffset: offset }));
    offset += g.length;
  }
  return Buffer.concat(out);
}

describe('encodeStructuredRead', () => {
  test('matches the generated encoding of the records the main thread used to decode', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(recordArb, { minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 5 }),
        fc.constantFrom(Compression.None, Compression.Gzip, Compression.Snappy, Compression.Lz4),
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.nat({ max: 20 }),
        fc.integer({ min: 1, max: 20_000 }),
        (groups, codec, base, skip, maxBytes) => {
          const data = batchesOf(groups, codec, base);
          const total = groups.reduce((n, g) => n + g.length, 0);
          const from = base + Math.min(skip, total - 1);
          let out = encodeStructuredRead(data, from, maxBytes);
          if (out.needBytes !== undefined) {
            // The first batch alone is larger than asked: nothing encoded; asked again with what it needs.
            expect([out.records, out.data.length, out.needBytes > maxBytes]).toEqual([0, 0, true]);
            const need = out.needBytes;
            out = encodeStructuredRead(data, from, need);
            expect(out.needBytes).toBeUndefined();
            expect(out.data.length).toBeLessThanOrEqual(need);
          }
          const got = FetchResponse.decode(out.data).records;
          const all = toPbRecords(data, from);
          // A prefix of whole batches, at least the first, within maxBytes unless it is the first.
          expect(got.length).toBe(out.records);
          expect(got.length).toBeGreaterThan(0);
          const empty = { records: [], recordBatches: Buffer.alloc(0), highWatermark: 0n, logStartOffset: 0n, nextOffset: 0n };
          // Byte for byte what the generated encoder writes for the records the main thread decoded.
          expect(Buffer.from(out.data)).toEqual(Buffer.from(FetchResponse.encode({ ...empty, records: all.slice(0, got.length) }).finish()));
          const lastOffset = Number(got[got.length - 1].offset);
          expect(out.nextOffset).toBe(lastOffset + 1);
        },
      ),
      { seed, numRuns: 200 },
    );
  });

  test('stops at maxBytes; a first batch larger than that is reported, not encoded', () => {
    const value = Buffer.alloc(1000, 1);
    const data = batchesOf([[{ key: null, value }, { key: null, value }], [{ key: null, value }], [{ key: null, value }]], Compression.None, 10);
    const none = encodeStructuredRead(data, 10, 1);
    expect([none.records, none.data.length, none.nextOffset]).toEqual([0, 0, 10]);
    expect(none.needBytes).toBeGreaterThan(2000);
    const one = encodeStructuredRead(data, 10, none.needBytes!);
    expect([one.records, one.nextOffset, one.data.length]).toEqual([2, 12, none.needBytes]);
    const two = encodeStructuredRead(data, 10, 3100);
    expect([two.records, two.nextOffset]).toEqual([3, 13]);
    expect(two.data.length).toBeLessThanOrEqual(3100);
    const mid = encodeStructuredRead(data, 11, 1100);
    expect([mid.records, mid.nextOffset]).toEqual([1, 12]);
  });

  test('refuses a gzip batch that inflates past the bound, without inflating it all', () => {
    const good = encodeBatch([{ key: null, value: Buffer.from('x') }], { compression: Compression.Gzip });
    // Same header, body replaced by a gzip stream of zeros larger than the bound, with a valid CRC so
    // the read gets as far as inflating it (as a bomb stored before produce validation existed would).
    const bomb = zlib.gzipSync(Buffer.alloc(BATCH_DECOMPRESSED_BYTES_MAX + 1024));
    const batch = Buffer.concat([good.subarray(0, 61), bomb]);
    batch.writeInt32BE(batch.length - 12, 8);
    batch.writeUInt32BE(computeBatchCrc(batch, 0, batch.length), 17);
    let err: unknown = null;
    try {
      encodeStructuredRead(batch, 0, 1 << 20);
    } catch (e) {
      err = e;
    }
    // Stored bytes that cannot be decoded are damage (LOG_CORRUPT); the cause names the bound.
    expect(isSluiceError(err, 'LOG_CORRUPT')).toBe(true);
    expect(isSluiceError((err as Error).cause, 'CORRUPT_BATCH')).toBe(true);
    expect((err as Error).message).toMatch(/decompress/);
  });
});
