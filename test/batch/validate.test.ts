/**
 * Goal: a batch that is written can always be read (issue 9 §2). Every batch the codec produces passes
 * the record-level validator; every malformation the issue lists is refused with a stable reason,
 * writes nothing, and leaves the partition readable.
 * Method: fast-check over random records (keys, values, headers, timestamps, every codec) for the
 * positive property; hand-built batches with a correct header and CRC around broken records for the
 * refusals, each appended through `PartitionLog.append(..., { produced: true })` against a log whose
 * directory is snapshotted before and compared after. Seeds are printed by fast-check on failure.
 */
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { gzipSync } from 'node:zlib';
import { compressFrameSync } from 'lz4-napi';
import { afterAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { Compression, computeBatchCrc, decodeBatch, encodeBatch, readBatchHeader, type RecordInput } from '../../src/batch/index.js';
import { validateProducedRecords, type RecordPolicy } from '../../src/batch/validate.js';
import { writeVarint, writeVarlong } from '../../src/batch/varint.js';
import { PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { isSluiceError } from '../../src/errors.js';

const NOW = 1_750_000_000_000;
const HOUR = 3600 * 1000;
const policy: RecordPolicy = { nowMs: NOW, timestampType: 'CreateTime', timestampBeforeMaxMs: Number.MAX_SAFE_INTEGER, timestampAfterMaxMs: HOUR };

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-validate-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return isSluiceError(err) ? err.code : `not a SluiceError: ${String(err)}`;
  }
  return 'accepted';
}

// --- Hand-built records and batches -----------------------------------------------------------

interface RawRecord {
  tsDelta?: number;
  offsetDelta: number;
  keyLen?: number; // -1 = null; otherwise the declared length (the bytes written are `key`)
  key?: Buffer;
  value?: Buffer | null;
  headers?: Array<{ keyLen?: number; key: Buffer; value: Buffer | null }>;
  /** Overrides the record's length varint. */
  lengthOverride?: number;
}

function recordBytes(r: RawRecord): Buffer {
  const body = Buffer.alloc(1024);
  let p = 0;
  body[p++] = 0;
  p = writeVarlong(body, p, r.tsDelta ?? 0);
  p = writeVarint(body, p, r.offsetDelta);
  const key = r.key ?? null;
  p = writeVarint(body, p, r.keyLen ?? (key === null ? -1 : key.length));
  if (key) p += key.copy(body, p);
  const value = r.value === undefined ? Buffer.from('v') : r.value;
  p = writeVarint(body, p, value === null ? -1 : value.length);
  if (value) p += value.copy(body, p);
  const headers = r.headers ?? [];
  p = writeVarint(body, p, headers.length);
  for (const h of headers) {
    p = writeVarint(body, p, h.keyLen ?? h.key.length);
    p += h.key.copy(body, p);
    p = writeVarint(body, p, h.value === null ? -1 : h.value.length);
    if (h.value) p += h.value.copy(body, p);
  }
  const len = Buffer.alloc(5);
  const n = writeVarint(len, 0, r.lengthOverride ?? p);
  return Buffer.concat([len.subarray(0, n), body.subarray(0, p)]);
}

/** A batch with a consistent header (count, lastOffsetDelta, length, CRC) around `body`. */
function rawBatch(body: Buffer, count: number, opts: { attributes?: number; maxTimestamp?: number } = {}): Buffer {
  const header = encodeBatch([{ key: null, value: null, timestampMs: NOW }]).subarray(0, 61);
  const out = Buffer.concat([header, body]);
  out.writeInt32BE(out.length - 12, 8);
  out.writeInt16BE(opts.attributes ?? 0, 21);
  out.writeInt32BE(count - 1, 23);
  out.writeBigInt64BE(BigInt(opts.maxTimestamp ?? NOW), 35);
  out.writeInt32BE(count, 57);
  out.writeUInt32BE(computeBatchCrc(out, 0, out.length), 17);
  return out;
}

const good = (n = 2): Buffer => Buffer.concat(Array.from({ length: n }, (_, i) => recordBytes({ offsetDelta: i })));

