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

// --- The inline fast path of the record walk against a plain one -------------------------------

/**
 * An oracle: the record walk written plainly (one varint reader, no inlining), with the same checks
 * in the same order and the same messages as src/batch/validate.ts. The validator inlines the common
 * one- and two-byte varints and the no-header case for speed; this says it decides exactly as before.
 */
function plainWalkVerdict(buf: Buffer, pol: RecordPolicy): string {
  const count = buf.readInt32BE(57);
  const baseTs = Number(buf.readBigInt64BE(27));
  let i = 0;
  const bad = (m: string): string => `INVALID_RECORD batch at byte 0, record ${i}: ${m}`;
  let p = 61;
  const to = buf.length;
  const zz = (raw: number): number => (raw >>> 1) ^ -(raw & 1);
  const readVarint = (end: number): number | string => {
    let result = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (p >= end) return bad('a varint runs past the end of its record');
      const byte = buf[p++];
      result |= (byte & 0x7f) << shift;
      if (byte < 0x80) return zz(result);
    }
    return bad('a varint is longer than 5 bytes');
  };
  const skip = (end: number, what: string, nullable: boolean): string | null => {
    const len = readVarint(end);
    if (typeof len === 'string') return len;
    if (len < 0) return len === -1 && nullable ? null : bad(`${what} has length ${len}`);
    if (len > end - p) return bad(`${what} of ${len} bytes runs past the end of its record`);
    p += len;
    return null;
  };
  let maxTs = -Infinity;
  for (; i < count; i++) {
    if (p >= to) return bad(`the records end after ${i} of the ${count} the batch declares`);
    const len = readVarint(to);
    if (typeof len === 'string') return len;
    if (len < 1 || len > to - p) return bad(`record length ${len} does not fit the ${to - p} bytes left`);
    const end = p + len;
    p++;
    // Timestamp deltas stay one byte here (the mutations below keep them so).
    if (p >= end || buf[p] >= 0x80) return 'skip';
    const ts = baseTs + zz(buf[p++]);
    if (ts < pol.nowMs - pol.timestampBeforeMaxMs || ts > pol.nowMs + pol.timestampAfterMaxMs) return 'INVALID_TIMESTAMP';
    if (ts > maxTs) maxTs = ts;
    const od = readVarint(end);
    if (typeof od === 'string') return od;
    if (od !== i) return bad(`offset delta ${od}, expected ${i} (deltas must be 0..n-1 in order)`);
    for (const [what, nullable] of [['the key', true], ['the value', true]] as const) {
      const e = skip(end, what, nullable);
      if (e !== null) return e;
    }
    const headers = readVarint(end);
    if (typeof headers === 'string') return headers;
    if (headers < 0 || headers > (end - p) / 2) return bad(`header count ${headers} does not fit the record`);
    for (let h = 0; h < headers; h++) {
      const e = skip(end, `header ${h}'s key`, false) ?? skip(end, `header ${h}'s value`, true);
      if (e !== null) return e;
    }
    if (p !== end) return bad(`${end - p} bytes after the last field of the record`);
  }
  if (p !== to) return bad(`${to - p} bytes after the last of the ${count} records`);
  if (maxTs !== Number(buf.readBigInt64BE(35))) {
    i = count - 1;
    return bad(`the batch declares maxTimestamp ${Number(buf.readBigInt64BE(35))} but its records' maximum is ${maxTs}`);
  }
  return 'accepted';
}

function verdictOf(buf: Buffer, pol: RecordPolicy): string {
  try {
    validateProducedRecords(buf, pol);
  } catch (err) {
    if (!isSluiceError(err)) return `not a SluiceError: ${String(err)}`;
    return err.code === 'INVALID_TIMESTAMP' ? err.code : `${err.code} ${err.message}`;
  }
  return 'accepted';
}

describe('the record walk decides as a plain walk does', () => {
  const bytes = fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null });
  const record = fc.record({
    key: bytes,
    value: bytes,
    headers: fc.array(fc.record({ key: fc.string({ maxLength: 8 }), value: bytes }), { maxLength: 2 }),
  });
  test('property: valid batches, and the same with bytes of the records changed (CRC fixed up), get the same verdict', () => {
    let refused = 0;
    let compared = 0;
    fc.assert(
      fc.property(
        fc.array(record, { minLength: 1, maxLength: 80 }),
        fc.array(fc.record({ at: fc.nat(), byte: fc.constantFrom(0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xc8, 0xff, 0x03, 0x40) }), { maxLength: 3 }),
        (records, edits) => {
          const batch = encodeBatch(records.map((r) => ({ ...r, timestampMs: NOW })) as RecordInput[]);
          for (const e of edits) batch[61 + (e.at % (batch.length - 61))] = e.byte;
          batch.writeUInt32BE(computeBatchCrc(batch, 0, batch.length), 17);
          const expected = plainWalkVerdict(Buffer.from(batch), policy);
          if (expected === 'skip') return;
          compared++;
          const got = verdictOf(batch, policy);
          if (got !== 'accepted') refused++;
          expect(got).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
    // The mutations must reach the refusal paths, and valid batches the accepting one.
    expect(refused).toBeGreaterThan(200);
    expect(compared - refused).toBeGreaterThan(200);
  });
});
