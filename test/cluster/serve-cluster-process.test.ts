/**
 * Goal: three `sluice serve` processes form one cluster and behave as one (issue 11 §1, §5, §6): an
 * RF-3 topic created through any node, acks=all produce through a node that does not lead the
 * partition, the same records read from every node; kill -9 of a partition's leader under a running
 * producer loses no acknowledged record and writes resume; the restarted node catches up.
 * Method: real processes on 127.0.0.1/.2/.3 with fixed ports (so a restarted node keeps its address),
 * started and killed by the test; state read as clients read it (gRPC, /readyz). Every wait polls an
 * observable, bounded in count and time; measured times are printed, not asserted.
 */
import fs from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { cliPath, spawnBroker, waitExit, type BrokerProcess } from '../../bench/broker-process.js';
import { Admin, Producer } from '../../src/client/index.js';
import { FastBrokerClient, readErrorInfo } from '../../src/rpc/index.js';
import type { FetchResponse, ProduceRequest, ProduceResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { Acks } from '../../src/rpc/gen/sluice/v1/records.js';
import { OffsetSpec } from '../../src/rpc/gen/sluice/v1/broker.js';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { tempDir } from '../e2e/helpers.js';

const WAIT_MS = 30_000;
const POLL_MS = 50;
const IDS = [1, 2, 3];

interface Node {
  id: number;
  address: string;
  http: string;
  dir: string;
  proc: BrokerProcess | null;
}
const nodes: Node[] = [];

async function waitFor<T>(what: string, probe: () => Promise<T | null | false> | T | null | false, timeoutMs = WAIT_MS): Promise<T> {
  const t0 = performance.now();
  for (let i = 0; i < Math.ceil(timeoutMs / POLL_MS) + 1; i++) {
    const v = await probe();
    if (v !== null && v !== false) return v;
    if (performance.now() - t0 > timeoutMs) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}\n${nodes.map((n) => `--- node ${n.id}:\n${n.proc?.stderr().slice(-3000) ?? '(down)'}`).join('\n')}`);
}

async function freePort(ip: string): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, ip, r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function start(n: Node): Promise<void> {
  // StatefulSet style: every node gets the same list, its own address included (skipped); the first
  // listed founds the cluster when no other seed answers its first round.
  const seeds = nodes.map((o) => o.address);
  n.proc = await spawnBroker(n.dir, ['--node-id', String(n.id), '--grpc-addr', n.address, '--http-addr', n.http, '--shards', '1', '--log-level', 'info', '--controller-voters', IDS.join(','), '--seeds', seeds.join(',')]);
}

async function ready(n: Node): Promise<boolean> {
  try {
    return (await fetch(`http://${n.http}/readyz`)).status === 200;
  } catch {
    return false;
  }
}

