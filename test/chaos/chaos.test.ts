/**
 * Goal (issue 13, CI): the chaos harness runs real `sluice serve` processes through its proxies and
 * faults and finds them clean, and the checker can fail. Method: a short fixed set on one node,
 *  - two seeded schedules of 10 s (seeds 36 and 2: a pause longer than an election timeout, a drop-all
 *    partition, a one-way partition, a kill with a power cut), which must be clean;
 *  - one explicit schedule (a kill -9 with a power cut under load) run twice: on a correct broker it is
 *    clean (the control), on a broker started with the TEST-ONLY ack-before-fsync bug the checker must
 *    report acknowledged writes lost.
 * Every run writes its history, verdict and report into a temp dir, and asserts on the verdict. Needs
 * `npm run build` (the brokers run from dist/). Loops and waits are bounded inside the harness.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHAOS_TEST_HOST_BASES } from './constants.js';
import { runSchedule, type RunResult } from './run.js';
import { makeSchedule, type Schedule } from './schedule.js';

const outRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chaos-ci-'));
afterAll(() => fs.rmSync(outRoot, { recursive: true, force: true }));

const DURATION_MS = 10_000;
const KINDS = ['kill', 'pause', 'partition'] as const;
const RUN_TIMEOUT_MS = 60_000;

/** What a failing run needs to be looked at: its anomalies and where its report is. */
function explain(r: RunResult): string {
  return `seed ${r.seed}: ${JSON.stringify(r.verdict.samples.slice(0, 5))} stops=${JSON.stringify(r.stops)} report ${r.outDir}/report.html`;
}

const killUnderLoad = (seed: number): Schedule => ({
  seed,
  nodes: 1,
  durationMs: 7_000,
  kinds: ['kill'],
  faults: [{ id: 1, kind: 'kill', nodes: [1], startMs: 3_000, durationMs: 300, detail: 'kill -9 n1 (power cut), restart after 300 ms' }],
});

describe('chaos harness on one node', () => {
  it('the fixed schedules cover a kill, a pause, and both kinds of partition', () => {
    const faults = [36, 2].flatMap((seed) => makeSchedule({ seed, nodes: 1, durationMs: DURATION_MS, kinds: KINDS }).faults);
    expect(new Set(faults.map((f) => (f.kind === 'partition' ? `partition/${f.linkMode}` : f.kind)))).toEqual(new Set(['kill', 'pause', 'partition/drop', 'partition/drop-responses']));
  });

  for (const seed of [36, 2]) {
    it(`seed ${seed} is clean`, async () => {
      const r = await runSchedule({ seed, nodes: 1, durationMs: DURATION_MS, kinds: KINDS, outRoot, hostBase: CHAOS_TEST_HOST_BASES.chaos });
      expect(r.verdict.ok, explain(r)).toBe(true);
      expect(r.verdict.acked).toBeGreaterThan(300);
      expect(r.verdict.reads).toBeGreaterThan(r.verdict.acked);
      for (const f of ['history.jsonl', 'verdict.json', 'report.html']) expect(fs.existsSync(path.join(r.outDir, f))).toBe(true);
    }, RUN_TIMEOUT_MS);
  }

  it('a kill -9 with a power cut under load loses nothing on a correct broker', async () => {
    const r = await runSchedule({ seed: 9001, nodes: 1, durationMs: 7_000, kinds: ['kill'], outRoot, schedule: killUnderLoad(9001), hostBase: CHAOS_TEST_HOST_BASES.chaos });
    expect(r.verdict.ok, explain(r)).toBe(true);
    expect(r.verdict.acked).toBeGreaterThan(200);
  }, RUN_TIMEOUT_MS);

  it('the checker catches a broker that acknowledges before fsync (lost > 0)', async () => {
    const r = await runSchedule({ seed: 9002, nodes: 1, durationMs: 7_000, kinds: ['kill'], outRoot, schedule: killUnderLoad(9002), ackBeforeFsync: true, hostBase: CHAOS_TEST_HOST_BASES.chaos });
    expect(r.verdict.acked, explain(r)).toBeGreaterThan(200);
    expect(r.verdict.lost, explain(r)).toBeGreaterThan(0);
    expect(r.verdict.ok).toBe(false);
    // The lost offsets were reused by later writes: the same offset was seen holding two values.
    expect(r.verdict.inconsistent).toBeGreaterThan(0);
  }, RUN_TIMEOUT_MS);
});
