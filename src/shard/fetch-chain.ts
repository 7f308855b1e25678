/**
 * Chained fetches: a caught-up reader's long-poll that the shard renews by itself.
 *
 * A Subscribe stream that has caught up asks its shard for the next records over and over: one fetch
 * op per committed batch, main thread to shard, and so one more wake-up of the shard's thread for
 * every batch a producer writes. A chained fetch (`chain` on the fetch op) lets the shard park the
 * next read itself, at the answer's `nextOffset`, as soon as it has sent an answer. The main thread
 * then sends nothing while the reader keeps up.
 *
 * Bounded by a claim count in shared memory, without messages. The main thread counts the answers its
 * reader has taken (`claimed`); the shard parks the read for answer n+1 only once the reader took
 * answer n-1. At most two answers are therefore ever waiting on the main thread, each one caught-up
 * read (see SHARD_FETCH_CHAINS_MAX). When the reader is behind, the shard stops (`stalled`), and the
 * main thread sends `resume` once the reader catches up. One compare-and-swap on `stalled` decides
 * who restarts it, so exactly one side does:
 *  - the shard publishes `stalled = n`, then looks at `claimed` again, and goes on if it can win the swap;
 *  - the main thread publishes `claimed`, then sends `resume` if it wins the swap.
 *
 * A chain ends when an answer is an error, leaves the reader behind the high watermark (a reader with
 * a backlog reads with bigger plain fetches), or asks for a bigger read (`need`); or when the main
 * thread cancels it. Each slot's counters are reset by the shard when a chain starts on it, after (in
 * message order) the cancel of the chain that used the slot before.
 */
import { SHARD_FETCH_CHAINS_MAX } from '../constants.js';

/** Int32 words per slot: claimed, stalled. */
const WORDS = 2;

export function createChainCounters(): SharedArrayBuffer {
  return new SharedArrayBuffer(SHARD_FETCH_CHAINS_MAX * WORDS * Int32Array.BYTES_PER_ELEMENT);
}

export class ChainCounters {
  private readonly a: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.a = new Int32Array(buffer);
  }

  // --- Shard side ------------------------------------------------------------------------------

  /** A chain starts on `slot`: nothing claimed, not stalled. */
  start(slot: number): void {
    Atomics.store(this.a, slot * WORDS, 0);
    Atomics.store(this.a, slot * WORDS + 1, 0);
  }

  /**
   * Answer `n` was just sent: may the read for answer n+1 be parked? False: the chain is stalled, and
   * the main thread will send `resume`.
   */
  mayContinue(slot: number, n: number): boolean {
    const claimed = slot * WORDS;
    if (Atomics.load(this.a, claimed) >= n - 1) return true;
    Atomics.store(this.a, claimed + 1, n);
    return Atomics.load(this.a, claimed) >= n - 1 && Atomics.compareExchange(this.a, claimed + 1, n, 0) === n;
  }

  // --- Main-thread side ------------------------------------------------------------------------

  /** The reader took answer `n`; true when the shard stalled waiting for it and this caller must resume it. */
  claimed(slot: number, n: number): boolean {
    Atomics.store(this.a, slot * WORDS, n);
    const stalledAt = Atomics.load(this.a, slot * WORDS + 1);
    return stalledAt !== 0 && stalledAt - 1 <= n && Atomics.compareExchange(this.a, slot * WORDS + 1, stalledAt, 0) === stalledAt;
  }
}