describe('every valid batch from the codec passes', () => {
  const bytes = fc.option(fc.uint8Array({ maxLength: 40 }), { nil: null });
  const record = fc.record({
    key: bytes,
    value: bytes,
    headers: fc.array(fc.record({ key: fc.string({ maxLength: 8 }), value: bytes }), { maxLength: 3 }),
    timestampMs: fc.integer({ min: NOW - 10 * 365 * 24 * HOUR, max: NOW + HOUR }),
  });
  test('property: encodeBatch output (any codec, any records) is accepted and left unchanged', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 30 }), fc.constantFrom(Compression.None, Compression.Gzip, Compression.Snappy, Compression.Lz4), (records, compression) => {
        const batch = encodeBatch(records as RecordInput[], { compression });
        const copy = Buffer.from(batch);
        validateProducedRecords(batch, policy);
        expect(batch.equals(copy)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  test('records, keys, values and headers of 64 to 8,191 bytes (two-byte varints) pass, and their lengths are checked', () => {
    const big = (n: number): Buffer => Buffer.alloc(n, 0x61);
    const body = Buffer.concat([
      recordBytes({ offsetDelta: 0, value: big(100) }),
      recordBytes({ offsetDelta: 1, key: big(64), value: big(600), headers: [{ key: big(200), value: big(63) }] }),
    ]);
    expect(codeOf(() => validateProducedRecords(rawBatch(body, 2), policy))).toBe('accepted');
    // The same record with its two-byte value length one larger runs past the record: refused.
    const long = recordBytes({ offsetDelta: 0, value: big(100) });
    const at = long.indexOf(Buffer.from([0xc8, 0x01])); // zig-zag 100 = 200 = 0xc8 0x01
    expect(at).toBeGreaterThan(0);
    long[at] = 0xca; // 101
    expect(codeOf(() => validateProducedRecords(rawBatch(long, 1), policy))).toBe('INVALID_RECORD');
  });

  test('hand-built records with nulls, empty keys and headers pass (the builder is right)', () => {
    const body = Buffer.concat([
      recordBytes({ offsetDelta: 0, key: Buffer.from('k'), value: null }),
      recordBytes({ offsetDelta: 1, key: Buffer.alloc(0), value: Buffer.alloc(0), headers: [{ key: Buffer.from('h'), value: null }] }),
    ]);
    expect(codeOf(() => validateProducedRecords(rawBatch(body, 2), policy))).toBe('accepted');
  });
});

describe('malformed records are refused, write nothing, and the partition stays readable', () => {
  const gzipBomb = gzipSync(Buffer.alloc(80 * 1024 * 1024));
  const lz4Bomb = compressFrameSync(Buffer.alloc(80 * 1024 * 1024));
  const cases: Array<[string, Buffer, string]> = [
    ['record count larger than the records', rawBatch(good(2), 3), 'INVALID_RECORD'],
    ['record count smaller than the records', rawBatch(good(3), 2), 'INVALID_RECORD'],
    ['record length varint 2^31-1', rawBatch(recordBytes({ offsetDelta: 0, lengthOverride: 2 ** 31 - 1 }), 1), 'INVALID_RECORD'],
    ['key length -5', rawBatch(recordBytes({ offsetDelta: 0, keyLen: -5 }), 1), 'INVALID_RECORD'],
    ['key length past the record', rawBatch(recordBytes({ offsetDelta: 0, keyLen: 100, key: Buffer.from('abc') }), 1), 'INVALID_RECORD'],
    ['a varint of 6 bytes', rawBatch(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 1), 'INVALID_RECORD'],
    // Two-byte varints take an inline path: cut or continued past their record they are still refused.
    ['a two-byte record length cut by the end of the batch', rawBatch(Buffer.from([0x80]), 1), 'INVALID_RECORD'],
    ['a two-byte value length past its record', rawBatch(recordBytes({ offsetDelta: 0, value: Buffer.alloc(70) }).subarray(0, 20), 1), 'INVALID_RECORD'],
    ['empty body', rawBatch(Buffer.alloc(0), 1), 'INVALID_RECORD'],
    ['offset deltas 0, -3', rawBatch(Buffer.concat([recordBytes({ offsetDelta: 0 }), recordBytes({ offsetDelta: -3 })]), 2), 'INVALID_RECORD'],
    ['offset deltas 0, +1000', rawBatch(Buffer.concat([recordBytes({ offsetDelta: 0 }), recordBytes({ offsetDelta: 1000 })]), 2), 'INVALID_RECORD'],
    ['null header key', rawBatch(recordBytes({ offsetDelta: 0, headers: [{ keyLen: -1, key: Buffer.alloc(0), value: null }] }), 1), 'INVALID_RECORD'],
    ['trailing bytes after the last record', rawBatch(Buffer.concat([good(1), Buffer.from([0])]), 1), 'INVALID_RECORD'],
    ['maxTimestamp not the records maximum', rawBatch(good(1), 1, { maxTimestamp: NOW + 5 }), 'INVALID_RECORD'],
    ['gzip garbage', rawBatch(Buffer.from('this is not gzip at all'), 1, { attributes: Compression.Gzip }), 'CORRUPT_BATCH'],
    ['small gzip bomb (80 MiB of zeros)', rawBatch(gzipBomb, 1, { attributes: Compression.Gzip }), 'CORRUPT_BATCH'],
    ['lz4 bomb (80 MiB of zeros)', rawBatch(lz4Bomb, 1, { attributes: Compression.Lz4 }), 'CORRUPT_BATCH'],
    ['control bit', rawBatch(good(1), 1, { attributes: 0x20 }), 'CONTROL_BATCH_NOT_ALLOWED'],
    ['transactional bit', rawBatch(good(1), 1, { attributes: 0x10 }), 'CONTROL_BATCH_NOT_ALLOWED'],
    ['a record stamped in 2100', encodeBatch([{ key: null, value: Buffer.from('late'), timestampMs: Date.UTC(2100, 0, 1) }]), 'INVALID_TIMESTAMP'],
  ];

  test.each(cases)('%s', async (_name, batch, code) => {
    expect(batch.length).toBeLessThan(1 << 20);
    const dir = path.join(root, `case-${cases.findIndex((c) => c[1] === batch)}`);
    const log = await PartitionLog.open(dir, defaultLogConfig(), { nowMs: () => NOW });
    try {
      log.append(encodeBatch([{ key: null, value: Buffer.from('before'), timestampMs: NOW }]), 0, { produced: true });
      await log.flush();
      const size = log.sizeBytes;
      const files = fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')]);
      // The bad batch, alone and after a good one in the same request: either way nothing is written.
      for (const request of [batch, Buffer.concat([encodeBatch([{ key: null, value: Buffer.from('ok'), timestampMs: NOW }]), batch])]) {
        expect(codeOf(() => log.append(Buffer.from(request), 0, { produced: true }))).toBe(code);
      }
      expect(log.sizeBytes).toBe(size);
      expect(log.nextOffset).toBe(1);
      expect(fs.readdirSync(dir).map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')])).toEqual(files);
      // Still readable and writable.
      expect(Buffer.from(decodeBatch(log.read(0, 1 << 20).data).records[0].value!).toString()).toBe('before');
      expect(log.append(encodeBatch([{ key: null, value: Buffer.from('after'), timestampMs: NOW }]), 0, { produced: true }).baseOffset).toBe(1);
    } finally {
      await log.close();
    }
  });

  test('the checks cannot pass by accident: without `produced` the same batches are written (the header is valid)', async () => {
    const log = await PartitionLog.open(path.join(root, 'unchecked'), defaultLogConfig(), { nowMs: () => NOW });
    try {
      for (const [name, batch, code] of cases) {
        if (code === 'INVALID_TIMESTAMP' || code === 'CONTROL_BATCH_NOT_ALLOWED' || name.includes('bomb') || name.includes('garbage')) continue;
        expect(codeOf(() => log.append(Buffer.from(batch))), name).toBe('accepted');
      }
    } finally {
      await log.close();
    }
  });
});

describe('timestamps (message.timestamp.type, before/after.max.ms)', () => {
  test('CreateTime bounds: after.max.ms refuses the future, before.max.ms the past, both inclusive', () => {
    const at = (ts: number): Buffer => encodeBatch([{ key: null, value: null, timestampMs: ts }]);
    const bounded = { ...policy, timestampBeforeMaxMs: 1000 };
    expect(codeOf(() => validateProducedRecords(at(NOW + HOUR), bounded))).toBe('accepted');
    expect(codeOf(() => validateProducedRecords(at(NOW + HOUR + 1), bounded))).toBe('INVALID_TIMESTAMP');
    expect(codeOf(() => validateProducedRecords(at(NOW - 1000), bounded))).toBe('accepted');
    expect(codeOf(() => validateProducedRecords(at(NOW - 1001), bounded))).toBe('INVALID_TIMESTAMP');
  });

  test('LogAppendTime: the broker stamps maxTimestamp and the type bit, re-CRCs, and readers see the append time', async () => {
    const cfg = { ...defaultLogConfig(), timestampType: 'LogAppendTime' as const };
    const log = await PartitionLog.open(path.join(root, 'lat'), cfg, { nowMs: () => NOW });
    try {
      // A record stamped 2100 is fine here: its timestamp is replaced, not trusted.
      const batch = encodeBatch([{ key: null, value: Buffer.from('a'), timestampMs: Date.UTC(2100, 0, 1) }, { key: null, value: Buffer.from('b') }], { compression: Compression.Gzip });
      log.append(batch, 0, { produced: true });
      const back = log.read(0, 1 << 20).data;
      const h = readBatchHeader(back);
      expect(h.maxTimestamp).toBe(NOW);
      expect(h.attributes & 0x08).toBe(0x08);
      const decoded = decodeBatch(back); // verifies the CRC
      expect(decoded.records.map((r) => r.timestampMs)).toEqual([NOW, NOW]);
      expect(log.offsetForTimestamp(NOW)).toBe(0);
    } finally {
      await log.close();
    }
  });
});
