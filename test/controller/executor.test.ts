/**
 * Goal: the controller leader's executor carries a decommission, a move and leader balancing to the
 * end, one record per step, waiting where the partitions must act (a learner catching up, a leadership
 * transfer). Method: four controllers (voters 1-3, node 4 a learner) with real data dirs over the
 * in-memory transport; the partition replicas are a fake `ReplicaProgress` whose leaders follow the
 * metadata at once, whose learners are far behind until looked at once (then caught up), and which
 * performs a transfer by reporting the new leader with the next epoch.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ControllerExecutor, type Controller, type LeaderMembership, type ReplicaProgress } from '../../src/controller/index.js';
import { REPLICA_ISR_LAG_OFFSETS_MAX } from '../../src/constants.js';
import type { GroupId } from '../../src/cluster/types.js';
import type { NodeId } from '../../src/model/index.js';
import { MemoryNet, agreedLeader, closeNode, openNode, tempDir, waitFor, type TestNode } from './memory-net.js';

const VOTERS = [1, 2, 3] as NodeId[];
let cleanup: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

class FakeReplicas implements ReplicaProgress {
  readonly asked = new Set<string>();
  transfers: Array<[GroupId, NodeId]> = [];
  constructor(private readonly via: () => Controller) {}
  /** Each partition's leader follows the metadata at once; a learner is caught up once it was looked at. */
  async membership(_hint: NodeId, groups: readonly GroupId[]): Promise<Map<GroupId, LeaderMembership>> {
    const out = new Map<GroupId, LeaderMembership>();
    for (const g of groups) {
      const p = this.via().state.partitionByGroup(g);
      if (p === undefined) continue;
      const last = 100 + 2 * REPLICA_ISR_LAG_OFFSETS_MAX;
      const match = new Map<NodeId, number>();
      for (const n of p.voters.nodes) match.set(n, last);
      for (const n of p.learners.nodes) {
        const key = `${g}/${n}`;
        match.set(n, this.asked.has(key) ? last : 0);
        this.asked.add(key);
      }
      out.set(g, { leader: p.leader !== 0 ? p.leader : p.voters.nodes[0], voters: p.voters.nodes, learners: p.learners.nodes, confPending: false, commit: last, lastIndex: last, match });
    }
    return out;
  }
  async transferLeadership(group: GroupId, _leader: NodeId, to: NodeId): Promise<void> {
    this.transfers.push([group, to]);
    const c = this.via();
    const p = c.state.partitionByGroup(group);
    if (p) void c.reportLeader(group, to, p.leaderEpoch + 1).catch(() => {});
  }
}

async function cluster(): Promise<{ net: MemoryNet; nodes: TestNode[]; cs: Controller[] }> {
  const net = new MemoryNet();
  const nodes: TestNode[] = [1, 2, 3, 4].map((id) => ({ id: id as NodeId, dir: tempDir(`x${id}`), uuid: `u${id}`, controller: null }));
  cleanup.push(async () => {
    for (const n of nodes) await closeNode(net, n);
    for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
  });
  for (const n of nodes) await openNode(net, n, VOTERS);
  const cs = nodes.map((n) => n.controller!);
  await waitFor(cs, () => agreedLeader(cs.slice(0, 3)) !== 0, 'a leader');
  await Promise.all(cs.map((c) => c.registered));
  await waitFor(cs, () => cs.every((c) => c.state.nodes().length === 4), 'four registered nodes everywhere');
  return { net, nodes, cs };
}

function startExecutors(cs: Controller[], fake: FakeReplicas): ControllerExecutor[] {
  const ex = cs.map((c) => new ControllerExecutor(c, fake, { intervalMs: 30 }));
  cleanup.push(async () => ex.forEach((e) => e.close()));
  return ex;
}

