/**
 * Goal: a Subscribe that tails a partition gets every record once and in order, batch after batch,
 * whether its reader keeps up or pauses (the caught-up long-polls are one chained fetch the shard
 * renews itself, which runs at most two answers ahead of the reader: src/shard/fetch-chain.ts).
 *
 * Method: an in-process broker with one shard; a proto-loader Subscribe stream (structured records,
 * then raw batches); produces of one record each, acks=all, awaited one by one so each commits on its
 * own; a pause of the stream while twenty more commit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { call, dynamicClients, tempDir } from './helpers.js';

let running: RunningBroker;
let c: ReturnType<typeof dynamicClients>;

async function until(what: string, cond: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const produce = (topic: string, value: string) =>
  running.broker.produce({ topic, partition: 0, batches: encodeBatch([{ key: null, value: Buffer.from(value) }]), acks: 'all' });

beforeAll(async () => {
  running = await startBroker({ dataDir: tempDir(), shards: 1, httpAddress: null });
  c = dynamicClients(running.grpcAddress);
});
afterAll(async () => {
  c?.close();
  await running?.close();
});

describe('Subscribe tailing a partition', () => {
  for (const raw of [false, true]) {
    it(`delivers every record once and in order, keeping up and after a pause (${raw ? 'raw batches' : 'records'})`, async () => {
      const topic = raw ? 'tail-raw' : 'tail-records';
      await call(c.admin, 'CreateTopic', { name: topic, partitions: 1 });
      const seen: string[] = [];
      const stream = (c.broker as any).Subscribe({ topic, partition: 0, offset: 0, maxBytes: 0, raw }) as grpc.ClientReadableStream<any>;
      stream.on('data', (res: any) => {
        if (raw) {
          for (const b of decodeBatches(res.recordBatches)) if (!b.header.isControl) for (const r of b.records) seen.push(Buffer.from(r.value!).toString());
        } else {
          for (const r of res.records) seen.push(Buffer.from(r.value).toString());
        }
      });
      const ended = new Promise<void>((resolve) => stream.on('error', () => resolve()).on('end', () => resolve()));
      try {
        for (let i = 0; i < 60; i++) {
          await produce(topic, `r${i}`);
          if (i % 10 === 9) await until(`record r${i}`, () => seen.length === i + 1);
        }
        stream.pause();
        for (let i = 60; i < 80; i++) await produce(topic, `r${i}`);
        await new Promise((r) => setTimeout(r, 200));
        stream.resume();
        await until('all 80 records', () => seen.length >= 80);
        await new Promise((r) => setTimeout(r, 200)); // nothing more arrives
        expect(seen).toEqual(Array.from({ length: 80 }, (_, i) => `r${i}`));
      } finally {
        stream.cancel();
        await ended;
      }
    });
  }
});
