/**
 * Goal: after a crash that tore or garbled the active segment, recovery cuts a torn tail (damage that
 * no valid batch follows) and fences damage in the middle (a corrupt batch followed by a valid one):
 * no acknowledged batch after the damage is lost, no offset is reused, and reads of the damaged range
 * answer LOG_CORRUPT.
 * Method: build one template log (tiny segments, so there are sealed segments and an active one with
 * ~100 batches of varied sizes and codecs), then 1,200 times: copy it, damage the active segment at a
 * random position (truncate, XOR 1-8 bytes, or append junk), drop the clean-shutdown marker, reopen,
 * and compare with what the damage allows. Truncation and junk: the log ends exactly at the first
 * batch the damage touched. Garbling: if the touched batches are the last ones, the same; otherwise
 * they are fenced (their offsets answer LOG_CORRUPT) and every later batch is still there, so the log
 * ends where it did. Garbling only partitionLeaderEpoch, which no checksum covers, is the one thing
 * that cannot be noticed, and then the batch must still be there. Every kept batch is byte-identical.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Compression, encodeBatch, readBatchHeader } from '../../src/batch/index.js';
import { isSluiceError } from '../../src/errors.js';
import { CLEAN_SHUTDOWN_FILE, PartitionLog, defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import { readAllBatches, rmDir, rng, segmentFiles, testSeed, tmpDir } from './helpers.js';

const ROUNDS = 1200;
const root = tmpDir('torn');
const template = path.join(root, 'template');
const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 24 * 1024, flush: { kind: 'none' } };
const opts = { indexIntervalBytes: 1024 };
const seed = testSeed('torn-tail');
const r = rng(seed);

/** Active segment batches: [start, end) positions and base/next offsets. */
let active: { start: number; end: number; base: number; next: number }[] = [];
let activeFile = '';
let allBatches: Buffer[] = [];
let templateNext = 0;

beforeAll(async () => {
  const log = await PartitionLog.open(template, config, opts);
  const codecs = [Compression.None, Compression.None, Compression.Gzip, Compression.Lz4, Compression.Snappy];
  while (log.segmentCount < 3 || log.sizeBytes - 2 * 24 * 1024 < 20 * 1024) {
    const n = r.int(1, 5);
    const records = Array.from({ length: n }, (_, i) => ({ key: i % 2 ? null : Buffer.from(`k${i}`), value: Buffer.alloc(r.int(0, 300), r.int(0, 255)), timestampMs: 1_700_000_000_000 + r.int(0, 1e6) }));
    log.append(encodeBatch(records, { compression: codecs[r.int(0, codecs.length - 1)] }));
  }
  allBatches = readAllBatches(log);
  templateNext = log.nextOffset;
  await log.close();
  fs.unlinkSync(path.join(template, CLEAN_SHUTDOWN_FILE));
  activeFile = path.basename(segmentFiles(template, 'log').at(-1)!);
  const bytes = fs.readFileSync(path.join(template, activeFile));
  for (let pos = 0; pos < bytes.length; ) {
    const h = readBatchHeader(bytes, pos);
    active.push({ start: pos, end: pos + h.sizeBytes, base: h.baseOffset, next: h.baseOffset + h.lastOffsetDelta + 1 });
    pos += h.sizeBytes;
  }
  expect(active.length).toBeGreaterThan(40);
});

afterAll(() => rmDir(root));

/** What recovery must make of damage to bytes [from, to) of the active segment. */
function expected(from: number, to: number): { next: number; hole: { from: number; to: number } | null } {
  const first = active.find((b) => !(b.end <= from || b.start >= to) && !(from >= b.start + 12 && to <= b.start + 16));
  if (first === undefined) return { next: templateNext, hole: null };
  const after = active.find((b) => b.start >= to);
  // Nothing valid after the damage: a torn tail, cut at the first touched batch.
  if (after === undefined) return { next: first.base, hole: null };
  return { next: templateNext, hole: { from: first.base, to: after.base } };
}

