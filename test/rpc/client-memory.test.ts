/**
 * Goal: the client-memory budget's rules, alone: all-or-nothing reserves for request bodies, reads
 * granted smaller when short and queued FIFO below the floor, resize after a read, bounded waits, and
 * every byte back at 0 after release. Method: a ClientMemoryBudget with a small limit, driven directly.
 */
import { describe, expect, it } from 'vitest';
import { ClientMemoryBudget } from '../../src/rpc/client-memory.js';
import { isSluiceError } from '../../src/errors.js';

describe('ClientMemoryBudget', () => {
  it('refuses a request body that does not fit, and takes it once space is released', () => {
    const seen: number[] = [];
    const b = new ClientMemoryBudget(100, (used) => seen.push(used));
    const a = b.tryReserve(70)!;
    expect(b.tryReserve(40)).toBeNull();
    a.release();
    a.release(); // idempotent
    const c = b.tryReserve(40)!;
    expect(b.usedBytes).toBe(40);
    c.release();
    expect(b.usedBytes).toBe(0);
    expect(seen.at(-1)).toBe(0);
  });

  it('answers a read smaller when short, and queues it (FIFO) below the floor', async () => {
    const b = new ClientMemoryBudget(100);
    const held = b.tryReserve(70)!;
    const smaller = await b.reserveUpTo(80, 10, 1_000);
    expect(smaller.bytes).toBe(30);
    const order: string[] = [];
    const first = b.reserveUpTo(50, 10, 5_000).then((h) => (order.push('first'), h));
    const second = b.reserveUpTo(50, 10, 5_000).then((h) => (order.push('second'), h));
    // A body may not jump the queue of waiting reads.
    expect(b.tryReserve(1)).toBeNull();
    held.release();
    const [h1, h2] = await Promise.all([first, second]);
    expect(order).toEqual(['first', 'second']);
    expect(h1.bytes + h2.bytes + smaller.bytes).toBeLessThanOrEqual(100);
    for (const h of [h1, h2, smaller]) h.release();
    expect(b.usedBytes).toBe(0);
  });

  it('resizes a hold to what the read returned, including one batch over the grant', () => {
    const b = new ClientMemoryBudget(100);
    const h = b.tryReserve(60)!;
    h.resize(130);
    expect(b.usedBytes).toBe(130);
    h.resize(5);
    expect(b.usedBytes).toBe(5);
    h.release();
    h.resize(50); // after release: no effect
    expect(b.usedBytes).toBe(0);
  });

  it('fails a waiting read with CLIENT_MEMORY_EXHAUSTED after its wait, or with the abort reason', async () => {
    const b = new ClientMemoryBudget(100);
    const held = b.tryReserve(100)!;
    const err = await b.reserveUpTo(10, 10, 30).catch((e: unknown) => e);
    expect(isSluiceError(err, 'CLIENT_MEMORY_EXHAUSTED') && err.retriable && (err.retryAfterMs ?? 0) > 0).toBe(true);
    const ac = new AbortController();
    const aborted = b.reserveUpTo(10, 10, 5_000, ac.signal).catch((e: unknown) => e);
    ac.abort(new Error('gone'));
    expect(((await aborted) as Error).message).toBe('gone');
    expect(b.waiting).toBe(0);
    held.release();
    expect(b.usedBytes).toBe(0);
  });
});
