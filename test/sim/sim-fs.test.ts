/**
 * Goal: the simulator's disk (sim-fs.ts) is a faithful stand-in for the real one under the real
 * PartitionLog: nothing is durable until the simulator completes its fdatasync, a crash loses exactly
 * the unsynced writes (names and bytes), a torn tail recovers to a valid prefix that keeps every synced
 * batch (and, the log's part, a truncation is durable before anything is written after it), and the
 * same choices give the same bytes (determinism).
 * Method: open src/storage's PartitionLog with `fs: simFs`, append, flush, complete (or not) the
 * queued syncs, crash the disk, reopen a new log on it and compare with a model of what was synced.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PartitionLog, defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import { readHardState, writeHardState } from '../../src/storage/hard-state.js';
import { decodeValues, makeBatch, readAllBatches } from '../storage/helpers.js';
import { Prng } from './prng.js';
import { SimFs } from './sim-fs.js';

const DIR = '/sim-fs-test/node-1/topic-0';
/** Small segments by default, so rolls (which sync the sealed segment) happen too. */
const config = (segmentBytes: number): LogConfig => ({ ...defaultLogConfig(), segmentBytes });

/** Lets the log's promise continuations (flush completion) run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function openLog(disk: SimFs, segmentBytes = 2048): Promise<PartitionLog> {
  return PartitionLog.open(DIR, config(segmentBytes), { fs: disk, nowMs: () => 1_700_000_000_000, indexIntervalBytes: 256 });
}

/** Flushes the log, completing its fdatasyncs as they are issued (bounded). */
async function flushAll(log: PartitionLog, disk: SimFs): Promise<void> {
  let done = false;
  void log.flush().then(() => (done = true));
  for (let i = 0; i < 20 && !done; i++) {
    await settle();
    disk.completeSyncs();
  }
  await settle();
  expect(done).toBe(true);
}

/** Appends `n` one-record batches tagged `tag:i`; returns their values. */
function appendMany(log: PartitionLog, n: number, tag: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    log.append(makeBatch(1, 40, `${tag}:${i}`), 0);
    out.push(`${tag}:${i}`);
  }
  return out;
}

/** The tags of the log's one-record batches (makeBatch writes `tag:0` then zero filler). */
const tags = (log: PartitionLog): string[] => decodeValues(readAllBatches(log)).map((v) => v.replace(/\0+$/, '').replace(/:0$/, ''));

describe('SimFs under the real PartitionLog', () => {
  it('an fdatasync completes only when the simulator says so, and only synced batches survive a crash', async () => {
    const disk = new SimFs();
    const log = await openLog(disk, 1 << 20); // one segment: only the flush syncs
    const synced = appendMany(log, 30, 'a');
    let flushed = false;
    void log.flush().then(() => (flushed = true));
    await settle();
    expect(flushed).toBe(false);
    expect(disk.pendingSyncs).toBeGreaterThan(0);
    for (let i = 0; i < 10 && !flushed; i++) {
      disk.completeSyncs();
      await settle();
    }
    expect(flushed).toBe(true);
    appendMany(log, 12, 'b'); // written, never synced
    void log.flush(); // issued, never completed
    await settle();
    expect(disk.pendingSyncs).toBeGreaterThan(0);
    disk.crash();
    const again = await openLog(disk, 1 << 20);
    expect(again.nextOffset).toBe(30);
    expect(tags(again)).toEqual(synced);
    expect(fs.existsSync('/sim-fs-test')).toBe(false); // no real I/O
    await again.close();
  });

  it('a torn tail recovers to a valid prefix that keeps every synced batch (200 seeded crashes)', async () => {
    let torn = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const rng = new Prng(seed);
      const disk = new SimFs();
      const log = await openLog(disk);
      const n = 1 + rng.int(20);
      appendMany(log, n, `s${seed}`);
      await flushAll(log, disk);
      const extra = 1 + rng.int(10);
      appendMany(log, extra, `u${seed}`);
      disk.crash(rng);
      torn += disk.stats.tornFiles;
      const again = await openLog(disk);
      expect(again.nextOffset, `seed ${seed}`).toBeGreaterThanOrEqual(n);
      expect(again.nextOffset, `seed ${seed}`).toBeLessThanOrEqual(n + extra);
      readAllBatches(again); // every batch below the end reads back and passes its CRC
      await again.close();
    }
    expect(torn).toBeGreaterThan(20); // the torn-write path was taken, not only clean drops
  });

  // Seed 12931 of the partition simulator: a follower cut its divergent suffix and wrote the new
  // leader's runs over it, unsynced; the crash kept the old durable bytes past the cut plus a torn
  // tail of the new ones, and with equal batch sizes that read back as one valid, spliced log.
  it('a truncation is durable before what is written after it: a crash never splices old batches under new ones', async () => {
    const disk = new SimFs();
    const log = await openLog(disk, 1 << 20); // one segment: the cut and the rewrite share a file
    const kept = appendMany(log, 10, 'a').slice(0, 5);
    await flushAll(log, disk);
    log.truncateTo(5);
    const rewritten = appendMany(log, 8, 'b'); // the same batch sizes as the cut ones, longer in all
    // A crash that keeps every unsynced byte past the durable length (a torn tail, no zeros).
    const keepWholeTail = { chance: (p: number) => p >= 0.5, int: (n: number) => n - 1 } as unknown as Prng;
    disk.crash(keepWholeTail);
    expect(disk.stats.tornFiles).toBeGreaterThan(0);
    const again = await openLog(disk, 1 << 20);
    expect(tags(again)).toEqual([...kept, ...rewritten]);
    await again.close();
  });

  it('the same choices give the same bytes', async () => {
    const image = async (): Promise<string> => {
      const rng = new Prng(7);
      const disk = new SimFs();
      const log = await openLog(disk);
      for (let round = 0; round < 5; round++) {
        appendMany(log, 1 + rng.int(6), `r${round}`);
        void log.flush();
        await settle();
        disk.completeSyncs(rng.int(2));
        await settle();
      }
      disk.crash(rng);
      const again = await openLog(disk);
      const h = createHash('sha256');
      for (const b of readAllBatches(again)) h.update(b);
      await again.close();
      return `${again.nextOffset}:${h.digest('hex')}`;
    };
    expect(await image()).toBe(await image());
  });

  it('state files replaced atomically survive a crash whole; a name never made durable does not', async () => {
    const disk = new SimFs();
    disk.mkdirSync(DIR, { recursive: true, mode: 0o700 });
    disk.fsyncSync(disk.openSync('/sim-fs-test/node-1', 'r')); // the partition dir's name is durable
    writeHardState(DIR, { term: 3, vote: 2 }, disk);
    writeHardState(DIR, { term: 4, vote: 1 }, disk);
    const fd = disk.openSync(`${DIR}/scratch`, 'w');
    disk.writeSync(fd, Buffer.from('x'), 0, 1, 0);
    disk.fdatasyncSync(fd); // bytes synced, but its directory never fsynced
    disk.crash();
    expect(readHardState(DIR, disk)).toEqual({ term: 4, vote: 1 });
    expect(disk.files()).toEqual([`${DIR}/hard-state.json`]);
  });
});
