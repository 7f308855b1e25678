/**
 * Goal: the cluster layer of `startBroker` (src/server/cluster-node.ts, cluster-api.ts) on its own:
 * the controller starts in cluster mode and registers the node, admin requests on any node go through
 * the controller, metadata names leaders and nodes, and partition requests reach the leader (forwarded
 * once; a forwarded request is answered locally or refused with NOT_LEADER naming the leader).
 * Method: three in-process brokers on 127.0.0.1/.2/.3 with real gossip, Raft transport, controller and
 * gRPC, over a fake replica core (test/server/fake-replica-core.ts: no replication, the first voter
 * leads) so the layer is tested apart from the Broker's replicas; the process tests in test/cluster run
 * the real thing. Waits poll observables, bounded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Admin } from '../../src/client/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { partitionForKey } from '../../src/model/murmur2.js';
import { FastBrokerClient, readErrorInfo } from '../../src/rpc/index.js';
import { FORWARDED_METADATA_KEY } from '../../src/rpc/forward.js';
import type { ProduceRequest, ProduceResponse, FetchResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { Acks } from '../../src/rpc/gen/sluice/v1/records.js';
import type { NodeId } from '../../src/model/index.js';
import { isSluiceError } from '../../src/errors.js';
import { FakeReplicaCore } from './fake-replica-core.js';

const WAIT_MS = 20_000;
const POLL_MS = 25;
const nodes: RunningBroker[] = [];
const cores = new Map<number, FakeReplicaCore>();
const dirs: string[] = [];

async function waitFor(what: string, pred: () => Promise<boolean> | boolean): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < WAIT_MS / POLL_MS + 1 && performance.now() - t0 < WAIT_MS; i++) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${WAIT_MS} ms waiting for: ${what}`);
}

async function start(id: number, seeds: string[]): Promise<RunningBroker> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-cserve-${id}-`));
  dirs.push(dir);
  const core = new FakeReplicaCore(id as NodeId);
  cores.set(id, core);
  const b = await startBroker({
    dataDir: dir,
    grpcAddress: `127.0.0.${id}:0`,
    httpAddress: `127.0.0.${id}:0`,
    nodeId: id,
    shards: 2,
    openBroker: async () => core,
    cluster: { seeds, controllerVoters: [1, 2, 3] },
    drainMs: 1_000,
  });
  nodes.push(b);
  return b;
}

async function readyz(b: RunningBroker): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${b.httpAddress}/readyz`);
  return { status: res.status, body: await res.text() };
}

function client(b: RunningBroker): InstanceType<typeof FastBrokerClient> {
  return new FastBrokerClient(b.grpcAddress, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

function produce(b: RunningBroker, req: Partial<ProduceRequest>, md = new grpc.Metadata()): Promise<ProduceResponse> {
  const c = client(b);
  const full: ProduceRequest = { topic: 't', records: [], recordBatch: Buffer.alloc(0), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0, ...req };
  return new Promise<ProduceResponse>((resolve, reject) => c.produce(full, md, { deadline: Date.now() + 10_000 }, (err, res) => (c.close(), err ? reject(err) : resolve(res!))));
}

function batch(value: string, key: string | null = null): Buffer {
  return encodeBatch([{ key: key === null ? null : Buffer.from(key), value: Buffer.from(value), headers: [], timestampMs: Date.now() }]);
}

const byId = (id: number): RunningBroker => nodes.find((n) => n.clusterNode?.controller.nodeId === id)!;

beforeAll(async () => {
  const first = await start(1, []);
  await start(2, [first.grpcAddress]);
  await start(3, [first.grpcAddress]);
  await waitFor('every node ready', async () => (await Promise.all(nodes.map(readyz))).every((r) => r.status === 200));
  // Gossip spreads membership in rounds: placement counts the nodes the controller leader sees alive.
  await waitFor('every node sees three alive', () => nodes.every((n) => n.membership!.members().filter((m) => m.state === 'alive').length === 3));
}, 60_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.close()));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('sluice serve in cluster mode (fake replica core)', () => {
  it('readiness names what is missing, and turns ready once the controller leads and the node is registered', async () => {
    for (const n of nodes) expect(n.clusterNode?.notReady()).toBeNull();
    const leader = nodes[0].clusterNode!.controller.leaderId;
    expect([1, 2, 3]).toContain(leader);
    for (const n of nodes) expect(n.clusterNode!.controller.state.nodes().map((x) => x.id).sort()).toEqual([1, 2, 3]);
  });

  it('a node whose controller voters are not up is not ready, and /readyz says its empty controller log waits for them', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cserve-lone-'));
    dirs.push(dir);
    const lone = await startBroker({
      dataDir: dir,
      grpcAddress: '127.0.0.7:0',
      httpAddress: '127.0.0.7:0',
      nodeId: 7,
      shards: 1,
      openBroker: async () => new FakeReplicaCore(7 as NodeId),
      cluster: { seeds: [], controllerVoters: [7, 8, 9] },
      drainMs: 1_000,
    });
    try {
      // It founds its own gossip cluster at once; its controller log is empty, so it neither founds nor
      // joins the controller group before a majority of voters 7, 8, 9 has said what their logs hold.
      await waitFor('the lone node has joined its own cluster', () => lone.membership?.self !== undefined);
      const r = await readyz(lone);
      expect(r.status).toBe(503);
      expect(r.body).toContain('controller log empty: asking the other controller voters (8, 9) whether the cluster already has metadata');
    } finally {
      await lone.close();
    }
  });

  it('creates a topic from any node through the controller; every node describes it with leaders, epochs and replicas', async () => {
    const admin = new Admin({ brokers: byId(3).grpcAddress });
    try {
      const t = await admin.createTopic('t', { partitions: 3, replicationFactor: 1 });
      expect(t.partitions.map((p) => p.leader).every((l) => l > 0)).toBe(true);
      const r3 = await admin.createTopic('r3', { partitions: 2, replicationFactor: 3 });
      expect(r3.partitions.every((p) => p.replicas.length === 3 && p.leaderEpoch === 1)).toBe(true);
      // In-sync replicas come from each partition's leader (asked by the describing node).
      expect(r3.partitions.every((p) => [...(p.inSyncReplicas ?? [])].sort().join() === '1,2,3')).toBe(true);
      // The replicas were opened by the nodes they were placed on (all three for RF 3).
      for (const core of cores.values()) expect([...core.replicas.values()].filter((r) => r.spec.topic === 'r3')).toHaveLength(2);
      const leaders = new Set(t.partitions.map((p) => p.leader));
      expect(leaders.size).toBe(3); // placement spreads 3 partitions of RF 1 over the 3 nodes
      for (const n of nodes) {
        const a = new Admin({ brokers: n.grpcAddress });
        try {
          expect((await a.listTopics()).map((x) => x.name).filter((n) => !n.startsWith('__')).sort()).toEqual(['r3', 't']);
          const m = await a.metadata();
          expect(m.brokers.map((b) => [b.nodeId, b.alive])).toEqual([[1, true], [2, true], [3, true]]);
          expect(m.controllerId).toBeGreaterThan(0);
        } finally {
          a.close();
        }
      }
    } finally {
      admin.close();
    }
  });

  it('refuses a replication factor above the live nodes, and a second create, with clear errors', async () => {
    const admin = new Admin({ brokers: byId(2).grpcAddress });
    try {
      const e1 = await admin.createTopic('big', { partitions: 1, replicationFactor: 4 }).catch((e: unknown) => e);
      expect(isSluiceError(e1, 'REPLICATION_FACTOR_TOO_LARGE')).toBe(true);
      expect(String((e1 as Error).message)).toMatch(/replication factor 4 is larger than the 3 live nodes/);
      const e2 = await admin.createTopic('t', { partitions: 1 }).catch((e: unknown) => e);
      expect(isSluiceError(e2, 'TOPIC_ALREADY_EXISTS')).toBe(true);
      expect((await admin.listTopics()).map((x) => x.name)).not.toContain('big');
    } finally {
      admin.close();
    }
  });

  it('forwards a produce and a fetch from a node that does not lead the partition to its leader, once', async () => {
    const t = byId(1).clusterNode!.controller.state.topic('t')!;
    for (const p of t.partitions) {
      const leader = p.voters.nodes[0];
      const other = nodes.find((n) => n.clusterNode!.controller.nodeId !== leader)!;
      const before = cores.get(leader)!.produced.length;
      const res = await produce(other, { partition: p.partition, recordBatch: batch(`v${p.partition}`) });
      expect(res.partition).toBe(p.partition);
      expect(cores.get(leader)!.produced.length).toBe(before + 1);
      const c = client(other);
      const fetched = await new Promise<FetchResponse>((resolve, reject) =>
        c.fetch({ topic: 't', partition: p.partition, offset: 0n, maxBytes: 0, maxWaitMs: 0, raw: false }, (err, r) => (c.close(), err ? reject(err) : resolve(r!))),
      );
      expect(fetched.records.map((r) => Buffer.from(r.value!).toString())).toContain(`v${p.partition}`);
    }
  });

  it('a forwarded request to a node that does not lead is refused NOT_LEADER with the leader id, address and epoch', async () => {
    const p = byId(1).clusterNode!.controller.state.topic('t')!.partitions[0];
    const leader = p.voters.nodes[0];
    const other = nodes.find((n) => n.clusterNode!.controller.nodeId !== leader)!;
    const md = new grpc.Metadata();
    md.set(FORWARDED_METADATA_KEY, '1');
    const err = (await produce(other, { partition: 0, recordBatch: batch('x') }, md).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    const info = readErrorInfo(err.metadata)!;
    expect(info.reason).toBe('NOT_LEADER');
    expect(info.metadata.leader_id).toBe(String(leader));
    expect(info.metadata.leader_address).toBe(byId(leader).grpcAddress);
    expect(info.metadata.leader_epoch).toBe('1');
  });

  it('a produce without a partition picks it from the controller partition count (murmur2 of the key)', async () => {
    for (const key of ['a', 'b', 'c', 'd']) {
      const res = await produce(byId(2), { recordBatch: batch('k', key) });
      expect(res.partition).toBe(partitionForKey(Buffer.from(key), 3));
    }
  });

  it('the TS client moves past a dead bootstrap address, learns the leaders, and follows a NOT_LEADER hint', async () => {
    const { Producer } = await import('../../src/client/index.js');
    const { Connection } = await import('../../src/client/connection.js');
    const dead = '127.0.0.9:1';
    const producer = new Producer({ brokers: [dead, byId(2).grpcAddress], idempotent: false, acks: 'leader', retryBackoffMs: 10, requestTimeoutMs: 2_000 });
    try {
      const before = [...cores.values()].map((c) => c.produced.length);
      for (let p = 0; p < 3; p++) expect((await producer.send('t', { partition: p, value: Buffer.from(`c${p}`) })).partition).toBe(p);
      const after = [...cores.values()].map((c) => c.produced.length);
      expect(after.reduce((a, b) => a + b) - before.reduce((a, b) => a + b)).toBe(3);
    } finally {
      await producer.close();
    }
    const conn = new Connection({ brokers: byId(1).grpcAddress });
    try {
      const t = byId(1).clusterNode!.controller.state.topic('t')!;
      conn.brokerFor('t', 0);
      await conn.routed('t');
      for (const p of t.partitions) {
        const target = conn.brokerFor('t', p.partition).getChannel().getTarget();
        expect(target).toContain(byId(p.voters.nodes[0]).grpcAddress);
      }
      const { SluiceError } = await import('../../src/errors.js');
      conn.routeFailed('t', 0, new SluiceError('NOT_LEADER', 'moved', { info: { leader_id: '3', leader_address: byId(3).grpcAddress, leader_epoch: '2' } }));
      expect(conn.brokerFor('t', 0).getChannel().getTarget()).toContain(byId(3).grpcAddress);
    } finally {
      conn.close();
    }
  });

  it('the controller leader creates __consumer_offsets (16 partitions, replication factor 3) once the cluster has formed', async () => {
    await waitFor('the offsets topic exists on every node', () => nodes.every((n) => n.clusterNode!.controller.state.topic('__consumer_offsets') !== undefined));
    const t = byId(2).clusterNode!.controller.state.topic('__consumer_offsets')!;
    expect(t.partitions.length).toBe(16);
    expect(t.replicationFactor).toBe(3);
  });

  it('deleting the topic closes and removes its replicas on every node', async () => {
    const admin = new Admin({ brokers: byId(1).grpcAddress });
    try {
      const groups = byId(1).clusterNode!.controller.state.topic('r3')!.partitions.map((p) => p.group);
      await admin.deleteTopic('r3');
      await waitFor('every node closed its r3 replicas', () => [...cores.values()].every((c) => groups.every((g) => c.closed.includes(g))));
      expect((await admin.listTopics()).map((x) => x.name).filter((n) => !n.startsWith('__'))).toEqual(['t']);
    } finally {
      admin.close();
    }
  });
});
