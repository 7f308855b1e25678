/**
 * Goal: with flush=always, a batch whose `durable` resolved survives a power loss — the loss of every
 * byte that no completed fdatasync covered — and the log reopens cleanly after it.
 * Method: a simulated disk over the real one. The fdatasync seams (LogOpenOptions.fdatasync and
 * fdatasyncSync) record, per file, the size the file had when a sync started, once that sync
 * completes. At a random moment of a random workload (bursts of appends, sometimes awaited, tiny
 * segments so rolls happen) the power is "cut": the directory is copied with every file cut to its
 * synced size plus, at random, nothing, a prefix of the unsynced bytes, or that prefix followed by
 * zeros (blocks allocated but never written), never longer than what was written. The copy is reopened; every batch reported durable
 * before the cut must be in it at its offset, the rest must read back gapless, and appends must go on.
 * Every fourth round uses flush=none and checks only that the log reopens to a valid, appendable
 * prefix. 40 rounds; the seed is printed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { decodeBatch, encodeBatch } from '../../src/batch/index.js';
import { PartitionLog, defaultLogConfig, type LogConfig, type LogOpenOptions } from '../../src/storage/index.js';
import { readAllBatches, rmDir, rng, testSeed, tmpDir } from './helpers.js';

const ROUNDS = 40;
const root = tmpDir('power');
afterAll(() => rmDir(root));
const seed = testSeed('power-loss');
const r = rng(seed);
const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 8 * 1024, flush: { kind: 'always' } };

/** Bytes of each file covered by a completed fdatasync, by path. */
function syncedDisk(): { synced: Map<string, number>; options: LogOpenOptions } {
  const synced = new Map<string, number>();
  // A completed sync covers the file as it was when the sync started; the latest-started one wins
  // (an older, slower sync completing later must not shrink what a newer one covered).
  const startedAt = new Map<string, number>();
  let seq = 0;
  const record = (p: string, size: number, started: number): void => {
    if ((startedAt.get(p) ?? -1) < started) {
      startedAt.set(p, started);
      synced.set(p, size);
    }
  };
  const pathOf = (fd: number): string => fs.readlinkSync(`/proc/self/fd/${fd}`);
  return {
    synced,
    options: {
      indexIntervalBytes: 256,
      fdatasync: (fd, cb) => {
        const p = pathOf(fd);
        const size = fs.fstatSync(fd).size;
        const started = seq++;
        fs.fdatasync(fd, (err) => {
          if (!err) record(p, size, started);
          cb(err);
        });
      },
      fdatasyncSync: (fd) => {
        const p = pathOf(fd);
        const size = fs.fstatSync(fd).size;
        const started = seq++;
        fs.fdatasyncSync(fd);
        record(p, size, started);
      },
    },
  };
}

/** Copies `from` to `to` as a disk would hold it after a power cut. */
function cutPower(from: string, to: string, synced: Map<string, number>): void {
  fs.mkdirSync(to);
  for (const name of fs.readdirSync(from)) {
    const src = path.join(from, name);
    const bytes = fs.readFileSync(src);
    const keep = Math.min(bytes.length, synced.get(src) ?? 0);
    const unsynced = bytes.length - keep;
    // Only bytes written after the last sync are at risk, and the file can never grow past what was written.
    const mode = unsynced === 0 ? 0 : r.int(0, 2);
    const extra = mode === 0 ? 0 : r.int(0, unsynced);
    const zeros = mode === 2 ? r.int(0, unsynced - extra) : 0;
    const out = Buffer.concat([bytes.subarray(0, keep + extra), Buffer.alloc(zeros)]);
    fs.writeFileSync(path.join(to, name), out);
  }
}

test(`power loss at ${ROUNDS} random moments keeps every durable batch`, async () => {
  let verified = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const dir = path.join(root, `live-${round}`);
    const disk = syncedDisk();
    // Every fourth round runs flush=none: nothing is promised, but the log must still reopen cleanly
    // (sealed segments are synced when sealed whatever the policy).
    const relaxed = round % 4 === 3;
    const log = await PartitionLog.open(dir, relaxed ? { ...config, flush: { kind: 'none' } } : config, disk.options);
    const durable: { base: number; tag: string }[] = [];
    const bursts = r.int(3, 60);
    let tag = 0;
    for (let b = 0; b < bursts; b++) {
      const waits: Promise<void>[] = [];
      for (let k = r.int(1, 6); k > 0; k--) {
        const t = `r${round}-${tag++}`;
        const res = log.append(encodeBatch([{ key: Buffer.from(t), value: Buffer.alloc(r.int(0, 700), 1) }, { key: null, value: null }]));
        waits.push(res.durable.then(() => void durable.push({ base: res.baseOffset, tag: t })));
      }
      if (r.next() < 0.5) await Promise.all(waits);
      else await new Promise((resolve) => setImmediate(resolve));
    }
    // The cut happens between two events: exactly the batches acknowledged so far must survive.
    const acknowledged = relaxed ? [] : [...durable];
    const copy = path.join(root, `cut-${round}`);
    cutPower(dir, copy, disk.synced);
    await log.close();

    const after = await PartitionLog.open(copy, config);
    try {
      for (const d of acknowledged) {
        expect(d.base, `round ${round}: ${d.tag}`).toBeLessThan(after.nextOffset);
        const batch = decodeBatch(after.read(d.base, 1).data);
        expect(batch.header.baseOffset).toBe(d.base);
        expect(Buffer.from(batch.records[0].key!).toString()).toBe(d.tag);
        verified++;
      }
      readAllBatches(after, 1 << 20);
      const next = after.nextOffset;
      expect(after.append(encodeBatch([{ key: null, value: Buffer.from('on') }])).baseOffset).toBe(next);
    } finally {
      await after.close();
      rmDir(dir);
      rmDir(copy);
    }
  }
  console.log(`power-loss: ${ROUNDS} rounds, ${verified} acknowledged batches verified after the cut`);
  expect(verified).toBeGreaterThan(ROUNDS);
}, 120_000);
