/**
 * Goal: a Broker in cluster mode hosts the replicas it is given and replicates them over the real Raft
 * transport: a leader is elected, acks=all commits on a majority, a follower serves the same bytes up to
 * its high watermark, and a follower (or a node without the partition) answers NOT_LEADER naming the
 * leader it knows. Method: three real Brokers in this process (one shard each, own data dir), each with
 * its own GrpcRaftTransport served by its own gRPC server on 127.0.0.1 / .2 / .3, and one RF-3
 * partition opened on all three; waits are on the brokers' own status (bounded in time), never sleeps.
 */
import { afterEach, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Broker, NotLeaderError, type ReplicaSpec, type ReplicaStatus } from '../../src/broker/index.js';
import { SluiceError } from '../../src/errors.js';
import { decodeStoredBatches, encodeBatch } from '../../src/batch/index.js';
import { createMetrics, type SluiceMetrics } from '../../src/metrics/index.js';
import { REPLICA_ISR_LAG_OFFSETS_MAX } from '../../src/constants.js';
import { sampleValue as scrape } from '../metrics/exposition.js';
import type { NodeId } from '../../src/model/index.js';
import { startNode, waitFor, type TestNode } from '../cluster/transport-helpers.js';

interface ClusterNode {
  id: number;
  dir: string;
  net: TestNode;
  broker: Broker | null;
  metrics?: SluiceMetrics;
}

let nodes: ClusterNode[] = [];
const addresses = new Map<number, string>();

afterEach(async () => {
  for (const n of nodes) {
    await n.broker?.close().catch(() => {});
    n.net.kill();
    n.metrics?.close();
    fs.rmSync(n.dir, { recursive: true, force: true });
  }
  nodes = [];
  addresses.clear();
  retentionCheckMs = undefined;
});

let retentionCheckMs: number | undefined;

async function openBroker(n: ClusterNode): Promise<Broker> {
  n.broker = await Broker.open({ dataDir: n.dir, shards: 1, nodeId: n.id, statsIntervalMs: 100, retentionCheckMs, probe: n.metrics?.probe, cluster: { transport: n.net.transport } });
  return n.broker;
}

async function startCluster(size: number, withMetrics = false): Promise<ClusterNode[]> {
  for (let id = 1; id <= size; id++) {
    const metrics = withMetrics ? createMetrics({ processMetrics: false }) : undefined;
    const n: ClusterNode = { id, dir: fs.mkdtempSync(path.join(os.tmpdir(), `sluice-replicas-${id}-`)), net: await startNode(id, addresses), broker: null, metrics };
    nodes.push(n);
    await openBroker(n);
  }
  return nodes;
}

function spec(over: Partial<ReplicaSpec> = {}): ReplicaSpec {
  return {
    topic: 'orders',
    topicId: TOPIC_ID,
    partition: 0,
    partitionCount: 2,
    group: 7,
    shard: 0,
    voters: [1, 2, 3] as NodeId[],
    learners: [],
    configs: {},
    fresh: true,
    ...over,
  };
}
const TOPIC_ID = crypto.randomUUID();

function statusOf(n: ClusterNode, group = 7): ReplicaStatus | undefined {
  return n.broker?.replicaStatus().find((s) => s.group === group);
}

/** Waits until one node leads `group` and every other live node knows it; returns the leader. */
async function waitForLeader(live: ClusterNode[], group = 7): Promise<ClusterNode> {
  let leader: ClusterNode | undefined;
  await waitFor(`a leader of group ${group} known to all`, () => {
    leader = live.find((n) => statusOf(n, group)?.role === 'leader');
    return leader !== undefined && live.every((n) => statusOf(n, group)?.leader === leader!.id);
  });
  return leader!;
}

function records(from: number, count: number): Array<{ key: Buffer; value: Buffer }> {
  return Array.from({ length: count }, (_, i) => ({ key: Buffer.from(`k${from + i}`), value: Buffer.from(`value-${from + i}`) }));
}

async function rejection(p: Promise<unknown>): Promise<SluiceError> {
  try {
    await p;
  } catch (err) {
    return err as SluiceError;
  }
  throw new Error('expected a rejection');
}

