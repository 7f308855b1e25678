/**
 * Goal: the log and progress data structures the protocol leans on hold their contracts for any input,
 * with entries as runs (one per batch) split between storage (persisted) and the unstable tail.
 * Method: fast-check properties over random logs (runs of random sizes, non-decreasing terms, a random
 * compaction point and a random persisted/unstable split), compared with a per-index reference model;
 * random in-flight sequences for `Inflights`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import { RaftLog } from '../../src/raft/log.js';
import { Inflights } from '../../src/raft/progress.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import { type Entry, lastIndexOf } from '../../src/raft/types.js';
import { checkRaftStorage } from './storage-contract.js';

const conf = { voters: [1 as NodeId], learners: [] };
const EMPTY = new Uint8Array(0);

interface Built {
  log: RaftLog;
  runs: Entry[];
  /** termAt[i] for i in [snapIndex, last]; -1 elsewhere. */
  termAt: (i: number) => number;
  snapIndex: number;
}

/** runs: [term, count] pairs, sorted by term; the first `snapRuns` are compacted, the first `stored` persisted. */
function build(spec: [number, number][], snapRuns: number, stored: number): Built {
  const runs: Entry[] = [];
  let next = 1;
  for (const [t, c] of spec) {
    runs.push({ index: next as Offset, count: c, term: t as Term, kind: 'data', data: new Uint8Array(c), change: null });
    next += c;
  }
  const s = Math.min(snapRuns, runs.length);
  const snapIndex = s === 0 ? 0 : lastIndexOf(runs[s - 1]);
  const snapTerm = s === 0 ? 0 : runs[s - 1].term;
  const p = Math.max(s, Math.min(stored, runs.length));
  const storage = new MemoryStorage({
    hardState: { term: 0 as Term, vote: 0 as NodeId, commit: 0 as Offset },
    snapshot: { index: snapIndex as Offset, term: snapTerm as Term, conf, data: EMPTY },
    entries: runs.slice(s, p),
  });
  const log = new RaftLog(storage, storage.snapshot(), []);
  for (const e of runs.slice(p)) log.append(e);
  const last = next - 1;
  const termAt = (i: number): number => {
    if (i === snapIndex) return snapTerm;
    if (i < snapIndex || i > last) return -1;
    return runs.find((e) => i >= e.index && i <= lastIndexOf(e))!.term;
  };
  return { log, runs: runs.slice(s), termAt, snapIndex };
}

const specArb = fc
  .array(fc.tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 5 })), { maxLength: 25 })
  .map((a) => a.sort((x, y) => x[0] - y[0]));

describe('RaftLog over runs', () => {
  it('term(i) answers for every index inside a run, from storage and from the unstable tail', () => {
    fc.assert(
      fc.property(specArb, fc.nat(6), fc.nat(25), (spec, snap, stored) => {
        const b = build(spec, snap, stored);
        for (let i = 0; i <= b.log.lastIndex() + 2; i++) expect(b.log.term(i), `term(${i})`).toBe(b.termAt(i));
      }),
    );
  });

  it('findConflictByTerm returns the last index <= index whose term <= term (binary search = linear reference)', () => {
    fc.assert(
      fc.property(specArb, fc.nat(6), fc.nat(25), fc.nat(80), fc.nat(7), (spec, snap, stored, index, term) => {
        const b = build(spec, snap, stored);
        const [i, t] = b.log.findConflictByTerm(index, term);
        let want = Math.min(index, b.log.lastIndex());
        while (want > b.snapIndex && b.termAt(want) > term) want--;
        want = Math.max(want, b.snapIndex);
        expect(i).toBe(want);
        expect(t).toBe(b.termAt(i));
      }),
    );
  });

  it('slice returns whole runs, starting with the one containing lo, within the byte and count limits', () => {
    fc.assert(
      fc.property(specArb, fc.nat(6), fc.nat(25), fc.nat(80), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 4 }), fc.nat(30), (spec, snap, stored, lo0, bytesMax, countMax, span) => {
        const b = build(spec, snap, stored);
        const last = b.log.lastIndex();
        if (last <= b.snapIndex) return;
        const lo = b.snapIndex + 1 + (lo0 % (last - b.snapIndex));
        const hi = Math.min(last, lo + span);
        const out = b.log.slice(lo, hi, bytesMax, countMax);
        expect(out.length).toBeGreaterThan(0);
        expect(out[0].index <= lo && lo <= lastIndexOf(out[0])).toBe(true);
        expect(out.length).toBeLessThanOrEqual(countMax);
        let bytes = 0;
        for (let k = 0; k < out.length; k++) {
          if (k > 0) expect(out[k].index).toBe(lastIndexOf(out[k - 1]) + 1);
          expect(b.runs).toContain(out[k]);
          expect(out[k].index).toBeLessThanOrEqual(hi);
          bytes += out[k].data.length;
        }
        if (out.length > 1) expect(bytes).toBeLessThanOrEqual(bytesMax);
        const end = lastIndexOf(out[out.length - 1]);
        if (end < hi && out.length < countMax) {
          const nextRun = b.runs.find((e) => e.index === end + 1)!;
          expect(bytes + nextRun.data.length).toBeGreaterThan(bytesMax);
        }
      }),
    );
  });

  it('truncates at a run boundary (stored or unstable), reverts configurations, refuses mid-run cuts', () => {
    const b = build([[1, 3], [1, 2], [2, 4]], 0, 2); // runs 1-3, 4-5 stored; 6-9 unstable
    b.log.append({ index: 10 as Offset, count: 1, term: 2 as Term, kind: 'conf', data: EMPTY, change: { type: 'addLearner', node: 2 as NodeId } });
    expect(b.log.conf().learners).toEqual([2]);
    expect(() => b.log.truncateFrom(7)).toThrow(/run boundary/);
    b.log.truncateFrom(6);
    expect(b.log.conf().learners).toEqual([]);
    expect(b.log.lastIndex()).toBe(5);
    b.log.truncateFrom(4); // into storage: the next Ready's first run starts at 4
    expect(b.log.lastIndex()).toBe(3);
    expect(b.log.term(4)).toBe(-1);
    expect(b.log.stableIndex()).toBe(3);
    b.log.append({ index: 4 as Offset, count: 7, term: 3 as Term, kind: 'data', data: EMPTY, change: null });
    expect(b.log.term(10)).toBe(3);
    expect(b.log.slice(1, 10, 1e9, 10).map((e) => [e.index, e.count, e.term])).toEqual([[1, 3, 1], [4, 7, 3]]);
  });
});

