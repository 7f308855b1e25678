/**
 * Goal: a shard worker that dies is replaced without losing acknowledged records, its in-flight
 * requests fail with UNAVAILABLE instead of hanging, and the other shards never notice; a stalled
 * shard pushes back with QUEUE_FULL and bounded memory instead of queueing without limit.
 * Method: an in-process Broker with 2 shards. Crashes use the `debugCrashShard` hook (the worker calls
 * process.exit, as an uncaught error would end it); stalls use `debugStallShard` (the worker thread
 * busy-waits, as on a stuck disk) with a 1 MiB request ring and short bounds. GetMetadata must answer
 * while a shard is stalled: the test starts an exact DescribeTopic (queued behind the stall) first and
 * checks that metadata() settles before it, so no clock decides the outcome.
 */
import { describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker/index.js';
import { SluiceError } from '../../src/errors.js';
import { encodeBatch } from '../../src/batch/index.js';
import { batchOf, expectCode, openBroker, readAll } from './helpers.js';

/** Produces until the shard answers again (it restarts in the background). */
async function untilServing(broker: Broker, topic: string, partition: number): Promise<void> {
  // Bounded in count and time: a replacement worker starts slowly on a loaded machine.
  const deadline = performance.now() + 30_000;
  for (let i = 0; i < 1_200 && performance.now() < deadline; i++) {
    try {
      await broker.produce({ topic, partition, batches: batchOf(1, 'probe'), acks: 'all' });
      return;
    } catch (err) {
      if (!(err instanceof SluiceError) || err.code !== 'UNAVAILABLE') throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new Error('shard never came back');
}

function partitionOnShard(broker: Broker, topic: string, partitions: number, shard: number): number {
  for (let p = 0; p < partitions; p++) if (broker.shardFor(topic, p) === shard) return p;
  throw new Error(`no partition on shard ${shard}`);
}

describe('worker crash', () => {
  it('fails in-flight requests with UNAVAILABLE, restarts, recovers partitions, keeps serving', async () => {
    const broker = await openBroker();
    await broker.createTopic('c', 4, 1, {});
    const victim = partitionOnShard(broker, 'c', 4, 0);
    const bystander = partitionOnShard(broker, 'c', 4, 1);
    await broker.produce({ topic: 'c', partition: victim, batches: batchOf(5, 'acked'), acks: 'all' });

    const parked = broker.fetch({ topic: 'c', partition: victim, offset: 5, maxBytes: 1 << 20, maxWaitMs: 20_000 });
    const unacked = broker.produce({ topic: 'c', partition: victim, batches: batchOf(1, 'maybe'), acks: 'all' });
    broker.debugCrashShard(0); // same turn: the produce reaches the worker, its ack never leaves
    await expectCode(parked, 'UNAVAILABLE');
    await expectCode(unacked, 'UNAVAILABLE');

    // The other shard never stopped.
    await broker.produce({ topic: 'c', partition: bystander, batches: batchOf(1), acks: 'all' });
    await untilServing(broker, 'c', victim);
    expect(broker.shardRestarts()).toEqual([1, 0]);
    const after = await readAll(broker, 'c', victim);
    expect(after.slice(0, 5)).toEqual(['acked0', 'acked1', 'acked2', 'acked3', 'acked4']);
    expect(after.at(-1)).toBe('probe0');
    // Long-poll works on the new worker too.
    const hw = (await broker.describeTopic('c')).partitions[victim].highWatermark;
    const waiting = broker.fetch({ topic: 'c', partition: victim, offset: hw, maxBytes: 1 << 20, maxWaitMs: 10_000 });
    await broker.produce({ topic: 'c', partition: victim, batches: batchOf(1, 'new'), acks: 'leader' });
    expect((await waiting).batches.length).toBeGreaterThan(0);
    await broker.close();
  });
});

describe('hung worker', () => {
  it('is replaced by the watchdog; its requests fail UNAVAILABLE and the shard serves again', async () => {
    // 2 s of silence: far below the 60 s stall, and above what a healthy replacement worker's start-up
    // can cost on a loaded machine (at 600 ms the watchdog replaced the replacement too, under CI load).
    const broker = await openBroker({ watchdogMs: 2_000, statsIntervalMs: 50 });
    await broker.createTopic('h', 2, 1, {});
    const p = partitionOnShard(broker, 'h', 2, 0);
    await broker.produce({ topic: 'h', partition: p, batches: batchOf(2, 'before'), acks: 'all' });
    broker.debugStallShard(0, 60_000);
    await expectCode(broker.produce({ topic: 'h', partition: p, batches: batchOf(1), acks: 'all' }), 'UNAVAILABLE');
    await untilServing(broker, 'h', p);
    expect(broker.shardRestarts()).toEqual([1, 0]);
    expect((await readAll(broker, 'h', p)).slice(0, 2)).toEqual(['before0', 'before1']);
    await broker.close();
  });
});

describe('backpressure', () => {
  it('answers QUEUE_FULL when a stalled shard fills its ring, bounded, and recovers', async () => {
    const broker = await openBroker({ requestRingBytes: 1 << 20, ringWaitMs: 300, ringWaitersMax: 8 });
    await broker.createTopic('bp', 2, 1, {});
    const p = partitionOnShard(broker, 'bp', 2, 0);
    const batch = encodeBatch(Array.from({ length: 100 }, () => ({ key: null, value: Buffer.alloc(1000, 1) }))); // ~100 KB
    await expectCode(broker.produce({ topic: 'bp', partition: p, batches: Buffer.concat(Array(6).fill(batch)), acks: 'all' }), 'RECORD_TOO_LARGE');

    broker.debugStallShard(0, 1500);
    const results = await Promise.allSettled(Array.from({ length: 60 }, () => broker.produce({ topic: 'bp', partition: p, batches: batch, acks: 'leader' })));
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const codes = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as SluiceError).code] : []));
    expect(new Set(codes)).toEqual(new Set(['QUEUE_FULL']));
    // What got in is what fits in the ring (1 MiB / ~100 KB): the rest was refused, not queued.
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThanOrEqual(10);
    // After the stall the shard takes produces again; its acks=all commits what came before it.
    await broker.produce({ topic: 'bp', partition: p, batches: batch, acks: 'all' });
    const d = await broker.describeTopic('bp');
    expect(d.partitions[p].highWatermark).toBe(1 + ok * 100 + 100); // after the first term's no-op
    await broker.close();
  });
});