describe('Broker cluster mode: replicas over the Raft transport', () => {
  it('elects a leader, commits acks=all on a majority, serves the same bytes on a follower, and refuses writes on followers', async () => {
    await startCluster(3);
    const leaderChanges: ReplicaStatus[] = [];
    nodes[0].broker!.onLeaderChange((s) => leaderChanges.push(s));
    await Promise.all(nodes.map((n) => n.broker!.openReplicas([spec()])));
    // Idempotent per group: a second open of the same group changes nothing.
    await nodes[0].broker!.openReplicas([spec({ fresh: true })]);
    const leader = await waitForLeader(nodes);
    const followers = nodes.filter((n) => n !== leader);
    expect(leaderChanges.some((s) => s.leader === leader.id && s.epoch > 0)).toBe(true);

    const lb = leader.broker!;
    const r1 = await lb.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(0, 10) });
    const r2 = await lb.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(10, 10) });
    expect(r2.lastOffset - r1.baseOffset + 1).toBeGreaterThanOrEqual(20);
    // acks=all: committed, so the leader's high watermark is past it right away.
    expect((await lb.listOffsets('orders', 0, { kind: 'latest' })).offset).toBe(r2.lastOffset + 1);

    // Each follower reaches the same high watermark (the leader's next heartbeat carries the commit).
    for (const f of followers) {
      await waitFor(`node ${f.id} high watermark`, () => (statusOf(f)?.highWatermark ?? 0) >= r2.lastOffset + 1);
      // ListOffsets(latest) is the leader's to answer (a follower's high watermark may lag one shown).
      expect((await rejection(f.broker!.listOffsets('orders', 0, { kind: 'latest' }))).code).toBe('NOT_LEADER');
    }
    const fromLeader = await lb.fetch({ topic: 'orders', partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMs: 0 });
    for (const f of followers) {
      const got = await f.broker!.fetch({ topic: 'orders', partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMs: 0 });
      expect(got.nextOffset).toBe(r2.lastOffset + 1);
      expect(Buffer.from(got.batches).equals(Buffer.from(fromLeader.batches))).toBe(true);
    }
    expect(fromLeader.batches.length).toBeGreaterThan(0);

    // A follower refuses a write, naming the leader and its epoch.
    const e = await rejection(followers[0].broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(20, 1) }));
    expect(e).toBeInstanceOf(NotLeaderError);
    expect(e.code).toBe('NOT_LEADER');
    expect((e as NotLeaderError).leaderId).toBe(leader.id);
    expect((e as NotLeaderError).epoch).toBe(statusOf(leader)!.epoch);
    expect(e.message).toContain(`node ${leader.id}`);
    // A partition of a known topic that has no replica here: NOT_LEADER, leader unknown.
    const e1 = await rejection(lb.produce({ topic: 'orders', partition: 1, acks: 'all', records: records(0, 1) }));
    expect(e1).toBeInstanceOf(NotLeaderError);
    expect((e1 as NotLeaderError).leaderId).toBe(0);
    expect((await rejection(lb.fetch({ topic: 'orders', partition: 1, offset: 0, maxBytes: 100, maxWaitMs: 0 }))).code).toBe('NOT_LEADER');

    // The leader reports every voter in sync; describe shows the leader and the replicas.
    await waitFor('all voters in sync', () => statusOf(leader)?.inSync.length === 3);
    const d = await followers[0].broker!.describeTopic('orders');
    expect(d.partitions[0]).toMatchObject({ leader: leader.id, replicas: [1, 2, 3], highWatermark: r2.lastOffset + 1 });
    expect(d.partitions[1]).toMatchObject({ leader: 0, replicas: [] });
  });

  it('refuses bad specs (opening nothing) and topic admin in cluster mode; a single-node broker refuses replicas', async () => {
    await startCluster(1);
    const b = nodes[0].broker!;
    const bad: Array<[Partial<ReplicaSpec>, RegExp]> = [
      [{ voters: [2, 3] as NodeId[] }, /neither a voter nor a learner/],
      [{ partition: 2 }, /partition must be/],
      [{ group: 0 }, /group must be a positive integer/],
      [{ voters: [] }, /voters must be/],
      [{ topic: '../x' }, /./],
      [{ voters: [1, 1] as NodeId[] }, /listed twice/],
      [{ configs: { 'retention.ms': 'soon' } }, /retention.ms/],
    ];
    for (const [over, msg] of bad) {
      const e = await rejection(b.openReplicas([spec({ voters: [1] as NodeId[] }), spec({ group: 8, partition: 1, ...over })]));
      expect(e.code, JSON.stringify(over)).toMatch(/INVALID_REQUEST|INVALID_TOPIC_NAME|INVALID_PARTITIONS|INVALID_CONFIG/);
      expect(e.message).toMatch(msg);
      expect(b.replicaStatus()).toEqual([]);
    }
    // Contradictions: one partition for two groups, or one topic name under two ids, in one request.
    for (const second of [spec({ group: 8, voters: [1] as NodeId[] }), spec({ group: 8, partition: 1, topicId: crypto.randomUUID(), voters: [1] as NodeId[] })]) {
      const e = await rejection(b.openReplicas([spec({ voters: [1] as NodeId[] }), second]));
      expect(e.code).toBe('INVALID_REQUEST');
      expect(b.replicaStatus()).toEqual([]);
    }
    expect((await rejection(b.createTopic('t', 1, 1, {}))).code).toBe('INVALID_REQUEST');
    // A one-voter group here elects itself at open.
    await b.openReplicas([spec({ voters: [1] as NodeId[] })]);
    await waitFor('the sole voter leads', () => statusOf(nodes[0])?.role === 'leader');
    const r = await b.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(0, 3) });
    expect(r.lastOffset).toBeGreaterThanOrEqual(3);
    // ... and against what is held: the same partition under another group, the topic under another id.
    expect((await rejection(b.openReplicas([spec({ group: 9, voters: [1] as NodeId[] })]))).message).toMatch(/held here .* by group 7/);
    expect((await rejection(b.openReplicas([spec({ group: 9, partition: 1, topicId: crypto.randomUUID(), voters: [1] as NodeId[] })]))).message).toMatch(/topic id/);
    expect(b.replicaStatus().map((s) => s.group)).toEqual([7]);
    await b.closeReplicas([7, 999], true);
    expect(b.replicaStatus()).toEqual([]);
    expect((await rejection(b.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(0, 1) }))).code).toBe('UNKNOWN_TOPIC');
    expect(fs.existsSync(path.join(nodes[0].dir, 'orders-0'))).toBe(false);

    const single = await Broker.open({ dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-replicas-single-')), shards: 1 });
    try {
      expect((await rejection(single.openReplicas([spec()]))).code).toBe('INVALID_REQUEST');
    } finally {
      await single.close();
      fs.rmSync(single.dataDir, { recursive: true, force: true });
    }
  });

  it('loses no acknowledged record when the leader goes under a running producer; the old leader rejoins and catches up byte for byte', async () => {
    await startCluster(3);
    await Promise.all(nodes.map((n) => n.broker!.openReplicas([spec()])));
    const first = await waitForLeader(nodes);
    const producer = startProducer();
    await producer.until(30);
    // The leader's node goes away (its broker closes; peers' messages to it are dropped from now on).
    await first.broker!.close();
    first.broker = null;
    const survivors = nodes.filter((n) => n !== first);
    const second = await waitForLeader(survivors);
    expect(second).not.toBe(first);
    expect(statusOf(second)!.epoch).toBeGreaterThan(0);
    await producer.until(producer.acked.size + 30);
    // The old leader comes back with its data (fresh = false) and catches up from the new leader.
    await openBroker(first);
    await first.broker!.openReplicas([spec({ fresh: false })]);
    await producer.until(producer.acked.size + 20);
    await producer.stop();
    expect(producer.errors.filter((e) => !/NOT_LEADER|UNAVAILABLE|SHUTTING_DOWN|TIMEOUT/.test(e))).toEqual([]);
    const leader = await waitForLeader(nodes);
    const hw = (await leader.broker!.listOffsets('orders', 0, { kind: 'latest' })).offset;
    for (const n of nodes) await waitFor(`node ${n.id} catches up to ${hw}`, () => (statusOf(n)?.highWatermark ?? 0) >= hw);
    const logs = await Promise.all(nodes.map((n) => readLog(n.broker!, hw)));
    for (const log of logs.slice(1)) expect(log.equals(logs[0])).toBe(true);
    // Every acknowledged record is in the log at the offset it was acknowledged with.
    const values = new Map<number, string>();
    for (const b of decodeStoredBatches(logs[0])) for (const r of b.records) if (r.value !== null) values.set(r.offset, Buffer.from(r.value).toString());
    for (const [offset, value] of producer.acked) expect(values.get(offset), `offset ${offset}`).toBe(value);
    expect(producer.acked.size).toBeGreaterThanOrEqual(80);
  }, 90_000);
});

