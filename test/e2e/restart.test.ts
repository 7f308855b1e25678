/**
 * Goal: data outlives the broker — records survive a clean restart, a crashed shard worker fails its
 * in-flight gRPC calls with UNAVAILABLE (never a hang) and comes back with its data, and shutdown
 * ends long-polls and subscriptions promptly. Method: in-process startBroker on one data dir, closed
 * and reopened; the crash uses the core's debugCrashShard hook while a long-poll Fetch is parked.
 */
import { describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker } from '../../src/server/index.js';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import type { Broker } from '../../src/broker/index.js';
import { call, dynamicClients, failure, tempDir } from './helpers.js';

async function readValues(address: string, topic: string, partitions?: number[]): Promise<string[]> {
  const consumer = new Consumer({ brokers: address, topic, partitions, stopAtEnd: true });
  const out: string[] = [];
  for await (const r of consumer) out.push(r.value?.toString() ?? '<null>');
  consumer.close();
  return out;
}

describe('restart and recovery', () => {
  it('keeps topics, configs and records across a restart', async () => {
    const dataDir = tempDir();
    const first = await startBroker({ dataDir, shards: 2, httpAddress: null });
    const admin = new Admin({ brokers: first.grpcAddress });
    await admin.createTopic('keep', { partitions: 3, configs: { 'retention.ms': '3600000' } });
    const producer = new Producer({ brokers: first.grpcAddress });
    await producer.sendAll('keep', Array.from({ length: 300 }, (_, i) => ({ partition: i % 3, value: `v${i}` })));
    await producer.close();
    admin.close();
    await first.close();

    const second = await startBroker({ dataDir, shards: 2, httpAddress: null });
    try {
      const admin2 = new Admin({ brokers: second.grpcAddress });
      const t = await admin2.describeTopic('keep');
      // 100 records per partition plus a no-op per term (the first start's and this one's).
      expect(t.partitions.map((p) => p.highWatermark)).toEqual([102, 102, 102]);
      expect(t.configs['retention.ms']).toBe('3600000');
      admin2.close();
      const values = await readValues(second.grpcAddress, 'keep', [1]);
      expect(values).toEqual(Array.from({ length: 100 }, (_, i) => `v${i * 3 + 1}`));
    } finally {
      await second.close();
    }
  });

  it('fails in-flight calls with UNAVAILABLE when a worker crashes, then serves its data again', async () => {
    const running = await startBroker({ dataDir: tempDir(), shards: 2, httpAddress: null });
    const c = dynamicClients(running.grpcAddress);
    try {
      await call(c.admin, 'CreateTopic', { name: 'crash', partitions: 4 });
      const core = running.broker as Broker;
      const victim = [0, 1, 2, 3].find((p) => core.shardFor('crash', p) === 0)!;
      await call(c.broker, 'Produce', { topic: 'crash', partition: victim, records: [{ value: Buffer.from('acked') }] });
      // 'acked' is at 1 (0 is the first term's no-op): park at 2.
      const parked = failure(call(c.broker, 'Fetch', { topic: 'crash', partition: victim, offset: 2, maxWaitMs: 20_000 }));
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      core.debugCrashShard(0);
      const f = await parked;
      expect(f.code).toBe(grpc.status.UNAVAILABLE);
      expect(Date.now() - t0).toBeLessThan(10_000);
      // The TS producer retries UNAVAILABLE until the shard is back.
      const producer = new Producer({ brokers: running.grpcAddress, retries: 20 });
      await producer.send('crash', { partition: victim, value: 'after' });
      await producer.close();
      expect(await readValues(running.grpcAddress, 'crash', [victim])).toEqual(['acked', 'after']);
    } finally {
      c.close();
      await running.close();
    }
  });

  it('ends parked long-polls and subscriptions promptly on close', async () => {
    const running = await startBroker({ dataDir: tempDir(), shards: 1, httpAddress: null });
    const c = dynamicClients(running.grpcAddress);
    await call(c.admin, 'CreateTopic', { name: 'bye', partitions: 1 });
    const parked = failure(call(c.broker, 'Fetch', { topic: 'bye', partition: 0, offset: 0, maxWaitMs: 30_000 }));
    const stream = c.broker.Subscribe({ topic: 'bye', partition: 0, offset: 0 }) as grpc.ClientReadableStream<unknown>;
    const streamEnded = new Promise<grpc.status>((resolve) => {
      stream.on('error', (e: grpc.ServiceError) => resolve(e.code));
      stream.on('end', () => resolve(grpc.status.OK));
    });
    stream.on('data', () => {});
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await running.close();
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect((await parked).code).toBe(grpc.status.UNAVAILABLE);
    expect(await streamEnded).toBe(grpc.status.UNAVAILABLE);
    c.close();
  });
});
