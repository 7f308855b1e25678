/**
 * Goal: the group assignor is balanced (counts differ by at most 1 with identical subscriptions), sticky
 * (moves the minimum), complete (every partition of a subscribed topic has exactly one owner) and
 * deterministic.
 * Method: fixed scenarios from the consumer-groups issue, then fast-check properties over random groups
 * and random membership changes (seeds are printed by fast-check on failure).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assign, movedPartitions, type Assignment, type AssignorMember, type TopicPartition } from '../../src/groups/assignor.js';

function members(ids: string[], topics: string[], previous?: Assignment): AssignorMember[] {
  return ids.map((memberId) => ({ memberId, topics: new Set(topics), current: previous?.get(memberId) ?? [] }));
}

function counts(a: Assignment): number[] {
  return [...a.values()].map((l) => l.length);
}

function owners(a: Assignment): Map<string, string> {
  const m = new Map<string, string>();
  for (const [id, list] of a) {
    for (const tp of list) {
      const k = `${tp.topic}/${tp.partition}`;
      expect(m.has(k), `partition ${k} owned twice`).toBe(false);
      m.set(k, id);
    }
  }
  return m;
}

describe('assignor', () => {
  it('balances three members on 12 partitions 4/4/4', () => {
    const a = assign(members(['a', 'b', 'c'], ['t']), new Map([['t', 12]]));
    expect(counts(a)).toEqual([4, 4, 4]);
    expect(owners(a).size).toBe(12);
  });

  it('moves exactly 3 partitions when a 4th member joins 4/4/4', () => {
    const parts = new Map([['t', 12]]);
    const before = assign(members(['a', 'b', 'c'], ['t']), parts);
    const after = assign(members(['a', 'b', 'c', 'd'], ['t'], before), parts);
    expect(counts(after).sort()).toEqual([3, 3, 3, 3]);
    expect(movedPartitions(before, after)).toHaveLength(3);
    expect(after.get('d')).toHaveLength(3);
  });

  it('hands a leaving member its partitions to the rest, moving nothing else', () => {
    const parts = new Map([['t', 12]]);
    const before = assign(members(['a', 'b', 'c', 'd'], ['t']), parts);
    const after = assign(members(['a', 'b', 'c'], ['t'], before), parts);
    expect(counts(after)).toEqual([4, 4, 4]);
    const moved = movedPartitions(before, after).map((tp) => tp.partition);
    expect(moved).toEqual(before.get('d')!.map((tp) => tp.partition)); // only d's partitions move
  });

  it('reacts to new partitions and new topics', () => {
    const before = assign(members(['a', 'b'], ['t', 'u']), new Map([['t', 4]]));
    const after = assign(members(['a', 'b'], ['t', 'u'], before), new Map([['t', 6], ['u', 2]]));
    expect(counts(after)).toEqual([4, 4]);
    expect(movedPartitions(before, after)).toHaveLength(0);
  });

  it('respects differing subscriptions', () => {
    const ms: AssignorMember[] = [
      { memberId: 'a', topics: new Set(['t']), current: [] },
      { memberId: 'b', topics: new Set(['t', 'u']), current: [] },
    ];
    const a = assign(ms, new Map([['t', 4], ['u', 4]]));
    expect(a.get('a')!.every((tp) => tp.topic === 't')).toBe(true);
    expect(owners(a).size).toBe(8);
    expect(a.get('a')).toHaveLength(4);
  });

  it('handles 100 members on 1,000 partitions', () => {
    const ids = Array.from({ length: 100 }, (_, i) => `m${String(i).padStart(3, '0')}`);
    const parts = new Map([['t', 1000]]);
    const a = assign(members(ids, ['t']), parts);
    expect(new Set(counts(a))).toEqual(new Set([10]));
    const b = assign(members([...ids, 'new'], ['t'], a), parts);
    expect(Math.max(...counts(b)) - Math.min(...counts(b))).toBeLessThanOrEqual(1);
    expect(movedPartitions(a, b)).toHaveLength(b.get('new')!.length);
  });

  it('is balanced, complete, minimal and deterministic for random groups and changes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 4 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 3 }),
        (memberCount, partitionsPerTopic, joins, leaves) => {
          const topics = partitionsPerTopic.map((_, i) => `t${i}`);
          const parts = new Map(topics.map((t, i) => [t, partitionsPerTopic[i]] as const));
          const total = partitionsPerTopic.reduce((x, y) => x + y, 0);
          const ids = Array.from({ length: memberCount }, (_, i) => `m${i}`);
          const before = assign(members(ids, topics), parts);
          const nextIds = [...ids.slice(Math.min(leaves, ids.length - 1)), ...Array.from({ length: joins }, (_, i) => `n${i}`)];
          const after = assign(members(nextIds, topics, before), parts);
          expect(assign(members(nextIds, topics, before), parts)).toEqual(after);
          expect(owners(after).size).toBe(total);
          const c = counts(after);
          expect(Math.max(...c) - Math.min(...c)).toBeLessThanOrEqual(1);
          // Minimal movement: departed members' partitions, plus what survivors hold above their targets,
          // where the ceil-sized targets go to the survivors that hold the most.
          const floor = Math.floor(total / nextIds.length);
          let ceilSlots = total % nextIds.length;
          const held = nextIds.map((id) => before.get(id)?.length ?? 0).sort((x, y) => y - x);
          let minimum = 0;
          for (const id of ids) if (!nextIds.includes(id)) minimum += before.get(id)!.length;
          for (const h of held) {
            const target = ceilSlots > 0 ? floor + 1 : floor;
            if (ceilSlots > 0) ceilSlots--;
            minimum += Math.max(0, h - target);
          }
          expect(movedPartitions(before, after).length).toBe(minimum);
        },
      ),
      { numRuns: 500 },
    );
  });
});

export type { TopicPartition };
