/**
 * Goal: memory held for clients has a budget (issue 9 section 3). A subscriber that does not read
 * stops being fed after its window (bytes), a produce that does not fit the budget is refused with
 * RESOURCE_EXHAUSTED / CLIENT_MEMORY_EXHAUSTED and a retry hint while the server keeps serving, a
 * fetch is answered smaller, and the budget returns to 0 once the clients go away.
 *
 * Method: an in-process startBroker with a 4 MiB budget and a probe that records the budget's use
 * and the bytes fetched; a partition holding 24 MiB; two proto-loader Subscribe streams that nobody
 * reads (no 'data' listener, so grpc-js stops reading and HTTP/2 flow control stalls the broker's
 * writes). Waits are on the probe, bounded in time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { NOOP_PROBE, type BrokerProbe } from '../../src/broker/probe.js';
import { encodeBatch } from '../../src/batch/index.js';
import { CLIENT_MEMORY_FETCH_MIN_BYTES, SUBSCRIBE_WINDOW_BYTES } from '../../src/constants.js';
import { readErrorInfo, readRetryDelayMs } from '../../src/rpc/index.js';
import { stalledSession } from '../../bench/stalled-client.js';
import { call, dynamicClients, failure, tempDir } from './helpers.js';

const MiB = 1024 * 1024;
const BUDGET_BYTES = 4 * MiB;
const BATCH_VALUE_BYTES = 60 * 1024;
const PARTITION_BYTES = 24 * MiB;
/** A produce that fits the budget only when nothing else holds any of it. */
const BIG_VALUE_BYTES = BUDGET_BYTES - 100 * 1024;

const seen = { usedBytes: 0, fetchedBytes: 0, refused: 0 };
const probe: BrokerProbe = {
  ...NOOP_PROBE,
  clientMemory: (used) => {
    seen.usedBytes = used;
  },
  fetched: (_topic, _records, bytes) => {
    seen.fetchedBytes += bytes;
  },
  clientMemoryRefused: () => {
    seen.refused++;
  },
};

let running: RunningBroker;
let c: ReturnType<typeof dynamicClients>;

