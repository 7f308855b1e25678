/**
 * Goal (issue 13 §1, membership changes as faults): the schedule stays a pure function of its options
 * with the `move` and `decommission` kinds, a membership change overlaps the faults after it (and
 * never another membership change), a decommission is never drawn where it cannot drain (3 nodes at
 * replication factor 3), and a move's target follows from the replica set the cluster reports.
 * Method: generate schedules for many seeds (no processes) and check each property over all of them;
 * `moveTarget` on hand-made replica sets.
 */
import { describe, expect, it } from 'vitest';
import { moveTarget } from './membership.js';
import { isMembership, makeSchedule, type FaultKind, type FaultPlan } from './schedule.js';

const ALL: FaultKind[] = ['kill', 'pause', 'partition', 'move', 'decommission'];
const SEEDS = Array.from({ length: 200 }, (_, i) => 7_000 + i);
const schedules = (nodes: number, kinds: FaultKind[] = ALL): FaultPlan[][] => SEEDS.map((seed) => makeSchedule({ seed, nodes, durationMs: 20_000, kinds }).faults);
const end = (f: FaultPlan): number => f.startMs + f.durationMs;

describe('chaos schedule with membership changes', () => {
  it('is a pure function of its options: the same seed gives the same schedule', () => {
    for (const seed of SEEDS.slice(0, 50)) {
      for (const nodes of [3, 4, 5]) {
        const o = { seed, nodes, durationMs: 20_000, kinds: ALL };
        expect(makeSchedule(o)).toEqual(makeSchedule(o));
      }
    }
  });

  it('draws both kinds on 4 nodes, and overlaps a membership change with the faults after it, never with another one', () => {
    let overlaps = 0;
    const kinds = new Set<string>();
    for (const faults of schedules(4)) {
      const changes = faults.filter((f) => isMembership(f.kind));
      const others = faults.filter((f) => !isMembership(f.kind));
      for (const f of faults) kinds.add(f.kind === 'move' ? `move/${f.move}` : f.kind);
      for (let i = 1; i < changes.length; i++) expect(changes[i].startMs).toBeGreaterThanOrEqual(end(changes[i - 1]));
      for (let i = 1; i < others.length; i++) expect(others[i].startMs).toBeGreaterThanOrEqual(end(others[i - 1]));
      for (const c of changes) overlaps += others.filter((f) => f.startMs >= c.startMs && f.startMs < end(c)).length;
      // Every fault still fits the run before its quiet tail, in start order.
      for (let i = 1; i < faults.length; i++) expect(faults[i].startMs).toBeGreaterThanOrEqual(faults[i - 1].startMs);
      for (const f of faults) expect(end(f)).toBeLessThanOrEqual(17_000);
    }
    expect(kinds).toEqual(new Set(['kill', 'pause', 'partition', 'decommission', 'move/swap', 'move/rotate', 'move/back']));
    expect(overlaps).toBeGreaterThan(SEEDS.length / 2);
  });

  it('moves a partition back only after a move of it, and never decommissions on 3 nodes (RF 3: nowhere to drain to)', () => {
    for (const faults of schedules(3)) {
      expect(faults.some((f) => f.kind === 'decommission')).toBe(false);
      const moved = new Set<number>();
      for (const f of faults.filter((x) => x.kind === 'move')) {
        expect(f.move).not.toBe('swap');
        if (f.move === 'back') expect(moved.delete(f.partition!)).toBe(true);
        else moved.add(f.partition!);
      }
    }
    expect(() => makeSchedule({ seed: 1, nodes: 3, durationMs: 20_000, kinds: ['decommission'] })).toThrow(/decommission/);
    expect(() => makeSchedule({ seed: 1, nodes: 1, durationMs: 20_000, kinds: ['move'] })).toThrow(/cluster/);
  });

  it('resolves a move against the replica set of the moment', () => {
    const plan = (p: Partial<FaultPlan>): FaultPlan => ({ id: 1, kind: 'move', nodes: [], startMs: 0, durationMs: 1, detail: '', partition: 0, ...p });
    expect(moveTarget(plan({ move: 'swap', replicaIndex: 1, outsiderIndex: 0 }), [3, 1, 2], 4, undefined)).toEqual([3, 4, 2]);
    expect(moveTarget(plan({ move: 'swap', replicaIndex: 0, outsiderIndex: 3 }), [2, 3, 4], 5, undefined)).toEqual([5, 3, 4]);
    expect(moveTarget(plan({ move: 'rotate' }), [3, 1, 2], 3, undefined)).toEqual([1, 2, 3]);
    // A swap with no node outside the set (it has every node) rotates instead.
    expect(moveTarget(plan({ move: 'swap', replicaIndex: 0, outsiderIndex: 0 }), [1, 2, 3], 3, undefined)).toEqual([2, 3, 1]);
    expect(moveTarget(plan({ move: 'back' }), [3, 4, 2], 4, [3, 1, 2])).toEqual([3, 1, 2]);
    expect(moveTarget(plan({ move: 'back' }), [3, 4, 2], 4, undefined)).toBeNull();
  });
});
