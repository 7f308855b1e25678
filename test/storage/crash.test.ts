/**
 * Goal: with flush=always, no batch whose `durable` resolved is ever lost to a crash.
 * Method: 24 rounds of: start a child process (test/storage/fixtures/crash-writer.mjs, compiled code)
 * that appends bursts of batches to one log and prints each batch once durable; SIGKILL it at a random
 * moment; reopen the log here (unclean recovery: no clean-shutdown marker) and check that every batch
 * reported durable is present at its offset with its tag, that the log reads back gapless, and that it
 * ends no earlier than the last durable offset. The next round's child appends to the same log.
 * SIGKILL loses the process, not the page cache, so this checks the ack protocol and recovery, not the
 * disk; power loss is what the fdatasync before each ack is for.
 */
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { decodeBatch } from '../../src/batch/index.js';
import { CLEAN_SHUTDOWN_FILE, PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { readAllBatches, rmDir, rng, testSeed, tmpDir } from './helpers.js';

const ROUNDS = 24;
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const fixture = path.join(here, 'fixtures/crash-writer.mjs');
const root = tmpDir('crash');
const seed = testSeed('crash');
const r = rng(seed);

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

beforeAll(() => {
  // `npm test` builds first; when run alone, rebuild if dist is older than the sources it needs.
  const built = path.join(repo, 'dist/src/storage/log.js');
  const stale = !fs.existsSync(built) || fs.statSync(built).mtimeMs < Math.max(newestMtime(path.join(repo, 'src/storage')), newestMtime(path.join(repo, 'src/batch')));
  if (stale) {
    try {
      execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: repo, stdio: 'ignore' });
    } catch {
      // Errors elsewhere in the tree do not stop tsc from emitting our files.
    }
  }
  expect(fs.existsSync(built)).toBe(true);
}, 120_000);

afterAll(() => rmDir(root));

function runChild(dir: string, round: number, killAfterMs: number): Promise<{ durable: [number, number, string][]; opened: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, dir, String(round)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let opened = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!opened && out.includes('OPEN')) {
        opened = true;
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`child exited ${code} ${signal}: ${err}`));
      const durable: [number, number, string][] = [];
      for (const line of out.split('\n')) {
        const m = /^D (\d+) (\d+) (\S+)$/.exec(line);
        if (m) durable.push([Number(m[1]), Number(m[2]), m[3]]);
      }
      resolve({ durable, opened });
    });
  });
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
      const maxDurable = Math.max(-1, ...durable.map((d) => d[1]));
      expect(log.nextOffset).toBeGreaterThan(maxDurable);
      for (const [base, last, tag] of durable) {
        const batch = decodeBatch(log.read(base, 1).data);
        expect(batch.header.baseOffset, tag).toBe(base);
        expect(batch.header.baseOffset + batch.header.lastOffsetDelta, tag).toBe(last);
        expect(Buffer.from(batch.records[0].key!).toString(), `offset ${base}`).toBe(tag);
      }
      readAllBatches(log, 1 << 20); // gapless and CRC-valid end to end
    } finally {
      await log.close();
    }
    // Make the next child recover from a crash too, rather than trust our clean close.
    fs.unlinkSync(path.join(dir, CLEAN_SHUTDOWN_FILE));
  }
  console.log(`crash: ${ROUNDS} rounds, ${durable.length} durable batches verified`);
  expect(durable.length).toBeGreaterThan(ROUNDS);
}, 120_000);
