/**
 * Goal: a metadata change the controller answered survives kill -9. Method: 6 rounds of: start a child
 * process (test/controller/fixtures/crash-controller.mjs, running a private tsc build of src/controller
 * made in beforeAll) whose one-voter controller creates topics in a loop and prints each answered create;
 * SIGKILL it at a seeded random moment; reopen the same data dir here and check that every answered
 * topic is there with the group ids it was answered with, that no group id is used twice, and that the
 * next round continues on the same dir.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Controller } from '../../src/controller/index.js';
import type { NodeId } from '../../src/model/index.js';
import { tempDir, waitFor } from './memory-net.js';
import { killAfterOpen } from '../storage/helpers.js';

const ROUNDS = 6;
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const fixture = path.join(here, 'fixtures/crash-controller.mjs');
const buildRoot = path.join(repo, 'node_modules/.cache', `sluice-controller-crash-${process.pid}`);
const dir = tempDir('crash');
const seed = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 100_000);
let state = seed || 1;
const rand = (): number => ((state = (state * 48271) % 2147483647) / 2147483647);

beforeAll(() => {
  execFileSync(
    process.execPath,
    [
      path.join(repo, 'node_modules/typescript/bin/tsc'),
      ...['--outDir', buildRoot, '--rootDir', repo, '--module', 'nodenext', '--moduleResolution', 'nodenext'],
      ...['--target', 'es2022', '--lib', 'es2023', '--strict', '--skipLibCheck', '--esModuleInterop', '--types', 'node'],
      path.join(repo, 'src/controller/index.ts'),
    ],
    { cwd: repo, stdio: 'inherit' },
  );
}, 180_000);

afterAll(() => {
  fs.rmSync(buildRoot, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

async function runChild(round: number, killAfterMs: number): Promise<Map<string, string>> {
  const { out } = await killAfterOpen(fixture, [dir, String(round), buildRoot], killAfterMs);
  const acked = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^A (\S+) (\S+)$/.exec(line);
    if (m) acked.set(m[1], m[2]);
  }
  return acked;
}

test(`answered metadata survives kill -9 (seed ${seed})`, async () => {
  const all = new Map<string, string>();
  for (let round = 0; round < ROUNDS; round++) {
    const acked = await runChild(round, 100 + Math.floor(rand() * 400));
    for (const [k, v] of acked) all.set(k, v);
    const c = await Controller.open({
      nodeId: 1 as NodeId,
      dataDir: dir,
      voters: [1 as NodeId],
      self: { uuid: 'uuid-1', address: '127.0.0.1:7070', rack: '', shards: 2 },
      transport: { send() {}, register: () => () => {} },
      forwarder: { submit: () => Promise.reject(new Error('unused')) },
      tickMs: 20,
    });
    try {
      await waitFor([c], () => [...all.keys()].every((name) => c.state.topic(name) !== undefined), `every answered topic back after round ${round} (seed ${seed})`);
      for (const [name, groups] of all) expect(c.state.topic(name)!.partitions.map((p) => p.group).join(','), name).toBe(groups);
      const groups = c.state.partitions().map((p) => p.group);
      expect(new Set(groups).size).toBe(groups.length);
    } finally {
      await c.close();
    }
  }
  expect(all.size).toBeGreaterThan(ROUNDS);
}, 300_000);