describe('metadata while a shard is busy', () => {
  it('answers GetMetadata from the last pushed stats while a shard is stalled; DescribeTopic stays exact', async () => {
    const broker = await openBroker({ statsIntervalMs: 50 });
    await broker.createTopic('md', 2, 1, {});
    const p = partitionOnShard(broker, 'md', 2, 0);
    await broker.produce({ topic: 'md', partition: p, batches: batchOf(3), acks: 'all' });
    // The high watermark reaches metadata with the shard's next periodic stats message.
    let hw = -1;
    // The first term's no-op (0) and the 3 records.
    for (let i = 0; i < 500 && hw !== 4; i++) {
      hw = (await broker.metadata(['md'])).topics[0].partitions[p].highWatermark;
      if (hw !== 4) await new Promise((r) => setTimeout(r, 10));
    }
    expect(hw).toBe(4);

    broker.debugStallShard(0, 2000);
    const settled: string[] = [];
    const exact = broker.describeTopic('md').then((d) => {
      settled.push('describeTopic');
      return d;
    });
    const md = await broker.metadata();
    settled.push('metadata');
    // metadata() did not wait behind the stalled shard: the describe queued there is still pending.
    expect(settled).toEqual(['metadata']);
    expect(md.topics.map((t) => t.name)).toEqual(['md']);
    expect(md.topics[0].partitions[p]).toMatchObject({ partition: p, highWatermark: 4, logStartOffset: 0, leader: 0, replicas: [0] });
    expect((await exact).partitions[p].highWatermark).toBe(4);
    expect(settled).toEqual(['metadata', 'describeTopic']);

    // A deleted topic's numbers are not shown for a new topic of the same name.
    await broker.deleteTopic('md');
    await broker.createTopic('md', 2, 1, {});
    // 0 until the new partitions' stats arrive, then 1 (their own no-op): never the old topic's 4.
    for (const x of (await broker.metadata(['md'])).topics[0].partitions) expect([0, 1]).toContain(x.highWatermark);
    await expectCode(broker.metadata(['missing']), 'UNKNOWN_TOPIC');
    await expectCode(broker.metadata(['../bad']), 'INVALID_TOPIC_NAME');
    await broker.close();
  });
});
