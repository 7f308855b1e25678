/**
 * Goal: the partition log keeps its invariants — gapless offsets, reads return exactly the bytes that
 * were appended (whole batches), bad input changes nothing, indexes are rebuilt when lost, retention
 * and truncation move the log's bounds correctly, and fsync behaves as the flush policy promises.
 * Method: a fast-check model test (random appends/reads/truncations/reopens against an in-memory list
 * of batches, tiny segments so rolls happen constantly), plus focused scenarios with an injected clock
 * and an injected fdatasync for fault and group-commit checks. Seeds are printed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { computeBatchCrc, encodeBatch, readBatchHeader } from '../../src/batch/index.js';
import {
  CLEAN_SHUTDOWN_FILE,
  PartitionLog,
  defaultLogConfig,
  logConfigFromTopicConfigs,
  type LogConfig,
  type LogOpenOptions,
} from '../../src/storage/index.js';
import { isSluiceError } from '../../src/errors.js';
import { decodeValues, makeBatch, readAllBatches, rmDir, segmentFiles, snapshotDir, testSeed, tmpDir } from './helpers.js';

const root = tmpDir('log');
afterAll(() => rmDir(root));
let n = 0;
const freshDir = (): string => path.join(root, `p-${n++}`);
const small = (over: Partial<LogConfig> = {}): LogConfig => ({ ...defaultLogConfig(), segmentBytes: 4096, ...over });
const opts: LogOpenOptions = { indexIntervalBytes: 512 };

async function expectCode(p: unknown | Promise<unknown>, code: string): Promise<void> {
  try {
    await (typeof p === 'function' ? (p as () => unknown)() : p);
  } catch (err) {
    if (!isSluiceError(err)) throw err;
    expect(err.code, err.message).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, nothing thrown`);
}

describe('config', () => {
  test('defaults and Kafka-style keys', () => {
    const d = defaultLogConfig();
    expect(d).toMatchObject({ segmentBytes: 128 << 20, maxBatchBytes: 1 << 20, retentionBytes: -1, flush: { kind: 'always' } });
    const c = logConfigFromTopicConfigs({
      'segment.bytes': '2097152',
      'segment.ms': '60000',
      'retention.ms': '-1',
      'retention.bytes': '1000000000',
      'max.message.bytes': '65536',
      'flush.policy': 'interval',
      'flush.interval.ms': '250',
      'cleanup.policy': 'delete',
      'message.timestamp.type': 'LogAppendTime',
      'message.timestamp.before.max.ms': '86400000',
      'message.timestamp.after.max.ms': '60000',
    });
    expect(c).toEqual({
      segmentBytes: 2097152,
      segmentMs: 60000,
      retentionMs: -1,
      retentionBytes: 1e9,
      maxBatchBytes: 65536,
      flush: { kind: 'interval', intervalMs: 250 },
      timestampType: 'LogAppendTime',
      timestampBeforeMaxMs: 86400000,
      timestampAfterMaxMs: 60000,
    });
    expect(d).toMatchObject({ timestampType: 'CreateTime', timestampAfterMaxMs: 3600 * 1000, timestampBeforeMaxMs: Number.MAX_SAFE_INTEGER });
    expect(logConfigFromTopicConfigs({ 'flush.policy': 'none' }).flush).toEqual({ kind: 'none' });
  });
  test.each([
    ['segment.bytes', '100'],
    ['segment.bytes', 'abc'],
    ['segment.ms', '0'],
    ['retention.ms', '-2'],
    ['max.message.bytes', String(64 << 20)],
    ['flush.policy', 'sometimes'],
    ['flush.interval.ms', '1.5'],
    ['message.timestamp.type', 'WallTime'],
    ['message.timestamp.after.max.ms', '-1'],
    ['message.timestamp.before.max.ms', 'soon'],
  ])('%s=%s is INVALID_CONFIG', async (k, v) => {
    await expectCode(() => logConfigFromTopicConfigs({ [k]: v }), 'INVALID_CONFIG');
  });
});

describe('model test (fast-check)', () => {
  const seed = testSeed('log model');
  type Cmd =
    | { t: 'append'; batches: number[]; bytes: number; ts: number }
    | { t: 'time'; at: number }
    | { t: 'read'; at: number; maxBytes: number }
    | { t: 'truncate'; at: number }
    | { t: 'reopen'; clean: boolean };
  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ t: fc.constant('append' as const), batches: fc.array(fc.integer({ min: 1, max: 12 }), { minLength: 1, maxLength: 3 }), bytes: fc.integer({ min: 0, max: 400 }), ts: fc.integer({ min: 0, max: 1000 }) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('time' as const), at: fc.integer({ min: -1, max: 1020 }) }) },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('read' as const), at: fc.double({ min: 0, max: 1, noNaN: true }), maxBytes: fc.integer({ min: 1, max: 5000 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('reopen' as const), clean: fc.boolean() }) },
  );

  test('offsets stay gapless, reads return exactly what was appended, timestamp lookups match the model', async () => {
    let tag = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 5, maxLength: 40 }), async (cmds) => {
        const dir = freshDir();
        let log = await PartitionLog.open(dir, small({ flush: { kind: 'none' } }), opts);
        const model: { base: number; last: number; bytes: Buffer; maxTs: number }[] = [];
        const next = (): number => (model.length ? model[model.length - 1].last + 1 : 0);
        try {
          for (const c of cmds) {
            if (c.t === 'append') {
              // Producer timestamps jump around (non-monotonic), as real clients' do.
              const parts = c.batches.map((k, j) => makeBatch(k, c.bytes, `t${tag++}`, c.ts + j));
              const r = log.append(Buffer.concat(parts));
              expect(r.baseOffset).toBe(next());
              let off = r.baseOffset;
              for (const p of parts) {
                const h = readBatchHeader(p);
                const copy = Buffer.from(p);
                copy.writeInt32BE(Math.floor(off / 2 ** 32), 0);
                copy.writeUInt32BE(off >>> 0, 4);
                copy.writeInt32BE(0, 12);
                model.push({ base: off, last: off + h.lastOffsetDelta, bytes: copy, maxTs: h.maxTimestamp });
                off += h.lastOffsetDelta + 1;
              }
              expect(r.lastOffset).toBe(off - 1);
            } else if (c.t === 'read') {
              const offset = Math.floor(c.at * next());
              const r = log.read(offset, c.maxBytes);
              if (offset === next()) {
                expect(r.data.length).toBe(0);
                continue;
              }
              const i = model.findIndex((b) => b.last >= offset);
              let want = model[i].bytes.length;
              let j = i + 1;
              while (j < model.length && want + model[j].bytes.length <= c.maxBytes) want += model[j++].bytes.length;
              // Reads stay inside one segment, so they may return fewer batches than fit, never more.
              expect(r.data.length).toBeLessThanOrEqual(want);
              expect(r.data.length).toBeGreaterThan(0);
              const got = Buffer.from(r.data);
              expect(got.equals(Buffer.concat(model.slice(i, i + 200).map((b) => b.bytes)).subarray(0, got.length))).toBe(true);
              let end = i;
              for (let sum = 0; sum < got.length; end++) sum += model[end].bytes.length;
              expect(r.nextOffset).toBe(model[end - 1].last + 1);
            } else if (c.t === 'time') {
              const hit = model.find((b) => b.maxTs >= c.at);
              expect(log.offsetForTimestamp(c.at)).toBe(hit ? hit.base : null);
            } else if (c.t === 'truncate') {
              const offset = Math.floor(c.at * next());
              log.truncateTo(offset);
              while (model.length && model[model.length - 1].last >= offset) model.pop();
              expect(log.nextOffset).toBe(next());
            } else {
              if (c.clean) await log.close();
              else {
                await log.flush();
                // Simulate a crash: drop the handles without the clean-shutdown marker.
                await log.close();
                fs.unlinkSync(path.join(dir, CLEAN_SHUTDOWN_FILE));
              }
              log = await PartitionLog.open(dir, small({ flush: { kind: 'none' } }), opts);
              expect(log.recovery.truncatedBytes).toBe(0);
            }
            expect(log.nextOffset).toBe(next());
          }
          const all = readAllBatches(log, 3000);
          expect(all.length).toBe(model.length);
          all.forEach((b, i) => expect(b.equals(model[i].bytes)).toBe(true));
        } finally {
          await log.close();
          rmDir(dir);
        }
      }),
      { seed, numRuns: 60 },
    );
  });
});

describe('append and read', () => {
  test('reads honour maxBytes (at least one batch), maxOffset, readInto and range errors', async () => {
    const log = await PartitionLog.open(freshDir(), small(), opts);
    for (let i = 0; i < 20; i++) log.append(makeBatch(3, 50, `b${i}`));
    const one = readBatchHeader(log.read(0, 1).data).sizeBytes;
    expect(log.read(0, 1).data.length).toBe(one);
    expect(log.read(0, 1).nextOffset).toBe(3);
    expect(log.read(4, 1).nextOffset).toBe(6); // offset inside a batch returns that batch
    expect(log.read(0, 3 * one).nextOffset).toBe(9);
    expect(log.read(0, 10_000, 7).nextOffset).toBe(6); // maxOffset stops before the batch holding 7
    expect(log.read(60, 100).data.length).toBe(0);
    const target = new Uint8Array(2 * one + 5);
    const r = log.readInto(3, 1 << 20, target);
    expect(r).toEqual({ bytes: 2 * one, nextOffset: 9 });
    expect(Buffer.from(target.subarray(0, r.bytes)).equals(Buffer.from(log.read(3, 2 * one).data))).toBe(true);
    await expectCode(() => log.read(61, 100), 'OFFSET_OUT_OF_RANGE');
    await expectCode(() => log.read(-1, 100), 'OFFSET_OUT_OF_RANGE');
    await log.close();
    await expectCode(() => log.read(0, 100), 'LOG_CLOSED');
    await expectCode(() => log.append(makeBatch(1, 1, 'x')), 'LOG_CLOSED');
  });

  test('the leader epoch is stamped into each batch and the CRC stays valid', async () => {
    const log = await PartitionLog.open(freshDir(), small(), opts);
    log.append(Buffer.concat([makeBatch(2, 10, 'a'), makeBatch(1, 10, 'b')]), 7);
    const all = readAllBatches(log);
    expect(all.map((b) => readBatchHeader(b).partitionLeaderEpoch)).toEqual([7, 7]);
    expect(all.map((b) => readBatchHeader(b).baseOffset)).toEqual([0, 2]);
    await log.close();
  });

  test('rolls by segment.bytes and by segment.ms (broker clock)', async () => {
    let now = 1_000_000;
    const dir = freshDir();
    const log = await PartitionLog.open(dir, small({ segmentMs: 1000 }), { ...opts, nowMs: () => now });
    for (let i = 0; i < 30; i++) log.append(makeBatch(2, 100, `r${i}`));
    expect(log.segmentCount).toBeGreaterThan(1);
    for (const f of segmentFiles(dir, 'log').slice(0, -1)) expect(fs.statSync(f).size).toBeLessThanOrEqual(4096);
    const before = log.segmentCount;
    now += 999;
    log.append(makeBatch(1, 10, 'x'));
    const at = log.segmentCount;
    expect(at).toBeGreaterThanOrEqual(before);
    now += 1000;
    log.append(makeBatch(1, 10, 'y'));
    expect(log.segmentCount).toBe(at + 1);
    expect(segmentFiles(dir, 'log').map((f) => path.basename(f))).toContain(`${String(log.nextOffset - 1).padStart(20, '0')}.log`);
    await log.close();
  });
});

describe('corrupt input never changes the log', () => {
  test('every kind of bad append throws a typed error and leaves files and offsets as they were', async () => {
    const dir = freshDir();
    const log = await PartitionLog.open(dir, small({ maxBatchBytes: 2000 }), opts);
    log.append(makeBatch(3, 20, 'ok'));
    await log.flush();
    const before = snapshotDir(dir);
    const good = makeBatch(2, 20, 'g');
    const bad: [string, Buffer, string][] = [];
    const mut = (f: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(good);
      f(b);
      return b;
    };
    const fixCrc = (b: Buffer): void => void b.writeUInt32BE(computeBatchCrc(b, 0, b.length), 17);
    bad.push(['bad magic', mut((b) => (b[16] = 0)), 'UNSUPPORTED_MAGIC']);
    bad.push(['bad crc', mut((b) => (b[70] ^= 1)), 'CORRUPT_BATCH']);
    bad.push(['negative length', mut((b) => b.writeInt32BE(-1, 8)), 'CORRUPT_BATCH']);
    bad.push(['length past end', mut((b) => b.writeInt32BE(b.length, 8)), 'CORRUPT_BATCH']);
    bad.push(['truncated', good.subarray(0, 40), 'CORRUPT_BATCH']);
    bad.push(['empty', Buffer.alloc(0), 'CORRUPT_BATCH']);
    bad.push(['too large', makeBatch(1, 2100, 'big'), 'RECORD_TOO_LARGE']);
    bad.push(['zstd', mut((b) => (b.writeInt16BE(4, 21), fixCrc(b))), 'UNSUPPORTED_COMPRESSION']);
    bad.push(['second batch bad', Buffer.concat([good, mut((b) => (b[80] ^= 0x10))]), 'CORRUPT_BATCH']);
    bad.push(['trailing garbage', Buffer.concat([good, Buffer.alloc(3)]), 'CORRUPT_BATCH']);
    for (const [name, buf, code] of bad) {
      const copy = Buffer.from(buf);
      await expectCode(() => log.append(copy), code);
      expect(copy.equals(buf), `${name}: input untouched`).toBe(true);
      expect(log.nextOffset, name).toBe(3);
    }
    await log.flush();
    expect(snapshotDir(dir)).toEqual(before);
    expect(log.append(Buffer.from(good)).baseOffset).toBe(3);
    await log.close();
  });
});

describe('index rebuild and timestamps', () => {
  test('deleted or garbled indexes are rebuilt byte-identical; reads and timestamp lookups still work', async () => {
    const dir = freshDir();
    const log = await PartitionLog.open(dir, small(), opts);
    const ts: number[] = [];
    for (let i = 0; i < 60; i++) {
      const t = 1_700_000_000_000 + ((i * 7919) % 97) * 1000; // non-monotonic producer timestamps
      log.append(makeBatch(2, 60, `i${i}`, t));
      ts.push(t + 1); // maxTimestamp of the batch
    }
    const firstAtOrAfter = (t: number): number | null => {
      const i = ts.findIndex((x) => x >= t);
      return i < 0 ? null : i * 2;
    };
    const probes = [0, ...ts.map((t) => t - 1), ...ts, ...ts.map((t) => t + 1), 1_800_000_000_000];
    for (const p of probes) expect(log.offsetForTimestamp(p)).toBe(firstAtOrAfter(p));
    await log.close();
    const indexFiles = [...segmentFiles(dir, 'index'), ...segmentFiles(dir, 'timeindex')];
    const originals = new Map(indexFiles.map((f) => [f, fs.readFileSync(f)]));
    expect(indexFiles.length).toBeGreaterThan(4);
    const values = decodeValues(await reopenAndRead(dir));

    // 1. Delete every index file (crash: no clean marker, so the active segment is re-scanned too).
    for (const f of indexFiles) fs.unlinkSync(f);
    fs.unlinkSync(path.join(dir, CLEAN_SHUTDOWN_FILE));
    let l2 = await PartitionLog.open(dir, small(), opts);
    expect(l2.recovery.rebuiltIndexes.length).toBe(indexFiles.length);
    for (const p of probes) expect(l2.offsetForTimestamp(p)).toBe(firstAtOrAfter(p));
    expect(decodeValues(readAllBatches(l2))).toEqual(values);
    await l2.close();
    for (const f of indexFiles) expect(fs.readFileSync(f).equals(originals.get(f)!), f).toBe(true);

    // 2. Garble the indexes (trailing garbage, a zeroed tail) of sealed and active segments.
    for (const f of indexFiles) {
      const b = fs.readFileSync(f);
      if (b.length >= 8) b.fill(0, b.length - 8);
      fs.writeFileSync(f, Buffer.concat([b, Buffer.from([1, 2, 3])]));
    }
    l2 = await PartitionLog.open(dir, small(), opts);
    expect(l2.recovery.rebuiltIndexes.length).toBeGreaterThan(0);
    for (const p of probes) expect(l2.offsetForTimestamp(p)).toBe(firstAtOrAfter(p));
    expect(decodeValues(readAllBatches(l2))).toEqual(values);
    await l2.close();
  });

  async function reopenAndRead(dir: string): Promise<Buffer[]> {
    const l = await PartitionLog.open(dir, small(), opts);
    const batches = readAllBatches(l);
    await l.close();
    return batches;
  }
});

describe('corruption in a sealed segment is loud, fenced, never dropped', () => {
  async function build(dir: string): Promise<void> {
    const log = await PartitionLog.open(dir, small(), opts);
    for (let i = 0; i < 80; i++) log.append(makeBatch(2, 80, `s${i}`));
    await log.close();
    expect(segmentFiles(dir, 'log').length).toBeGreaterThan(3);
  }

  test('a broken batch after the last index entry of a sealed segment: fenced up to the next segment, reads answer LOG_CORRUPT', async () => {
    const dir = freshDir();
    await build(dir);
    const files = segmentFiles(dir, 'log');
    const first = files[0];
    const nextBase = Number(path.basename(files[1]).slice(0, 20));
    const b = fs.readFileSync(first);
    // Corrupt the length of the last batch of the segment (after the last index entry).
    let pos = 0;
    let last = 0;
    while (pos < b.length) {
      last = pos;
      pos += b.readInt32BE(pos + 8) + 12;
    }
    const lastBase = Number(b.readBigInt64BE(last));
    b.writeInt32BE(5, last + 8);
    fs.writeFileSync(first, b);
    const log = await PartitionLog.open(dir, small(), opts);
    try {
      expect(log.damagedRanges).toEqual([
        expect.objectContaining({ file: first, pos: last, bytes: b.length - last, fromOffset: lastBase, toOffset: nextBase }),
      ]);
      expect(fs.existsSync(first.replace(/\.log$/, '.damaged'))).toBe(true);
      const err = (() => {
        try {
          log.read(lastBase, 1 << 20);
        } catch (e) {
          return e as Error;
        }
        return null;
      })();
      expect(isSluiceError(err, 'LOG_CORRUPT'), String(err)).toBe(true);
      expect(err!.message).toContain(path.basename(first));
      expect(err!.message).toContain(`position ${last}`);
      // Everything around the hole still reads, and offsets go on where they were.
      expect(readBatchHeader(log.read(lastBase - 2, 1 << 20).data).baseOffset).toBe(lastBase - 2);
      expect(log.read(lastBase - 2, 1 << 20).nextOffset).toBe(lastBase);
      expect(readBatchHeader(log.read(nextBase, 1).data).baseOffset).toBe(nextBase);
      expect(log.nextOffset).toBe(160);
    } finally {
      await log.close();
    }
  });

  test('a flipped bit inside a sealed segment whose index is missing: that batch is fenced naming the CRC', async () => {
    const dir = freshDir();
    await build(dir);
    const second = segmentFiles(dir, 'log')[1];
    fs.unlinkSync(second.replace(/\.log$/, '.index'));
    const b = fs.readFileSync(second);
    const size0 = b.readInt32BE(8) + 12;
    const size1 = b.readInt32BE(size0 + 8) + 12;
    const base1 = Number(b.readBigInt64BE(size0));
    b[size0 + 100] ^= 0x04; // inside the second batch
    fs.writeFileSync(second, b);
    const log = await PartitionLog.open(dir, small(), opts);
    try {
      const [d, ...more] = log.damagedRanges;
      expect(more).toEqual([]);
      expect(d).toMatchObject({ file: second, pos: size0, bytes: size1, fromOffset: base1, toOffset: base1 + 2 });
      expect(d.reason).toMatch(/CRC-32C mismatch in batch at position \d+/);
      await expectCode(() => log.read(base1 + 1, 1 << 20), 'LOG_CORRUPT');
      expect(readBatchHeader(log.read(base1 + 2, 1).data).baseOffset).toBe(base1 + 2);
      expect(log.recovery.damaged).toHaveLength(1);
    } finally {
      await log.close();
    }
    // A clean reopen finds it again (the .damaged marker forces the scan), and a retention that
    // deletes the segment clears it.
    const again = await PartitionLog.open(dir, small(), opts);
    try {
      expect(again.damagedRanges).toHaveLength(1);
    } finally {
      await again.close();
    }
  });

  test('header damage the open did not scan for (before the last index entry) is LOG_CORRUPT at read time, never data', async () => {
    const dir = freshDir();
    await build(dir);
    const first = segmentFiles(dir, 'log')[0];
    const b = fs.readFileSync(first);
    const size0 = b.readInt32BE(8) + 12;
    b.writeInt32BE(-40, size0 + 8); // the second batch's length, far before the segment's last index entry
    fs.writeFileSync(first, b);
    const log = await PartitionLog.open(dir, small(), opts);
    try {
      expect(log.damagedRanges).toEqual([]); // trusted on open: only the index tail was walked
      expect(log.read(0, 1 << 20).nextOffset).toBe(2); // the read stops before the damaged header
      await expectCode(() => log.read(2, 1 << 20), 'LOG_CORRUPT');
    } finally {
      await log.close();
    }
  });

  test('truncateTo keeps a fence before the cut and drops one at or after it', async () => {
    const dir = freshDir();
    const log0 = await PartitionLog.open(dir, small({ segmentBytes: 1 << 20 }), opts);
    for (let i = 0; i < 20; i++) log0.append(makeBatch(2, 80, `t${i}`));
    await log0.close();
    fs.unlinkSync(path.join(dir, CLEAN_SHUTDOWN_FILE));
    const file = segmentFiles(dir, 'log')[0];
    const b = fs.readFileSync(file);
    let pos = 0;
    for (let k = 0; k < 5; k++) pos += b.readInt32BE(pos + 8) + 12;
    b[pos + 70] ^= 0x20; // batch 5: offsets [10, 12)
    fs.writeFileSync(file, b);
    const log = await PartitionLog.open(dir, small({ segmentBytes: 1 << 20 }), opts);
    try {
      expect(log.damagedRanges.map((d) => [d.fromOffset, d.toOffset])).toEqual([[10, 12]]);
      log.truncateTo(30);
      expect(log.nextOffset).toBe(30);
      expect(log.damagedRanges).toHaveLength(1);
      await expectCode(() => log.read(11, 1 << 20), 'LOG_CORRUPT');
      expect(readBatchHeader(log.read(12, 1).data).baseOffset).toBe(12);
      log.truncateTo(11); // inside the fence: the whole range goes
      expect(log.nextOffset).toBe(10);
      expect(log.damagedRanges).toEqual([]);
      expect(fs.existsSync(file.replace(/\.log$/, '.damaged'))).toBe(false);
      expect(log.append(makeBatch(1, 10, 'again')).baseOffset).toBe(10);
    } finally {
      await log.close();
    }
  });

  test('a torn batch whose record value carries a whole client batch is still a torn tail, not "corruption"', async () => {
    const dir = freshDir();
    const cfg = small({ segmentBytes: 1 << 20 });
    const log0 = await PartitionLog.open(dir, cfg, opts);
    log0.append(makeBatch(1, 50, 'first'));
    const inner = encodeBatch([{ key: null, value: Buffer.from('inner') }], { baseOffset: 5 }); // epoch -1, as clients send
    log0.append(encodeBatch([{ key: null, value: Buffer.concat([inner, Buffer.alloc(200, 7)]) }]));
    await log0.close();
    fs.unlinkSync(path.join(dir, CLEAN_SHUTDOWN_FILE));
    const file = segmentFiles(dir, 'log')[0];
    const whole = fs.readFileSync(file);
    fs.truncateSync(file, whole.length - 100); // torn after the embedded batch
    const log = await PartitionLog.open(dir, cfg, opts);
    try {
      expect(log.damagedRanges).toEqual([]);
      expect(log.nextOffset).toBe(1);
      expect(log.recovery.truncatedBytes).toBeGreaterThan(0);
    } finally {
      await log.close();
    }
  });

  test('a missing segment in the middle: LOG_CORRUPT (offsets not contiguous)', async () => {
    const dir = freshDir();
    await build(dir);
    fs.unlinkSync(segmentFiles(dir, 'log')[2]);
    await expectCode(PartitionLog.open(dir, small(), opts), 'LOG_CORRUPT');
  });
});

describe('retention and truncation', () => {
  test('retention.ms deletes old sealed segments, then the expired active one; reads below the start fail', async () => {
    const dir = freshDir();
    const log = await PartitionLog.open(dir, small({ retentionMs: 10_000 }), opts);
    for (let i = 0; i < 90; i++) log.append(makeBatch(2, 100, `a${i}`, 1_000_000 + i * 1000));
    const segs = log.segmentBaseOffsets();
    expect(segs.length).toBeGreaterThan(3);
    expect(log.enforceRetention(1_000_000 + 5_000)).toBe(0);
    // At t=1_090_000, batches with maxTimestamp < 1_080_000 expire; only whole segments go.
    const deleted = log.enforceRetention(1_090_000);
    expect(deleted).toBe(segs.length - 2);
    expect(deleted).toBeGreaterThan(0);
    expect(log.logStartOffset).toBe(segs[deleted]);
    await expectCode(() => log.read(log.logStartOffset - 1, 100), 'OFFSET_OUT_OF_RANGE');
    expect(readAllBatches(log).length).toBeGreaterThan(0);
    await log.close();
    const again = await PartitionLog.open(dir, small({ retentionMs: 10_000 }), opts);
    expect(again.logStartOffset).toBe(segs[deleted]);
    // Everything expired: the active segment is rolled and deleted too; the log is empty at nextOffset.
    again.enforceRetention(10_000_000);
    expect(again.logStartOffset).toBe(180);
    expect(again.nextOffset).toBe(180);
    expect(again.sizeBytes).toBe(0);
    expect(again.append(makeBatch(1, 1, 'z')).baseOffset).toBe(180);
    await again.close();
  });

  test('retention.bytes keeps the newest segments under the limit', async () => {
    const log = await PartitionLog.open(freshDir(), small({ retentionBytes: 10_000, retentionMs: -1 }), opts);
    for (let i = 0; i < 50; i++) log.append(makeBatch(2, 100, `b${i}`));
    const total = log.sizeBytes;
    const deleted = log.enforceRetention(Date.now());
    expect(deleted).toBeGreaterThan(0);
    expect(log.sizeBytes).toBeLessThan(total);
    expect(log.sizeBytes).toBeGreaterThanOrEqual(10_000 - 4096);
    expect(log.nextOffset).toBe(100);
    expect(readAllBatches(log).length * 2).toBe(100 - log.logStartOffset);
    await log.close();
  });

  test('truncateTo cuts whole batches across segments; appends continue after it', async () => {
    const dir = freshDir();
    const log = await PartitionLog.open(dir, small(), opts);
    for (let i = 0; i < 40; i++) log.append(makeBatch(3, 80, `t${i}`));
    log.truncateTo(100); // inside batch 99..101 -> cut at 99
    expect(log.nextOffset).toBe(99);
    expect(log.append(makeBatch(1, 5, 'new')).baseOffset).toBe(99);
    log.truncateTo(30);
    expect(log.nextOffset).toBe(30);
    expect(segmentFiles(dir, 'log').length).toBe(log.segmentCount);
    await log.close();
    const again = await PartitionLog.open(dir, small(), opts);
    expect(again.nextOffset).toBe(30);
    expect(readAllBatches(again).length).toBe(10);
    again.truncateTo(0);
    expect(again.nextOffset).toBe(0);
    expect(again.sizeBytes).toBe(0);
    await again.close();
  });
});

test('truncateFullyAndStartAt restarts an empty log at any offset, durably', async () => {
  const dir = freshDir();
  const log = await PartitionLog.open(dir, small(), opts);
  for (let i = 0; i < 30; i++) log.append(makeBatch(2, 100, `f${i}`));
  log.truncateFullyAndStartAt(1000);
  expect([log.logStartOffset, log.nextOffset, log.sizeBytes, log.segmentCount]).toEqual([1000, 1000, 0, 1]);
  await expectCode(() => log.read(999, 10), 'OFFSET_OUT_OF_RANGE');
  expect(log.append(makeBatch(1, 1, 'x')).baseOffset).toBe(1000);
  await log.close();
  const again = await PartitionLog.open(dir, small(), opts);
  expect([again.logStartOffset, again.nextOffset]).toEqual([1000, 1001]);
  expect(segmentFiles(dir, 'log').length).toBe(1);
  await again.close();
});

describe('durability', () => {
  test('group commit: appends in one turn share one fdatasync; durable waits for it', async () => {
    let calls = 0;
    let release: (() => void) | null = null;
    const fdatasync: LogOpenOptions['fdatasync'] = (fd, cb) => {
      calls++;
      release = () => fs.fdatasync(fd, cb);
    };
    const log = await PartitionLog.open(freshDir(), small({ segmentBytes: 1 << 20 }), { ...opts, fdatasync });
    let done = 0;
    const results = Array.from({ length: 50 }, (_, i) => log.append(makeBatch(1, 10, `g${i}`)));
    results.forEach((r) => void r.durable.then(() => done++));
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(1);
    expect(done).toBe(0); // not acknowledged before the fdatasync completes
    // Appends while a sync is in flight join the next round.
    const later = Array.from({ length: 10 }, (_, i) => log.append(makeBatch(1, 10, `h${i}`)));
    release!();
    await Promise.all(results.map((r) => r.durable));
    expect(done).toBe(50);
    await new Promise((r) => setTimeout(r, 20));
    expect(calls).toBe(2);
    release!();
    await Promise.all(later.map((r) => r.durable));
    expect(calls).toBe(2);
    await log.close();
  });

  test('flush() with nothing written since the running round started waits for that round, not a new one', async () => {
    // The Raft driver appends (which starts a round at the end of the turn) and then flushes in the
    // next check phase: the flush resolves with that round (never before it), while a write after the
    // round started is not covered by it and needs a round of its own.
    let calls = 0;
    let release: (() => void) | null = null;
    const fdatasync: LogOpenOptions['fdatasync'] = (fd, cb) => {
      calls++;
      release = () => fs.fdatasync(fd, cb);
    };
    const log = await PartitionLog.open(freshDir(), small({ segmentBytes: 1 << 20 }), { ...opts, fdatasync });
    const first = log.append(makeBatch(1, 10, 'a'));
    await new Promise((r) => setImmediate(r));
    expect(calls).toBe(1); // the append's round is running
    let flushed = false;
    const flush = log.flush().then(() => (flushed = true));
    await new Promise((r) => setImmediate(r));
    expect(flushed).toBe(false); // not before the round that covers the write completes
    release!();
    await Promise.all([first.durable, flush]);
    expect(calls).toBe(1);
    // A write after the round started is not covered by it: flush waits for a round of its own.
    const second = log.append(makeBatch(1, 10, 'b'));
    await new Promise((r) => setImmediate(r));
    expect(calls).toBe(2);
    const third = log.append(makeBatch(1, 10, 'c'));
    let thirdFlushed = false;
    const flush2 = log.flush().then(() => (thirdFlushed = true));
    release!();
    await second.durable;
    await new Promise((r) => setImmediate(r));
    expect(thirdFlushed).toBe(false);
    expect(calls).toBe(3);
    release!();
    await Promise.all([third.durable, flush2]);
    expect(calls).toBe(3);
    await log.close();
  });

  test('an fdatasync error fences the log: durable rejects, writes refused, the fsync is never retried', async () => {
    let calls = 0;
    const fdatasync: LogOpenOptions['fdatasync'] = (_fd, cb) => {
      calls++;
      setImmediate(() => cb(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' })));
    };
    const log = await PartitionLog.open(freshDir(), small(), { ...opts, fdatasync });
    const r = log.append(makeBatch(1, 10, 'x'));
    await expectCode(r.durable, 'STORAGE_ERROR');
    expect(log.fenced?.code).toBe('LOG_FENCED');
    await expectCode(() => log.append(makeBatch(1, 10, 'y')), 'LOG_FENCED');
    await expectCode(() => log.truncateTo(0), 'LOG_FENCED');
    await expectCode(log.flush(), 'LOG_FENCED');
    expect(log.read(0, 100).nextOffset).toBe(1); // reads still served
    await log.close();
    expect(calls).toBe(1);
  });

  test('flush=none and interval do not wait; interval syncs on its timer; flush() syncs on demand', async () => {
    let calls = 0;
    const fdatasync: LogOpenOptions['fdatasync'] = (fd, cb) => {
      calls++;
      fs.fdatasync(fd, cb);
    };
    const none = await PartitionLog.open(freshDir(), small({ flush: { kind: 'none' } }), { ...opts, fdatasync });
    await none.append(makeBatch(1, 10, 'n')).durable;
    await new Promise((r) => setTimeout(r, 30));
    expect(calls).toBe(0);
    await none.flush();
    expect(calls).toBe(1);
    await none.close();
    calls = 0;
    const iv = await PartitionLog.open(freshDir(), small({ flush: { kind: 'interval', intervalMs: 20 } }), { ...opts, fdatasync });
    await iv.append(makeBatch(1, 10, 'i')).durable;
    expect(calls).toBe(0);
    await new Promise((r) => setTimeout(r, 80));
    expect(calls).toBe(1); // one timer tick synced; later ticks had nothing dirty
    await iv.close();
  });

  test('close leaves a clean-shutdown marker that the next open consumes', async () => {
    const dir = freshDir();
    const log = await PartitionLog.open(dir, small(), opts);
    log.append(makeBatch(1, 10, 'c'));
    await log.close();
    expect(fs.existsSync(path.join(dir, CLEAN_SHUTDOWN_FILE))).toBe(true);
    const again = await PartitionLog.open(dir, small(), opts);
    expect(again.recovery.cleanShutdown).toBe(true);
    expect(fs.existsSync(path.join(dir, CLEAN_SHUTDOWN_FILE))).toBe(false);
    await again.close();
  });
});

test('encodeBatch output appends as-is (the client path)', async () => {
  const log = await PartitionLog.open(freshDir(), small(), opts);
  const r = log.append(encodeBatch([{ key: Buffer.from('k'), value: Buffer.from('v') }]));
  expect(r).toMatchObject({ baseOffset: 0, lastOffset: 0 });
  await r.durable;
  await log.close();
});