describe('leadership transfer', () => {
  it('hands leadership to the voter asked for; a follower or a non-voter target is refused', async () => {
    await startCluster(3);
    await Promise.all(nodes.map((n) => n.broker!.openReplicas([spec()])));
    const leader = await waitForLeader(nodes);
    const target = nodes.find((n) => n !== leader)!;
    await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(0, 5) });
    expect((await rejection(target.broker!.transferLeadership(7, leader.id as NodeId))).code).toBe('NOT_LEADER');
    expect((await rejection(leader.broker!.transferLeadership(7, 9 as NodeId))).code).toBe('INVALID_REQUEST');
    expect((await rejection(leader.broker!.transferLeadership(8, target.id as NodeId))).code).toBe('UNKNOWN_PARTITION');
    await leader.broker!.transferLeadership(7, target.id as NodeId);
    await waitFor(`node ${target.id} leads, known to all`, () => nodes.every((n) => statusOf(n)?.leader === target.id) && statusOf(target)?.role === 'leader');
    const r = await target.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(5, 5) });
    for (const n of nodes) await waitFor(`node ${n.id} has the write`, () => (statusOf(n)?.highWatermark ?? 0) > r.lastOffset);
  });
});

describe('a replica\'s shard worker dies', () => {
  it('is reopened by the watchdog restart with its group and members, and keeps replicating', async () => {
    await startCluster(3);
    await Promise.all(nodes.map((n) => n.broker!.openReplicas([spec()])));
    const leader = await waitForLeader(nodes);
    const follower = nodes.find((n) => n !== leader)!;
    const r1 = await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(0, 5) });
    await waitFor('the follower has the first write', () => (statusOf(follower)?.highWatermark ?? 0) > r1.lastOffset);
    follower.broker!.debugCrashShard(0);
    await waitFor('the follower\'s shard restarted', () => follower.broker!.shardRestarts()[0] === 1);
    const r2 = await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(5, 5) });
    await waitFor('the restarted follower replicates again', () => (statusOf(follower)?.highWatermark ?? 0) > r2.lastOffset);
    expect(statusOf(follower)).toMatchObject({ group: 7, role: 'follower', leader: leader.id });
    // The leader's own worker dies: its replica comes back as a member of the group, and a leader
    // (it, or another) takes writes again.
    leader.broker!.debugCrashShard(0);
    await waitFor('the leader\'s shard restarted', () => leader.broker!.shardRestarts()[0] === 1);
    expect(statusOf(leader)?.role).not.toBe('leader');
    await waitForLeader(nodes);
    const r3 = await produceToLeader(records(10, 5));
    for (const n of nodes) await waitFor(`node ${n.id} has the last write`, () => (statusOf(n)?.highWatermark ?? 0) > r3.lastOffset);
  }, 60_000);
});

