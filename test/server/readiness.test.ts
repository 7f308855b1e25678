/**
 * Goal: cluster-mode readiness (src/server/readiness.ts) says "ready" only when every replica the
 * metadata gives this node is open here and, where another node leads it, named in that leader's
 * in-sync set; and the graceful stop (src/server/drain.ts) picks alive in-sync peers, spread out.
 * Method: the pure decision functions on hand-made statuses and leader views (each "not ready" case
 * next to the ready one it differs from by one field), then `handOffLeaderships` against a fake host
 * whose transfers take effect a few polls later, one that refuses, and one with no peer to move to.
 * The real processes are in test/k8s/statefulset-process.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { CatchUpCheck, replicasNotReady, type LeaderViews } from '../../src/server/readiness.js';
import { handOffLeaderships, handOffTargets } from '../../src/server/drain.js';
import type { PartitionState } from '../../src/controller/index.js';
import type { ReplicaStatus } from '../../src/server/replica-host.js';
import type { PartitionInfo } from '../../src/broker/types.js';
import type { GroupId } from '../../src/cluster/types.js';
import type { NodeId } from '../../src/model/index.js';

const ME = 2 as NodeId;

function part(partition: number, voters: number[], learners: number[] = []): PartitionState {
  return {
    topic: 't',
    topicId: 'id',
    partition,
    group: (100 + partition) as GroupId,
    voters: { nodes: voters as NodeId[], shards: voters.map(() => 0) },
    learners: { nodes: learners as NodeId[], shards: learners.map(() => 0) },
    lost: [],
    leader: 0 as NodeId,
    leaderEpoch: 0,
    target: null,
  };
}

function status(partition: number, role: ReplicaStatus['role'], leader: number, inSync: number[] = []): ReplicaStatus {
  return { group: (100 + partition) as GroupId, topic: 't', partition, role, leader: leader as NodeId, epoch: 3, highWatermark: 0, logStartOffset: 0, logEndOffset: 0, inSync: inSync as NodeId[] };
}

function view(entries: Array<[number, number, number[]]>): Map<string, PartitionInfo> {
  return new Map(entries.map(([partition, leader, isr]) => [`t/${partition}`, { partition, leader, replicas: [1, 2, 3], inSyncReplicas: isr, logStartOffset: 0, highWatermark: 0, sizeBytes: 0, damagedRanges: 0 }]));
}

describe('replicasNotReady', () => {
  const assigned = [part(0, [1, 2, 3]), part(1, [2, 3, 1])];

  it('is ready when it leads one replica and the leader of the other names it in sync', () => {
    const views: LeaderViews = new Map([[1 as NodeId, view([[0, 1, [1, 2, 3]]])]]);
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1), status(1, 'leader', 2)], views)).toBeNull();
  });

  it('is not ready while the leader leaves it out of its in-sync set (a follower behind after a restart)', () => {
    const views: LeaderViews = new Map([[1 as NodeId, view([[0, 1, [1, 3]]])]]);
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1), status(1, 'leader', 2)], views)).toMatch(/1 replica\(s\) catching up with their leaders: t\/0 \(not in node 1's in-sync replicas \[1,3\]\)/);
  });

  it('is not ready while an assigned replica is not open here, or offline', () => {
    const views: LeaderViews = new Map([[1 as NodeId, view([[0, 1, [1, 2, 3]]])]]);
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1)], views)).toMatch(/not open here yet: t\/1/);
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1), status(1, 'offline', 0)], views)).toMatch(/not open here yet: t\/1/);
  });

  it('is not ready without a leader, or when the leader did not answer or no longer leads', () => {
    expect(replicasNotReady(ME, assigned, [status(0, 'candidate', 0), status(1, 'leader', 2)], new Map())).toMatch(/without a leader: t\/0/);
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1), status(1, 'leader', 2)], new Map([[1 as NodeId, new Error('deadline')]]))).toMatch(/did not answer: deadline/);
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1), status(1, 'leader', 2)], new Map([[1 as NodeId, view([[0, 3, [2, 3]]])]]))).toMatch(/node 1 does not lead it now/);
  });

  it('does not wait for a learner replica, and ignores partitions not assigned here', () => {
    expect(replicasNotReady(ME, [part(0, [1, 3, 4], [2])], [], new Map())).toBeNull();
  });

  it('takes a quiesced follower as in sync without asking its leader only when told to (the rounds between full ones)', () => {
    const quiet = { ...status(0, 'follower', 1), quiesced: true };
    expect(replicasNotReady(ME, assigned, [quiet, status(1, 'leader', 2)], new Map(), true)).toBeNull();
    // A full round: the leader's word is needed, quiesced or not.
    expect(replicasNotReady(ME, assigned, [quiet, status(1, 'leader', 2)], new Map())).toMatch(/does not lead it now/);
    // Not quiesced, or a quiesced candidate (no leader to trust): never taken as in sync.
    expect(replicasNotReady(ME, assigned, [status(0, 'follower', 1), status(1, 'leader', 2)], new Map(), true)).toMatch(/does not lead it now/);
    expect(replicasNotReady(ME, assigned, [{ ...status(0, 'candidate', 0), quiesced: true }, status(1, 'leader', 2)], new Map(), true)).toMatch(/without a leader/);
  });
});

describe('CatchUpCheck', () => {
  it('asks each leader node once per round, for the topics it leads here, and keeps the verdict', async () => {
    const asked: Array<[number, readonly string[]]> = [];
    let isr = [1, 3];
    const check = new CatchUpCheck({
      nodeId: ME,
      assigned: () => [part(0, [1, 2, 3]), part(1, [1, 2, 3])],
      held: () => [status(0, 'follower', 1), status(1, 'follower', 1)],
      describe: async (node, topics) => {
        asked.push([node, topics]);
        return [{ name: 't', partitions: [0, 1].map((p) => ({ partition: p, leader: 1, replicas: [1, 2, 3], inSyncReplicas: isr, logStartOffset: 0, highWatermark: 0, sizeBytes: 0, damagedRanges: 0 })) }];
      },
      intervalMs: 3_600_000,
    });
    try {
      expect(check.notReady()).toMatch(/checking/);
      await check.run(); // the constructor's round
      expect(check.notReady()).toMatch(/2 replica\(s\) catching up/);
      isr = [1, 2, 3];
      await check.run();
      expect(check.notReady()).toBeNull();
      expect(asked.every(([n, t]) => n === 1 && t.length === 1 && t[0] === 't')).toBe(true);
    } finally {
      check.close();
    }
  });

  it('asks about quiesced followers only every few rounds (the first included), and believes them in between', async () => {
    const asked: number[] = [];
    let isr = [1, 3]; // the leader does not count this node in sync (a follower cut off while quiesced)
    const check = new CatchUpCheck({
      nodeId: ME,
      assigned: () => [part(0, [1, 2, 3]), part(1, [1, 2, 3])],
      held: () => [{ ...status(0, 'follower', 1), quiesced: true }, { ...status(1, 'follower', 1), quiesced: true }],
      describe: async (node) => {
        asked.push(node);
        return [{ name: 't', partitions: [0, 1].map((p) => ({ partition: p, leader: 1, replicas: [1, 2, 3], inSyncReplicas: isr, logStartOffset: 0, highWatermark: 0, sizeBytes: 0, damagedRanges: 0 })) }];
      },
      intervalMs: 3_600_000,
      quiescedAskEveryRounds: 3,
    });
    try {
      await check.run(); // round 1: a full one, the leader's word wins
      expect(check.notReady()).toMatch(/2 replica\(s\) catching up/);
      expect(asked).toEqual([1]);
      await check.run(); // rounds 2 and 3: quiesced followers believed, nothing asked
      expect(check.notReady()).toBeNull();
      await check.run();
      expect(asked).toEqual([1]);
      await check.run(); // round 4: full again
      expect(asked).toEqual([1, 1]);
      expect(check.notReady()).toMatch(/catching up/);
      isr = [1, 2, 3];
      for (let i = 0; i < 3; i++) await check.run();
      expect(check.notReady()).toBeNull();
    } finally {
      check.close();
    }
  });
});

describe('CatchUpCheck gate', () => {
  it('never says ready from a round that started before the metadata could be trusted (a restarted node sees an empty assignment)', async () => {
    let gate: string | null = 'the controller group has no leader yet';
    const check = new CatchUpCheck({ nodeId: ME, assigned: () => [], held: () => [], describe: async () => [], intervalMs: 3_600_000, gate: () => gate });
    try {
      await check.run();
      expect(check.notReady()).toMatch(/waiting for the metadata.*no leader yet/);
      gate = null;
      await check.run();
      expect(check.notReady()).toBeNull();
    } finally {
      check.close();
    }
  });
});

describe('leadership hand-off', () => {
  const alive = (id: NodeId): boolean => id !== 4;

  it('targets alive in-sync peers only, least-loaded first', () => {
    const leading = [status(0, 'leader', 2, [1, 2, 3]), status(1, 'leader', 2, [1, 2, 3]), status(2, 'leader', 2, [2, 4]), status(3, 'leader', 2, [2])];
    const t = handOffTargets(ME, leading, alive);
    expect([...t.values()].sort()).toEqual([1, 3]);
    expect(t.has(102 as GroupId)).toBe(false); // its only peer is dead
    expect(t.has(103 as GroupId)).toBe(false); // replication factor 1
  });

  it('moves every leadership that can move, retrying a refused transfer, and reports what stayed', async () => {
    const roles = new Map<number, { leader: number; inSync: number[] }>([
      [0, { leader: 2, inSync: [1, 2, 3] }],
      [1, { leader: 2, inSync: [1, 2, 3] }],
      [2, { leader: 2, inSync: [2] }],
    ]);
    let refusals = 1;
    const host = {
      replicaStatus: () => [...roles].map(([p, r]) => status(p, r.leader === 2 ? 'leader' : 'follower', r.leader, r.leader === 2 ? r.inSync : [])),
      transferLeadership: async (group: GroupId, to: NodeId) => {
        if (refusals-- > 0) throw new Error('busy');
        setTimeout(() => (roles.get(group - 100)!.leader = to), 20);
      },
    };
    const r = await handOffLeaderships({ nodeId: ME, host, peers: { get: (id) => (alive(id) ? ({ state: 'alive' } as never) : undefined) }, timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(r).toMatchObject({ led: 3, remaining: 1 });
    expect(roles.get(0)!.leader).not.toBe(2);
    expect(roles.get(1)!.leader).not.toBe(2);
    expect(r.elapsedMs).toBeLessThan(5_000);
  });
  it('hands off again a leadership that came back while the handed-off replicas settled (a balancer that had not heard yet)', async () => {
    const roles = new Map<number, number>([[0, 2], [1, 2]]);
    let comesBack = true;
    const host = {
      replicaStatus: () => [...roles].map(([p, leader]) => status(p, leader === 2 ? 'leader' : 'follower', leader, leader === 2 ? [1, 2, 3] : [])),
      transferLeadership: async (group: GroupId, to: NodeId) => {
        setTimeout(() => roles.set(group - 100, to), 10);
        // Another node's balancer hands partition 0 back once, after the first hand-off went through.
        if (group === 100 && comesBack) {
          comesBack = false;
          setTimeout(() => roles.set(0, 2), 60);
        }
      },
    };
    // The settle step waits (these high watermarks never reach the log end) for up to one round.
    const r = await handOffLeaderships({ nodeId: ME, host, peers: { get: (id) => (alive(id) ? ({ state: 'alive' } as never) : undefined) }, highWatermarks: async () => new Map(), timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(comesBack).toBe(false);
    expect(r).toMatchObject({ led: 2, remaining: 0 });
    expect(roles.get(0)).not.toBe(2);
    expect(roles.get(1)).not.toBe(2);
  });
  it('waits for a target that is not there yet (a peer behind, or suspected for a moment) when the metadata names a voter peer not held dead; gives up at once on one with none', async () => {
    // Partition 0: RF 3, its peers out of the in-sync set for now (they catch up after 150 ms).
    // Partition 1: RF 3, but both peers are dead. Partition 2: RF 1.
    let inSync0 = [2];
    setTimeout(() => (inSync0 = [1, 2, 3]), 150);
    const roles = new Map<number, number>([[0, 2], [1, 2], [2, 2]]);
    const voters = new Map<number, number[]>([[100, [1, 2, 3]], [101, [2, 4, 5]], [102, [2]]]);
    const host = {
      replicaStatus: () => [...roles].map(([p, leader]) => status(p, leader === 2 ? 'leader' : 'follower', leader, leader !== 2 ? [] : p === 0 ? inSync0 : [2])),
      transferLeadership: async (group: GroupId, to: NodeId) => {
        setTimeout(() => roles.set(group - 100, to), 10);
      },
    };
    const peers = { get: (id: NodeId) => (id === 1 || id === 3 ? ({ state: id === 3 ? 'suspect' : 'alive' } as never) : id === 4 || id === 5 ? ({ state: 'dead' } as never) : undefined) };
    const t0 = performance.now();
    const r = await handOffLeaderships({ nodeId: ME, host, peers, voters: (g) => voters.get(g) as NodeId[] | undefined, timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(r).toMatchObject({ led: 3, remaining: 2 });
    expect(roles.get(0)).toBe(1); // the alive peer, once in sync
    expect(performance.now() - t0).toBeLessThan(2_000); // it did not wait out the timeout for partitions 1 and 2
    // Without the metadata's voters it gives up on partition 0 at once (the behaviour before).
    inSync0 = [2];
    roles.set(0, 2);
    setTimeout(() => (inSync0 = [1, 2, 3]), 150);
    const r2 = await handOffLeaderships({ nodeId: ME, host, peers, timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(r2).toMatchObject({ led: 3, remaining: 3 });
  });

  it('hands nothing to peers that are stopping too (gossip says leaving), and does not wait for them: a whole cluster stopping at once', async () => {
    const roles = new Map<number, number>([[0, 2], [1, 2]]);
    const transfers: Array<[GroupId, NodeId]> = [];
    const host = {
      replicaStatus: () => [...roles].map(([p, leader]) => status(p, leader === 2 ? 'leader' : 'follower', leader, leader === 2 ? [1, 2, 3] : [])),
      transferLeadership: async (group: GroupId, to: NodeId) => {
        transfers.push([group, to]);
        setTimeout(() => roles.set(group - 100, to), 10);
      },
    };
    const voters = (): NodeId[] => [1, 2, 3] as NodeId[];
    let leaving3 = true;
    const peers = { get: (id: NodeId) => (id === 1 ? ({ state: 'alive', leaving: true } as never) : id === 3 ? ({ state: 'alive', leaving: leaving3 } as never) : undefined) };
    const t0 = performance.now();
    const r = await handOffLeaderships({ nodeId: ME, host, peers, voters, timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(r).toMatchObject({ led: 2, remaining: 2 });
    expect(transfers).toEqual([]);
    expect(performance.now() - t0).toBeLessThan(1_000); // not the 5 s timeout
    // The same with node 3 staying: everything goes to node 3.
    leaving3 = false;
    const r2 = await handOffLeaderships({ nodeId: ME, host, peers, voters, timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(r2).toMatchObject({ led: 2, remaining: 0 });
    expect(new Set(transfers.map(([, to]) => to))).toEqual(new Set([3]));
  });

  it('stops waiting for a target that began stopping before it won (this node stepped down, no leader known)', async () => {
    // The transfer makes this node step down at once; the target never wins (it is stopping and closes).
    let role: 'leader' | 'follower' = 'leader';
    const host = {
      replicaStatus: () => [status(0, role, role === 'leader' ? 2 : 0, role === 'leader' ? [1, 2, 3] : [])],
      transferLeadership: async () => {
        role = 'follower';
      },
    };
    let leaving = false;
    setTimeout(() => (leaving = true), 100);
    const peers = { get: (id: NodeId) => (id === 1 || id === 3 ? ({ state: 'alive', leaving } as never) : undefined) };
    const t0 = performance.now();
    const r = await handOffLeaderships({ nodeId: ME, host, peers, voters: () => [1, 2, 3] as NodeId[], timeoutMs: 5_000, roundMs: 200, pollMs: 5 });
    expect(r).toMatchObject({ led: 1, remaining: 0 });
    expect(performance.now() - t0).toBeLessThan(2_000); // not the 5 s timeout
  });
});