/** Reads every batch of the log, checking that the hole (and only it) answers LOG_CORRUPT. */
function readAround(log: PartitionLog, hole: { from: number; to: number } | null, what: string): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let offset = log.logStartOffset;
  for (let guard = 0; offset < log.nextOffset; guard++) {
    expect(guard, what).toBeLessThan(10_000);
    if (hole && offset === hole.from) {
      for (const o of [hole.from, hole.to - 1]) {
        let code = 'none';
        try {
          log.read(o, 1 << 20);
        } catch (err) {
          code = isSluiceError(err) ? err.code : String(err);
        }
        expect(code, `${what}: read of damaged offset ${o}`).toBe('LOG_CORRUPT');
      }
      offset = hole.to;
      continue;
    }
    const r = log.read(offset, 1 << 20);
    expect(r.data.length, `${what}: empty read at ${offset}`).toBeGreaterThan(0);
    const buf = Buffer.from(r.data);
    for (let pos = 0; pos < buf.length; ) {
      const h = readBatchHeader(buf, pos);
      expect(h.baseOffset, `${what}: gap`).toBe(offset);
      out.set(h.baseOffset, buf.subarray(pos, pos + h.sizeBytes));
      offset = h.baseOffset + h.lastOffsetDelta + 1;
      pos += h.sizeBytes;
    }
  }
  return out;
}

test(`torn or garbled active segment at ${ROUNDS} random positions reopens to the valid prefix`, async () => {
  const size = active.at(-1)!.end;
  const kinds = { truncate: 0, garble: 0, junk: 0, fenced: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const dir = path.join(root, `r${round}`);
    fs.cpSync(template, dir, { recursive: true });
    const file = path.join(dir, activeFile);
    let want: ReturnType<typeof expected>;
    const kind = round % 10 === 9 ? 'junk' : round % 2 === 0 ? 'truncate' : 'garble';
    kinds[kind]++;
    let what: string;
    if (kind === 'truncate') {
      const at = r.int(0, size - 1);
      fs.truncateSync(file, at);
      want = expected(at, size);
      // A cut file has nothing after the cut, whatever the rule for damage in the middle.
      want = { next: want.hole ? want.hole.from : want.next, hole: null };
      what = `truncate at ${at}`;
    } else if (kind === 'garble') {
      const at = r.int(0, size - 1);
      const len = Math.min(r.int(1, 8), size - at);
      const fd = fs.openSync(file, 'r+');
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, at);
      for (let i = 0; i < len; i++) buf[i] ^= r.int(1, 255);
      fs.writeSync(fd, buf, 0, len, at);
      fs.closeSync(fd);
      want = expected(at, at + len);
      if (want.hole) kinds.fenced++;
      what = `garble ${len} bytes at ${at}`;
    } else {
      const junk = r.next() < 0.5 ? Buffer.alloc(r.int(1, 5000)) : Buffer.from(Array.from({ length: r.int(1, 200) }, () => r.int(0, 255)));
      fs.appendFileSync(file, junk);
      want = { next: templateNext, hole: null };
      what = `append ${junk.length} junk bytes`;
    }
    const log = await PartitionLog.open(dir, config, opts);
    try {
      expect(log.nextOffset, `round ${round}: ${what}`).toBe(want.next);
      const holes = log.damagedRanges.map((d) => ({ from: d.fromOffset, to: d.toOffset }));
      expect(holes, `round ${round}: ${what}`).toEqual(want.hole ? [want.hole] : []);
      const got = readAround(log, want.hole, `round ${round}: ${what}`);
      // Every kept batch is byte-identical, except a garbled epoch, which nothing covers.
      let kept = 0;
      for (const original of allBatches) {
        const h = readBatchHeader(original);
        if (h.baseOffset >= want.next || (want.hole && h.baseOffset >= want.hole.from && h.baseOffset < want.hole.to)) continue;
        const back = got.get(h.baseOffset);
        expect(back, `round ${round}: ${what}: batch at ${h.baseOffset} lost`).toBeDefined();
        const a = Buffer.from(back!);
        const b = Buffer.from(original);
        a.fill(0, 12, 16);
        b.fill(0, 12, 16);
        expect(a.equals(b), `round ${round}: ${what}: batch at ${h.baseOffset} differs`).toBe(true);
        kept++;
      }
      expect(got.size, `round ${round}: ${what}`).toBe(kept);
      // The next append never reuses an offset: it goes after everything, the fenced range included.
      const next = log.append(encodeBatch([{ key: null, value: Buffer.from('after') }]));
      expect(next.baseOffset).toBe(want.next);
      const back = log.read(want.next, 1 << 20);
      expect(readBatchHeader(back.data).baseOffset).toBe(want.next);
    } finally {
      await log.close();
      rmDir(dir);
    }
  }
  console.log(`torn-tail: ${ROUNDS} rounds`, kinds);
  // The garble rounds must exercise the fencing, not only torn tails.
  expect(kinds.fenced).toBeGreaterThan(ROUNDS / 4);
}, 240_000);