describe('controller executor', () => {
  it('decommissions a node: every replica moved off it one step at a time, then the node is decommissioned', async () => {
    const { cs } = await cluster();
    const leader = () => cs.find((c) => c.isLeader)!;
    await cs[3].createTopic('d', 8, 3);
    // Every partition reports its preferred replica as leader, so removing node 3 must move leaders.
    for (const p of leader().state.topic('d')!.partitions) await cs[0].reportLeader(p.group, p.voters.nodes[0], 1);
    const fake = new FakeReplicas(leader);
    startExecutors(cs, fake);
    await leader().decommission(3);
    const held = (c: Controller) => c.state.partitions().filter((p) => p.voters.nodes.includes(3 as NodeId) || p.learners.nodes.includes(3 as NodeId)).length;
    const moving = (c: Controller) => c.state.partitions().filter((p) => p.target !== null).length;
    await waitFor(cs, () => cs.every((c) => c.state.node(3 as NodeId)?.state === 'decommissioned' && held(c) === 0 && moving(c) === 0), 'node 3 decommissioned everywhere', 30_000);
    for (const p of leader().state.topic('d')!.partitions) {
      expect(p.voters.nodes.length).toBe(3);
      expect(new Set(p.voters.nodes).size).toBe(3);
      expect(p.target).toBeNull();
      expect(p.learners.nodes).toEqual([]);
    }
    // A learner was promoted only after the partitions said it had caught up (asked at least once).
    expect(fake.asked.size).toBeGreaterThan(0);
    // Node 3 led some partitions: leadership moved before its replica was removed.
    expect(fake.transfers.some(([, to]) => to !== (3 as NodeId))).toBe(true);
    // The others are balanced again: 8 partitions x 3 replicas on 3 nodes.
    const per = new Map<number, number>();
    for (const p of leader().state.partitions()) for (const n of p.voters.nodes) per.set(n, (per.get(n) ?? 0) + 1);
    expect([...per.values()].sort()).toEqual([8, 8, 8]);
  });

  it('recommission: a decommissioning node stops being drained, a decommissioned one takes replicas again', async () => {
    const { cs } = await cluster();
    const leader = () => cs.find((c) => c.isLeader)!;
    const three = 3 as NodeId;
    const holds3 = (c: Controller) => c.state.partitions().filter((p) => p.voters.nodes.includes(three) || p.learners.nodes.includes(three)).length;
    const moving = (c: Controller) => c.state.partitions().filter((p) => p.target !== null).length;
    await cs[0].createTopic('r', 4, 2);
    // A partition without node 3 is moving onto it (a user's move) when the decommission starts, so the
    // decommission cannot plan it yet; the executor would move it off node 3 once it lands, were node 3
    // still decommissioning.
    const busy = leader().state.topic('r')!.partitions.find((p) => !p.voters.nodes.includes(three))!;
    await cs[1].movePartition('r', busy.partition, [three, busy.voters.nodes[0]]);
    await cs[2].decommission(3);
    expect(leader().state.node(three)!.state).toBe('decommissioning');
    await expect(cs[3].recommission(3)).resolves.toBe('decommissioning');
    const fake = new FakeReplicas(leader);
    const ex = startExecutors(cs, fake);
    const passes = () => ex.reduce((n, e) => n + e.passes, 0);
    await waitFor(cs, () => cs.every((c) => moving(c) === 0 && c.state.topic('r')!.partitions[busy.partition].voters.nodes.includes(three)), 'every move done', 30_000);
    // Twenty more passes in which a still-decommissioning node 3 would have lost that replica again.
    const settled = passes();
    await waitFor(cs, () => passes() >= settled + 20, 'twenty executor passes', 30_000);
    for (const c of cs) {
      expect(c.state.node(three)!.state).toBe('active');
      expect(c.state.topic('r')!.partitions[busy.partition].voters.nodes).toContain(three);
      expect(moving(c)).toBe(0);
    }

    // Decommissioned, it takes nothing (four replicas need four active nodes) until it is recommissioned.
    await cs[0].decommission(3);
    await waitFor(cs, () => cs.every((c) => c.state.node(three)?.state === 'decommissioned' && holds3(c) === 0), 'node 3 decommissioned everywhere', 30_000);
    await expect(cs[1].createTopic('four', 2, 4)).rejects.toMatchObject({ code: 'REPLICATION_FACTOR_TOO_LARGE' });
    await expect(cs[1].recommission(3)).resolves.toBe('decommissioned');
    await expect(cs[2].recommission(3)).resolves.toBe('active');
    const t = await cs[1].createTopic('four', 2, 4);
    for (const p of t.partitions) expect(p.voters.nodes).toContain(three);
    await waitFor(cs, () => cs.every((c) => c.state.node(three)?.state === 'active' && holds3(c) === 2), 'node 3 active and holding both new replicas everywhere', 30_000);
  });

  it('moves leadership back to the preferred replica (leader balancing) and carries a user move to the end', async () => {
    const { cs } = await cluster();
    const leader = () => cs.find((c) => c.isLeader)!;
    await cs[1].createTopic('b', 4, 2);
    const parts = leader().state.topic('b')!.partitions;
    // Everyone led by its second replica (as after the preferred node came back from a restart).
    for (const p of parts) await cs[0].reportLeader(p.group, p.voters.nodes[1], 3);
    const fake = new FakeReplicas(leader);
    startExecutors(cs, fake);
    await waitFor(cs, () => leader().state.topic('b')!.partitions.every((p) => p.leader === p.voters.nodes[0]), 'every leader is the preferred replica again', 30_000);
    // Move partition 0 to a node it is not on (first, so it becomes the preferred leader) plus one it keeps.
    const p0 = parts[0];
    const fresh = ([1, 2, 3, 4] as NodeId[]).find((n) => !p0.voters.nodes.includes(n))!;
    const target = [fresh, p0.voters.nodes[1]];
    await cs[2].movePartition('b', 0, target);
    await waitFor(cs, () => {
      const p = leader().state.topic('b')!.partitions[0];
      return p.target === null && p.voters.nodes.join() === target.join();
    }, 'the move completed', 30_000);
    // The kept replica kept its shard.
    expect(leader().state.topic('b')!.partitions[0].voters.shards[1]).toBe(p0.voters.shards[1]);
    await expect(cs[2].movePartition('b', 9, [1])).rejects.toMatchObject({ code: 'UNKNOWN_PARTITION' });
  });
  it('a paused executor (its node is stopping) hands no leadership back to preferred replicas; moves still run', async () => {
    const { cs } = await cluster();
    const leader = () => cs.find((c) => c.isLeader)!;
    await cs[1].createTopic('s', 4, 2);
    const parts = leader().state.topic('s')!.partitions;
    for (const p of parts) await cs[0].reportLeader(p.group, p.voters.nodes[1], 3);
    const fake = new FakeReplicas(leader);
    const ex = startExecutors(cs, fake);
    for (const e of ex) e.pauseLeaderBalancing();
    const passes = () => ex.reduce((n, e) => n + e.passes, 0);
    const before = passes();
    // Twenty passes (30 ms apart) in which an unpaused executor would have moved every leader back.
    await waitFor(cs, () => passes() >= before + 20, 'twenty executor passes', 30_000);
    expect(fake.transfers).toEqual([]);
    expect(leader().state.topic('s')!.partitions.every((p) => p.leader === p.voters.nodes[1])).toBe(true);
    // A user move still runs to the end.
    const p0 = parts[0];
    const fresh = ([1, 2, 3, 4] as NodeId[]).find((n) => !p0.voters.nodes.includes(n))!;
    await cs[2].movePartition('s', 0, [p0.voters.nodes[1], fresh]);
    await waitFor(cs, () => leader().state.topic('s')!.partitions[0].target === null && leader().state.topic('s')!.partitions[0].voters.nodes.includes(fresh), 'the move completed', 30_000);
  });
});
