/**
 * Goal: the public gRPC API behaves as documented against the real core — records round-trip
 * (tombstones stay distinct from empty values), Fetch long-polls and wakes on produce, Subscribe
 * streams with flow control, ListOffsets/GetMetadata answer, records of one partition keep their order
 * under concurrent producers, and a stalled shard pushes back with RESOURCE_EXHAUSTED (QUEUE_FULL).
 * Method: an in-process startBroker (2 shards) driven over real gRPC by a client that @grpc/proto-loader
 * builds from the .proto files at run time (as another language would) and by the TS client.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import type { Broker } from '../../src/broker/index.js';
import { call, dynamicClients, failure, tempDir } from './helpers.js';

let running: RunningBroker;
let dyn: ReturnType<typeof dynamicClients>;

beforeAll(async () => {
  running = await startBroker({ dataDir: tempDir(), shards: 2, httpAddress: null });
  dyn = dynamicClients(running.grpcAddress);
});
afterAll(async () => {
  dyn?.close();
  await running?.close();
});

describe('gRPC API (proto-loader client)', () => {
  it('produces structured records and fetches them back, null distinct from empty', async () => {
    await call(dyn.admin, 'CreateTopic', { name: 'rt', partitions: 2 });
    const res = await call(dyn.broker, 'Produce', {
      topic: 'rt',
      partition: 1,
      records: [
        { key: Buffer.from('k1'), value: Buffer.from('v1'), headers: [{ key: 'h', value: Buffer.from('x') }] },
        { key: Buffer.from('k2') },
        { value: Buffer.alloc(0) },
      ],
      acks: 'ACKS_ALL',
    });
    // Offset 0 is the partition's first term's no-op (a control batch readers skip).
    expect(res).toMatchObject({ partition: 1, baseOffset: '1', lastOffset: '3' });
    const f = await call(dyn.broker, 'Fetch', { topic: 'rt', partition: 1, offset: 2, maxWaitMs: 0 });
    expect(f.highWatermark).toBe('4');
    expect(f.nextOffset).toBe('4');
    expect(f.records.map((r: any) => r.offset)).toEqual(['2', '3']);
    expect(f.records[0].value).toBeUndefined(); // tombstone: absent
    expect(f.records[1].key).toBeUndefined();
    expect(Buffer.compare(f.records[1].value, Buffer.alloc(0))).toBe(0); // empty: present
    const all = await call(dyn.broker, 'Fetch', { topic: 'rt', partition: 1, offset: 0, maxWaitMs: 0 });
    expect(all.records[0].headers.map((h: any) => [h.key, h.value.toString()])).toEqual([['h', 'x']]);
  });

  it('wakes a long-poll Fetch when data arrives', async () => {
    await call(dyn.admin, 'CreateTopic', { name: 'lp', partitions: 1 });
    const started = Date.now();
    const waiting = call(dyn.broker, 'Fetch', { topic: 'lp', partition: 0, offset: 0, maxWaitMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    await call(dyn.broker, 'Produce', { topic: 'lp', records: [{ value: Buffer.from('wake') }] });
    const res = await waiting;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(res.records.map((r: any) => r.value.toString())).toEqual(['wake']);
    // With no data, it answers empty after max_wait_ms.
    const t0 = Date.now();
    const empty = await call(dyn.broker, 'Fetch', { topic: 'lp', partition: 0, offset: 2, maxWaitMs: 300 });
    expect(empty.records).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it('answers ListOffsets and GetMetadata', async () => {
    await call(dyn.admin, 'CreateTopic', { name: 'lo', partitions: 2 });
    await call(dyn.broker, 'Produce', { topic: 'lo', partition: 0, records: [{ value: Buffer.from('a'), timestampMs: 1000 }, { value: Buffer.from('b'), timestampMs: 2000 }] });
    const latest = await call(dyn.broker, 'ListOffsets', { topic: 'lo', spec: 'OFFSET_SPEC_LATEST' });
    expect(latest.offsets).toEqual([{ partition: 0, offset: '3' }, { partition: 1, offset: '1' }]);
    const earliest = await call(dyn.broker, 'ListOffsets', { topic: 'lo', partitions: [0], spec: 'OFFSET_SPEC_EARLIEST' });
    expect(earliest.offsets).toEqual([{ partition: 0, offset: '0' }]);
    const md = await call(dyn.broker, 'GetMetadata', { topics: ['lo'] });
    expect(md.brokers[0].grpcAddress).toBe(running.grpcAddress);
    expect(md.topics.map((t: any) => [t.name, t.partitions.length])).toEqual([['lo', 2]]);
  });

  it('streams with Subscribe, pausing and resuming with the reader', async () => {
    await call(dyn.admin, 'CreateTopic', { name: 'sub', partitions: 1 });
    const value = Buffer.alloc(1000, 7);
    for (let b = 0; b < 20; b++) {
      const batch = encodeBatch(Array.from({ length: 100 }, (_, i) => ({ key: Buffer.from(String(b * 100 + i)), value })));
      await call(dyn.broker, 'Produce', { topic: 'sub', partition: 0, recordBatch: batch });
    }
    // Key k is at offset k + 1 (0 is the first term's no-op): start at key 50.
    const stream = dyn.broker.Subscribe({ topic: 'sub', partition: 0, offset: 51, maxBytes: 64 * 1024 }) as grpc.ClientReadableStream<any>;
    const keys: number[] = [];
    await new Promise<void>((resolve, reject) => {
      let paused = false;
      stream.on('data', (m: any) => {
        for (const r of m.records) keys.push(Number(r.key.toString()));
        if (!paused) {
          // A reader that stops reading: the server must wait for 'drain', not buffer the partition.
          paused = true;
          stream.pause();
          setTimeout(() => stream.resume(), 500);
        }
        if (keys.length >= 1950) resolve();
      });
      stream.on('error', (e: grpc.ServiceError) => (e.code === grpc.status.CANCELLED ? resolve() : reject(e)));
    });
    // A late record is pushed to the open stream.
    const more = new Promise<number>((resolve) => stream.on('data', (m: any) => resolve(Number(m.records[0].key.toString()))));
    await call(dyn.broker, 'Produce', { topic: 'sub', partition: 0, records: [{ key: Buffer.from('2000'), value }] });
    expect(await more).toBe(2000);
    stream.cancel();
    expect(keys.slice(0, 1950)).toEqual(Array.from({ length: 1950 }, (_, i) => i + 50));
  });

  it('answers grpc.health.v1 SERVING', async () => {
    const { protoPath } = await import('grpc-health-check');
    const protoLoader = await import('@grpc/proto-loader');
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath, { enums: String })) as any;
    const hc = new pkg.grpc.health.v1.Health(running.grpcAddress, grpc.credentials.createInsecure());
    expect((await call(hc, 'check', { service: '' })).status).toBe('SERVING');
    hc.close();
  });
});

describe('TS client against the real core', () => {
  it('keeps each producer\'s order within a partition under concurrent producers', async () => {
    const admin = new Admin({ brokers: running.grpcAddress });
    await admin.createTopic('order', { partitions: 3 });
    const producers = Array.from({ length: 4 }, () => new Producer({ brokers: running.grpcAddress, lingerMs: 1, batchBytes: 4096 }));
    await Promise.all(producers.map((p, id) => Promise.all(Array.from({ length: 500 }, (_, seq) => p.send('order', { partition: 1, key: `p${id}`, value: String(seq) })))));
    await Promise.all(producers.map((p) => p.close()));
    const consumer = new Consumer({ brokers: running.grpcAddress, topic: 'order', partitions: [1], stopAtEnd: true });
    const seen = new Map<string, number[]>();
    let expectedOffset = 1; // 0 is the first term's no-op, which readers skip
    for await (const r of consumer) {
      expect(r.offset).toBe(expectedOffset++);
      const k = r.key!.toString();
      seen.set(k, [...(seen.get(k) ?? []), Number(r.value!.toString())]);
    }
    consumer.close();
    expect(expectedOffset).toBe(2001);
    for (let id = 0; id < 4; id++) expect(seen.get(`p${id}`)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    admin.close();
  });

  it('partitions keyed records exactly as the broker does', async () => {
    const admin = new Admin({ brokers: running.grpcAddress });
    await admin.createTopic('keys', { partitions: 5 });
    const producer = new Producer({ brokers: running.grpcAddress });
    for (const key of ['alpha', 'beta', 'gamma', 'delta', 'epsilon']) {
      const client = await producer.send('keys', { key, value: 'x' });
      const byBroker = await call(dyn.broker, 'Produce', { topic: 'keys', records: [{ key: Buffer.from(key), value: Buffer.from('y') }] });
      expect(byBroker.partition).toBe(client.partition);
    }
    await producer.close();
    admin.close();
  });
});

describe('backpressure over gRPC', () => {
  it('answers RESOURCE_EXHAUSTED/QUEUE_FULL for a stalled shard instead of queueing, then recovers', async () => {
    const bp = await startBroker({ dataDir: tempDir(), shards: 2, httpAddress: null, tuning: { requestRingBytes: 1 << 20, ringWaitMs: 300, ringWaitersMax: 8 } });
    const c = dynamicClients(bp.grpcAddress);
    try {
      await call(c.admin, 'CreateTopic', { name: 'bp', partitions: 2 });
      const core = bp.broker as Broker;
      const p = [0, 1].find((x) => core.shardFor('bp', x) === 0)!;
      const batch = encodeBatch(Array.from({ length: 100 }, () => ({ key: null, value: Buffer.alloc(1000, 1) })));
      core.debugStallShard(0, 1500);
      const results = await Promise.allSettled(Array.from({ length: 60 }, () => call(c.broker, 'Produce', { topic: 'bp', partition: p, recordBatch: batch, acks: 'ACKS_LEADER' })));
      const failures = await Promise.all(results.filter((r) => r.status === 'rejected').map((r) => failure(Promise.reject((r as PromiseRejectedResult).reason))));
      expect(failures.length).toBeGreaterThan(0);
      for (const f of failures) expect([f.code, f.reason]).toEqual([grpc.status.RESOURCE_EXHAUSTED, 'QUEUE_FULL']);
      const ok = results.length - failures.length;
      // It recovers: an acks=all produce is answered at commit, which covers every acks=leader write
      // before it (those were answered at append, before their fdatasync: reading the high watermark
      // right after them raced the commit on a loaded machine).
      const last = await call(c.broker, 'Produce', { topic: 'bp', partition: p, recordBatch: batch });
      expect(Number(last.baseOffset)).toBe(1 + ok * 100); // after the first term's no-op
      const hw = await call(c.broker, 'ListOffsets', { topic: 'bp', partitions: [p] });
      expect(Number(hw.offsets[0].offset)).toBe(1 + (ok + 1) * 100);
    } finally {
      c.close();
      await bp.close();
    }
  });
});