describe('MemoryStorage', () => {
  it('keeps the RaftStorage contract (the reusable check in storage-contract.ts) for random logs', () => {
    fc.assert(
      fc.property(specArb, fc.nat(6), (spec, snap) => {
        const b = build(spec, snap, 99);
        checkRaftStorage(b.log.storage, b.log.storage.snapshot(), b.runs);
      }),
      { numRuns: 50 },
    );
  });

  it('the contract check can fail: a storage that answers a run start only is caught', () => {
    const b = build([[1, 3], [2, 2]], 0, 99);
    const st = b.log.storage;
    const broken = Object.assign(Object.create(st) as typeof st, {
      term: (i: number) => (b.runs.some((e) => e.index === i) || i === 0 ? st.term(i) : -1),
    });
    expect(() => checkRaftStorage(broken, st.snapshot(), b.runs)).toThrow(/term\(2\)/);
  });

  it('refuses gaps, truncation inside a run and compaction inside a run', () => {
    const s = new MemoryStorage({
      hardState: { term: 0 as Term, vote: 0 as NodeId, commit: 0 as Offset },
      snapshot: { index: 0 as Offset, term: 0 as Term, conf, data: EMPTY },
      entries: [],
    });
    const run = (index: number, count: number, term: number): Entry => ({ index: index as Offset, count, term: term as Term, kind: 'data', data: EMPTY, change: null });
    s.append([run(1, 3, 1), run(4, 3, 1)]);
    expect(() => s.append([run(8, 1, 1)])).toThrow(/gap/);
    expect(() => s.append([run(5, 1, 2)])).toThrow(/run boundary/);
    expect(() => s.compact({ index: 2 as Offset, term: 1 as Term, conf, data: EMPTY })).toThrow(/run boundary/);
    s.compact({ index: 3 as Offset, term: 1 as Term, conf, data: EMPTY });
    expect([s.firstIndex(), s.lastIndex(), s.term(3), s.term(2), s.term(5)]).toEqual([4, 6, 1, -1, 1]);
    expect(s.entries(5, 6, 100, 10).map((e) => e.index)).toEqual([4]);
  });
});

describe('Inflights', () => {
  it('is full exactly at its message or byte bound and frees in order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 60 }), fc.integer({ min: 1, max: 10 }), (sizes, countMax) => {
        const inf = new Inflights(countMax, 300);
        let last = 0;
        const added: [number, number][] = [];
        for (const sz of sizes) {
          if (inf.full()) break;
          last += 1 + (sz % 3);
          inf.add(last, sz);
          added.push([last, sz]);
        }
        expect(inf.full()).toBe(added.length >= countMax || added.reduce((a, [, b]) => a + b, 0) >= 300);
        const cut = added.length > 0 ? added[added.length >> 1][0] : 0;
        inf.freeLE(cut);
        const left = added.filter(([i]) => i > cut);
        expect(inf.count()).toBe(left.length);
        expect(inf.bytes).toBe(left.reduce((a, [, b]) => a + b, 0));
      }),
    );
  });
});
