/**
 * Goal: the pure rules behind replica-set changes. `nextConfChange` (what a partition leader proposes
 * next to bring its Raft membership to the metadata's) walks every step of a move and of a lost-replica
 * rebuild one single-server change at a time, adds before it removes, never removes the leader itself,
 * and never demotes a voter in place; `planRebalance` evens out replica counts. Method: table-driven
 * checks on plain states; a "follow the changes" loop (bounded) proves a move converges.
 */
import { describe, expect, it } from 'vitest';
import { applyConfChange } from '../../src/raft/index.js';
import { membershipMatches, nextConfChange, planRebalance, type PartitionState, type RaftMembership } from '../../src/controller/index.js';
import type { NodeId } from '../../src/model/index.js';

const ids = (xs: number[]): NodeId[] => xs as NodeId[];

function part(voters: number[], learners: number[] = [], extra: Partial<PartitionState> = {}): PartitionState {
  return {
    topic: 't',
    topicId: 'id',
    partition: 0,
    group: 7,
    voters: { nodes: ids(voters), shards: voters.map(() => 0) },
    learners: { nodes: ids(learners), shards: learners.map(() => 0) },
    lost: [],
    leader: 1 as NodeId,
    leaderEpoch: 1,
    target: null,
    ...extra,
  };
}

function conf(voters: number[], learners: number[] = []): RaftMembership {
  return { voters: ids(voters), learners: ids(learners) };
}

describe('nextConfChange', () => {
  it('proposes nothing when the Raft membership is the metadata\'s', () => {
    expect(nextConfChange(part([1, 2, 3]), conf([3, 1, 2]), 1 as NodeId)).toBeNull();
    expect(membershipMatches(part([1, 2, 3], [4]), conf([3, 2, 1], [4]))).toBe(true);
    expect(membershipMatches(part([1, 2, 3], [4]), conf([1, 2, 3, 4]))).toBe(false);
  });

  it('walks each step of a move: learner, promotion, removal', () => {
    expect(nextConfChange(part([1, 2, 3], [4]), conf([1, 2, 3]), 1 as NodeId)).toEqual({ type: 'addLearner', node: 4 });
    expect(nextConfChange(part([1, 2, 3, 4]), conf([1, 2, 3], [4]), 1 as NodeId)).toEqual({ type: 'addVoter', node: 4 });
    expect(nextConfChange(part([1, 2, 4]), conf([1, 2, 3, 4]), 1 as NodeId)).toEqual({ type: 'remove', node: 3 });
  });

  it('adds before it removes, and never removes the leader itself', () => {
    expect(nextConfChange(part([1, 2, 4]), conf([1, 2, 3]), 1 as NodeId)).toEqual({ type: 'addLearner', node: 4 });
    expect(nextConfChange(part([2, 3, 4]), conf([1, 2, 3, 4]), 1 as NodeId)).toBeNull();
  });

  it('removes a voter the metadata lists as a learner (a rebuilt replica never keeps its old match index)', () => {
    expect(nextConfChange(part([1, 2], [3]), conf([1, 2, 3]), 1 as NodeId)).toEqual({ type: 'remove', node: 3 });
    expect(nextConfChange(part([1, 2], [3]), conf([1, 2]), 1 as NodeId)).toEqual({ type: 'addLearner', node: 3 });
  });

  it('converges from any membership to the metadata in single-server steps (bounded)', () => {
    const want = part([1, 4, 5], [6]);
    let have = conf([1, 2, 3], [7]);
    for (let i = 0; i < 20 && !membershipMatches(want, have); i++) {
      const c = nextConfChange(want, have, 1 as NodeId);
      expect(c).not.toBeNull();
      have = applyConfChange({ voters: [...have.voters], learners: [...have.learners] }, c!) as RaftMembership;
      // The group never shrinks below the smaller of the two voter counts while it changes.
      expect(have.voters.length).toBeGreaterThanOrEqual(2);
    }
    expect(membershipMatches(want, have)).toBe(true);
  });
});