describe('a follower behind the leader\'s log start', () => {
  it('gets a snapshot (the log start) and then the log, and ends byte-for-byte equal from there', async () => {
    retentionCheckMs = 100;
    await startCluster(3);
    const configs = { 'segment.bytes': String(1 << 20), 'retention.bytes': String(1 << 20) };
    await Promise.all(nodes.map((n) => n.broker!.openReplicas([spec({ configs })])));
    const leader = await waitForLeader(nodes);
    const behind = nodes.find((n) => n !== leader)!;
    const value = Buffer.alloc(1000, 7);
    const batch = encodeBatch(Array.from({ length: 500 }, () => ({ key: null, value })));
    await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', batches: batch });
    await waitFor('the follower has the first batch', () => (statusOf(behind)?.highWatermark ?? 0) > 500);
    const oldEnd = statusOf(behind)!.logEndOffset;
    await behind.broker!.close();
    behind.broker = null;
    // About 8 MiB more, in 1 MiB segments under a 1 MiB retention: the leader's log start moves far past the follower's end.
    for (let i = 0; i < 16; i++) await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', batches: batch });
    await waitFor('retention moves the leader\'s log start past the follower', () => (statusOf(leader)?.logStartOffset ?? 0) > oldEnd, 30_000);
    await openBroker(behind);
    await behind.broker!.openReplicas([spec({ configs, fresh: false })]);
    const hw = (await leader.broker!.listOffsets('orders', 0, { kind: 'latest' })).offset;
    await waitFor('the follower catches up', () => (statusOf(behind)?.highWatermark ?? 0) >= hw, 30_000);
    // Its log now starts past where its old log ended: it took the leader's snapshot, not the log from its end.
    const start = (await behind.broker!.listOffsets('orders', 0, { kind: 'earliest' })).offset;
    expect(start).toBeGreaterThan(oldEnd);
    const leaderStart = (await leader.broker!.listOffsets('orders', 0, { kind: 'earliest' })).offset;
    const from = Math.max(start, leaderStart);
    const [a, b] = await Promise.all([readLog(leader.broker!, hw, from), readLog(behind.broker!, hw, from)]);
    expect(a.length).toBeGreaterThan(0);
    expect(b.equals(a)).toBe(true);
    // And it keeps replicating.
    const r = await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: records(0, 5) });
    await waitFor('the follower takes new writes', () => (statusOf(behind)?.highWatermark ?? 0) > r.lastOffset);
  }, 90_000);
});

