/**
 * Goal (issue 13 §2): the simulator's bug modes have twins on a real 3-node cluster, and the chaos
 * checker catches them. Method: one fixed schedule — a partition leader cut off from the other two
 * nodes (a minority of one) for 4.5 s through the harness's node-to-node links while the workload keeps
 * writing, then healed, and again for another partition's leader — run twice: on correct brokers it
 * must be clean (the control), and with the TEST-ONLY `SLUICE_TEST_REPLICA_BUGS=hw-from-log-end`
 * (src/broker/test-hooks.ts) on every node (the partition driver takes its high watermark from its log
 * end) the cut-off leader shows readers, and acknowledges, records no majority holds, which the new
 * leader then overwrites: an offset seen holding two values, inconsistent > 0.
 * The `commit-without-quorum` twin (`npm run chaos -- --bug commit-without-quorum`) is not here: on this
 * shared machine the same schedule reported its losses in only 1 of 3 runs (docs/chaos.md, "Twins of
 * the simulator's bugs"), and a test that may pass with the bug on proves nothing.
 * Needs `npm run build` (the brokers run from dist/). Loops and waits are bounded inside the harness.
 * The nodes use 127.0.0.121-123, apart from the other chaos tests' addresses.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CHAOS_TEST_HOST_BASES } from './constants.js';
import { runSchedule, type RunResult } from './run.js';
import type { FaultPlan, Schedule } from './schedule.js';

const outRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chaos-twins-ci-'));
afterAll(() => fs.rmSync(outRoot, { recursive: true, force: true }));

// Under load (two other chaos runs on this 2-core machine) a run took up to 155 s: cluster start included.
const RUN_TIMEOUT_MS = 240_000;

function explain(r: RunResult): string {
  return `seed ${r.seed}: ${JSON.stringify(r.verdict.samples.slice(0, 5))} stops=${JSON.stringify(r.stops)} report ${r.outDir}/report.html`;
}

/**
 * Two partition leaders cut off in turn, each for 4.5 s: longer than an election on the majority side
 * even on a loaded machine (the twins need the majority to elect and take writes at the offsets the
 * cut-off leader used), and two chances for the workload to be writing to the node cut off.
 */
const cut = (id: number, startMs: number): FaultPlan => ({ id, kind: 'partition', shape: 'minority', nodes: [1 + (id % 3)], target: 'leader', startMs, durationMs: 4_500, detail: 'partition: cut a partition leader off the others for 4500 ms' });
const cutLeaders = (seed: number): Schedule => ({ seed, nodes: 3, durationMs: 16_000, kinds: ['partition'], faults: [cut(1, 2_000), cut(2, 8_000)] });

const run = (seed: number, replicaBugs?: string[]): Promise<RunResult> => runSchedule({ seed, nodes: 3, durationMs: 16_000, kinds: ['partition'], outRoot, schedule: cutLeaders(seed), replicaBugs, hostBase: CHAOS_TEST_HOST_BASES.chaosTwins });

describe('chaos twins of the simulator bug modes on a 3-node cluster', () => {
  it('control: partition leaders cut off on correct brokers: clean', async () => {
    const r = await run(9201);
    const v = r.verdict;
    expect({ lost: v.lost, inconsistent: v.inconsistent, duplicated: v.duplicated, phantom: v.phantom, hwBackwards: v.hwBackwards, replicaMismatches: v.replicaMismatches }, explain(r)).toEqual({ lost: 0, inconsistent: 0, duplicated: 0, phantom: 0, hwBackwards: 0, replicaMismatches: 0 });
    expect(v.ok, explain(r)).toBe(true);
    expect(v.acked, explain(r)).toBeGreaterThan(100);
    // Both cuts dropped real traffic between the nodes (each heal notes the bytes its links dropped).
    const history = fs.readFileSync(path.join(r.outDir, 'history.jsonl'), 'utf8');
    const dropped = [...history.matchAll(/the links dropped (\d+) bytes/g)].map((m) => Number(m[1]));
    expect(dropped, explain(r)).toHaveLength(2);
    expect(dropped.every((b) => b > 0), explain(r)).toBe(true);
  }, RUN_TIMEOUT_MS);

  it('hw-from-log-end: readers see records a new leader overwrites, and the checker reports inconsistent > 0', async () => {
    const r = await run(9203, ['hw-from-log-end']);
    expect(r.verdict.acked, explain(r)).toBeGreaterThan(100);
    expect(r.verdict.inconsistent, explain(r)).toBeGreaterThan(0);
    expect(r.verdict.ok).toBe(false);
  }, RUN_TIMEOUT_MS);
});
