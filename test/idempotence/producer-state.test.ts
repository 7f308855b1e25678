/**
 * Goal: the producer-state table (src/partition/producer-state.ts) deduplicates retries, refuses gaps
 * and fenced epochs, and is a function of the log: a table rebuilt from the log's batch headers (or
 * restored from a snapshot and then fed the rest) answers every later request exactly as the live one.
 *
 * Method: example tests for each rule, then fast-check model tests. A simulated client sends new
 * batches, retries any of its unacknowledged ones, reorders, bumps its epoch, or sends with a stale
 * epoch; a tiny "log" (an array of appended batches) is written only when `check` says `append`. The
 * invariants: every (producer, epoch, sequence) is in the log at most once, each producer-epoch's
 * sequences in the log are gapless from 0, a duplicate answers the offsets the batch was written at,
 * and live, rebuilt and snapshot-restored tables agree on every decision. A deliberately broken table
 * (no dedup) shows the checker can fail.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  NO_PRODUCER_ID,
  ProducerStateTable,
  addSequence,
  type BatchIdentity,
  type CheckResult,
  type ScannedBatch,
} from '../../src/partition/producer-state.js';
import { PRODUCER_BATCHES_CACHED } from '../../src/constants.js';

const P = 7n;
const b = (baseSequence: number, recordCount = 1, producerEpoch = 0, producerId = P): BatchIdentity => ({ producerId, producerEpoch, baseSequence, recordCount });

/** Appends through the table as a partition does; returns what the "log" got. */
class FakePartition {
  readonly log: ScannedBatch[] = [];
  next = 0;
  constructor(public table = new ProducerStateTable()) {}

  produce(batches: BatchIdentity[], nowMs = 1000): CheckResult | { kind: 'appended'; baseOffset: number; lastOffset: number } {
    const r = this.table.check(batches);
    if (r.kind !== 'append') return r;
    const baseOffset = this.next;
    for (const x of batches) {
      this.log.push({ ...x, baseOffset: this.next, maxTimestampMs: nowMs });
      this.next += x.recordCount;
    }
    this.table.record(batches, baseOffset, nowMs);
    return { kind: 'appended', baseOffset, lastOffset: this.next - 1 };
  }
}

const code = (r: ReturnType<FakePartition['produce']>): string => (r.kind === 'error' ? r.error.code : r.kind);

