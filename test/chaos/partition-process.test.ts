/**
 * Goal (issue 11 §6, issue 13 §1): a network partition between real `sluice serve` processes. A
 * partition's leader cut off from the other two (a minority) cannot commit: an acks=all write it
 * takes is never acknowledged; the majority side elects a new leader and goes on taking writes; after
 * healing every replica converges, byte for byte below the high watermark, and the cut-off leader's
 * uncommitted write is gone.
 * Method: three nodes (test/chaos/nodes.ts) whose peer links all go through the harness's TCP proxies
 * (links.ts, the TEST-ONLY peer address map); the fault is the `minority` shape around the leader of
 * partition 0. Writes go straight to a node: to the cut-off leader with the forwarded marker (so it
 * answers from its own replica and cannot forward), to the majority through the routed API. Every wait
 * is a bounded poll; the comparison reads the stopped nodes' partition directories.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin, Consumer } from '../../src/client/index.js';
import { FastBrokerClient, readErrorInfo } from '../../src/rpc/index.js';
import { FORWARDED_METADATA_KEY } from '../../src/rpc/forward.js';
import type { ProduceResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { Acks } from '../../src/rpc/gen/sluice/v1/records.js';
import { encodeBatch } from '../../src/batch/index.js';
import { isSluiceError } from '../../src/errors.js';
import { CHAOS_TEST_HOST_BASES, CLUSTER_ELECTION_TIMEOUT_MS_MAX } from './constants.js';
import { aliveSeenBy, clusterView, localHighWatermark } from './cluster.js';
import { LinkTable, linkSettings } from './links.js';
import { ChaosNode, freePort } from './nodes.js';
import { compareReplicas } from './replicas.js';

const TOPIC = 'split';
const WAIT_MS = 45_000;
const POLL_MS = 100;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chaos-partition-'));
const nodes: ChaosNode[] = [];
let links: LinkTable;

async function until<T>(what: string, probe: () => Promise<T | null>, ms = WAIT_MS): Promise<T> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < ms / POLL_MS + 1; i++) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function produce(n: ChaosNode, value: string, forwarded: boolean, deadlineMs: number): Promise<{ offset: number } | { error: string }> {
  const c = new FastBrokerClient(n.grpcAddress, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const md = new grpc.Metadata();
  if (forwarded) md.set(FORWARDED_METADATA_KEY, '1');
  const req = { topic: TOPIC, partition: 0, records: [], recordBatch: encodeBatch([{ key: null, value: Buffer.from(value), headers: [], timestampMs: Date.now() }]), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0 };
  return new Promise((resolve) =>
    c.produce(req, md, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, r?: ProduceResponse) => {
      c.close();
      resolve(err ? { error: `${grpc.status[err.code]} ${readErrorInfo(err.metadata)?.reason ?? ''}` } : { offset: Number(r!.baseOffset) });
    }),
  );
}

const leaderOf0 = async (among: readonly ChaosNode[]): Promise<number | null> => {
  const v = await clusterView(among.map((n) => n.grpcAddress), TOPIC);
  const l = v?.partitions[0]?.leader ?? 0;
  return among.some((n) => n.id === l) ? l : null;
};

beforeAll(async () => {
  const hosts = [1, 2, 3].map((id) => `127.0.0.${CHAOS_TEST_HOST_BASES.partitionProcess + id}`);
  const ports = await Promise.all(hosts.map(async (h) => ({ grpc: await freePort(h), http: await freePort(h) })));
  const seeds = hosts.map((h, i) => `${h}:${ports[i].grpc}`);
  links = await LinkTable.create(hosts, seeds);
  for (let id = 1; id <= 3; id++) {
    nodes.push(new ChaosNode({ id, host: hosts[id - 1], dir: path.join(root, `n${id}`), tmpfs: false, ackBeforeFsync: false, cluster: { grpcPort: ports[id - 1].grpc, httpPort: ports[id - 1].http, seeds, controllerVoters: [1, 2, 3], env: links.envFor(id) } }));
  }
  await Promise.all(nodes.map((n) => n.start()));
  await until('every node ready', async () => ((await Promise.all(nodes.map((n) => n.ready()))).every(Boolean) ? true : null));
  await until('every node sees three alive', async () => (Math.min(...(await Promise.all(nodes.map((n) => aliveSeenBy(n.grpcAddress))))) === 3 ? true : null));
  const admin = new Admin({ brokers: nodes[0].grpcAddress, requestTimeoutMs: WAIT_MS });
  // The controller leader may not count all three as live yet (registration, or gossip suspecting a
  // node on a loaded machine): that refusal wrote nothing, so ask again (bounded).
  await until('topic created', async () => {
    try {
      await admin.createTopic(TOPIC, { partitions: 1, replicationFactor: 3 });
      return true;
    } catch (err) {
      if (isSluiceError(err, 'REPLICATION_FACTOR_TOO_LARGE')) return null;
      throw err;
    }
  });
  admin.close();
}, 120_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop().catch(() => null)));
  for (const n of nodes) n.destroy();
  await links?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('a network partition between cluster nodes', () => {
  it('the cut-off leader cannot commit, the majority elects and goes on, healing converges every replica byte for byte', async () => {
    const old = await until('a leader of partition 0', () => leaderOf0(nodes));
    for (let i = 0; i < 10; i++) await until(`write ${i}`, async () => ('offset' in (await produce(nodes[i % 3], `before-${i}`, false, 3_000)) ? true : null));
    const cutOff = nodes[old - 1];
    const majority = nodes.filter((n) => n.id !== old);

    links.apply(linkSettings('minority', [old], 3));
    const t0 = Date.now();
    // The minority: its own replica takes the write but can never commit it.
    const alone = await produce(cutOff, 'minority-write', true, 2 * CLUSTER_ELECTION_TIMEOUT_MS_MAX);
    expect('error' in alone, `the cut-off leader acknowledged a write: ${JSON.stringify(alone)}`).toBe(true);
    // The majority elects one of its own and takes writes.
    const next = await until('a leader on the majority side', () => leaderOf0(majority));
    expect(next).not.toBe(old);
    const during = await until('a write on the majority side', async () => {
      const r = await produce(majority[0], 'majority-write', false, 3_000);
      return 'offset' in r ? r.offset : null;
    });
    console.log(`partition: new leader n${next}, first write acknowledged ${Date.now() - t0} ms after the cut, at offset ${during}`);
    expect(links.droppedBytes).toBeGreaterThan(0);

    links.healAll();
    const after = await until('a write after healing', async () => {
      const r = await produce(cutOff, 'after-heal', false, 3_000);
      return 'offset' in r ? r.offset : null;
    });
    const hw = after + 1;
    await until('every replica at the high watermark', async () => ((await Promise.all(nodes.map((n) => localHighWatermark(n.grpcAddress, TOPIC, 0)))).every((h) => h !== null && h >= hw) ? true : null));

    // What the cluster holds: the majority's write and the one after healing, never the minority's.
    const values: string[] = [];
    const consumer = new Consumer({ brokers: majority[0].grpcAddress, topic: TOPIC, partitions: [0], from: 'earliest', stopAtEnd: true });
    for await (const r of consumer) values.push(r.value?.toString() ?? '');
    consumer.close();
    expect(values).toContain('majority-write');
    expect(values).toContain('after-heal');
    expect(values).not.toContain('minority-write');
    expect(values.filter((v) => v.startsWith('before-'))).toHaveLength(10);

    for (const n of nodes) expect((await n.stop()).code).toBe(0);
    const dirs = nodes.map((n) => path.join(n.dataDir, `${TOPIC}-0`));
    const cmp = compareReplicas(dirs, hw);
    expect(cmp.firstDifference, JSON.stringify(cmp.firstDifference)).toBeNull();
    expect(cmp.bytes).toBeGreaterThan(0);
  }, 180_000);
});
