/**
 * Goal: the log and progress data structures the protocol leans on hold their contracts for any input.
 * Method: fast-check properties over random logs (non-decreasing terms, optional compaction) and random
 * in-flight sequences.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import { RaftLog } from '../../src/raft/log.js';
import { Inflights } from '../../src/raft/progress.js';
import type { Entry } from '../../src/raft/types.js';

const conf = { voters: [1 as NodeId], learners: [] };

function makeLog(terms: number[], snapIndex: number): RaftLog {
  const entries: Entry[] = terms.map((t, i) => ({ index: (i + 1) as Offset, count: 1, term: t as Term, kind: 'noop', data: new Uint8Array(0), change: null }));
  const s = Math.min(snapIndex, entries.length);
  const snapTerm = s === 0 ? 0 : entries[s - 1].term;
  return new RaftLog({ index: s as Offset, term: snapTerm as Term, conf, data: new Uint8Array(0) }, entries.slice(s));
}

const termsArb = fc.array(fc.integer({ min: 1, max: 6 }), { maxLength: 40 }).map((a) => a.sort((x, y) => x - y));

describe('RaftLog', () => {
  it('findConflictByTerm returns the last index <= index whose term <= term', () => {
    fc.assert(
      fc.property(termsArb, fc.nat(10), fc.nat(50), fc.nat(7), (terms, snap, index, term) => {
        const log = makeLog(terms, snap);
        const [i, t] = log.findConflictByTerm(index, term);
        const hi = Math.min(index, log.lastIndex());
        expect(i).toBeLessThanOrEqual(Math.max(hi, log.snapshot.index));
        expect(t).toBe(log.term(i));
        if (i > log.snapshot.index) expect(t).toBeLessThanOrEqual(term);
        for (let j = i + 1; j <= hi; j++) expect(log.term(j)).toBeGreaterThan(term);
      }),
    );
  });

  it('truncateFrom lowers the persisted mark and reverts configurations', () => {
    const log = makeLog([1, 1, 2], 0);
    log.append({ index: 4 as Offset, count: 1, term: 2 as Term, kind: 'conf', data: new Uint8Array(0), change: { type: 'addLearner', node: 2 as NodeId } });
    expect(log.conf().learners).toEqual([2]);
    log.persistedIndex = 4;
    log.truncateFrom(3);
    expect(log.persistedIndex).toBe(2);
    expect(log.conf().learners).toEqual([]);
    expect(log.lastIndex()).toBe(2);
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