describe('producer-state table: the rules', () => {
  it('appends in-order batches and answers a retry with the original offsets, writing nothing', () => {
    const p = new FakePartition();
    expect(p.produce([b(0, 3)])).toEqual({ kind: 'appended', baseOffset: 0, lastOffset: 2 });
    expect(p.produce([b(3, 2)])).toEqual({ kind: 'appended', baseOffset: 3, lastOffset: 4 });
    expect(p.produce([b(0, 3)])).toMatchObject({ kind: 'duplicate', baseOffset: 0, lastOffset: 2, appendTimeMs: 1000 });
    expect(p.produce([b(3, 2)])).toMatchObject({ kind: 'duplicate', baseOffset: 3, lastOffset: 4 });
    expect(p.log).toHaveLength(2);
  });

  it('refuses a gap, and a re-sent sequence with a different size, as OUT_OF_ORDER_SEQUENCE', () => {
    const p = new FakePartition();
    p.produce([b(0, 3)]);
    expect(code(p.produce([b(4)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(code(p.produce([b(0, 2)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(p.log).toHaveLength(1);
  });

  it('needs sequence 0 from an unknown producer and from a new epoch', () => {
    const p = new FakePartition();
    expect(code(p.produce([b(5)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    p.produce([b(0, 2)]);
    expect(code(p.produce([b(2, 1, 1)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(code(p.produce([b(0, 1, 1)]))).toBe('appended');
  });

  it('fences an older epoch once a newer one has written', () => {
    const p = new FakePartition();
    p.produce([b(0)]);
    p.produce([b(0, 1, 1)]);
    const r = p.produce([b(1, 1, 0)]);
    expect(code(r)).toBe('PRODUCER_FENCED');
    // The old epoch's retry of a batch it did write is fenced too: that epoch is over.
    expect(code(p.produce([b(0, 1, 0)]))).toBe('PRODUCER_FENCED');
  });

  it('remembers only the last PRODUCER_BATCHES_CACHED batches', () => {
    const p = new FakePartition();
    for (let s = 0; s <= PRODUCER_BATCHES_CACHED; s++) p.produce([b(s)]);
    expect(code(p.produce([b(0)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(code(p.produce([b(1)]))).toBe('duplicate');
  });

  it('wraps sequences past 2^31-1 to 0, as Kafka', () => {
    expect(addSequence(0x7fffffff, 1)).toBe(0);
    const t = ProducerStateTable.restore({
      version: 1,
      producers: [{ id: '7', epoch: 0, lastSeenMs: 0, batches: [{ firstSeq: 0x7ffffffe, lastSeq: 0x7ffffffe, baseOffset: 0, lastOffset: 0, appendTimeMs: 0 }] }],
    });
    const p = new FakePartition(t);
    p.next = 1;
    expect(code(p.produce([b(0x7fffffff, 3)]))).toBe('appended');
    expect(code(p.produce([b(2)]))).toBe('appended');
  });

  it('treats multi-batch requests as one unit: all new in order, or an exact run of cached ones', () => {
    const p = new FakePartition();
    expect(p.produce([b(0, 2), b(2, 2)])).toEqual({ kind: 'appended', baseOffset: 0, lastOffset: 3 });
    expect(p.produce([b(0, 2), b(2, 2)])).toMatchObject({ kind: 'duplicate', baseOffset: 0, lastOffset: 3 });
    expect(code(p.produce([b(2, 2), b(4, 1)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(code(p.produce([b(4, 1), b(6, 1)]))).toBe('OUT_OF_ORDER_SEQUENCE');
    expect(code(p.produce([b(4, 1), b(0, 1, 0, 8n)]))).toBe('INVALID_REQUEST');
    expect(code(p.produce([b(4, 1), b(0, 1, 0, NO_PRODUCER_ID)]))).toBe('INVALID_REQUEST');
    expect(p.log).toHaveLength(2);
  });

  it('lets plain batches (no producer id) through unchecked', () => {
    const p = new FakePartition();
    const plain = b(0, 1, 0, NO_PRODUCER_ID);
    expect(code(p.produce([plain]))).toBe('appended');
    expect(code(p.produce([plain]))).toBe('appended');
    expect(p.table.size).toBe(0);
  });

  it('rejects negative ids, epochs and sequences', () => {
    const p = new FakePartition();
    expect(code(p.produce([b(-1)]))).toBe('INVALID_REQUEST');
    expect(code(p.produce([b(0, 1, -1)]))).toBe('INVALID_REQUEST');
    expect(code(p.produce([b(0, 1, 0, -5n)]))).toBe('INVALID_REQUEST');
  });

  it('expires idle producers, after which sequence 0 starts over', () => {
    const p = new FakePartition();
    p.produce([b(0)], 1_000);
    p.produce([b(0, 1, 0, 9n)], 5_000);
    expect(p.table.expire(10_999, 10_000)).toBe(0);
    expect(p.table.expire(11_000, 10_000)).toBe(1);
    expect(p.table.entry(P)).toBeUndefined();
    expect(p.table.entry(9n)).toBeDefined();
    expect(code(p.produce([b(1)]))).toBe('OUT_OF_ORDER_SEQUENCE');
  });

  it('forgets the least recently written producer past its bound', () => {
    const p = new FakePartition(new ProducerStateTable(2));
    p.produce([b(0, 1, 0, 1n)]);
    p.produce([b(0, 1, 0, 2n)]);
    p.produce([b(1, 1, 0, 1n)]); // 1 is now the most recent
    p.produce([b(0, 1, 0, 3n)]);
    expect([p.table.entry(1n) !== undefined, p.table.entry(2n) !== undefined, p.table.entry(3n) !== undefined]).toEqual([true, false, true]);
    expect(p.table.size).toBe(2);
    expect(code(p.produce([b(1, 1, 0, 2n)]))).toBe('OUT_OF_ORDER_SEQUENCE');
  });

  it('restore refuses snapshots it did not write', () => {
    for (const bad of [null, {}, { version: 2, producers: [] }, { version: 1, producers: [{ id: 'x', epoch: 0, lastSeenMs: 0, batches: [] }] }]) {
      expect(() => ProducerStateTable.restore(bad)).toThrow(/snapshot is invalid/);
    }
  });
});

// --- Model tests ------------------------------------------------------------------------------

type Step =
  | { t: 'new'; producer: number; records: number }
  | { t: 'retry'; producer: number; pick: number }
  | { t: 'skip'; producer: number; records: number }
  | { t: 'bump'; producer: number }
  | { t: 'stale'; producer: number }
  | { t: 'plain' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ t: fc.constant('new' as const), producer: fc.nat(2), records: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('retry' as const), producer: fc.nat(2), pick: fc.nat(7) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('skip' as const), producer: fc.nat(2), records: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('bump' as const), producer: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('stale' as const), producer: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'plain' as const }) },
);

interface SimProducer {
  epoch: number;
  nextSeq: number;
  /** Batches sent this epoch, with the offsets they were first written at (if any). */
  sent: Array<{ batch: BatchIdentity; written: { baseOffset: number; lastOffset: number } | null }>;
}

/** Runs the steps against `table`, checking the invariants; returns the fake partition. */
function runModel(steps: Step[], makeTable: () => ProducerStateTable = () => new ProducerStateTable()): FakePartition {
  const p = new FakePartition(makeTable());
  const producers: SimProducer[] = [0, 1, 2].map(() => ({ epoch: 0, nextSeq: 0, sent: [] }));
  for (const s of steps) {
    if (s.t === 'plain') {
      expect(code(p.produce([b(0, 1, 0, NO_PRODUCER_ID)]))).toBe('appended');
      continue;
    }
    const pr = producers[s.producer];
    const id = BigInt(100 + s.producer);
    if (s.t === 'bump') {
      pr.epoch++;
      pr.nextSeq = 0;
      pr.sent = [];
      continue;
    }
    if (s.t === 'stale') {
      if (pr.epoch === 0 || p.table.entry(id)?.epoch !== pr.epoch) continue;
      expect(code(p.produce([b(pr.nextSeq, 1, pr.epoch - 1, id)]))).toBe('PRODUCER_FENCED');
      continue;
    }
    if (s.t === 'skip') {
      // A batch whose predecessor never arrived: must be refused (unless it is exactly next).
      const seq = pr.nextSeq + s.records;
      expect(code(p.produce([b(seq, 1, pr.epoch, id)]))).toBe('OUT_OF_ORDER_SEQUENCE');
      continue;
    }
    if (s.t === 'new') {
      const batch = b(pr.nextSeq, s.records, pr.epoch, id);
      const r = p.produce([batch]);
      expect(r.kind).toBe('appended');
      if (r.kind === 'appended') pr.sent.push({ batch, written: { baseOffset: r.baseOffset, lastOffset: r.lastOffset } });
      pr.nextSeq += s.records;
      continue;
    }
    // retry: one of the batches sent this epoch; within the cache window it is a duplicate with the
    // original offsets; older ones are refused; either way nothing is written.
    if (pr.sent.length === 0) continue;
    const i = pr.sent.length - 1 - (s.pick % Math.min(pr.sent.length, PRODUCER_BATCHES_CACHED + 2));
    const { batch, written } = pr.sent[i];
    const before = p.log.length;
    const r = p.produce([batch]);
    expect(p.log.length).toBe(before);
    if (pr.sent.length - i <= PRODUCER_BATCHES_CACHED) {
      expect(r).toMatchObject({ kind: 'duplicate', baseOffset: written!.baseOffset, lastOffset: written!.lastOffset });
    } else {
      expect(code(r)).toBe('OUT_OF_ORDER_SEQUENCE');
    }
  }
  // The log itself: per producer-epoch, sequences gapless from 0, none twice.
  const runs = new Map<string, number>();
  for (const x of p.log) {
    if (x.producerId === NO_PRODUCER_ID) continue;
    const k = `${x.producerId}/${x.producerEpoch}`;
    expect(x.baseSequence, k).toBe(runs.get(k) ?? 0);
    runs.set(k, x.baseSequence + x.recordCount);
  }
  return p;
}

function rebuilt(log: ScannedBatch[], from = 0, base = new ProducerStateTable()): ProducerStateTable {
  for (const x of log.slice(from)) base.apply(x);
  return base;
}

/** Probes that exercise every producer at every plausible sequence: the tables must agree on all. */
function probes(log: ScannedBatch[]): BatchIdentity[][] {
  const out: BatchIdentity[][] = [];
  const seen = new Set<string>();
  for (const x of log) {
    if (x.producerId === NO_PRODUCER_ID) continue;
    for (const e of [x.producerEpoch - 1, x.producerEpoch, x.producerEpoch + 1]) {
      for (const s of [0, x.baseSequence, x.baseSequence + x.recordCount, x.baseSequence + 1]) {
        const k = `${x.producerId}/${e}/${s}/${x.recordCount}`;
        if (e < 0 || seen.has(k)) continue;
        seen.add(k);
        out.push([b(s, x.recordCount, e, x.producerId)]);
      }
    }
  }
  return out;
}

const decision = (r: CheckResult): unknown => (r.kind === 'error' ? r.error.code : r.kind === 'duplicate' ? [r.baseOffset, r.lastOffset] : r.kind);

describe('producer-state table: model properties', () => {
  it('never writes a (producer, epoch, sequence) twice and answers retries with the original offsets', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 120 }), (steps) => {
        runModel(steps);
      }),
      { numRuns: 300 },
    );
  });

  it('a table rebuilt from the log, or restored from a snapshot and replayed, decides like the live one', () => {
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 120 }), fc.nat(), (steps, cut) => {
        const p = runModel(steps);
        const full = rebuilt(p.log);
        const at = p.log.length === 0 ? 0 : cut % (p.log.length + 1);
        // Snapshot taken after `at` batches (through JSON, as on disk), then the rest replayed.
        const snap = JSON.parse(JSON.stringify(rebuilt(p.log.slice(0, at)).snapshot()));
        const restored = rebuilt(p.log, at, ProducerStateTable.restore(snap));
        for (const probe of probes(p.log)) {
          const live = decision(p.table.check(probe));
          // Rebuilt tables do not know append times; offsets and decisions must match.
          expect(decision(full.check(probe)), JSON.stringify(probe, (_, v) => (typeof v === 'bigint' ? String(v) : v))).toEqual(live);
          expect(decision(restored.check(probe))).toEqual(live);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('the checker catches a table that forgets to deduplicate', () => {
    class NoDedup extends ProducerStateTable {
      override check(batches: readonly BatchIdentity[]): CheckResult {
        const r = super.check(batches);
        return r.kind === 'duplicate' ? { kind: 'append' } : r;
      }
    }
    expect(() => runModel([{ t: 'new', producer: 0, records: 1 }, { t: 'retry', producer: 0, pick: 0 }], () => new NoDedup())).toThrow();
  });
});
