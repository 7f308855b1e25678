/**
 * Goal: the TS Producer's idempotent lanes keep every partition exactly-once and in order whatever
 * happens to its requests: lost before the broker, lost after it (the reply), delayed and overtaken
 * by later requests (gRPC answers out of order), with up to 5 requests in flight per partition. This is
 * the case where request N fails after N+1 was sent: N+1 comes back OUT_OF_ORDER_SEQUENCE and must
 * be retried after N, not fail.
 * Method: the Producer's transport is replaced by a simulated network in front of a fake partition
 * that uses the broker's own ProducerStateTable (src/partition/producer-state.ts) to decide. Each
 * request arrives after a random delay (so requests overtake each other), may be lost on the way in
 * or out; all randomness comes from fast-check (its seed is printed on failure). The log must end
 * up holding every record once, in send order, and every send must resolve with the offset where its
 * record is. A variant with idempotence off shows the check catches duplicates.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Producer } from '../../src/client/index.js';
import { SluiceError } from '../../src/errors.js';
import { decodeBatch } from '../../src/batch/index.js';
import { ProducerStateTable } from '../../src/partition/producer-state.js';
import { batchIdentities } from '../../src/partition/producer-state-store.js';
import type { ProduceRequest } from '../../src/rpc/gen/sluice/v1/broker.js';
import { xorshift } from './tcp-proxy.js';

interface Fate {
  delayMs: number;
  replyDelayMs: number;
  lostBefore: boolean;
  lostAfter: boolean;
}

class FakePartition {
  readonly values: string[] = [];
  readonly table = new ProducerStateTable();

  handle(req: ProduceRequest): { baseOffset: number; lastOffset: number } {
    const data = new Uint8Array(req.recordBatch);
    const ids = batchIdentities(data);
    if (ids !== null) {
      const r = this.table.check(ids);
      if (r.kind === 'error') throw r.error;
      if (r.kind === 'duplicate') return r;
    }
    const baseOffset = this.values.length;
    for (const rec of decodeBatch(data).records) this.values.push(rec.value!.toString());
    if (ids !== null) this.table.record(ids, baseOffset, 0);
    return { baseOffset, lastOffset: this.values.length - 1 };
  }
}

/** A Producer whose requests go through `fates` (one per call) to `part` instead of gRPC. */
function simulated(part: FakePartition, fates: (call: number) => Fate, idempotent: boolean): { producer: Producer; stats: { calls: number; outOfOrder: number } } {
  const producer = new Producer({ brokers: '127.0.0.1:1', idempotent, lingerMs: 0, batchBytes: 64, retries: 1_000, retryBackoffMs: 1, retryBackoffMaxMs: 4 });
  const stats = { calls: 0, outOfOrder: 0 };
  const p = producer as unknown as Record<string, unknown>;
  (p.conn as { close(): void }).close();
  p.conn = {
    broker: { initProducer: 'initProducer' },
    unary: async () => ({ producerId: 42n, producerEpoch: 0 }),
    close() {},
  };
  p.call = (req: ProduceRequest) => {
    const fate = fates(stats.calls++);
    return new Promise((resolve, reject) => {
      setTimeout(() => {
        if (fate.lostBefore) return reject(new SluiceError('UNAVAILABLE', 'lost on the way in'));
        let res: { baseOffset: number; lastOffset: number };
        try {
          res = part.handle(req);
        } catch (err) {
          if ((err as SluiceError).code === 'OUT_OF_ORDER_SEQUENCE') stats.outOfOrder++;
          return setTimeout(() => reject(err), 1);
        }
        setTimeout(() => {
          if (fate.lostAfter) reject(new SluiceError('UNAVAILABLE', 'reply lost'));
          else resolve({ partition: 0, baseOffset: res.baseOffset, lastOffset: res.lastOffset, appendTimeMs: 0, logStartOffset: 0 });
        }, fate.replyDelayMs);
      }, fate.delayMs);
    });
  };
  return { producer, stats };
}

/** Seeded fates: random delays in and out (mostly 0-3 ms, sometimes 20-40 ms), each request lost on the way in or out with `lossRate` / 2. */
function seededFates(seed: number, lossRate: number): (call: number) => Fate {
  const random = xorshift(seed);
  return () => {
    const r = random();
    // One request (or reply) in ten is slow, so that several later ones overtake it.
    const slow = (): number => (random() < 0.1 ? 20 + Math.floor(random() * 20) : Math.floor(random() * 4));
    return { delayMs: slow(), replyDelayMs: slow(), lostBefore: r < lossRate / 2, lostAfter: r >= lossRate / 2 && r < lossRate };
  };
}

async function run(fates: (call: number) => Fate, idempotent: boolean, records = 100): Promise<{ part: FakePartition; offsets: number[]; stats: { calls: number; outOfOrder: number } }> {
  const part = new FakePartition();
  const { producer, stats } = simulated(part, fates, idempotent);
  const sends = Array.from({ length: records }, (_, i) => producer.send('t', { partition: 0, value: String(i) }));
  const offsets = (await Promise.all(sends)).map((m) => m.offset);
  await producer.close();
  return { part, offsets, stats };
}

describe('idempotent Producer under lost and reordered requests', () => {
  it('writes every record once, in send order, and reports where each went', async () => {
    let outOfOrderSeen = 0;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.double({ min: 0.1, max: 0.5, noNaN: true }), async (seed, lossRate) => {
        const { part, offsets, stats } = await run(seededFates(seed, lossRate), true);
        outOfOrderSeen += stats.outOfOrder;
        expect(part.values).toEqual(Array.from({ length: 100 }, (_, i) => String(i)));
        offsets.forEach((o, i) => expect(part.values[o]).toBe(String(i)));
      }),
      { numRuns: 25 },
    );
    // The runs must have exercised the hard case (a later request arriving before a lost earlier one).
    expect(outOfOrderSeen).toBeGreaterThan(0);
  }, 120_000);

  it('without idempotence the same faults duplicate (the check can fail)', async () => {
    // Every other reply lost: each lost one is retried and written again.
    const { part } = await run((call) => ({ delayMs: 0, replyDelayMs: 1, lostBefore: false, lostAfter: call % 2 === 0 }), false, 20);
    expect(part.values.length).toBeGreaterThan(20);
  });
});
