/**
 * Goal: records go in and come back out exactly, in order, through the shards and rings — raw batches
 * and structured records, every acks level, keyed and unkeyed partitioning, long-poll, list offsets —
 * and every bad data-path input is refused with a clear code without writing anything.
 * Method: an in-process Broker on a temp dir (2 shards, small response ring so fetches also take the
 * copy fallback); decode what fetch returns with the batch codec and compare.
 */
import { controlBatch } from '../../src/partition/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { partitionForKey } from '../../src/model/index.js';
import { batchOf, expectCode, openBroker, readAll, values, valuesIn } from './helpers.js';

let broker: Broker;
beforeAll(async () => {
  broker = await openBroker({ responseRingBytes: 256 * 1024 });
  await broker.createTopic('t', 4, 1, {});
  await broker.createTopic('small', 1, 1, { 'max.message.bytes': '1000' });
});
afterAll(() => broker.close());

async function hw(topic: string, partition: number): Promise<number> {
  return (await broker.describeTopic(topic)).partitions[partition].highWatermark;
}

describe('produce and fetch', () => {
  it('round-trips raw batches and structured records with keys, headers, nulls and timestamps', async () => {
    const r1 = await broker.produce({ topic: 't', partition: 0, batches: Buffer.concat([batchOf(2, 'a'), batchOf(3, 'b')]), acks: 'all' });
    // Offset 0 is the partition's first term's no-op (a control batch every reader skips).
    expect(r1).toMatchObject({ partition: 0, baseOffset: 1, lastOffset: 5, logStartOffset: 0 });
    const r2 = await broker.produce({
      topic: 't',
      partition: 0,
      records: [
        { key: Buffer.from('k'), value: null, headers: [{ key: 'h', value: Buffer.from('hv') }], timestampMs: 1_700_000_000_000 },
        { key: null, value: Buffer.alloc(0) },
      ],
      acks: 'leader',
    });
    expect([r2.baseOffset, r2.lastOffset]).toEqual([6, 7]);
    // acks=leader answers at append; the records become visible at commit, which a long-poll waits for.
    const f = await broker.fetch({ topic: 't', partition: 0, offset: 6, maxBytes: 1 << 20, maxWaitMs: 10_000 });
    expect(f).toMatchObject({ highWatermark: 8, logStartOffset: 0, nextOffset: 8 });
    expect(valuesIn(f.batches, 6)).toEqual(['<null>', '']);
    expect(await readAll(broker, 't', 0)).toEqual(['a0', 'a1', 'b0', 'b1', 'b2', '<null>', '']);
  });

  it('acks=none answers before the append and the record still lands', async () => {
    const before = await hw('t', 3);
    const r = await broker.produce({ topic: 't', partition: 3, batches: batchOf(1, 'n'), acks: 'none' });
    expect(r).toMatchObject({ partition: 3, baseOffset: -1, lastOffset: -1 });
    await expect.poll(() => hw('t', 3)).toBe(before + 1);
  });

  it('partitions keyed records by murmur2 and spreads unkeyed ones round-robin', async () => {
    const key = Buffer.from('customer-42');
    const want = partitionForKey(key, 4);
    const viaRecords = await broker.produce({ topic: 't', records: [{ key, value: Buffer.from('x') }], acks: 'all' });
    const viaBatch = await broker.produce({ topic: 't', batches: encodeBatch([{ key, value: Buffer.from('y') }]), acks: 'all' });
    expect([viaRecords.partition, viaBatch.partition]).toEqual([want, want]);
    const seen = new Set<number>();
    for (let i = 0; i < 8; i++) seen.add((await broker.produce({ topic: 't', records: values(1), acks: 'leader' })).partition);
    expect(seen.size).toBe(4);
  });

  it('keeps per-partition order under concurrent producers', async () => {
    await broker.createTopic('order', 1, 1, {});
    const producers = 8;
    const perProducer = 40;
    await Promise.all(
      Array.from({ length: producers }, async (_, p) => {
        for (let i = 0; i < perProducer; i++) {
          await broker.produce({ topic: 'order', partition: 0, records: [{ key: null, value: Buffer.from(`${p}:${i}`) }], acks: i % 2 ? 'all' : 'leader' });
        }
      }),
    );
    const all = await readAll(broker, 'order', 0);
    expect(all).toHaveLength(producers * perProducer);
    for (let p = 0; p < producers; p++) {
      const mine = all.filter((v) => v.startsWith(`${p}:`)).map((v) => Number(v.split(':')[1]));
      expect(mine).toEqual(Array.from({ length: perProducer }, (_, i) => i));
    }
  });

  it('long-polls: wakes on append, times out empty, and honours abort', async () => {
    await broker.createTopic('lp', 1, 1, {});
    const t0 = Date.now();
    // From 0, which holds only the term's no-op: nothing to show yet, so the fetch parks as at the end.
    const waiting = broker.fetch({ topic: 'lp', partition: 0, offset: 0, maxBytes: 1 << 20, maxWaitMs: 10_000 });
    setTimeout(() => void broker.produce({ topic: 'lp', partition: 0, batches: batchOf(1, 'late'), acks: 'leader' }), 100);
    const woke = await waiting;
    expect(valuesIn(woke.batches)).toEqual(['late0']);
    expect(Date.now() - t0).toBeLessThan(5_000);

    const t1 = Date.now();
    const empty = await broker.fetch({ topic: 'lp', partition: 0, offset: 2, maxBytes: 1 << 20, maxWaitMs: 150 });
    expect(empty.batches.length).toBe(0);
    expect(empty.nextOffset).toBe(2);
    expect(Date.now() - t1).toBeGreaterThanOrEqual(140);

    const ac = new AbortController();
    const aborted = broker.fetch({ topic: 'lp', partition: 0, offset: 2, maxBytes: 1 << 20, maxWaitMs: 10_000 }, ac.signal);
    setTimeout(() => ac.abort(), 50);
    await expectCode(aborted, 'TIMEOUT');
  });

  it('serves fetches larger than the response ring through the copy path', async () => {
    await broker.createTopic('big', 1, 1, {});
    const big = encodeBatch(Array.from({ length: 10 }, (_, i) => ({ key: null, value: Buffer.alloc(50_000, i) })));
    await broker.produce({ topic: 'big', partition: 0, batches: big, acks: 'all' });
    await broker.produce({ topic: 'big', partition: 0, batches: big, acks: 'all' });
    const f = await broker.fetch({ topic: 'big', partition: 0, offset: 0, maxBytes: 4 << 20, maxWaitMs: 0 });
    expect(valuesIn(f.batches)).toHaveLength(20);
    const small = await broker.fetch({ topic: 'big', partition: 0, offset: 1, maxBytes: 1, maxWaitMs: 0 });
    expect(small.nextOffset).toBe(11); // always at least one whole batch (the no-op at 0 is one too)
  });

  it('lists offsets: earliest, latest and by timestamp', async () => {
    await broker.createTopic('lo', 1, 1, {});
    await broker.produce({ topic: 'lo', partition: 0, records: [{ key: null, value: Buffer.from('old'), timestampMs: 1000 }], acks: 'all' });
    await broker.produce({ topic: 'lo', partition: 0, records: [{ key: null, value: Buffer.from('new'), timestampMs: 5000 }], acks: 'all' });
    expect(await broker.listOffsets('lo', 0, { kind: 'earliest' })).toEqual({ partition: 0, offset: 0 });
    expect(await broker.listOffsets('lo', 0, { kind: 'latest' })).toEqual({ partition: 0, offset: 3 });
    expect(await broker.listOffsets('lo', 0, { kind: 'timestamp', timestampMs: 3000 })).toEqual({ partition: 0, offset: 2 });
    expect(await broker.listOffsets('lo', 0, { kind: 'timestamp', timestampMs: 9000 })).toEqual({ partition: 0, offset: -1 });
  });

  it('refuses bad data-path input and writes nothing', async () => {
    await broker.createTopic('bad', 2, 1, {});
    const good = batchOf(2);
    const corrupt = Buffer.from(good);
    corrupt[corrupt.length - 1] ^= 0xff; // breaks the CRC
    const truncated = good.subarray(0, good.length - 3);
    const produce = (batches: Uint8Array, topic = 'bad', partition: number | undefined = 0) => broker.produce({ topic, partition, batches, acks: 'all' });
    await expectCode(produce(corrupt), 'CORRUPT_BATCH');
    await expectCode(produce(truncated), 'CORRUPT_BATCH');
    await expectCode(produce(Buffer.concat([good, corrupt])), 'CORRUPT_BATCH'); // one bad batch sinks the request
    await expectCode(produce(Buffer.alloc(0)), 'CORRUPT_BATCH');
    await expectCode(produce(Buffer.alloc(100, 0)), 'CORRUPT_BATCH');
    await expectCode(produce(Buffer.alloc(100, 7)), 'RECORD_TOO_LARGE'); // garbage whose length field reads as 117 MB
    await expectCode(produce(batchOf(200), 'small'), 'RECORD_TOO_LARGE');
    await expectCode(produce(good, 'nope'), 'UNKNOWN_TOPIC');
    await expectCode(produce(good, 'bad', 2), 'UNKNOWN_PARTITION');
    await expectCode(produce(good, 'bad', -1), 'UNKNOWN_PARTITION');
    await expectCode(broker.produce({ topic: 'bad', partition: 0, acks: 'all' }), 'INVALID_REQUEST');
    await expectCode(broker.produce({ topic: 'bad', partition: 0, records: [], acks: 'all' }), 'INVALID_REQUEST');
    await expectCode(broker.produce({ topic: 'bad', partition: 0, records: [{ key: null, value: 42 as unknown as Uint8Array }], acks: 'all' }), 'INVALID_REQUEST');
    await expectCode(broker.produce({ topic: 'bad', partition: 0, batches: good, acks: 'most' as 'all' }), 'INVALID_REQUEST');
    const fetch = (offset: number, partition = 0, topic = 'bad') => broker.fetch({ topic, partition, offset, maxBytes: 1024, maxWaitMs: 0 });
    await expectCode(fetch(-1), 'INVALID_OFFSET');
    await expectCode(fetch(1.5), 'INVALID_OFFSET');
    await expectCode(fetch(2), 'OFFSET_OUT_OF_RANGE'); // above the high watermark (1: the no-op)
    await expectCode(fetch(0, 5), 'UNKNOWN_PARTITION');
    await expectCode(fetch(0, 0, 'nope'), 'UNKNOWN_TOPIC');
    await expectCode(broker.listOffsets('bad', 9, { kind: 'latest' }), 'UNKNOWN_PARTITION');
    const d = await broker.describeTopic('bad');
    // Nothing but each partition's first no-op.
    const noop = controlBatch('noop', 0, 1, null).length;
    expect(d.partitions.map((p) => [p.highWatermark, p.sizeBytes])).toEqual([
      [1, noop],
      [1, noop],
    ]);
    // And the partition still works.
    await produce(good);
    expect(await readAll(broker, 'bad', 0)).toEqual(['v0', 'v1']);
  });
});
