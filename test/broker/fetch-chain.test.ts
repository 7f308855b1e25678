/**
 * Chained fetches (src/shard/fetch-chain.ts): a caught-up reader's long-poll that the shard renews by
 * itself after each answer. Real broker, real shard workers; the reader is driven by hand, as
 * Subscribe drives it, so the claim bound, the stall and the resume can be seen.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Broker, FetchChain } from '../../src/broker/index.js';
import { ChainCounters, createChainCounters } from '../../src/shard/fetch-chain.js';
import { batchOf, expectCode, openBroker, valuesIn } from './helpers.js';

const WAIT_MS = 5_000;
const READ_BYTES = 64 * 1024;

describe('chain claim counters', () => {
  it('lets the shard run two answers ahead of its reader, then exactly one side restarts it', () => {
    const c = new ChainCounters(createChainCounters());
    c.start(3);
    expect(c.mayContinue(3, 1)).toBe(true); // answer 1 sent: the reader took nothing, 0 >= 0
    expect(c.mayContinue(3, 2)).toBe(false); // answer 2 sent: answer 1 not taken yet, stalled
    expect(c.claimed(3, 1)).toBe(true); // the reader takes answer 1: it must resume the shard
    expect(c.claimed(3, 2)).toBe(false); // nothing stalled any more
    expect(c.mayContinue(3, 3)).toBe(true);
    // The reader caught up before the shard looked: no stall, no resume.
    c.claimed(3, 3);
    expect(c.mayContinue(3, 4)).toBe(true);
    // A new chain on the slot starts from zero.
    c.start(3);
    expect(c.mayContinue(3, 2)).toBe(false);
    expect(c.claimed(3, 0)).toBe(false); // taking nothing does not resume it
    expect(c.claimed(3, 1)).toBe(true);
  });
});

describe('chained fetches on a broker', () => {
  let broker: Broker | null = null;
  afterEach(async () => {
    await broker?.close();
    broker = null;
  });

  const read = (b: Broker, offset: number, chain: FetchChain, signal?: AbortSignal) =>
    b.fetch({ topic: 't', partition: 0, offset, maxBytes: READ_BYTES, maxWaitMs: WAIT_MS }, signal, chain);

  it('answers each commit to a caught-up reader, in order, without losing or repeating a record', async () => {
    broker = await openBroker();
    await broker.createTopic('t', 1, 1, {});
    const chain = new FetchChain();
    let offset = 0;
    const seen: string[] = [];
    for (let i = 0; i < 30; i++) {
      const answer = read(broker, offset, chain);
      await broker.produce({ topic: 't', partition: 0, acks: 'all', batches: batchOf(3, `b${i}-`) });
      // A term's no-op or an empty timeout answer may come first: read until this batch is there.
      for (let k = 0; k < 10 && !seen.includes(`b${i}-2`); k++) {
        const r = await (k === 0 ? answer : read(broker, offset, chain));
        seen.push(...valuesIn(r.batches, offset));
        if (r.nextOffset > offset) offset = r.nextOffset;
      }
    }
    expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => [`b${i}-0`, `b${i}-1`, `b${i}-2`]).flat());
    expect(chain.run?.ended).toBe(false); // one chain served all of it
    chain.close();
  });

  it('stops two answers ahead of a reader that does not take them, and resumes when it does', async () => {
    broker = await openBroker();
    await broker.createTopic('t', 1, 1, {});
    await broker.produce({ topic: 't', partition: 0, acks: 'all', batches: batchOf(1, 'first') });
    const chain = new FetchChain();
    let offset = 0;
    const seen: string[] = [];
    const first = await read(broker, offset, chain);
    seen.push(...valuesIn(first.batches, offset));
    offset = first.nextOffset;
    // The reader now looks away while ten batches commit one by one.
    for (let i = 0; i < 10; i++) await broker.produce({ topic: 't', partition: 0, acks: 'all', batches: batchOf(1, `late${i}`) });
    await new Promise((r) => setTimeout(r, 200));
    expect(chain.run!.answers.length).toBeLessThanOrEqual(2);
    for (let k = 0; k < 20 && !seen.includes('late90'); k++) {
      const r = await read(broker, offset, chain);
      seen.push(...valuesIn(r.batches, offset));
      if (r.nextOffset > offset) offset = r.nextOffset;
      expect(chain.run!.answers.length).toBeLessThanOrEqual(2);
    }
    expect(seen).toEqual(['first0', ...Array.from({ length: 10 }, (_, i) => `late${i}0`)]);
    chain.close();
  });

  it('ends on close or abort, and the next read (chained or not) is served', async () => {
    broker = await openBroker();
    await broker.createTopic('t', 1, 1, {});
    const chain = new FetchChain();
    const controller = new AbortController();
    const parked = read(broker, 0, chain, controller.signal);
    controller.abort();
    await expectCode(parked, 'TIMEOUT');
    expect(chain.run?.ended).toBe(true);
    // A new chain on the same reader.
    const again = read(broker, 0, chain);
    await broker.produce({ topic: 't', partition: 0, acks: 'all', batches: batchOf(2, 'x') });
    let r = await again;
    for (let k = 0; k < 5 && r.nextOffset === 0; k++) r = await read(broker, 0, chain);
    expect(valuesIn(r.batches)).toEqual(['x0', 'x1']);
    chain.close();
    // A plain long-poll after it.
    const plain = broker.fetch({ topic: 't', partition: 0, offset: r.nextOffset, maxBytes: READ_BYTES, maxWaitMs: WAIT_MS });
    await broker.produce({ topic: 't', partition: 0, acks: 'all', batches: batchOf(1, 'y') });
    expect(valuesIn((await plain).batches)).toEqual(['y0']);
  });

  it('fails a waiting reader when its shard dies, and starts a new chain after the restart', async () => {
    broker = await openBroker({ shards: 1 });
    await broker.createTopic('t', 1, 1, {});
    const chain = new FetchChain();
    const parked = read(broker, 0, chain);
    await new Promise((r) => setTimeout(r, 100));
    broker.debugCrashShard(0);
    await expect(parked).rejects.toThrow();
    let served: string[] = [];
    for (let attempt = 0; attempt < 50 && served.length === 0; attempt++) {
      try {
        const next = read(broker, 0, chain);
        await broker.produce({ topic: 't', partition: 0, acks: 'all', batches: batchOf(1, `z${attempt}-`) });
        const r = await next;
        served = valuesIn(r.batches);
      } catch {
        await new Promise((r) => setTimeout(r, 100)); // the shard is restarting
      }
    }
    expect(served.length).toBeGreaterThan(0);
    chain.close();
  });
});