describe('planRebalance', () => {
  const nodes = [1, 2, 3, 4].map((id) => ({ id: id as NodeId, rack: '', shards: 2 }));

  it('moves replicas onto an empty new node until counts differ by at most one', () => {
    const parts = Array.from({ length: 4 }, (_, i) => ({ ...part([1, 2, 3]), group: i + 1, partition: i }));
    const moves = planRebalance(parts, nodes, 100);
    const count = new Map<number, number>();
    const final = parts.map((p) => moves.find((m) => m.group === p.group)?.to.nodes ?? p.voters.nodes);
    for (const vs of final) for (const n of vs) count.set(n, (count.get(n) ?? 0) + 1);
    expect(Math.max(...count.values()) - Math.min(...[1, 2, 3, 4].map((n) => count.get(n) ?? 0))).toBeLessThanOrEqual(1);
    for (const vs of final) expect(new Set(vs).size).toBe(3);
    expect(moves.length).toBe(3);
  });

  it('never leaves a partition on fewer racks: a new node moves in only where its rack keeps the spread', () => {
    // Racks a: 1, 4; b: 2; c: 3. Every partition is on 1,2,3 (racks a, b, c). Node 4 (rack a) is new
    // and empty: only replica 1 (rack a) may move to it; moving 2 or 3 would leave two replicas on a.
    const racked = [
      { id: 1 as NodeId, rack: 'a', shards: 2 },
      { id: 2 as NodeId, rack: 'b', shards: 2 },
      { id: 3 as NodeId, rack: 'c', shards: 2 },
      { id: 4 as NodeId, rack: 'a', shards: 2 },
    ];
    const parts = Array.from({ length: 6 }, (_, i) => ({ ...part([1, 2, 3]), group: i + 1, partition: i }));
    const moves = planRebalance(parts, racked, 100);
    expect(moves.length).toBeGreaterThan(0);
    for (const m of moves) {
      expect(m.to.nodes).not.toContain(1);
      expect(new Set(m.to.nodes.map((n) => racked.find((r) => r.id === n)!.rack)).size).toBe(3);
    }
    // Without racks the same cluster also moves replicas of nodes 2 and 3.
    const plain = planRebalance(parts, racked.map((n) => ({ ...n, rack: '' })), 100);
    expect(plain.some((m) => !m.to.nodes.includes(2 as NodeId) || !m.to.nodes.includes(3 as NodeId))).toBe(true);
    // A replica holder outside the live nodes (dead, decommissioning) still occupies its rack.
    const withDead = [{ ...part([5, 2, 3]), group: 1 }, { ...part([5, 2, 1]), group: 2 }, { ...part([5, 3, 1]), group: 3 }];
    const live = [racked[0], racked[1], racked[2], { id: 6 as NodeId, rack: 'b', shards: 1 }];
    for (const m of planRebalance(withDead, live, 100, new Map([[5 as NodeId, 'c']]))) {
      const rackOf = (n: NodeId): string => (n === 5 ? 'c' : live.find((r) => r.id === n)!.rack);
      expect(new Set(m.to.nodes.map(rackOf)).size).toBeGreaterThanOrEqual(new Set(m.from.nodes.map(rackOf)).size);
    }
  });

  it('leaves balanced or moving partitions alone, and respects its bound', () => {
    const balanced = [part([1, 2, 3]), { ...part([2, 3, 4]), group: 8 }, { ...part([3, 4, 1]), group: 9 }, { ...part([4, 1, 2]), group: 10 }];
    expect(planRebalance(balanced, nodes, 100)).toEqual([]);
    const moving = Array.from({ length: 4 }, (_, i) => ({ ...part([1, 2, 3]), group: i + 1, target: { nodes: ids([1, 2, 3]), shards: [0, 0, 0] } }));
    expect(planRebalance(moving, nodes, 100)).toEqual([]);
    const parts = Array.from({ length: 8 }, (_, i) => ({ ...part([1, 2, 3]), group: i + 1 }));
    expect(planRebalance(parts, nodes, 2).length).toBe(2);
  });
});
