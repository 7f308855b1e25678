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
import { PartitionLog, defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import { cutPower, readAllBatches, rmDir, rng, syncedDisk, testSeed, tmpDir } from './helpers.js';

const ROUNDS = 40;
const root = tmpDir('power');
afterAll(() => rmDir(root));
const seed = testSeed('power-loss');
const r = rng(seed);
const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 8 * 1024, flush: { kind: 'always' } };

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
    cutPower(dir, copy, disk.synced, r);
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