describe('replication metrics', () => {
  it('show leader, replicas and in-sync voters, count leader changes, and report a lagging voter as under-replicated until it catches up', async () => {
    await startCluster(3, true);
    await Promise.all(nodes.map((n) => n.broker!.openReplicas([spec()])));
    const leader = await waitForLeader(nodes);
    const labels = { topic: 'orders', partition: '0' };
    await waitFor('all voters in sync', () => statusOf(leader)?.inSync.length === 3);
    const m = async (n: ClusterNode, name: string, l: Record<string, string> = labels): Promise<number | undefined> => scrape(await n.metrics!.render(), name, l);
    await waitForAsync('the leader reports 3 of 3 in sync', async () => (await m(leader, 'sluice_partition_in_sync_replicas')) === 3);
    expect(await m(leader, 'sluice_partition_replicas')).toBe(3);
    expect(await m(leader, 'sluice_under_replicated_partitions', {})).toBe(0);
    for (const n of nodes) {
      await waitForAsync(`node ${n.id} knows the leader`, async () => (await m(n, 'sluice_partition_leader')) === leader.id);
      expect(await m(n, 'sluice_leader_changes_total')).toBeGreaterThanOrEqual(1);
    }
    // A follower goes away and the leader writes more than the in-sync lag bound past it.
    const gone = nodes.find((n) => n !== leader)!;
    await gone.broker!.close();
    gone.broker = null;
    const batch = encodeBatch(records(0, 1000));
    for (let i = 0; i * 1000 <= REPLICA_ISR_LAG_OFFSETS_MAX; i++) await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', batches: batch });
    await waitForAsync('the leader reports the partition under-replicated', async () => (await m(leader, 'sluice_under_replicated_partitions', {})) === 1);
    expect(await m(leader, 'sluice_partition_in_sync_replicas')).toBe(2);
    // It comes back and catches up.
    await openBroker(gone);
    await gone.broker!.openReplicas([spec({ fresh: false })]);
    await waitForAsync('the partition is fully replicated again', async () => (await m(leader, 'sluice_under_replicated_partitions', {})) === 0);
    expect(await m(leader, 'sluice_partition_in_sync_replicas')).toBe(3);
  });
});

/** An acks=all produce to whichever node leads, retried (bounded) while leadership settles. */
async function produceToLeader(recs: Array<{ key: Buffer; value: Buffer }>): Promise<{ lastOffset: number }> {
  const deadline = performance.now() + 20_000;
  for (;;) {
    const leader = nodes.find((n) => statusOf(n)?.role === 'leader');
    try {
      if (leader !== undefined) return await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: recs });
    } catch (err) {
      if (performance.now() > deadline || !(err as SluiceError).retriable) throw err;
    }
    if (performance.now() > deadline) throw new Error('no leader took the write');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `waitFor` for an async condition, bounded in time. */
async function waitForAsync(what: string, cond: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Committed batches of partition orders/0 on `b` below `hw`, as one buffer. */
async function readLog(b: Broker, hw: number, from = 0): Promise<Buffer> {
  const parts: Buffer[] = [];
  let offset = from;
  for (let i = 0; offset < hw && i < 10_000; i++) {
    const r = await b.fetch({ topic: 'orders', partition: 0, offset, maxBytes: 1 << 20, maxWaitMs: 0 });
    if (r.nextOffset <= offset) break;
    parts.push(Buffer.from(r.batches));
    offset = r.nextOffset;
  }
  expect(offset).toBe(hw);
  return Buffer.concat(parts);
}

/**
 * A producer that keeps writing one record per acks=all request to whichever node leads, retrying
 * (with a short backoff, bounded in time) on NOT_LEADER and UNAVAILABLE, and records what was acked.
 */
function startProducer(): { acked: Map<number, string>; errors: string[]; until(n: number): Promise<void>; stop(): Promise<void> } {
  const acked = new Map<number, string>();
  const errors: string[] = [];
  let stopped = false;
  const loop = (async () => {
    const deadline = performance.now() + 60_000;
    for (let i = 0; !stopped && performance.now() < deadline; ) {
      const leader = nodes.find((n) => n.broker !== null && statusOf(n)?.role === 'leader');
      if (leader === undefined) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      const value = `value-${i}`;
      try {
        const r = await leader.broker!.produce({ topic: 'orders', partition: 0, acks: 'all', records: [{ key: null, value: Buffer.from(value) }] });
        acked.set(r.baseOffset, value);
        i++;
      } catch (err) {
        errors.push(`${(err as SluiceError).code}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    acked,
    errors,
    until: (n) => waitFor(`${n} acknowledged records`, () => acked.size >= n, 30_000),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
