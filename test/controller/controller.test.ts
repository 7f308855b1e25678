/**
 * Goal: the controller group keeps the cluster's metadata through elections, leader loss and restarts.
 * Method: three (or one) real `Controller`s, each with its own data dir on disk (PartitionLog, fsync),
 * talking over an in-memory transport (test/controller/memory-net.ts). "Kill" is close(); "restart" is
 * a reopen from the same data dir. Waits are on leader-change and metadata events (plus a short probe),
 * bounded in time; nothing sleeps.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSnapshot, replicaOps, type Controller, type ControllerOptions, type ReplicaOp } from '../../src/controller/index.js';
import { TopicTable } from '../../src/broker/topic-table.js';
import type { NodeId } from '../../src/model/index.js';
import { MemoryNet, agreedLeader, closeNode, openNode, tempDir, waitFor, type TestNode } from './memory-net.js';

const VOTERS = [1, 2, 3] as NodeId[];
let nets: Array<{ net: MemoryNet; nodes: TestNode[] }> = [];

function makeNodes(ids: readonly number[]): TestNode[] {
  return ids.map((id) => ({ id: id as NodeId, dir: tempDir(`n${id}`), uuid: `uuid-${id}-a`, controller: null }));
}

async function startCluster(ids: readonly number[] = VOTERS, extra: Partial<ControllerOptions> = {}): Promise<{ net: MemoryNet; nodes: TestNode[] }> {
  const net = new MemoryNet();
  const nodes = makeNodes(ids);
  const entry = { net, nodes };
  nets.push(entry);
  for (const n of nodes) await openNode(net, n, ids as NodeId[], extra);
  return entry;
}

function running(nodes: readonly TestNode[]): Controller[] {
  return nodes.flatMap((n) => (n.controller ? [n.controller] : []));
}

async function electedAndRegistered(nodes: readonly TestNode[]): Promise<Controller> {
  const cs = running(nodes);
  await waitFor(cs, () => agreedLeader(cs) !== 0, 'one leader that every node follows');
  await Promise.all(cs.map((c) => c.registered));
  for (const c of cs) expect(c.registrationError).toBeNull();
  await waitFor(cs, () => cs.every((c) => c.state.nodes().length >= cs.length), 'every node sees every registration');
  return cs.find((c) => c.isLeader)!;
}

/** The metadata as bytes, for "identical on every node". */
function image(c: Controller): Buffer {
  return Buffer.from(encodeSnapshot(c.state));
}

/** The metadata without the applied index (a restart appends a leader no-op, which moves it). */
function content(c: Controller): string {
  return JSON.stringify({ ...c.state.image(), appliedIndex: 0 });
}

async function sameEverywhere(cs: readonly Controller[]): Promise<void> {
  await waitFor(cs, () => cs.every((c) => c.appliedIndex === cs[0].appliedIndex && image(c).equals(image(cs[0]))), 'every node applied the same metadata');
}

afterEach(async () => {
  for (const { net, nodes } of nets) {
    for (const n of nodes) await closeNode(net, n);
    for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
  }
  nets = [];
});

