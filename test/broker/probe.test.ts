/**
 * Goal: the core reports to its probe exactly: produced/fetched record counts add up to what was
 * produced and fetched, and the shards' periodic stats (queue depth, loop lag, fsync times, partition
 * sizes) reach the main thread.
 * Method: a recording probe on an in-process Broker with a fast stats interval; produce a known number
 * of records with every acks level, fetch them back, and compare the sums.
 */
import { expect, it } from 'vitest';
import { NOOP_PROBE, type BrokerProbe } from '../../src/broker/index.js';
import { batchOf, openBroker, readAll, values } from './helpers.js';

it('counts records and bytes exactly and forwards shard stats', async () => {
  const seen = { produced: 0, producedBytes: 0, fetched: 0, flushes: 0, shards: new Set<number>(), partitions: new Map<string, number>(), deleted: [] as string[] };
  const probe: BrokerProbe = {
    ...NOOP_PROBE,
    produced: (_t, records, bytes) => {
      seen.produced += records;
      seen.producedBytes += bytes;
    },
    fetched: (_t, records) => {
      seen.fetched += records;
    },
    logFlushed: (s) => {
      expect(s).toBeGreaterThanOrEqual(0);
      seen.flushes++;
    },
    shardStats: (shard, s) => {
      expect(s.queueDepth).toBeGreaterThanOrEqual(0);
      seen.shards.add(shard);
    },
    partitionStats: (topic, partition, s) => {
      seen.partitions.set(`${topic}/${partition}`, s.highWatermark);
    },
    topicDeleted: (t) => {
      seen.deleted.push(t);
    },
  };
  const broker = await openBroker({ probe, statsIntervalMs: 50 });
  await broker.createTopic('m', 3, 1, {});
  let want = 0;
  for (let i = 0; i < 30; i++) {
    const acks = (['none', 'leader', 'all'] as const)[i % 3];
    if (i % 2) await broker.produce({ topic: 'm', partition: i % 3, batches: batchOf(7), acks });
    else await broker.produce({ topic: 'm', records: values(5), acks });
    want += i % 2 ? 7 : 5;
  }
  await expect.poll(() => seen.produced).toBe(want);
  let read = 0;
  for (let p = 0; p < 3; p++) read += (await readAll(broker, 'm', p)).length;
  expect(read).toBe(want);
  expect(seen.fetched).toBe(want);
  await expect.poll(() => seen.shards.size).toBe(2);
  // Per-partition offsets: the records plus each partition's first no-op.
  await expect.poll(() => [...seen.partitions.values()].reduce((a, b) => a + b, 0)).toBe(want + 3);
  await expect.poll(() => seen.flushes).toBeGreaterThan(0);
  await broker.deleteTopic('m');
  expect(seen.deleted).toEqual(['m']);
  await broker.close();
});
