/**
 * Goal: placement spreads replicas over nodes, racks and shards, balancing replica and preferred-leader
 * counts, deterministically; the planners (leader balance, decommission, moves) do what
 * docs/controller.md says. Method: exact expectations on small clusters, and fast-check properties
 * (seeded by fast-check; a failure prints its seed and counterexample) over random clusters.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MetadataStm,
  METADATA_RECORD_VERSION,
  PlacementLoad,
  nextStep,
  placePartitions,
  planDecommission,
  planLeaderBalance,
  planMove,
  type PartitionState,
  type PlacementNode,
} from '../../src/controller/index.js';
import { ReassignStep } from '../../src/rpc/gen/sluice/cluster/v1/controller.js';
import type { NodeId } from '../../src/model/index.js';

function nodes(n: number, racks: string[] = [], shards = 2): PlacementNode[] {
  return Array.from({ length: n }, (_, i) => ({ id: (i + 1) as NodeId, rack: racks.length ? racks[i % racks.length] : '', shards }));
}

function counts(list: readonly (readonly number[])[], pick: (replicas: readonly number[]) => readonly number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const r of list) for (const n of pick(r)) m.set(n, (m.get(n) ?? 0) + 1);
  return m;
}

function spread(m: Map<number, number>, ids: readonly number[]): number {
  const v = ids.map((id) => m.get(id) ?? 0);
  return Math.max(...v) - Math.min(...v);
}

/** Partitions as the state machine would hold them, from assignments. */
function partitionsOf(assignments: { nodes: readonly NodeId[]; shards: readonly number[] }[], leaders: number[] = []): PartitionState[] {
  return assignments.map((a, i) => ({
    topic: 't',
    topicId: 'id',
    partition: i,
    group: i + 1,
    voters: a,
    learners: { nodes: [], shards: [] },
    lost: [],
    leader: (leaders[i] ?? a.nodes[0]) as NodeId,
    leaderEpoch: 1,
    target: null,
  }));
}

describe('placement', () => {
  it('refuses a replication factor above the live nodes, naming both numbers', () => {
    expect(() => placePartitions(nodes(2), new PlacementLoad(), 1, 3)).toThrow(
      expect.objectContaining({ code: 'REPLICATION_FACTOR_TOO_LARGE', message: expect.stringMatching(/replication factor 3 .* 2 live nodes/) }),
    );
  });

  it('places 6 partitions x 3 replicas on 3 nodes: every node 6 replicas, 2 preferred leaders, one per shard pair', () => {
    const out = placePartitions(nodes(3), new PlacementLoad(), 6, 3);
    expect(out.every((a) => new Set(a.nodes).size === 3)).toBe(true);
    const replicas = counts(out.map((a) => a.nodes), (r) => r);
    const leaders = counts(out.map((a) => a.nodes), (r) => [r[0]]);
    expect([...replicas.values()]).toEqual([6, 6, 6]);
    expect([...leaders.values()]).toEqual([2, 2, 2]);
    const perShard = new Map<string, number>();
    out.forEach((a) => a.nodes.forEach((n, i) => perShard.set(`${n}/${a.shards[i]}`, (perShard.get(`${n}/${a.shards[i]}`) ?? 0) + 1)));
    expect([...perShard.values()].sort()).toEqual([3, 3, 3, 3, 3, 3]);
  });

  it('puts the replicas of a partition on distinct racks while there are racks to spare', () => {
    const ns = nodes(6, ['a', 'a', 'b', 'b', 'c', 'c']);
    const out = placePartitions(ns, new PlacementLoad(), 12, 3);
    const rack = (id: number) => ns[id - 1].rack;
    for (const a of out) expect(new Set(a.nodes.map(rack)).size).toBe(3);
    expect(spread(counts(out.map((a) => a.nodes), (r) => r), [1, 2, 3, 4, 5, 6])).toBe(0);
  });

  it('is deterministic and balanced over random clusters (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 7 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 3 }), (n, shards, parts, rfWanted) => {
        const rf = Math.min(rfWanted, n);
        const ns = nodes(n, [], shards);
        const a = placePartitions(ns, new PlacementLoad(), parts, rf);
        const b = placePartitions(ns, new PlacementLoad(), parts, rf);
        expect(a).toEqual(b);
        const ids = ns.map((x) => x.id);
        for (const x of a) {
          expect(new Set(x.nodes).size).toBe(rf);
          x.shards.forEach((s) => expect(s).toBeLessThan(shards));
        }
        // Greedy placement keeps every node within one replica and one preferred leader of the others.
        expect(spread(counts(a.map((x) => x.nodes), (r) => r), ids)).toBeLessThanOrEqual(1);
        expect(spread(counts(a.map((x) => x.nodes), (r) => [r[0]]), ids)).toBeLessThanOrEqual(1);
      }),
      { numRuns: 200 },
    );
  });

  it('balances against existing load: a new node takes the next replicas until the counts even out', () => {
    const load = new PlacementLoad();
    placePartitions(nodes(3), load, 3, 3);
    // Nodes 1-3 hold 3 replicas and 1 preferred leadership each; node 4 is new and empty. It takes two
    // leaders, then 2 leaders against 1 sends the third to node 1 (lowest id among the least loaded).
    const out = placePartitions(nodes(4), load, 3, 1);
    expect(out.map((a) => a.nodes[0])).toEqual([4, 4, 1]);
  });
});

