/**
 * Goal (issue 13, chaos bug B): the idempotent Producer never gives a (producer id, epoch, sequence)
 * to two different batches. The cluster case that lost an acknowledged write: a batch's first attempt
 * is written but its answer is lost; the retry reaches a node that restarted and does not know the
 * topic yet and is refused for good (UNKNOWN_TOPIC); the producer used to hand the batch's sequence to
 * the next batch, which the partition then answered as a duplicate of the first, with the first one's
 * offset: an acknowledged value that is nowhere in the log.
 * Method: the Producer's transport is replaced by a scripted one in front of a fake partition that
 * uses the broker's own ProducerStateTable; the partition records which bytes each (id, epoch,
 * sequence) named, and every acknowledged send must find its own value at its offset.
 */
import { describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/index.js';
import { SluiceError, type ErrorCode } from '../../src/errors.js';
import { decodeBatch } from '../../src/batch/index.js';
import { ProducerStateTable } from '../../src/partition/producer-state.js';
import { batchIdentities } from '../../src/partition/producer-state-store.js';
import type { ProduceRequest } from '../../src/rpc/gen/sluice/v1/broker.js';

class FakePartition {
  readonly values: string[] = [];
  readonly table = new ProducerStateTable();
  /** `${id}/${epoch}/${seq}` -> the values of the batch sent under it (every attempt). */
  readonly named = new Map<string, Set<string>>();

  handle(req: ProduceRequest): { baseOffset: number; lastOffset: number } {
    const data = new Uint8Array(req.recordBatch);
    const batch = decodeBatch(data);
    const ids = batchIdentities(data);
    const values = batch.records.map((r) => r.value!.toString()).join(',');
    if (ids !== null) {
      const key = ids.map((i) => `${i.producerId}/${i.producerEpoch}/${i.baseSequence}`).join(' ');
      if (!this.named.has(key)) this.named.set(key, new Set());
      this.named.get(key)!.add(values);
      const r = this.table.check(ids);
      if (r.kind === 'error') throw r.error;
      if (r.kind === 'duplicate') return r;
    }
    const baseOffset = this.values.length;
    for (const rec of batch.records) this.values.push(rec.value!.toString());
    if (ids !== null) this.table.record(ids, baseOffset, 0);
    return { baseOffset, lastOffset: this.values.length - 1 };
  }
}

/** What happens to call n: written and answered, written with the answer lost, or refused with `code` before the partition. */
type Script = (call: number) => 'ok' | 'written-answer-lost' | { refuse: ErrorCode };

function scripted(part: FakePartition, script: Script, producerName?: string): Producer {
  const producer = new Producer({ brokers: '127.0.0.1:1', lingerMs: 0, batchBytes: 1, retries: 3, retryBackoffMs: 1, retryBackoffMaxMs: 2, producerName });
  const p = producer as unknown as Record<string, unknown>;
  (p.conn as { close(): void }).close();
  let nextId = 42n;
  p.conn = {
    broker: { initProducer: 'initProducer' },
    unary: async () => ({ producerId: nextId++, producerEpoch: 0 }),
    close() {},
  };
  let calls = 0;
  p.call = async (req: ProduceRequest) => {
    const fate = script(calls++);
    await new Promise((r) => setTimeout(r, 1));
    if (typeof fate === 'object') throw new SluiceError(fate.refuse, `scripted refusal ${fate.refuse}`);
    const res = part.handle(req);
    if (fate === 'written-answer-lost') throw new SluiceError('UNAVAILABLE', 'scripted: the answer was lost');
    return { partition: 0, baseOffset: res.baseOffset, lastOffset: res.lastOffset, appendTimeMs: 0, logStartOffset: 0 };
  };
  return producer;
}

/** Sends a, then (after a settled) b and c; returns each send's outcome. */
async function sendThree(producer: Producer): Promise<Array<{ value: string; offset: number } | { value: string; error: string }>> {
  const out: Array<{ value: string; offset: number } | { value: string; error: string }> = [];
  for (const value of ['a', 'b', 'c']) {
    try {
      out.push({ value, offset: (await producer.send('t', { partition: 0, value })).offset });
    } catch (err) {
      out.push({ value, error: (err as SluiceError).code });
    }
  }
  await producer.close().catch(() => {});
  return out;
}

function expectNoSequenceReuse(part: FakePartition): void {
  for (const [key, values] of part.named) expect([...values], `(id, epoch, sequence) ${key} named different batches`).toHaveLength(1);
}

describe('idempotent Producer: a sequence never names two batches', () => {
  it('a written batch whose retry is refused for good does not hand its sequence to the next batch', async () => {
    const part = new FakePartition();
    // Call 0 (a): written, answer lost. Call 1 (a's retry): UNKNOWN_TOPIC, final. Then b and c go through.
    const out = await sendThree(scripted(part, (n) => (n === 0 ? 'written-answer-lost' : n === 1 ? { refuse: 'UNKNOWN_TOPIC' } : 'ok')));
    expect(out[0]).toEqual({ value: 'a', error: 'UNKNOWN_TOPIC' });
    for (const o of out.slice(1)) {
      expect('offset' in o, JSON.stringify(out)).toBe(true);
      if ('offset' in o) expect(part.values[o.offset], `acknowledged ${o.value} at ${o.offset}, log ${JSON.stringify(part.values)}`).toBe(o.value);
    }
    expectNoSequenceReuse(part);
  });

  it('a named producer stops instead (it cannot change id), and acknowledges nothing it did not write', async () => {
    const part = new FakePartition();
    const out = await sendThree(scripted(part, (n) => (n === 0 ? 'written-answer-lost' : n === 1 ? { refuse: 'UNKNOWN_TOPIC' } : 'ok'), 'named'));
    expect(out[0]).toEqual({ value: 'a', error: 'UNKNOWN_TOPIC' });
    for (const o of out.slice(1)) if ('offset' in o) expect(part.values[o.offset]).toBe(o.value);
    expect(out.slice(1).every((o) => 'error' in o), JSON.stringify(out)).toBe(true);
    expectNoSequenceReuse(part);
  });

  it('a named producer whose batch was refused on every attempt (nothing written) keeps going', async () => {
    const part = new FakePartition();
    const out = await sendThree(scripted(part, (n) => (n === 0 ? { refuse: 'RECORD_TOO_LARGE' } : 'ok'), 'named'));
    expect(out[0]).toEqual({ value: 'a', error: 'RECORD_TOO_LARGE' });
    expect(out.slice(1)).toEqual([{ value: 'b', offset: 0 }, { value: 'c', offset: 1 }]);
  });
});