function rpc(n: Node): InstanceType<typeof FastBrokerClient> {
  return new FastBrokerClient(n.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

function produceVia(n: Node, req: Partial<ProduceRequest>): Promise<ProduceResponse> {
  const c = rpc(n);
  const full: ProduceRequest = { topic: 'orders', records: [], recordBatch: Buffer.alloc(0), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0, ...req };
  return new Promise((resolve, reject) => c.produce(full, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => (c.close(), err ? reject(err) : resolve(res!))));
}

function batch(value: string): Buffer {
  return encodeBatch([{ key: null, value: Buffer.from(value), headers: [], timestampMs: Date.now() }]);
}

/**
 * Every record value of `topic`/`partition` that node `n` serves (raw fetches), from the earliest
 * offset it names. `local`: only this node's own replica, from its own log start (the requests carry
 * the forwarded marker, so the node answers from its replica and never asks the leader).
 */
async function readAll(n: Node, partition: number, local = false, topic = 'orders'): Promise<{ values: string[]; hw: number }> {
  const c = rpc(n);
  const values: string[] = [];
  let offset = 0;
  let hw = 0;
  const md = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    if (local) m.set('sluice-forwarded', '1');
    return m;
  };
  try {
    // From the earliest offset the node names (a replica's log may start after offset 0: the first
    // term's no-op is a control batch a replica can receive as a snapshot instead).
    {
      const res = await new Promise<{ offsets: { offset: bigint }[] }>((resolve, reject) =>
        c.listOffsets({ topic, partitions: [partition], spec: OffsetSpec.OFFSET_SPEC_EARLIEST, timestampMs: 0n }, md(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      offset = Number(res.offsets[0].offset);
    }
    for (let i = 0; i < 10_000; i++) {
      const res = await new Promise<FetchResponse>((resolve, reject) =>
        c.fetch({ topic, partition, offset: BigInt(offset), maxBytes: 1 << 20, maxWaitMs: 0, raw: true }, md(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      hw = Number(res.highWatermark);
      for (const b of decodeBatches(res.recordBatches)) for (const r of b.records) if ((b.header.attributes & 0x20) === 0 && r.offset >= offset) values.push(Buffer.from(r.value!).toString());
      if (Number(res.nextOffset) <= offset) break;
      offset = Number(res.nextOffset);
    }
  } finally {
    c.close();
  }
  return { values, hw };
}

async function describe3(n: Node): Promise<Awaited<ReturnType<Admin['describeTopic']>> | null> {
  const a = new Admin({ brokers: n.address, requestTimeoutMs: 3_000, channelOptions: { 'grpc.use_local_subchannel_pool': 1 } });
  try {
    return await a.describeTopic('orders');
  } catch {
    return null;
  } finally {
    a.close();
  }
}

beforeAll(async () => {
  for (const id of IDS) {
    const ip = `127.0.0.${id}`;
    nodes.push({ id, address: `${ip}:${await freePort(ip)}`, http: `${ip}:${await freePort(ip)}`, dir: tempDir(`sluice-cluster-${id}-`), proc: null });
  }
  await Promise.all(nodes.map(start));
  const t0 = performance.now();
  await waitFor('every node ready', async () => (await Promise.all(nodes.map(ready))).every(Boolean));
  // Gossip spreads membership in rounds: placement counts the nodes the controller leader sees alive.
  await waitFor('every node sees three alive', async () => {
    const views = await Promise.all(
      nodes.map(async (n) => {
        const a = new Admin({ brokers: n.address, requestTimeoutMs: 3_000 });
        try {
          return (await a.metadata()).brokers.filter((b) => b.alive && b.state === 'alive').length;
        } catch {
          return 0;
        } finally {
          a.close();
        }
      }),
    );
    return views.every((v) => v === 3);
  });
  console.log(`three nodes ready in ${Math.round(performance.now() - t0)} ms`);
}, 60_000);

afterAll(async () => {
  for (const n of nodes) n.proc?.child.kill('SIGKILL');
  await Promise.all(nodes.map((n) => (n.proc === null ? null : waitExit(n.proc.child))));
  for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
});

describe('three sluice serve processes form one cluster', () => {
  it('create RF 3 from any node, produce acks=all through a non-leader, read the same records from every node', async () => {
    const admin = new Admin({ brokers: nodes[1].address });
    try {
      const t = await admin.createTopic('orders', { partitions: 3, replicationFactor: 3 });
      expect(t.partitions.every((p) => p.replicas.length === 3)).toBe(true);
    } finally {
      admin.close();
    }
    // Leader balancing (on by default) moves each leadership to its preferred replica (the first
    // voter) soon after the election; wait for that, so no produce below races a transfer.
    const t = await waitFor('every partition is led by its preferred replica', async () => {
      const d = await describe3(nodes[0]);
      return d !== null && d.partitions.every((p) => p.leader > 0 && p.leader === p.replicas[0]) ? d : null;
    });
    for (const p of t.partitions) {
      const via = nodes.find((n) => n.id !== p.leader)!;
      for (let i = 0; i < 5; i++) {
        const res = await produceVia(via, { partition: p.partition, recordBatch: batch(`p${p.partition}-${i}`) });
        expect(Number(res.baseOffset)).toBeGreaterThanOrEqual(0);
      }
    }
    for (const n of nodes) {
      for (const p of t.partitions) {
        const want = Array.from({ length: 5 }, (_, i) => `p${p.partition}-${i}`);
        let last: unknown = null;
        await waitFor(`node ${n.id} serves partition ${p.partition}`, async () => {
          const got = await readAll(n, p.partition).catch((e: unknown) => ((last = (e as Error).message), null));
          if (got !== null) last = got;
          return got !== null && want.every((v) => got.values.includes(v)) ? got : null;
        }).catch((e: unknown) => {
          throw new Error(`last read: ${JSON.stringify(last)}\n${(e as Error).message}`);
        });
      }
    }
    // In-sync replicas are reported by the leader: all three.
    const d = await describe3(nodes[2]);
    expect(d!.partitions.every((p) => (p.inSyncReplicas ?? []).length === 3)).toBe(true);
  });

  it('kill -9 of partition 0\'s leader under a running producer: writes resume, nothing acknowledged is lost, the restarted node catches up', async () => {
    const before = (await describe3(nodes[0]))!;
    const leaderId = before.partitions[0].leader;
    const victim = nodes.find((n) => n.id === leaderId)!;
    const survivors = nodes.filter((n) => n !== victim);
    const producer = new Producer({ brokers: nodes.map((n) => n.address), acks: 'all', idempotent: false, lingerMs: 0, retries: 20, retryBackoffMs: 50, retryBackoffMaxMs: 500, requestTimeoutMs: 3_000 });
    const acked: string[] = [];
    let failed = 0;
    let stop = false;
    const running = (async () => {
      for (let i = 0; !stop && i < 100_000; i++) {
        const v = `k-${i}`;
        try {
          await producer.send('orders', { partition: 0, value: Buffer.from(v) });
          acked.push(v);
        } catch {
          failed++;
        }
      }
    })();
    try {
      await waitFor('the producer is running', () => acked.length >= 50);
      const killedAt = acked.length;
      const t0 = performance.now();
      victim.proc!.child.kill('SIGKILL');
      await waitExit(victim.proc!.child);
      victim.proc = null;
      await waitFor('writes resume on a new leader', () => acked.length >= killedAt + 50);
      console.log(`writes resumed ${Math.round(performance.now() - t0)} ms after kill -9 of node ${leaderId} (${failed} sends failed)`);
      const after = await waitFor('a new leader of partition 0', async () => {
        const d = await describe3(survivors[0]);
        return d !== null && d.partitions[0].leader > 0 && d.partitions[0].leader !== leaderId ? d : null;
      });
      expect(after.partitions[0].leaderEpoch ?? 0).toBeGreaterThan(before.partitions[0].leaderEpoch ?? 0);
    } finally {
      stop = true;
      await running;
      await producer.close();
    }
    // Nothing acknowledged is lost, on either survivor.
    for (const n of survivors) {
      let last: unknown = null;
      const got = await waitFor(`node ${n.id} serves every acked record`, async () => {
        const r = await readAll(n, 0, true).catch((e: unknown) => ((last = e), null));
        if (r !== null) last = { hw: r.hw, values: r.values.length, acked: acked.length, missing: acked.filter((v) => !r.values.includes(v)).slice(0, 5) };
        return r !== null && acked.every((v) => r.values.includes(v)) ? r : null;
      }).catch((e: unknown) => {
        throw new Error(`${String(last instanceof Error ? last.message : JSON.stringify(last))}\n${(e as Error).message}`);
      });
      expect(acked.filter((v) => !got.values.includes(v))).toEqual([]);
    }
    // The restarted node catches up from the leader.
    await start(victim);
    const t1 = performance.now();
    await waitFor('the restarted node is ready', () => ready(victim));
    const caught = await waitFor('the restarted node catches up', async () => {
      const r = await readAll(victim, 0, true).catch(() => null);
      return r !== null && acked.every((v) => r.values.includes(v)) ? r : null;
    });
    console.log(`node ${victim.id} caught up ${caught.values.length} records in ${Math.round(performance.now() - t1)} ms after restart`);
    // A ceiling for a loaded machine: readiness now also waits for the restarted node's replicas to be
    // in their leaders' in-sync sets (src/server/readiness.ts), a few seconds more than "joined".
  }, 120_000);

  it('an idempotent producer (the default) and a consumer work through the cluster with no routing help from the caller', async () => {
    const { Consumer } = await import('../../src/client/index.js');
    const producer = new Producer({ brokers: nodes.map((n) => n.address) });
    const sent: string[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const v = `idem-${i}`;
        await producer.send('orders', { key: Buffer.from(`key-${i}`), value: Buffer.from(v) });
        sent.push(v);
      }
    } finally {
      await producer.close();
    }
    const consumer = new Consumer({ brokers: [...nodes].reverse().map((n) => n.address), topic: 'orders', stopAtEnd: true });
    const seen: string[] = [];
    try {
      for await (const r of consumer) seen.push(Buffer.from(r.value!).toString());
    } finally {
      await consumer.close();
    }
    expect(sent.filter((v) => !seen.includes(v))).toEqual([]);
    expect(seen.filter((v) => v.startsWith('idem-')).length).toBe(20); // no duplicates
  });

  it('the CLI takes several -b addresses (a dead one first) and cluster info shows nodes, controller and leaders per node', async () => {
    const dead = `127.0.0.9:${await freePort('127.0.0.9')}`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [cliPath(), 'cluster', 'info', '--format', 'json', '-b', [dead, ...nodes.map((n) => n.address)].join(','), '--timeout', '3s'], (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const info = JSON.parse(out) as { controllerId: number; brokers: { nodeId: number; alive: boolean; leaders: number }[]; leaderlessPartitions: number; topics: number };
    expect(info.brokers.map((b) => [b.nodeId, b.alive])).toEqual([[1, true], [2, true], [3, true]]);
    expect(IDS).toContain(info.controllerId);
    // 'orders' (3 partitions), and the 16 of __consumer_offsets once the controller created it.
    expect(info.brokers.reduce((n, b) => n + b.leaders, 0) + info.leaderlessPartitions).toBe(info.topics === 1 ? 3 : 3 + 16);
  });

  it('a request a node cannot forward gets NOT_LEADER naming the leader in ErrorInfo', async () => {
    const d = (await describe3(nodes[0]))!;
    const p = d.partitions[1];
    const other = nodes.find((n) => n.id !== p.leader)!;
    const c = rpc(other);
    const md = new grpc.Metadata();
    md.set('sluice-forwarded', '1');
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      c.produce({ topic: 'orders', partition: 1, records: [], recordBatch: Buffer.alloc(0), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0 } as ProduceRequest, md, (e) => (c.close(), resolve(e!))),
    );
    // An empty produce is refused before routing; a real one gets NOT_LEADER.
    expect(err).toBeTruthy();
    const c2 = rpc(other);
    const err2 = await new Promise<grpc.ServiceError>((resolve) =>
      c2.produce({ topic: 'orders', partition: 1, records: [], recordBatch: batch('x'), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0 }, md, (e) => (c2.close(), resolve(e!))),
    );
    expect(err2.code).toBe(grpc.status.UNAVAILABLE);
    const info = readErrorInfo(err2.metadata)!;
    expect(info.reason).toBe('NOT_LEADER');
    expect(info.metadata.leader_id).toBe(String(p.leader));
    expect(info.metadata.leader_address).toBe(nodes.find((n) => n.id === p.leader)!.address);
    expect(Number(info.metadata.leader_epoch)).toBeGreaterThan(0);
  });
});