/** Polls `cond` every `everyMs` for at most `ms`; fails naming `what`. */
async function until(what: string, cond: () => boolean, ms = 20_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (used ${seen.usedBytes}, fetched ${seen.fetchedBytes})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

beforeAll(async () => {
  running = await startBroker({ dataDir: tempDir(), shards: 1, httpAddress: null, probe, maxClientMemoryBytes: BUDGET_BYTES });
  c = dynamicClients(running.grpcAddress);
  await call(c.admin, 'CreateTopic', { name: 'big', partitions: 1, configs: { 'max.message.bytes': String(4 * MiB) } });
  const value = Buffer.alloc(BATCH_VALUE_BYTES, 7);
  for (let n = 0; n < PARTITION_BYTES; n += BATCH_VALUE_BYTES) {
    await running.broker.produce({ topic: 'big', partition: 0, batches: encodeBatch([{ key: null, value }]), acks: 'leader' });
  }
});
afterAll(async () => {
  c?.close();
  await running?.close();
});

describe('client memory budget', () => {
  it('stops feeding non-reading subscribers, refuses a produce over budget, and frees it all when they go', async () => {
    const session = stalledSession(running.grpcAddress);
    await session.subscribe({ topic: 'big', maxBytes: 64 * 1024 });
    await session.subscribe({ topic: 'big', maxBytes: 64 * 1024 });
    // Each subscription stops once its window is queued (SUBSCRIBE_MESSAGES_UNFLUSHED_MAX small
    // messages, or SUBSCRIBE_WINDOW_BYTES). An absence needs some time: no byte fetched for a second.
    await until('both subscriptions to hold client memory', () => seen.usedBytes >= 2 * CLIENT_MEMORY_FETCH_MIN_BYTES);
    let last = -1;
    await until('the subscriptions to stop being fed', () => {
      const still = seen.fetchedBytes === last;
      last = seen.fetchedBytes;
      return still;
    }, 20_000, 1_000);
    expect(seen.fetchedBytes).toBeLessThan(PARTITION_BYTES / 4);
    expect(seen.usedBytes).toBeGreaterThan(0);
    expect(seen.usedBytes).toBeLessThanOrEqual(2 * (SUBSCRIBE_WINDOW_BYTES + BATCH_VALUE_BYTES + 1024));

    // A produce that does not fit what is left: refused at once, retriable, with a retry hint.
    const big = encodeBatch([{ key: null, value: Buffer.alloc(BIG_VALUE_BYTES, 1) }]);
    expect(BUDGET_BYTES - seen.usedBytes).toBeLessThan(big.length);
    const before = await call(c.broker, 'ListOffsets', { topic: 'big' });
    const refused = await failure(call(c.broker, 'Produce', { topic: 'big', partition: 0, recordBatch: big }));
    expect([grpc.status[refused.code], refused.reason]).toEqual(['RESOURCE_EXHAUSTED', 'CLIENT_MEMORY_EXHAUSTED']);
    expect(seen.refused).toBeGreaterThan(0);
    const err = await call(c.broker, 'Produce', { topic: 'big', partition: 0, recordBatch: big }).catch((e: grpc.ServiceError) => e);
    expect(readErrorInfo((err as grpc.ServiceError).metadata)?.metadata.retriable).toBe('true');
    expect(readRetryDelayMs((err as grpc.ServiceError).metadata)).toBeGreaterThan(0);
    expect(await call(c.broker, 'ListOffsets', { topic: 'big' })).toEqual(before);

    // Still serving: metadata, and a fetch answered smaller than asked because the budget is short.
    await call(c.broker, 'GetMetadata', {});
    const free = BUDGET_BYTES - seen.usedBytes;
    const small = await call(c.broker, 'Fetch', { topic: 'big', partition: 0, offset: 0, maxBytes: 16 * MiB, raw: true });
    expect(small.recordBatches.length).toBeGreaterThan(0);
    expect(small.recordBatches.length).toBeLessThanOrEqual(free + BATCH_VALUE_BYTES + 1024);

    // The clients go away: every byte comes back, and the same produce now succeeds.
    session.close();
    await until('the budget to return to 0', () => seen.usedBytes === 0);
    const ok = await call(c.broker, 'Produce', { topic: 'big', partition: 0, recordBatch: big });
    expect(BigInt(ok.baseOffset)).toBe(BigInt(before.offsets[0].offset));
    expect(seen.usedBytes).toBe(0);
  });

  it('feeds a reading subscriber the whole partition through the same window', async () => {
    const stream = c.broker.Subscribe({ topic: 'big', partition: 0, offset: 0, maxBytes: 1 * MiB, raw: true }) as grpc.ClientReadableStream<any>;
    const end = BigInt((await call(c.broker, 'ListOffsets', { topic: 'big' })).offsets[0].offset);
    let bytes = 0;
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: any) => {
        bytes += m.recordBatches.length;
        if (BigInt(m.nextOffset) >= end) resolve();
      });
      stream.on('error', reject);
    });
    stream.cancel();
    expect(bytes).toBeGreaterThan(PARTITION_BYTES);
    await until('the budget to return to 0', () => seen.usedBytes === 0);
  });

  it('serves a structured fetch whose one record is larger than asked, reserving what it needs', async () => {
    const last = BigInt((await call(c.broker, 'ListOffsets', { topic: 'big' })).offsets[0].offset) - 1n; // the big record
    const r = await call(c.broker, 'Fetch', { topic: 'big', partition: 0, offset: last, maxBytes: 1024 });
    expect(r.records.map((rec: { value: Buffer }) => rec.value.length)).toEqual([BIG_VALUE_BYTES]);
    expect(BigInt(r.nextOffset)).toBe(last + 1n);
    await until('the budget to return to 0', () => seen.usedBytes === 0);
  });
});
