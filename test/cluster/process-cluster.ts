/**
 * A cluster of real `sluice serve` processes for the replica-set tests (moves, decommission, leader
 * balancing, wiped disks): node N listens on 127.0.0.N with fixed ports (a restarted node keeps its
 * address), the controller voters are 1,2,3 and every other node is a controller learner. Reads go
 * to one node's own replica (the `sluice-forwarded` marker), so replicas can be compared byte for byte.
 * Every wait polls an observable, bounded in count and time.
 */
import fs from 'node:fs';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { spawnBroker, waitExit, type BrokerProcess } from '../../bench/broker-process.js';
import { Admin, Producer } from '../../src/client/index.js';
import { FastBrokerClient } from '../../src/rpc/index.js';
import type { FetchResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { OffsetSpec } from '../../src/rpc/gen/sluice/v1/broker.js';
import { decodeBatches } from '../../src/batch/index.js';
import { tempDir } from '../e2e/helpers.js';

export const WAIT_MS = 40_000;
const POLL_MS = 50;
const VOTERS = [1, 2, 3];

export interface ProcNode {
  id: number;
  address: string;
  http: string;
  dir: string;
  proc: BrokerProcess | null;
}

async function freePort(ip: string): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, ip, r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export class ProcessCluster {
  readonly nodes: ProcNode[] = [];

  static async create(count: number, name: string): Promise<ProcessCluster> {
    const c = new ProcessCluster();
    for (let id = 1; id <= count; id++) {
      const ip = `127.0.0.${id}`;
      c.nodes.push({ id, address: `${ip}:${await freePort(ip)}`, http: `${ip}:${await freePort(ip)}`, dir: tempDir(`sluice-${name}-${id}-`), proc: null });
    }
    return c;
  }

  node(id: number): ProcNode {
    return this.nodes[id - 1];
  }

  async waitFor<T>(what: string, probe: () => Promise<T | null | false> | T | null | false, timeoutMs = WAIT_MS): Promise<T> {
    const t0 = performance.now();
    let lastErr = '';
    for (let i = 0; i < Math.ceil(timeoutMs / POLL_MS) + 1; i++) {
      try {
        const v = await probe();
        if (v !== null && v !== false) return v;
      } catch (err) {
        lastErr = (err as Error).message;
      }
      if (performance.now() - t0 > timeoutMs) break;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const logs = this.nodes.map((n) => `--- node ${n.id}:\n${n.proc?.stderr().slice(-2500) ?? '(down)'}`).join('\n');
    throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}${lastErr ? ` (last error: ${lastErr})` : ''}\n${logs}`);
  }

  async start(id: number): Promise<void> {
    const n = this.node(id);
    const seeds = this.nodes.map((o) => o.address);
    n.proc = await spawnBroker(n.dir, ['--node-id', String(id), '--grpc-addr', n.address, '--http-addr', n.http, '--shards', '1', '--log-level', 'info', '--controller-voters', VOTERS.join(','), '--seeds', seeds.join(',')]);
  }

  async kill(id: number): Promise<void> {
    const n = this.node(id);
    if (n.proc === null) return;
    n.proc.child.kill('SIGKILL');
    await waitExit(n.proc.child);
    n.proc = null;
  }

  async ready(id: number): Promise<boolean> {
    try {
      return (await fetch(`http://${this.node(id).http}/readyz`)).status === 200;
    } catch {
      return false;
    }
  }

  /** Starts those of the nodes not running and waits until all are ready and see each other alive. */
  async startAll(ids: number[]): Promise<void> {
    await Promise.all(ids.filter((id) => this.node(id).proc === null).map((id) => this.start(id)));
    await this.waitFor(`nodes ${ids.join(',')} ready`, async () => (await Promise.all(ids.map((id) => this.ready(id)))).every(Boolean));
    await this.waitFor(`nodes ${ids.join(',')} see each other alive`, async () => {
      const views = await Promise.all(ids.map((id) => this.withAdmin(id, async (a) => (await a.metadata()).brokers.filter((b) => ids.includes(b.nodeId) && b.state === 'alive').length)));
      return views.every((v) => v === ids.length);
    });
    // Gossip runs ahead of the controller: placement only uses nodes whose registration every node has
    // applied, so a topic created right after this must not find one of `ids` missing.
    await this.waitFor(`nodes ${ids.join(',')} registered with the controller`, async () => {
      const views = await Promise.all(ids.map((id) => this.withAdmin(id, async (a) => (await a.reassignments()).nodes.map((n) => n.nodeId))));
      return views.every((v) => ids.every((id) => v.includes(id)));
    });
  }

  async withAdmin<T>(id: number, fn: (a: Admin) => Promise<T>): Promise<T> {
    const a = new Admin({ brokers: this.node(id).address, requestTimeoutMs: 5_000, channelOptions: { 'grpc.use_local_subchannel_pool': 1 } });
    try {
      return await fn(a);
    } finally {
      a.close();
    }
  }

  async closeAll(): Promise<void> {
    for (const n of this.nodes) n.proc?.child.kill('SIGKILL');
    await Promise.all(this.nodes.map((n) => (n.proc === null ? null : waitExit(n.proc.child))));
    for (const n of this.nodes) fs.rmSync(n.dir, { recursive: true, force: true });
  }

  /**
   * Node `id`'s own replica of topic/partition, raw: the v2 batches from its log start to its high
   * watermark (offsets, epochs, CRCs), the record values, and the high watermark. From `from` when
   * that is above its log start (a replica may have been sent its group's first no-op as a snapshot).
   */
  async localLog(id: number, topic: string, partition: number, from = 0): Promise<{ bytes: Buffer; values: string[]; hw: number; start: number }> {
    const c = new FastBrokerClient(this.node(id).address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const md = (): grpc.Metadata => {
      const m = new grpc.Metadata();
      m.set('sluice-forwarded', '1');
      return m;
    };
    try {
      const first = await new Promise<{ offsets: { offset: bigint }[] }>((resolve, reject) =>
        c.listOffsets({ topic, partitions: [partition], spec: OffsetSpec.OFFSET_SPEC_EARLIEST, timestampMs: 0n }, md(), { deadline: Date.now() + 5_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      const start = Number(first.offsets[0].offset);
      let offset = Math.max(start, from);
      let hw = 0;
      const parts: Buffer[] = [];
      const values: string[] = [];
      for (let i = 0; i < 100_000; i++) {
        const res = await new Promise<FetchResponse>((resolve, reject) =>
          c.fetch({ topic, partition, offset: BigInt(offset), maxBytes: 1 << 20, maxWaitMs: 0, raw: true }, md(), { deadline: Date.now() + 5_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
        );
        hw = Number(res.highWatermark);
        if (res.recordBatches.length > 0) parts.push(Buffer.from(res.recordBatches));
        for (const b of decodeBatches(res.recordBatches)) for (const r of b.records) if ((b.header.attributes & 0x20) === 0) values.push(Buffer.from(r.value!).toString());
        if (Number(res.nextOffset) <= offset) break;
        offset = Number(res.nextOffset);
      }
      return { bytes: Buffer.concat(parts), values, hw, start };
    } finally {
      c.close();
    }
  }
}

/** An acks=all producer writing `prefix-i` to one partition until stopped; what was acknowledged. */
export function runProducer(brokers: string[], topic: string, partition: number, prefix: string): { acked: string[]; failed: () => number; stop: () => Promise<void> } {
  const producer = new Producer({ brokers, acks: 'all', idempotent: false, lingerMs: 0, retries: 40, retryBackoffMs: 50, retryBackoffMaxMs: 500, requestTimeoutMs: 3_000 });
  const acked: string[] = [];
  let failed = 0;
  let stopped = false;
  const running = (async () => {
    for (let i = 0; !stopped && i < 1_000_000; i++) {
      const v = `${prefix}-${i}`;
      try {
        await producer.send(topic, { partition, value: Buffer.from(v) });
        acked.push(v);
      } catch {
        failed++;
      }
    }
  })();
  return {
    acked,
    failed: () => failed,
    stop: async () => {
      stopped = true;
      await running;
      await producer.close();
    },
  };
}

/**
 * The replicas' own logs of topic/partition once they agree on the high watermark, compared from the
 * highest log start among them (the first term's no-op may have reached one as a snapshot).
 */
export async function agreedLogs(c: ProcessCluster, ids: number[], topic: string, partition: number): Promise<Array<Awaited<ReturnType<ProcessCluster['localLog']>>>> {
  return c.waitFor(`replicas ${ids.join(',')} of ${topic}/${partition} at one high watermark`, async () => {
    const first = await Promise.all(ids.map((id) => c.localLog(id, topic, partition)));
    if (!first.every((l) => l.hw === first[0].hw)) return null;
    const from = Math.max(...first.map((l) => l.start));
    const ls = await Promise.all(ids.map((id) => c.localLog(id, topic, partition, from)));
    return ls.every((l) => l.hw === first[0].hw) ? ls : null;
  });
}

/** Creates a topic through node `via`, retrying while placement does not yet see every node alive. */
export async function createTopic(c: ProcessCluster, via: number, name: string, partitions: number, replicationFactor: number): Promise<void> {
  await c.waitFor(`topic ${name} created`, async () => {
    try {
      await c.withAdmin(via, (a) => a.createTopic(name, { partitions, replicationFactor }));
    } catch (err) {
      // An earlier try that timed out on the client may have gone through.
      if ((err as { code?: string }).code !== 'TOPIC_ALREADY_EXISTS') throw err;
    }
    return true;
  });
}
