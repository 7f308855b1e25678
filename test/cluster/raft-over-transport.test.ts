/**
 * Goal: real Raft groups replicate over the real transport. 1,000 groups of RaftNode across three nodes
 * (each its own gRPC server on 127.0.0.1/.2/.3) elect leaders and commit proposals; when one node is
 * killed, the groups it led re-elect on the other two and keep committing; when it restarts (same
 * address, same "disk"), it catches up, byte for byte. Method: test/cluster/raft-groups.ts drives every
 * group (persist in memory, then send, then apply); every wait polls the groups' state, bounded in
 * count and time. The election timeouts come from a seeded generator and the seed is printed; the
 * network is real, so a rerun with the seed is alike, not identical.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import type { NodeId } from '../../src/model/index.js';
import type { MemoryStorage } from '../../src/raft/index.js';
import { GroupHost, xorshift } from './raft-groups.js';
import { startNode, waitFor, type TestNode } from './transport-helpers.js';

const GROUPS = 1_000;
const TICK_MS = 100;
const VOTERS = [1, 2, 3] as NodeId[];
const seed = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 2 ** 31);
console.log(`raft-over-transport seed=${seed}: election timeouts come from it (SLUICE_TEST_SEED=${seed}); network timing is real, so a rerun is alike, not identical`);

const groupIds = Array.from({ length: GROUPS }, (_, i) => i + 1);
const nodes: TestNode[] = [];
const hosts = new Map<number, GroupHost>();
const disks = new Map<number, Map<number, MemoryStorage>>();

afterAll(() => {
  for (const h of hosts.values()) h.stop();
  for (const n of nodes) n.kill();
});

function host(id: number, node: TestNode): GroupHost {
  const disk = disks.get(id) ?? new Map<number, MemoryStorage>();
  disks.set(id, disk);
  const h = new GroupHost(id as NodeId, node.transport, disk, xorshift(seed * 31 + id));
  hosts.set(id, h);
  return h;
}

/** The leader of group g among `live` nodes, when all of them agree on one; else 0. */
function agreedLeader(g: number, live: number[]): number {
  let leader = 0;
  for (const id of live) {
    const r = hosts.get(id)!.groups.get(g)!.raft;
    const l = r.getLeader();
    if (l === 0 || (leader !== 0 && l !== leader)) return 0;
    leader = l;
  }
  return live.includes(leader) && hosts.get(leader)!.groups.get(g)!.raft.getRole() === 'leader' ? leader : 0;
}

function allHaveLeaders(live: number[]): boolean {
  return groupIds.every((g) => agreedLeader(g, live) !== 0);
}

/** Proposes one payload per group on its leader; returns the payloads by group. */
function proposeEverywhere(live: number[], tag: string): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const g of groupIds) {
    const leader = agreedLeader(g, live);
    const data = Buffer.concat([Buffer.from(`${tag}:${g}:`), randomBytes(64)]);
    hosts.get(leader)!.propose(g, data);
    out.set(g, data);
  }
  return out;
}

function applied(id: number, g: number, data: Buffer): boolean {
  return hosts.get(id)!.groups.get(g)!.applied.some((e) => Buffer.from(e.data).equals(data));
}

function allApplied(ids: number[], payloads: Map<number, Buffer>): boolean {
  for (const [g, data] of payloads) for (const id of ids) if (!applied(id, g, data)) return false;
  return true;
}

describe('1,000 Raft groups over the transport, three nodes', () => {
  it('elect, commit, survive a killed node, and catch it up after a restart', async () => {
    const addresses = new Map<number, string>();
    for (const id of [1, 2, 3]) nodes.push(await startNode(id, addresses));
    for (const id of [1, 2, 3]) host(id, nodes[id - 1]).start(groupIds, VOTERS, TICK_MS);
    // Spread the first leaders over the nodes, as the controller's preferred replicas would.
    for (const g of groupIds) hosts.get((g % 3) + 1)!.campaign(g);
    await waitFor('a leader in every group', () => allHaveLeaders([1, 2, 3]), 60_000, 50);

    const first = proposeEverywhere([1, 2, 3], 'first');
    await waitFor('every proposal applied on all three nodes', () => allApplied([1, 2, 3], first), 60_000, 50);

    // Heartbeats of all groups between two nodes ride in one frame per tick, not one per group.
    const n1 = nodes[0].probe;
    const framesBefore = n1.framesSent;
    const messagesBefore = n1.messagesSent;
    await new Promise((r) => setTimeout(r, 20 * TICK_MS));
    const frames = n1.framesSent - framesBefore;
    const messages = n1.messagesSent - messagesBefore;
    expect(messages / frames).toBeGreaterThan(50);

    // Kill node 3: its groups re-elect on nodes 1 and 2 and keep committing.
    const led3 = groupIds.filter((g) => agreedLeader(g, [1, 2, 3]) === 3).length;
    expect(led3).toBeGreaterThan(0);
    hosts.get(3)!.stop();
    nodes[2].kill();
    await waitFor('a leader on node 1 or 2 in every group', () => allHaveLeaders([1, 2]), 60_000, 50);
    const second = proposeEverywhere([1, 2], 'second');
    await waitFor('every second proposal applied on nodes 1 and 2', () => allApplied([1, 2], second), 60_000, 50);

    // Restart node 3 on the same address over the same "disk": it catches up.
    await nodes[2].restart();
    host(3, nodes[2]).start(groupIds, VOTERS, TICK_MS);
    await waitFor('node 3 applied everything', () => allApplied([3], first) && allApplied([3], second), 60_000, 50);
    // Byte for byte: every replica's log holds the same runs.
    for (const g of groupIds) {
      const logs = [1, 2, 3].map((id) => disks.get(id)!.get(g)!.allEntries().map((e) => `${e.index}/${e.term}/${e.kind}/${Buffer.from(e.data).toString('hex')}`));
      const shortest = Math.min(...logs.map((l) => l.length));
      for (const l of logs) expect(l.slice(0, shortest)).toEqual(logs[0].slice(0, shortest));
    }
  }, 240_000);
});
