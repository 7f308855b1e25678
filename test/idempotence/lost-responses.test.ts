/**
 * Goal: with responses lost at random, an idempotent producer writes every record exactly once and in
 * order. Method: the real broker (`sluice serve`, a child process) behind a TCP proxy that drops
 * responses (cutting the connection) but never requests; a TS Producer with defaults (idempotent, up
 * to 5 requests in flight per partition) and a short request deadline sends 100,000 records to two
 * partitions; then, with the proxy out of the way, every partition must hold exactly its records'
 * values 0..n-1 in order. The proxy must have dropped responses, or the test proves nothing; the same
 * load with `idempotent: false` must produce duplicates, which shows the check can fail.
 * The seed of the proxy's randomness is printed; SEED=<n> replays it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import { spawnBroker } from '../../bench/broker-process.js';
import { tempDir } from '../e2e/helpers.js';
import { startDropProxy } from './tcp-proxy.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

const PARTITIONS = 2;
/** Records awaiting acknowledgement at once (bounds the test's memory, as `sluice produce` does). */
const PENDING_MAX = 5_000;
/** Fast reconnects: the proxy cuts connections often. */
const CHANNEL = { 'grpc.initial_reconnect_backoff_ms': 20, 'grpc.max_reconnect_backoff_ms': 100, 'grpc.use_local_subchannel_pool': 1 };

async function produceThroughProxy(address: string, topic: string, total: number, idempotent: boolean): Promise<{ failed: number }> {
  const producer = new Producer({ brokers: address, idempotent, requestTimeoutMs: 2_000, retries: 50, retryBackoffMs: 10, retryBackoffMaxMs: 100, lingerMs: 2, batchBytes: 4 * 1024, channelOptions: CHANNEL });
  const pending = new Set<Promise<unknown>>();
  let failed = 0;
  for (let i = 0; i < total; i++) {
    const partition = i % PARTITIONS;
    const p = producer.send(topic, { partition, value: String(Math.floor(i / PARTITIONS)) }).catch(() => void failed++);
    pending.add(p);
    void p.finally(() => pending.delete(p));
    if (pending.size >= PENDING_MAX) await Promise.race(pending);
  }
  await Promise.all(pending);
  await producer.close();
  return { failed };
}

async function readValues(address: string, topic: string, partition: number): Promise<string[]> {
  const consumer = new Consumer({ brokers: address, topic, partitions: [partition], stopAtEnd: true });
  const out: string[] = [];
  for await (const r of consumer) out.push(r.value!.toString());
  consumer.close();
  return out;
}

describe('responses lost at random', () => {
  it('an idempotent producer writes 100,000 records exactly once, in order', async () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    console.log(`lost-responses seed=${seed} (replay with SEED=${seed})`);
    const broker = await spawnBroker(tempDir('sluice-idem-'));
    children.push(broker.child);
    const admin = new Admin({ brokers: broker.grpcAddress });
    await admin.createTopic('exactly-once', { partitions: PARTITIONS });
    await admin.createTopic('at-least-once', { partitions: PARTITIONS });
    admin.close();
    const proxy = await startDropProxy(broker.grpcAddress, { seed, dropProbability: 0.1 });
    try {
      const total = 100_000;
      const { failed } = await produceThroughProxy(proxy.address, 'exactly-once', total, true);
      console.log(`responses dropped: ${proxy.dropped}, chunks forwarded: ${proxy.forwarded}`);
      expect(failed).toBe(0);
      expect(proxy.dropped, 'the proxy must have dropped responses for this test to mean anything').toBeGreaterThanOrEqual(5);
      for (let p = 0; p < PARTITIONS; p++) {
        const values = await readValues(broker.grpcAddress, 'exactly-once', p);
        const firstWrong = values.findIndex((v, i) => v !== String(i));
        expect({ partition: p, count: values.length, firstWrong }).toEqual({ partition: p, count: total / PARTITIONS, firstWrong: -1 });
      }

      // The checker can fail: the same faults without idempotence duplicate records.
      const droppedBefore = proxy.dropped;
      const small = 20_000;
      await produceThroughProxy(proxy.address, 'at-least-once', small, false);
      expect(proxy.dropped - droppedBefore).toBeGreaterThanOrEqual(3);
      let stored = 0;
      for (let p = 0; p < PARTITIONS; p++) stored += (await readValues(broker.grpcAddress, 'at-least-once', p)).length;
      expect(stored).toBeGreaterThan(small);
    } finally {
      await proxy.close();
      broker.child.kill('SIGTERM');
    }
  }, 240_000);
});
