/**
 * Goal: the idempotence protocol behaves as docs/api.md says, for a client in any language and for the
 * TS Producer: InitProducer ids and epochs (persisted across restarts), dedup of a structured and of a
 * raw retry with the original offsets and nothing written, OUT_OF_ORDER_SEQUENCE (OUT_OF_RANGE) for a
 * gap, PRODUCER_FENCED (FAILED_PRECONDITION) for an older epoch of a named producer, even on a
 * partition the newer one has not written yet, INVALID_ARGUMENT for bad fields, and the server keeps
 * serving after each.
 * Method: an in-process startBroker driven over real gRPC by a proto-loader client (no generated TS,
 * as another language would), then by two TS Producers with the same producer name.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Producer } from '../../src/client/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { call, dynamicClients, failure, tempDir } from '../e2e/helpers.js';

let running: RunningBroker;
let dyn: ReturnType<typeof dynamicClients>;
const dataDir = tempDir('sluice-idem-proto-');

beforeAll(async () => {
  running = await startBroker({ dataDir, shards: 2, httpAddress: null });
  dyn = dynamicClients(running.grpcAddress);
  await call(dyn.admin, 'CreateTopic', { name: 'idem', partitions: 2 });
});
afterAll(async () => {
  dyn?.close();
  await running?.close();
});

const recs = (...vs: string[]): object[] => vs.map((v) => ({ value: Buffer.from(v) }));
const hwm = async (partition: number): Promise<string> => (await call(dyn.broker, 'ListOffsets', { topic: 'idem', partitions: [partition] })).offsets[0].offset;

describe('idempotence over gRPC (proto-loader client)', () => {
  it('hands out distinct ids, and for a name the same id with a rising epoch', async () => {
    const a = await call(dyn.broker, 'InitProducer', {});
    const b = await call(dyn.broker, 'InitProducer', {});
    expect(a.producerId).not.toBe(b.producerId);
    expect([a.producerEpoch, b.producerEpoch]).toEqual([0, 0]);
    const n1 = await call(dyn.broker, 'InitProducer', { producerName: 'named' });
    const n2 = await call(dyn.broker, 'InitProducer', { producerName: 'named' });
    expect(n2.producerId).toBe(n1.producerId);
    expect(n2.producerEpoch).toBe(n1.producerEpoch + 1);
    const bad = await failure(call(dyn.broker, 'InitProducer', { producerName: 'x'.repeat(250) }));
    expect([bad.code, bad.reason]).toEqual([grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST']);
  });

  it('answers a structured retry with the original offsets and writes nothing; refuses a gap', async () => {
    const { producerId, producerEpoch } = await call(dyn.broker, 'InitProducer', {});
    const req = { topic: 'idem', partition: 0, records: recs('a', 'b', 'c'), producerId, producerEpoch, baseSequence: 0 };
    const first = await call(dyn.broker, 'Produce', req);
    const again = await call(dyn.broker, 'Produce', req);
    expect(again).toMatchObject({ baseOffset: first.baseOffset, lastOffset: first.lastOffset });
    expect(await hwm(0)).toBe(String(Number(first.lastOffset) + 1));
    const gap = await failure(call(dyn.broker, 'Produce', { ...req, baseSequence: 5 }));
    expect([gap.code, gap.reason]).toEqual([grpc.status.OUT_OF_RANGE, 'OUT_OF_ORDER_SEQUENCE']);
    const next = await call(dyn.broker, 'Produce', { ...req, records: recs('d'), baseSequence: 3 });
    expect(Number(next.baseOffset)).toBe(Number(first.lastOffset) + 1);
  });

  it('deduplicates raw batches by their v2 header fields', async () => {
    const { producerId, producerEpoch } = await call(dyn.broker, 'InitProducer', {});
    const batch = (seq: number): Buffer => encodeBatch([{ key: null, value: Buffer.from(`r${seq}`) }], { producerId: BigInt(producerId), producerEpoch, baseSequence: seq });
    const first = await call(dyn.broker, 'Produce', { topic: 'idem', partition: 1, recordBatch: batch(0) });
    const again = await call(dyn.broker, 'Produce', { topic: 'idem', partition: 1, recordBatch: batch(0) });
    expect(again.baseOffset).toBe(first.baseOffset);
    expect(await hwm(1)).toBe(String(Number(first.baseOffset) + 1));
    const mixed = await failure(call(dyn.broker, 'Produce', { topic: 'idem', partition: 1, recordBatch: batch(1), producerId }));
    expect([mixed.code, mixed.reason]).toEqual([grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST']);
  });

  it('refuses bad producer fields with INVALID_ARGUMENT and keeps serving', async () => {
    for (const extra of [{ producerEpoch: 1 }, { baseSequence: 3 }, { producerId: -2 }, { producerId: 1, producerEpoch: 40_000 }, { producerId: 1, baseSequence: -1 }]) {
      const f = await failure(call(dyn.broker, 'Produce', { topic: 'idem', partition: 0, records: recs('x'), ...extra }));
      expect([f.code, f.reason], JSON.stringify(extra)).toEqual([grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST']);
    }
    expect((await call(dyn.broker, 'Produce', { topic: 'idem', partition: 0, records: recs('ok') })).partition).toBe(0);
  });
});

describe('fencing two producers with the same name (TS Producer)', () => {
  it("refuses the older one's writes once the newer one started, on any partition", async () => {
    const opts = { brokers: running.grpcAddress, producerName: 'billing', retries: 0 };
    const older = new Producer(opts);
    await older.send('idem', { partition: 0, value: 'old-1' });
    const newer = new Producer(opts);
    await newer.send('idem', { partition: 0, value: 'new-1' });
    const end0 = await hwm(0);
    const end1 = await hwm(1);
    // Partition 0 has seen the newer epoch; partition 1 has not: the broker's edge fences there.
    for (const partition of [0, 1]) {
      await expect(older.send('idem', { partition, value: 'old-2' })).rejects.toMatchObject({ code: 'PRODUCER_FENCED' });
    }
    expect([await hwm(0), await hwm(1)]).toEqual([end0, end1]);
    // Once fenced the producer stays stopped; the newer one goes on.
    await expect(older.send('idem', { partition: 1, value: 'old-3' })).rejects.toMatchObject({ code: 'PRODUCER_FENCED' });
    await newer.send('idem', { partition: 1, value: 'new-2' });
    await Promise.allSettled([older.close(), newer.close()]);
  });

  it('keeps ids and epochs across a restart (persisted before they are returned)', async () => {
    const before = await call(dyn.broker, 'InitProducer', { producerName: 'durable' });
    const anon = await call(dyn.broker, 'InitProducer', {});
    dyn.close();
    await running.close();
    running = await startBroker({ dataDir, shards: 2, httpAddress: null });
    dyn = dynamicClients(running.grpcAddress);
    const after = await call(dyn.broker, 'InitProducer', { producerName: 'durable' });
    expect(after.producerId).toBe(before.producerId);
    expect(after.producerEpoch).toBe(before.producerEpoch + 1);
    const anon2 = await call(dyn.broker, 'InitProducer', {});
    expect(BigInt(anon2.producerId)).toBeGreaterThan(BigInt(anon.producerId));
    // The old epoch is still fenced after the restart.
    const f = await failure(call(dyn.broker, 'Produce', { topic: 'idem', partition: 1, records: recs('z'), producerId: before.producerId, producerEpoch: before.producerEpoch }));
    expect([f.code, f.reason]).toEqual([grpc.status.FAILED_PRECONDITION, 'PRODUCER_FENCED']);
  });
});
