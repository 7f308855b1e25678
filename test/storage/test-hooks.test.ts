/**
 * Goal: the TEST-ONLY storage hooks the chaos harness relies on (src/storage/test-hooks.ts) do what
 * they claim, and nothing when unset. Method: a real PartitionLog on a temp dir opened with hooked
 * options (the config is passed in, not read from the environment): the journal names each synced
 * segment with a size covering every acknowledged append; the faults file delays fdatasync; the
 * ack-before-fsync bug resolves `durable` before any real fdatasync ran.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeBatch } from '../../src/batch/index.js';
import { PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { withTestHooks } from '../../src/storage/test-hooks.js';
import { readSyncJournal } from '../chaos/power.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-hooks-'));
  dirs.push(d);
  return d;
}
const batch = (v: string): Buffer => encodeBatch([{ key: null, value: Buffer.from(v) }]);

describe('storage test hooks', () => {
  it('are the identity when no hook is configured', () => {
    const options = { indexIntervalBytes: 128 };
    expect(withTestHooks(options, { faultsFile: null, journal: null, ackBeforeFsync: false })).toBe(options);
  });

  it('journal each fdatasync with a size covering every acknowledged append', async () => {
    const dir = tmp();
    const journal = path.join(dir, 'journal');
    const log = await PartitionLog.open(path.join(dir, 'p-0'), defaultLogConfig(), withTestHooks({}, { faultsFile: null, journal, ackBeforeFsync: false }));
    for (let i = 0; i < 5; i++) await log.append(batch(`v${i}`)).durable;
    const segment = fs.realpathSync(path.join(dir, 'p-0', '00000000000000000000.log'));
    expect(readSyncJournal(journal).get(segment)).toBe(fs.statSync(segment).size);
    await log.close();
  });

  it('delay fdatasync by the faults file, read on every sync', async () => {
    const dir = tmp();
    const faultsFile = path.join(dir, 'faults.json');
    fs.writeFileSync(faultsFile, JSON.stringify({ fsyncDelayMs: 300 }));
    const log = await PartitionLog.open(path.join(dir, 'p-0'), defaultLogConfig(), withTestHooks({}, { faultsFile, journal: null, ackBeforeFsync: false }));
    let t = performance.now();
    await log.append(batch('slow')).durable;
    expect(performance.now() - t).toBeGreaterThanOrEqual(290);
    fs.writeFileSync(faultsFile, '{}');
    t = performance.now();
    await log.append(batch('fast')).durable;
    expect(performance.now() - t).toBeLessThan(290);
    await log.close();
  });

  it('ack-before-fsync resolves durable before the real fdatasync, which the journal shows', async () => {
    const dir = tmp();
    const journal = path.join(dir, 'journal');
    const log = await PartitionLog.open(path.join(dir, 'p-0'), defaultLogConfig(), withTestHooks({}, { faultsFile: null, journal, ackBeforeFsync: true }));
    await log.append(batch('unsafe')).durable;
    const segment = fs.realpathSync(path.join(dir, 'p-0', '00000000000000000000.log'));
    // Acknowledged, yet no sync covering it has completed: a power cut now would lose it.
    expect(readSyncJournal(journal).get(segment) ?? 0).toBeLessThan(fs.statSync(segment).size);
    await log.close();
  });
});
