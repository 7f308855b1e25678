/**
 * Goal (issue 13, chaos bugs A and B): after every node of a cluster is killed, the nodes that come
 * back first must not answer as if they knew: no high watermark below one already shown (bug A: polls
 * through the cluster answered 0, readers got OFFSET_OUT_OF_RANGE), and no UNKNOWN_TOPIC for a topic
 * that exists (bug B: the idempotent producer took it as final). They answer a retriable UNAVAILABLE
 * (METADATA_NOT_READY, NOT_LEADER, or UNAVAILABLE) until they know, and then the right numbers.
 * Method: three real `sluice serve` processes (test/chaos/nodes.ts), an RF-3 topic with records, kill -9
 * of all three, one node restarted alone (no majority: nothing can be learned), asked through the
 * routed API and with the forwarded marker (its own replica); then a second node back (a majority),
 * polled until writes work, every answer checked on the way. Waits are bounded polls.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admin } from '../../src/client/index.js';
import { FastBrokerClient, readErrorInfo } from '../../src/rpc/index.js';
import { FORWARDED_METADATA_KEY } from '../../src/rpc/forward.js';
import { OffsetSpec, type FetchResponse, type ListOffsetsResponse, type ProduceResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { Acks } from '../../src/rpc/gen/sluice/v1/records.js';
import { encodeBatch } from '../../src/batch/index.js';
import { aliveSeenBy, clusterView } from './cluster.js';
import { CHAOS_TEST_HOST_BASES } from './constants.js';
import { ChaosNode, freePort } from './nodes.js';

const TOPIC = 'restart';
const PARTITIONS = 2;
const RECORDS = 20;
const WAIT_MS = 45_000;
const POLL_MS = 100;
const CALL_MS = 3_000;

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-chaos-restart-'));
const nodes: ChaosNode[] = [];

async function until<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (let i = 0; i < WAIT_MS / POLL_MS + 1; i++) {
    const v = await probe();
    if (v !== null) return v;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
}

type Answer = { ok: number } | { code: number; reason: string };

function call<Res>(n: ChaosNode, forwarded: boolean, f: (c: InstanceType<typeof FastBrokerClient>, md: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, r?: Res) => void) => void, pick: (r: Res) => number): Promise<Answer> {
  const c = new FastBrokerClient(n.grpcAddress, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const md = new grpc.Metadata();
  if (forwarded) md.set(FORWARDED_METADATA_KEY, '1');
  return new Promise((resolve) =>
    f(c, md, { deadline: Date.now() + CALL_MS }, (err, r) => {
      c.close();
      resolve(err ? { code: err.code, reason: readErrorInfo(err.metadata)?.reason ?? '' } : { ok: pick(r!) });
    }),
  );
}

const latest = (n: ChaosNode, partition: number, forwarded: boolean): Promise<Answer> =>
  call<ListOffsetsResponse>(n, forwarded, (c, md, o, cb) => c.listOffsets({ topic: TOPIC, partitions: [partition], spec: OffsetSpec.OFFSET_SPEC_LATEST, timestampMs: 0n }, md, o, cb), (r) => Number(r.offsets[0].offset));

const fetchAt = (n: ChaosNode, partition: number, offset: number): Promise<Answer> =>
  call<FetchResponse>(n, false, (c, md, o, cb) => c.fetch({ topic: TOPIC, partition, offset: BigInt(offset), maxBytes: 1 << 16, maxWaitMs: 0, raw: true }, md, o, cb), (r) => Number(r.highWatermark));

const produce = (n: ChaosNode, partition: number, value: string): Promise<Answer> =>
  call<ProduceResponse>(
    n,
    false,
    (c, md, o, cb) => c.produce({ topic: TOPIC, partition, records: [], recordBatch: encodeBatch([{ key: null, value: Buffer.from(value), headers: [], timestampMs: Date.now() }]), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0 }, md, o, cb),
    (r) => Number(r.baseOffset),
  );

/** Retriable refusals a node that does not know yet may answer (gRPC UNAVAILABLE). */
const RETRIABLE_REASONS = new Set(['METADATA_NOT_READY', 'NOT_LEADER', 'UNAVAILABLE', 'SHUTTING_DOWN', 'TIMEOUT']);

/** Checks one answer about a high watermark against the one shown before the kill. */
function checkHw(a: Answer, shown: number, what: string): void {
  if ('ok' in a) expect(a.ok, `${what} answered a high watermark below the ${shown} shown before`).toBeGreaterThanOrEqual(shown);
  else expect(a.code === grpc.status.UNAVAILABLE || a.code === grpc.status.DEADLINE_EXCEEDED, `${what}: ${JSON.stringify(a)}`).toBe(true);
  if (!('ok' in a) && a.code === grpc.status.UNAVAILABLE && a.reason !== '') expect(RETRIABLE_REASONS.has(a.reason), `${what}: ${a.reason}`).toBe(true);
}

