/**
 * Goal: a Broker in cluster mode carries a partition's membership changes end to end (shard ops `conf`
 * and `members`): on the leader's node `proposeConfChange` adds a learner, which a fourth broker opened
 * as a fresh learner catches up on, then promotes it and removes a voter; `replicaMembership` reports the
 * Raft membership and, on the leader, every member's match index. A follower answers NOT_LEADER, a
 * second change while one is uncommitted is refused or waits, and bad input is INVALID_REQUEST, with
 * nothing changed. Method: four real Brokers in this process (one shard each, own data dir) over real
 * GrpcRaftTransports on 127.0.0.1-4, as test/broker/replicas.test.ts; waits poll the brokers' own
 * answers, bounded in time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Broker, type ReplicaMembership, type ReplicaSpec } from '../../src/broker/index.js';
import type { NodeId } from '../../src/model/index.js';
import { startNode, waitFor, type TestNode } from '../cluster/transport-helpers.js';

interface Node {
  id: number;
  dir: string;
  net: TestNode;
  broker: Broker;
}

let nodes: Node[] = [];
const addresses = new Map<number, string>();
const TOPIC_ID = crypto.randomUUID();
const GROUP = 9;

afterEach(async () => {
  for (const n of nodes) {
    await n.broker.close().catch(() => {});
    n.net.kill();
    fs.rmSync(n.dir, { recursive: true, force: true });
  }
  nodes = [];
  addresses.clear();
});

async function start(id: number): Promise<Node> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-membership-${id}-`));
  const net = await startNode(id, addresses);
  const broker = await Broker.open({ dataDir: dir, shards: 1, nodeId: id, statsIntervalMs: 100, cluster: { transport: net.transport } });
  const n = { id, dir, net, broker };
  nodes.push(n);
  return n;
}

function spec(voters: number[], learners: number[] = []): ReplicaSpec {
  return { topic: 'm', topicId: TOPIC_ID, partition: 0, partitionCount: 1, group: GROUP, shard: 0, voters: voters as NodeId[], learners: learners as NodeId[], configs: {}, fresh: true };
}

async function membership(n: Node): Promise<ReplicaMembership> {
  const [m] = await n.broker.replicaMembership([GROUP, 12345]);
  return m;
}

/** Polls `cond` over async answers (bounded). */
async function until(what: string, cond: () => Promise<boolean>): Promise<void> {
  let ok = false;
  const poll = async (): Promise<void> => {
    ok = await cond();
  };
  await waitFor(what, () => {
    void poll();
    return ok;
  });
}

describe('Broker: partition membership changes', () => {
  it('adds a learner, promotes it, removes a voter; reports membership and match indexes; refuses what does not apply', async () => {
    for (const id of [1, 2, 3, 4]) await start(id);
    await Promise.all(nodes.slice(0, 3).map((n) => n.broker.openReplicas([spec([1, 2, 3])])));
    let leader: Node | undefined;
    await waitFor('a leader', () => {
      leader = nodes.slice(0, 3).find((n) => n.broker.replicaOf(GROUP)?.role === 'leader');
      return leader !== undefined;
    });
    const lb = leader!.broker;
    const follower = nodes.slice(0, 3).find((n) => n !== leader)!;
    for (let i = 0; i < 5; i++) await lb.produce({ topic: 'm', partition: 0, acks: 'all', records: [{ key: null, value: Buffer.from(`v${i}`) }] });

    const m0 = await membership(leader!);
    expect(m0).toMatchObject({ group: GROUP, role: 'leader', leader: leader!.id, voters: [1, 2, 3], learners: [], confPending: false });
    expect(m0.match.get(leader!.id as NodeId)).toBe(m0.lastIndex);
    expect((await membership(follower)).match.size).toBe(0);

    // Refusals change nothing.
    await expect(follower.broker.proposeConfChange(GROUP, { type: 'addLearner', node: 4 as NodeId })).rejects.toMatchObject({ code: 'NOT_LEADER' });
    await expect(lb.proposeConfChange(GROUP, { type: 'addVoter', node: 2 as NodeId })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(lb.proposeConfChange(GROUP, { type: 'bogus' as 'addVoter', node: 4 as NodeId })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(lb.proposeConfChange(GROUP, { type: 'addLearner', node: 0 as NodeId })).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    await expect(lb.proposeConfChange(777, { type: 'addLearner', node: 4 as NodeId })).rejects.toMatchObject({ code: 'UNKNOWN_PARTITION' });
    expect((await membership(leader!)).voters).toEqual([1, 2, 3]);

    // Node 4 opens as the metadata would list it: a fresh learner. The leader adds it; it catches up.
    await nodes[3].broker.openReplicas([spec([1, 2, 3], [4])]);
    await lb.proposeConfChange(GROUP, { type: 'addLearner', node: 4 as NodeId });
    await until('node 4 a caught-up learner', async () => {
      const m = await membership(leader!);
      return !m.confPending && m.learners.includes(4 as NodeId) && m.match.get(4 as NodeId) === m.lastIndex;
    });
    expect((await membership(nodes[3])).role).toBe('learner');
    await lb.proposeConfChange(GROUP, { type: 'addVoter', node: 4 as NodeId });
    await until('node 4 a voter', async () => {
      const m = await membership(leader!);
      return !m.confPending && m.voters.includes(4 as NodeId);
    });
    const gone = ([1, 2, 3] as NodeId[]).find((n) => n !== leader!.id)!;
    await lb.proposeConfChange(GROUP, { type: 'remove', node: gone });
    await until(`node ${gone} removed`, async () => {
      const m = await membership(leader!);
      return !m.confPending && !m.voters.includes(gone) && m.voters.length === 3;
    });
    // The group still commits, with node 4 voting.
    const r = await lb.produce({ topic: 'm', partition: 0, acks: 'all', records: [{ key: null, value: Buffer.from('after') }] });
    await waitFor('node 4 has the new record committed', () => (nodes[3].broker.replicaOf(GROUP)?.highWatermark ?? 0) > r.lastOffset);
  });
});
