/**
 * Goal: the SharedArrayBuffer ring never hands out bytes that are still in use, frees exactly what it
 * charged, and reports full rather than growing.
 * Method: unit cases for wrap-around, shrink and cancel, then a fast-check model test: random
 * allocations, shrinks and FIFO releases against a list of live slots, checking after every step that
 * no two live slots overlap and that used bytes equal the sum of live charges.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRingBuffers, RingReader, RingWriter, type RingSlot } from '../../src/shard/ring.js';

function ring(capacity: number): { w: RingWriter; r: RingReader } {
  const buffers = createRingBuffers(capacity);
  return { w: new RingWriter(buffers), r: new RingReader(buffers) };
}

describe('ring', () => {
  it('allocates contiguously, wraps with a charge for the skipped tail, and frees in order', () => {
    const { w, r } = ring(100);
    const a = w.alloc(40)!;
    const b = w.alloc(40)!;
    expect([a.offset, b.offset]).toEqual([0, 40]);
    expect(w.alloc(30)).toBeNull(); // 20 free in front, not 30
    r.release(a.charge);
    const c = w.alloc(30)!; // does not fit in the last 20 bytes: wraps to 0, charges them too
    expect(c).toEqual({ offset: 0, length: 30, charge: 50 });
    expect(w.usedBytes).toBe(90);
    r.release(b.charge);
    r.release(c.charge);
    expect(w.usedBytes).toBe(0);
    expect(w.freeBytes).toBe(100);
  });

  it('shrinks and cancels the last allocation', () => {
    const { w } = ring(100);
    const a = w.alloc(60)!;
    const small = w.shrinkLast(a, 10);
    expect(small).toEqual({ offset: 0, length: 10, charge: 10 });
    const b = w.alloc(80)!;
    expect(b.offset).toBe(10);
    w.cancelLast(b);
    expect(w.usedBytes).toBe(10);
    const wrapped = w.alloc(85); // 90 free, but only 90 contiguous from 10
    expect(wrapped?.offset).toBe(10);
  });

  it('shares bytes between writer and reader views', () => {
    const { w, r } = ring(64);
    const s = w.alloc(5)!;
    w.view(s).set([1, 2, 3, 4, 5]);
    expect([...r.view(s.offset, s.length)]).toEqual([1, 2, 3, 4, 5]);
  });

  it('never overlaps live slots (model test)', () => {
    const step = fc.oneof(
      fc.record({ kind: fc.constant('alloc' as const), len: fc.integer({ min: 0, max: 120 }), shrinkTo: fc.option(fc.integer({ min: 0, max: 120 })) }),
      fc.record({ kind: fc.constant('release' as const) }),
    );
    fc.assert(
      fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
        const cap = 128;
        const { w, r } = ring(cap);
        const live: RingSlot[] = [];
        for (const s of steps) {
          if (s.kind === 'alloc') {
            let slot = w.alloc(s.len);
            if (!slot) {
              expect(w.freeBytes).toBeLessThan(s.len + (cap - 0)); // full for this size: nothing changed
              continue;
            }
            if (s.shrinkTo !== null && s.shrinkTo <= slot.length) slot = w.shrinkLast(slot, s.shrinkTo);
            live.push(slot);
          } else if (live.length > 0) {
            r.release(live.shift()!.charge);
          }
          const used = live.reduce((n, x) => n + x.charge, 0);
          expect(w.usedBytes).toBe(used);
          expect(used).toBeLessThanOrEqual(cap);
          const spans = live.filter((x) => x.length > 0).map((x) => [x.offset, x.offset + x.length] as const);
          for (const [a0, a1] of spans) expect(a1).toBeLessThanOrEqual(cap);
          spans.sort((x, y) => x[0] - y[0]);
          for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
