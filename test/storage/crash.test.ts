/**
 * Goal: with flush=always, no batch whose `durable` resolved is ever lost to a crash.
 * Method: 24 rounds of: start a child process (test/storage/fixtures/crash-writer.mjs, running a
 * private tsc build of src/storage made in beforeAll)
 * that appends bursts of batches to one log and prints each batch once durable; SIGKILL it at a random
 * moment; reopen the log here (unclean recovery: no clean-shutdown marker) and check that every batch
 * reported durable is present at its offset with its tag, that the log reads back gapless, and that it
 * ends no earlier than the last durable offset. The next round's child appends to the same log.
 * SIGKILL loses the process, not the page cache, so this checks the ack protocol and recovery, not the
 * disk; power loss is what the fdatasync before each ack is for.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { decodeBatch } from '../../src/batch/index.js';
import { CLEAN_SHUTDOWN_FILE, PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { killAfterOpen, readAllBatches, rmDir, rng, testSeed, tmpDir } from './helpers.js';

const ROUNDS = 24;
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const fixture = path.join(here, 'fixtures/crash-writer.mjs');
const root = tmpDir('crash');
const seed = testSeed('crash');
const r = rng(seed);

/** A private build of src/storage + src/batch, under node_modules so the packages they import resolve. */
const buildRoot = path.join(repo, 'node_modules/.cache', `sluice-storage-crash-${process.pid}`);

beforeAll(() => {
  execFileSync(
    process.execPath,
    [
      path.join(repo, 'node_modules/typescript/bin/tsc'),
      ...['--outDir', buildRoot, '--rootDir', repo, '--module', 'nodenext', '--moduleResolution', 'nodenext'],
      ...['--target', 'es2022', '--lib', 'es2023', '--strict', '--skipLibCheck', '--esModuleInterop', '--types', 'node'],
      path.join(repo, 'src/storage/index.ts'),
      path.join(repo, 'src/batch/index.ts'),
    ],
    { cwd: repo, stdio: 'inherit' },
  );
  expect(fs.existsSync(path.join(buildRoot, 'src/storage/log.js'))).toBe(true);
}, 120_000);

afterAll(() => rmDir(buildRoot));
afterAll(() => rmDir(root));

async function runChild(dir: string, round: number, killAfterMs: number): Promise<{ durable: [number, number, string][]; opened: boolean }> {
  const { out, opened } = await killAfterOpen(fixture, [dir, String(round), buildRoot], killAfterMs);
  const durable: [number, number, string][] = [];
  for (const line of out.split('\n')) {
    const m = /^D (\d+) (\d+) (\S+)$/.exec(line);
    if (m) durable.push([Number(m[1]), Number(m[2]), m[3]]);
  }
  return { durable, opened };
}

/** Everything wrong with `log` given the batches reported durable; empty when all is well. */
function verify(log: PartitionLog, durable: [number, number, string][]): string[] {
  const problems: string[] = [];
  for (const [base, last, tag] of durable) {
    if (base >= log.nextOffset) {
      problems.push(`${tag}: offset ${base} beyond the log end ${log.nextOffset}`);
      continue;
    }
    const batch = decodeBatch(log.read(base, 1).data);
    const key = Buffer.from(batch.records[0].key!).toString();
    if (batch.header.baseOffset !== base || batch.header.baseOffset + batch.header.lastOffsetDelta !== last || key !== tag) {
      problems.push(`${tag}: found ${key} at ${batch.header.baseOffset}..${batch.header.baseOffset + batch.header.lastOffsetDelta}`);
    }
  }
  return problems;
}

test(`SIGKILL at random moments for ${ROUNDS} rounds loses no durable batch`, async () => {
  const dir = path.join(root, 'log');
  const durable: [number, number, string][] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const res = await runChild(dir, round, r.int(0, 250));
    expect(res.opened).toBe(true);
    durable.push(...res.durable);
    const log = await PartitionLog.open(dir, defaultLogConfig());
    try {
      expect(verify(log, durable), `round ${round}`).toEqual([]);
      readAllBatches(log, 1 << 20); // gapless and CRC-valid end to end
    } finally {
      await log.close();
    }
    // Make the next child recover from a crash too, rather than trust our clean close.
    fs.unlinkSync(path.join(dir, CLEAN_SHUTDOWN_FILE));
  }
  console.log(`crash: ${ROUNDS} rounds, ${durable.length} durable batches verified`);
  expect(durable.length).toBeGreaterThan(ROUNDS);
  // The checker can fail: lose the last durable batch on purpose and it must notice.
  const log = await PartitionLog.open(dir, defaultLogConfig());
  log.truncateTo(durable[durable.length - 1][0]);
  expect(verify(log, durable).length).toBeGreaterThan(0);
  await log.close();
}, 120_000);