beforeAll(async () => {
  const hosts = [1, 2, 3].map((id) => `127.0.0.${CHAOS_TEST_HOST_BASES.clusterRestart + id}`);
  const ports = await Promise.all(hosts.map(async (h) => ({ grpc: await freePort(h), http: await freePort(h) })));
  const seeds = hosts.map((h, i) => `${h}:${ports[i].grpc}`);
  for (let id = 1; id <= 3; id++) {
    nodes.push(new ChaosNode({ id, host: hosts[id - 1], dir: path.join(root, `n${id}`), tmpfs: false, ackBeforeFsync: false, cluster: { grpcPort: ports[id - 1].grpc, httpPort: ports[id - 1].http, seeds, controllerVoters: [1, 2, 3] } }));
  }
  await Promise.all(nodes.map((n) => n.start()));
  await until('every node ready', async () => ((await Promise.all(nodes.map((n) => n.ready()))).every(Boolean) ? true : null));
  // Placement counts the nodes the controller leader sees alive: wait until every node sees all three.
  await until('every node alive everywhere', async () => (Math.min(...(await Promise.all(nodes.map((n) => aliveSeenBy(n.grpcAddress))))) === 3 ? true : null));
  const admin = new Admin({ brokers: nodes[0].grpcAddress, requestTimeoutMs: WAIT_MS });
  await admin.createTopic(TOPIC, { partitions: PARTITIONS, replicationFactor: 3 });
  admin.close();
}, 120_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop().catch(() => null)));
  for (const n of nodes) n.destroy();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('a cluster restarted from nothing answers only what it knows', () => {
  it('kill -9 of every node: the first node back refuses retriably, never UNKNOWN_TOPIC or a high watermark that went back', async () => {
    const shown: number[] = [];
    for (let p = 0; p < PARTITIONS; p++) {
      for (let i = 0; i < RECORDS; i++) await until(`produce ${p}/${i}`, async () => ('ok' in (await produce(nodes[i % 3], p, `v${p}-${i}`)) ? true : null));
      shown.push(await until(`the high watermark of ${p}`, async () => {
        const a = await latest(nodes[0], p, false);
        return 'ok' in a && a.ok >= RECORDS ? a.ok : null;
      }));
    }
    await Promise.all(nodes.map((n) => n.kill9(false)));

    // One node alone: no controller leader, no partition leader; it knows nothing new.
    await nodes[0].start();
    for (let round = 0; round < 5; round++) {
      for (let p = 0; p < PARTITIONS; p++) {
        checkHw(await latest(nodes[0], p, false), shown[p], `n1 alone, ListOffsets(latest) of ${p}`);
        checkHw(await latest(nodes[0], p, true), shown[p], `n1 alone, its own replica's ListOffsets(latest) of ${p}`);
        const f = await fetchAt(nodes[0], p, shown[p]);
        if (!('ok' in f)) expect(f.reason, `n1 alone, fetch at ${shown[p]} of ${p}`).not.toBe('OFFSET_OUT_OF_RANGE');
        const w = await produce(nodes[0], p, `alone-${round}-${p}`);
        expect('ok' in w, 'a lone node of three cannot commit').toBe(false);
        if (!('ok' in w)) expect(w.reason, `n1 alone, produce to ${p}`).not.toBe('UNKNOWN_TOPIC');
      }
      await new Promise((r) => setTimeout(r, 200));
    }

    // A second node: a majority. Every answer on the way must hold; then writes go through.
    await nodes[1].start();
    const t0 = Date.now();
    await until('a write through n2 after the restart', async () => {
      for (let p = 0; p < PARTITIONS; p++) {
        for (const n of nodes.slice(0, 2)) {
          checkHw(await latest(n, p, false), shown[p], `n${n.id} after the majority is back, ListOffsets(latest) of ${p}`);
          const f = await fetchAt(n, p, shown[p]);
          if (!('ok' in f)) expect(f.reason, `n${n.id}, fetch at ${shown[p]} of ${p}`).not.toBe('OFFSET_OUT_OF_RANGE');
        }
      }
      const w = await produce(nodes[1], 0, 'after');
      if (!('ok' in w)) expect(w.reason, 'produce through n2').not.toBe('UNKNOWN_TOPIC');
      return 'ok' in w ? w.ok : null;
    });
    console.log(`writes resumed ${Date.now() - t0} ms after the second node started`);
    await nodes[2].start();
    const view = await until('every partition led', async () => {
      const v = await clusterView(nodes.map((n) => n.grpcAddress), TOPIC);
      return v !== null && v.partitions.every((p) => p.leader > 0) ? v : null;
    });
    expect(view.partitions).toHaveLength(PARTITIONS);
  }, 180_000);
});
