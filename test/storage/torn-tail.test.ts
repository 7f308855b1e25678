/**
 * Goal: after a crash that tore or garbled the active segment, the log reopens to a valid prefix that
 * holds every batch fully written before the damage, and the next append continues right after it.
 * Method: build one template log (tiny segments, so there are sealed segments and an active one with
 * ~100 batches of varied sizes and codecs), then 1,200 times: copy it, damage the active segment at a
 * random position (truncate, XOR 1-8 bytes, or append junk), drop the clean-shutdown marker, reopen,
 * and compare with what the damage allows: the log must end exactly at the first batch the damage
 * touched (garbling only partitionLeaderEpoch, which no checksum covers, is the one thing that cannot
 * be noticed, and then the batch must still be there), every earlier batch byte-identical.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Compression, encodeBatch, readBatchHeader } from '../../src/batch/index.js';
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

/** The offset recovery must stop at for damage to bytes [from, to) of the active segment. */
function expectedNext(from: number, to: number): number {
  for (const b of active) {
    if (b.end <= from || b.start >= to) continue;
    const epochOnly = from >= b.start + 12 && to <= b.start + 16;
    if (!epochOnly) return b.base;
  }
  return templateNext;
}

test(`torn or garbled active segment at ${ROUNDS} random positions reopens to the valid prefix`, async () => {
  const size = active.at(-1)!.end;
  const kinds = { truncate: 0, garble: 0, junk: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const dir = path.join(root, `r${round}`);
    fs.cpSync(template, dir, { recursive: true });
    const file = path.join(dir, activeFile);
    let want: number;
    const kind = round % 10 === 9 ? 'junk' : round % 2 === 0 ? 'truncate' : 'garble';
    kinds[kind]++;
    let what: string;
    if (kind === 'truncate') {
      const at = r.int(0, size - 1);
      fs.truncateSync(file, at);
      want = expectedNext(at, size);
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
      want = expectedNext(at, at + len);
      what = `garble ${len} bytes at ${at}`;
    } else {
      const junk = r.next() < 0.5 ? Buffer.alloc(r.int(1, 5000)) : Buffer.from(Array.from({ length: r.int(1, 200) }, () => r.int(0, 255)));
      fs.appendFileSync(file, junk);
      want = templateNext;
      what = `append ${junk.length} junk bytes`;
    }
    const log = await PartitionLog.open(dir, config, opts);
    try {
      expect(log.nextOffset, `round ${round}: ${what}`).toBe(want);
      const got = readAllBatches(log, 1 << 20);
      // Every batch below the cut is byte-identical, except a garbled epoch, which nothing covers.
      for (let i = 0; i < got.length; i++) {
        if (!got[i].equals(allBatches[i])) {
          const a = Buffer.from(got[i]);
          const b = Buffer.from(allBatches[i]);
          a.fill(0, 12, 16);
          b.fill(0, 12, 16);
          expect(a.equals(b), `round ${round}: ${what}: batch ${i} differs`).toBe(true);
        }
      }
      const next = log.append(encodeBatch([{ key: null, value: Buffer.from('after') }]));
      expect(next.baseOffset).toBe(want);
      const back = log.read(want, 1 << 20);
      expect(readBatchHeader(back.data).baseOffset).toBe(want);
    } finally {
      await log.close();
      rmDir(dir);
    }
  }
  console.log(`torn-tail: ${ROUNDS} rounds`, kinds);
}, 120_000);