describe('leader balancing', () => {
  it('moves leaders back to live preferred replicas, most overloaded leader first, a few at a time', () => {
    const a = (ns: number[]) => ({ nodes: ns as NodeId[], shards: ns.map(() => 0) });
    // Node 1 was down: node 2 leads everything; node 1 is back.
    const ps = partitionsOf([a([1, 2, 3]), a([2, 3, 1]), a([3, 1, 2]), a([1, 3, 2]), a([1, 2, 3])], [2, 2, 3, 2, 2]);
    const all = planLeaderBalance(ps, () => true, 10);
    expect(all.map((t) => [t.group, t.from, t.to])).toEqual([
      [1, 2, 1],
      [4, 2, 1],
      [5, 2, 1],
    ]);
    expect(planLeaderBalance(ps, () => true, 2).length).toBe(2);
    // A preferred replica that is not live is left alone.
    expect(planLeaderBalance(ps, (id) => id !== 1, 10)).toEqual([]);
  });
});

describe('decommission and moves', () => {
  it('plans a move of every replica off a node, racks and load respected', () => {
    const ns = nodes(4, ['a', 'b', 'c', 'c']);
    const placed = placePartitions(ns.slice(0, 3), new PlacementLoad(), 6, 3);
    const moves = planDecommission(partitionsOf(placed), ns, 3 as NodeId);
    expect(moves.length).toBe(6);
    for (const m of moves) {
      expect(m.to.nodes).not.toContain(3);
      expect(m.to.nodes).toContain(4);
      expect(m.to.nodes.indexOf(4 as NodeId)).toBe(m.from.nodes.indexOf(3 as NodeId));
    }
    expect(() => planDecommission(partitionsOf(placed), ns.slice(0, 3), 3 as NodeId)).toThrow(expect.objectContaining({ code: 'REPLICATION_FACTOR_TOO_LARGE' }));
  });

  it('steps a move as add learner, promote, remove, complete, and applies each step', () => {
    const stm = new MetadataStm();
    let index = 1;
    const apply = (record: Parameters<MetadataStm['apply']>[1]['record']) => stm.apply(++index, { version: METADATA_RECORD_VERSION, record });
    for (const id of [1, 2, 3, 4]) apply({ $case: 'registerNode', value: { nodeId: id, uuid: `u${id}`, address: '', rack: '', shards: 2 } });
    apply({ $case: 'createTopic', value: { name: 't', topicId: '00000000-0000-4000-8000-000000000001', replicationFactor: 3, configs: {}, partitions: [{ replicas: [1, 2, 3], shards: [0, 0, 0] }], createdMs: 0n } });
    const p = stm.partitionByGroup(1)!;
    const target = planMove(p, [2, 4, 3] as NodeId[], stm.nodes(), PlacementLoad.of(stm.partitions()));
    expect(target).toEqual({ nodes: [2, 4, 3], shards: [0, 0, 0] });
    apply({ $case: 'reassignStep', value: { groupId: 1, step: ReassignStep.REASSIGN_STEP_BEGIN, nodeId: 0, shard: 0, target: { replicas: [...target.nodes], shards: [...target.shards] } } });
    const seen: string[] = [];
    for (let i = 0; i < 10; i++) {
      const s = nextStep(stm.partitionByGroup(1)!);
      if (s === null) break;
      seen.push(`${ReassignStep[s.step].replace('REASSIGN_STEP_', '')}${s.nodeId || ''}`);
      expect(apply({ $case: 'reassignStep', value: s }).error).toBeNull();
    }
    expect(seen).toEqual(['ADD_LEARNER4', 'PROMOTE4', 'REMOVE1', 'COMPLETE']);
    expect(stm.partitionByGroup(1)!.voters.nodes).toEqual([2, 4, 3]);
    expect(() => planMove(p, [1, 1] as NodeId[], stm.nodes(), new PlacementLoad())).toThrow(/distinct/);
    expect(() => planMove(p, [1, 9] as NodeId[], stm.nodes(), new PlacementLoad())).toThrow(expect.objectContaining({ code: 'UNKNOWN_NODE' }));
  });
});

describe('controller voters', () => {
  it('takes 1, 3 or 5 distinct positive ids, and defaults to the first 1, 3 or 5 nodes', async () => {
    const { validateControllerVoters, defaultControllerVoters } = await import('../../src/controller/index.js');
    for (const ok of [[1], [1, 2, 3], [5, 2, 9, 4, 1]]) expect(() => validateControllerVoters(ok)).not.toThrow();
    for (const bad of [[], [1, 2], [1, 1, 2], [0], [1, 2, 3, 4, 5, 6, 7], [1.5]]) expect(() => validateControllerVoters(bad)).toThrow(expect.objectContaining({ code: 'INVALID_CONFIG' }));
    expect(defaultControllerVoters([3])).toEqual([3]);
    expect(defaultControllerVoters([4, 2, 1, 3])).toEqual([1, 2, 3]);
    expect(defaultControllerVoters([7, 6, 5, 4, 3, 2, 1])).toEqual([1, 2, 3, 4, 5]);
  });
});