describe('controller group (3 voters, in-memory transport, real data dirs)', () => {
  it('elects one leader, registers every node, creates topics from any node, and every node applies the same metadata', async () => {
    const { nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const cs = running(nodes);
    const ops = new Map<number, ReplicaOp[]>();
    for (const c of cs) c.onEvent((e) => ops.set(c.nodeId, [...(ops.get(c.nodeId) ?? []), ...replicaOps(c.nodeId, e)]));
    // One create from each node: two are forwarded to the leader.
    for (const [i, c] of cs.entries()) {
      const t = await c.createTopic(`topic-${i}`, 3, 3, { 'retention.ms': '60000' });
      // Read-your-writes: the answering node has applied its own create.
      expect(t.partitions.length).toBe(3);
      expect(c.state.topic(`topic-${i}`)).toBeDefined();
    }
    await sameEverywhere(cs);
    const all = cs[0].state.partitions();
    expect(all.map((p) => p.group).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // rf 3 on 3 nodes: every node holds every partition; preferred leaders spread 3/3/3.
    const leaders = new Map<number, number>();
    for (const p of all) leaders.set(p.voters.nodes[0], (leaders.get(p.voters.nodes[0]) ?? 0) + 1);
    expect([...leaders.values()]).toEqual([3, 3, 3]);
    // The event stream tells each node to open its 9 replicas, on its shards, fresh.
    await waitFor(cs, () => cs.every((c) => (ops.get(c.nodeId) ?? []).length === 9), 'every node told to open 9 replicas');
    for (const c of cs) for (const op of ops.get(c.nodeId)!) expect(op).toMatchObject({ op: 'open', fresh: true });
  });

  it('refuses bad requests with stable codes from any node and writes nothing', async () => {
    const { nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const cs = running(nodes);
    const follower = cs.find((c) => !c.isLeader)!;
    await follower.createTopic('once', 1, 1);
    await sameEverywhere(cs);
    const before = image(cs[0]);
    await expect(follower.createTopic('big', 1, 4)).rejects.toMatchObject({ code: 'REPLICATION_FACTOR_TOO_LARGE', message: expect.stringMatching(/replication factor 4 .* 3 live nodes/) });
    await expect(follower.createTopic('once', 1, 1)).rejects.toMatchObject({ code: 'TOPIC_ALREADY_EXISTS' });
    await expect(follower.createTopic('bad name!', 1, 1)).rejects.toMatchObject({ code: 'INVALID_TOPIC_NAME' });
    await expect(follower.createTopic('p0', 0, 1)).rejects.toMatchObject({ code: 'INVALID_PARTITIONS' });
    await expect(follower.createTopic('cfg', 1, 1, { 'no.such.key': '1' })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(follower.deleteTopic('nope')).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
    await expect(follower.decommission(9)).rejects.toMatchObject({ code: 'UNKNOWN_NODE' });
    await expect(follower.recommission(9)).rejects.toMatchObject({ code: 'UNKNOWN_NODE', message: 'node 9 is not registered' });
    expect(image(cs[0]).equals(before)).toBe(true);
    // Recommissioning an active node is a success that changes nothing.
    await expect(follower.recommission(1)).resolves.toBe('active');
    expect(cs[0].state.node(1 as NodeId)!.state).toBe('active');
    // ... and the group keeps serving.
    const t = await follower.addPartitions('once', 3);
    expect(t.partitions.length).toBe(3);
  });

  it('elects another leader when the leader dies, and the old leader catches up when it comes back', async () => {
    const { net, nodes } = await startCluster();
    const leader = await electedAndRegistered(nodes);
    await leader.createTopic('before', 2, 3);
    const dead = nodes.find((n) => n.id === leader.nodeId)!;
    await closeNode(net, dead);
    const rest = running(nodes);
    await waitFor(rest, () => agreedLeader(rest) !== 0 && agreedLeader(rest) !== dead.id, 'a new leader among the survivors');
    const follower = rest.find((c) => !c.isLeader)!;
    await follower.createTopic('during', 2, 3);
    await follower.alterConfigs('before', { 'retention.ms': '1000' });
    // The dead node restarts from its disk and catches up on what it missed.
    const back = await openNode(net, dead, VOTERS);
    const cs = running(nodes);
    await waitFor(cs, () => back.state.topic('during') !== undefined && back.state.topic('before')?.configs['retention.ms'] === '1000', 'the restarted node applied what it missed');
    await sameEverywhere(cs);
  });

  it('a leader cut off from the others cannot commit; the majority elects and continues; healing converges', async () => {
    // A short request deadline: the cut-off node's request can only time out.
    const { net, nodes } = await startCluster(VOTERS, { requestTimeoutMs: 2_000 });
    const old = await electedAndRegistered(nodes);
    net.setDown(old.nodeId, true);
    const majority = running(nodes).filter((c) => c !== old);
    await waitFor(majority, () => agreedLeader(majority) !== 0, 'the majority elects a leader');
    // The cut-off node cannot get a record committed: its request fails (it never reaches a quorum).
    const stale = old.createTopic('minority', 1, 1);
    await majority[0].createTopic('majority', 1, 1);
    await expect(stale).rejects.toMatchObject({ retriable: true });
    expect(old.state.topic('minority')).toBeUndefined();
    net.setDown(old.nodeId, false);
    const cs = running(nodes);
    await waitFor(cs, () => old.state.topic('majority') !== undefined && !old.isLeader, 'the healed node follows and catches up');
    await sameEverywhere(cs);
    for (const c of cs) expect(c.state.topic('minority')).toBeUndefined();
  });

  it('keeps the metadata across a restart of every node (from disk)', async () => {
    const { net, nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const cs = running(nodes);
    await cs[1].createTopic('kept', 4, 2);
    await cs[2].createTopic('gone', 1, 1);
    await cs[0].deleteTopic('gone');
    await sameEverywhere(cs);
    const before = content(cs[0]);
    const groups = cs[0].state.topic('kept')!.partitions.map((p) => p.group);
    for (const n of nodes) await closeNode(net, n);
    for (const n of nodes) await openNode(net, n, VOTERS);
    const again = running(nodes);
    await waitFor(again, () => again.every((c) => c.state.topic('kept') !== undefined), 'the metadata is back on every node');
    await sameEverywhere(again);
    expect(again[0].state.topic('kept')!.partitions.map((p) => p.group)).toEqual(groups);
    expect(again[0].state.topic('gone')).toBeUndefined();
    // Same state (re-registration with the same uuid changes nothing).
    await Promise.all(again.map((c) => c.registered));
    await sameEverywhere(again);
    expect(content(again[0])).toEqual(before);
    // New groups continue after the old ones, never reusing the deleted topic's.
    const t = await again[2].createTopic('new', 1, 1);
    expect(t.partitions[0].group).toBe(Math.max(...groups, 5) + 1);
  });

  it('a voter back with a wiped disk (new uuid) rejoins as a fresh learner, votes again once caught up, and its old replicas are marked lost', async () => {
    const { net, nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const leader = running(nodes).find((c) => c.isLeader)!;
    await leader.createTopic('t', 2, 3);
    const victim = nodes.find((n) => n.id !== leader.nodeId)!;
    await closeNode(net, victim);
    fs.rmSync(victim.dir, { recursive: true, force: true });
    fs.mkdirSync(victim.dir);
    victim.uuid = 'uuid-wiped';
    // Without `join` a wiped voter would re-found the group with an empty log while the others remember
    // how far its old log reached; with it, the leader first forgets that replica and adds a fresh one.
    const back = await openNode(net, victim, VOTERS, { join: true });
    const cs = running(nodes);
    await waitFor(cs, () => cs.every((c) => c.state.node(victim.id)?.uuid === 'uuid-wiped'), 'every node saw the new incarnation');
    // Every node holds the promotion (membership takes effect when appended), so it survives losing the leader.
    await waitFor(cs, () => cs.every((c) => c.membership.voters.includes(victim.id)) && back.state.topic('t') !== undefined, 'the wiped node is a voter again everywhere and rebuilt the metadata');
    await sameEverywhere(cs);
    expect(leader.state.node(victim.id)!.incarnation).toBe(2);
    for (const p of leader.state.topic('t')!.partitions) expect(p.lost).toEqual([victim.id]);
    expect(back.state.topic('t')!.partitions.every((p) => p.lost.includes(victim.id))).toBe(true);
    // It votes again: with the old leader gone, the wiped node and the third one elect and commit.
    await closeNode(net, nodes.find((n) => n.id === leader.nodeId)!);
    const rest = running(nodes);
    await waitFor(rest, () => agreedLeader(rest) !== 0, 'a leader of the two survivors');
    await back.createTopic('after', 1, 1);
    await sameEverywhere(rest);
  });

  it('a node outside the voters replicates the metadata as a learner, and after a wipe is rebuilt the same way', async () => {
    const { net, nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const [fourth] = makeNodes([4]);
    nodes.push(fourth);
    const obs = await openNode(net, fourth, VOTERS);
    const cs = running(nodes);
    await obs.registered;
    expect(obs.registrationError).toBeNull();
    const t = await obs.createTopic('spread', 4, 3);
    // Four nodes, rf 3: the new node takes its share of replicas and preferred leaders.
    expect(t.partitions.filter((p) => p.voters.nodes.includes(4 as NodeId)).length).toBe(3);
    await sameEverywhere(cs);
    expect(cs[0].membership.learners).toEqual([4]);
    await closeNode(net, fourth);
    fs.rmSync(fourth.dir, { recursive: true, force: true });
    fs.mkdirSync(fourth.dir);
    fourth.uuid = 'uuid-4-wiped';
    const again = await openNode(net, fourth, VOTERS);
    await waitFor(running(nodes), () => again.state.node(4 as NodeId)?.uuid === 'uuid-4-wiped', 'the wiped learner rebuilt the metadata');
    await sameEverywhere(running(nodes));
    expect(again.state.topic('spread')!.partitions.filter((p) => p.lost.includes(4 as NodeId)).length).toBe(3);
    // A plain restart of the learner (its log on disk, its membership read back from it) catches up.
    await closeNode(net, fourth);
    await cs[0].createTopic('while-down', 1, 1);
    const third = await openNode(net, fourth, VOTERS);
    await waitFor(running(nodes), () => third.state.topic('while-down') !== undefined, 'the restarted learner caught up');
    expect(third.membership).toEqual({ voters: [1, 2, 3], learners: [4] });
    await sameEverywhere(running(nodes));
  });

  it("stops re-sending a request once its caller's deadline has passed: a decommission given up on never lands later", async () => {
    // Chaos finding E: the admin call timed out while the controller was unreachable, the caller went on
    // (recommissioned), and the request, still being re-sent by the node that took it, landed afterwards.
    const { net, nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const cs = running(nodes);
    const leader = cs.find((c) => c.isLeader)!;
    const [asker, other] = cs.filter((c) => c !== leader);
    const target = nodes.find((n) => n.controller === other)!.id;
    const cut = nodes.filter((n) => n.controller !== asker).map((n) => n.id);
    for (const id of cut) net.setDown(id, true); // the asker sees no leader: it waits and re-sends
    const call = asker.decommission(target, Date.now() + 300);
    const settled = call.then(
      () => 'applied',
      (err: unknown) => (err as { code?: string }).code ?? 'error',
    );
    await new Promise((r) => setTimeout(r, 800));
    for (const id of cut) net.setDown(id, false);
    // Settles by itself (bounded by the controller's own request timeout otherwise, which this must not wait for).
    const outcome = await settled;
    expect(outcome).not.toBe('applied');
    await waitFor(cs, () => cs.some((c) => c.isLeader), 'a leader after the heal');
    // Several election rounds later nobody has decommissioned the node.
    await leader.createTopic('after-heal', 1, 1).catch(() => cs.find((c) => c.isLeader)!.createTopic('after-heal', 1, 1));
    await sameEverywhere(cs);
    for (const c of cs) expect(c.state.node(target)!.state).toBe('active');
  });
});

describe('joining', () => {
  it('a joining node that stops before it was admitted is still joining when it restarts', async () => {
    const { net, nodes } = await startCluster();
    await electedAndRegistered(nodes);
    const [fourth] = makeNodes([4]);
    nodes.push(fourth);
    net.setDown(4 as NodeId, true);
    const first = await openNode(net, fourth, VOTERS);
    expect(first.state.nodes()).toEqual([]);
    await closeNode(net, fourth);
    net.setDown(4 as NodeId, false);
    const again = await openNode(net, fourth, VOTERS);
    await again.registered;
    expect(again.registrationError).toBeNull();
    await waitFor(running(nodes), () => again.state.nodes().length === 4, 'the joined node has the metadata');
    expect(running(nodes)[0].membership.learners).toEqual([4]);
  });
});

describe('snapshots and compaction', () => {
  it('compacts the log; a node behind the log start gets the snapshot; everything survives a restart', async () => {
    const net = new MemoryNet();
    const nodes = makeNodes(VOTERS);
    nets.push({ net, nodes });
    const opts = { snapshotIntervalEntries: 6 };
    for (const n of nodes) await openNode(net, n, VOTERS, opts);
    await electedAndRegistered(nodes);
    const late = nodes.find((n) => !n.controller!.isLeader)!;
    await waitFor(running(nodes), () => late.controller!.appliedIndex === running(nodes).find((c) => c.isLeader)!.appliedIndex, 'the late node applied everything so far');
    const lateLast = late.controller!.appliedIndex;
    await closeNode(net, late);
    const live = running(nodes);
    for (let i = 0; i < 15; i++) await live[i % 2].createTopic(`c-${i}`, 2, 2);
    const images = (n: TestNode) => fs.readdirSync(path.join(n.dir, '__cluster', 'metadata')).filter((f) => f.endsWith('.snapshot'));
    for (const n of nodes.filter((x) => x !== late)) expect(images(n).length).toBe(1);
    const leaderDir = nodes.find((n) => n.controller?.isLeader)!;
    const snapIndex = Number(/metadata-(\d+)\.snapshot/.exec(images(leaderDir)[0])![1]);
    expect(snapIndex).toBeGreaterThan(lateLast + 1);
    // The late node's log ends before the leader's log start: it can only catch up from the snapshot.
    const back = await openNode(net, late, VOTERS, opts);
    await waitFor(running(nodes), () => back.state.topics().length === 15, 'the late node caught up from a snapshot');
    await sameEverywhere(running(nodes));
    expect(images(late).length).toBe(1);
    const before = content(back);
    for (const n of nodes) await closeNode(net, n);
    for (const n of nodes) await openNode(net, n, VOTERS, opts);
    const again = running(nodes);
    await waitFor(again, () => again.every((c) => c.state.topics().length === 15), 'the metadata is back from snapshot + log');
    await sameEverywhere(again);
    expect(content(again[0])).toEqual(before);
    expect((await again[2].createTopic('after', 1, 1)).partitions[0].group).toBe(31);
  });
});

describe('controller group of one voter (a single-node broker)', () => {
  it('leads at once, imports an old topics.json once, and keeps everything across restarts', async () => {
    const net = new MemoryNet();
    const [node] = makeNodes([1]);
    nets.push({ net, nodes: [node] });
    // A data dir from before the controller: topics.json with two topics.
    const table = TopicTable.load(node.dir);
    table.update('orders', { name: 'orders', topicId: '11111111-1111-4111-8111-111111111111', replicationFactor: 1, configs: { 'retention.ms': '5000' }, placement: [0, 1, 3], createdMs: 42 });
    table.update('__consumer_offsets', { name: '__consumer_offsets', topicId: '22222222-2222-4222-8222-222222222222', replicationFactor: 1, configs: {}, placement: [1], createdMs: 43 });
    const c = await openNode(net, node, [1 as NodeId]);
    await waitFor([c], () => c.state.imported, 'the topic table imported');
    const orders = c.state.topic('orders')!;
    expect(orders).toMatchObject({ topicId: '11111111-1111-4111-8111-111111111111', configs: { 'retention.ms': '5000' }, createdMs: 42 });
    // Shard 3 is beyond this node's 2 shards: it folds back to 3 % 2.
    expect(orders.partitions.map((p) => [p.voters.nodes, p.voters.shards])).toEqual([
      [[1], [0]],
      [[1], [1]],
      [[1], [1]],
    ]);
    expect(c.state.clusterId).toBe(table.clusterId);
    await c.createTopic('fresh', 2, 1);
    await expect(c.createTopic('two', 1, 2)).rejects.toMatchObject({ code: 'REPLICATION_FACTOR_TOO_LARGE' });
    const before = content(c);
    await closeNode(net, node);
    const again = await openNode(net, node, [1 as NodeId]);
    await waitFor([again], () => again.state.topic('fresh') !== undefined, 'the metadata is back after a restart');
    await again.registered;
    // Not imported twice, nothing lost or duplicated.
    expect(content(again)).toEqual(before);
    expect(fs.existsSync(path.join(node.dir, '__cluster', 'metadata', 'snapshot.json'))).toBe(true);
  });

  it('refuses to start with voters other than the ones its log was founded with', async () => {
    const net = new MemoryNet();
    const [node] = makeNodes([1]);
    nets.push({ net, nodes: [node] });
    await openNode(net, node, [1 as NodeId]);
    await closeNode(net, node);
    await expect(openNode(net, node, [1, 2, 3] as NodeId[])).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/founded with voters \[1\]/) });
    await expect(openNode(net, node, [1, 2] as NodeId[])).rejects.toMatchObject({ code: 'INVALID_CONFIG', message: expect.stringMatching(/1, 3 or 5/) });
  });
});
