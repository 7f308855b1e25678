/**
 * One budget for the bytes the broker holds on behalf of clients: a produce body from the moment its
 * handler runs until it is answered, a fetch response from before it is read (the reservation bounds
 * the read) until the call ends, a subscription's messages until HTTP/2 flushed them to the socket.
 *
 * The budget never grows memory: reserving is how a reader learns how much it may read. A produce is
 * all-or-nothing (`tryReserve`, refused at once with CLIENT_MEMORY_EXHAUSTED and a retry hint); a read
 * takes what is free down to a floor (`reserveUpTo`), and waits in FIFO order below it. A hold may be
 * resized after the read to what it really holds: a read can return one batch more than it asked for
 * (the first batch is always whole), so the budget can be overshot by at most one batch per reader.
 */
import assert from 'node:assert/strict';
import { SluiceError } from '../errors.js';
import { CLIENT_MEMORY_RETRY_MS } from '../constants.js';

interface Waiter {
  want: number;
  min: number;
  grant: (hold: ClientMemoryHold) => void;
  fail: (err: SluiceError) => void;
}

export function clientMemoryExhausted(message: string): SluiceError {
  return new SluiceError('CLIENT_MEMORY_EXHAUSTED', message, { retryAfterMs: CLIENT_MEMORY_RETRY_MS });
}

/** Bytes reserved from a budget; release exactly once (further calls are no-ops). */
export class ClientMemoryHold {
  private released = false;

  constructor(
    private readonly budget: ClientMemoryBudget,
    private held: number,
  ) {}

  get bytes(): number {
    return this.held;
  }

  /** Holds `bytes` instead (what a read really returned); may exceed the budget by one read's overshoot. */
  resize(bytes: number): void {
    assert.ok(bytes >= 0 && Number.isFinite(bytes));
    if (this.released) return;
    const delta = bytes - this.held;
    this.held = bytes;
    this.budget.adjust(delta);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.adjust(-this.held);
    this.held = 0;
  }
}

export class ClientMemoryBudget {
  private used = 0;
  private readonly waiters: Waiter[] = [];

  constructor(
    readonly limitBytes: number,
    private readonly onChange: (usedBytes: number, limitBytes: number) => void = () => {},
  ) {
    assert.ok(Number.isSafeInteger(limitBytes) && limitBytes > 0);
    onChange(0, limitBytes);
  }

  get usedBytes(): number {
    return this.used;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** All of `bytes`, or null when they do not fit (or readers are already queued for what is free). */
  tryReserve(bytes: number): ClientMemoryHold | null {
    assert.ok(bytes >= 0 && Number.isFinite(bytes));
    if (this.waiters.length > 0 || this.used + bytes > this.limitBytes) return null;
    this.adjust(bytes);
    return new ClientMemoryHold(this, bytes);
  }

  /**
   * Up to `wantBytes`, at least min(minBytes, wantBytes): granted at once when that much is free, else
   * in FIFO order as holds are released. Fails with CLIENT_MEMORY_EXHAUSTED after `waitMs`, or with the
   * signal's reason when it aborts.
   */
  reserveUpTo(wantBytes: number, minBytes: number, waitMs: number, signal?: AbortSignal): Promise<ClientMemoryHold> {
    assert.ok(wantBytes > 0 && minBytes > 0);
    const min = Math.min(minBytes, wantBytes);
    if (this.waiters.length === 0 && this.free() >= min) return Promise.resolve(this.take(wantBytes));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const leave = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const onAbort = (): void => {
        leave();
        reject(signal!.reason);
        this.grantWaiters();
      };
      const waiter: Waiter = {
        want: wantBytes,
        min,
        grant: (hold) => {
          leave();
          resolve(hold);
        },
        fail: (err) => {
          leave();
          reject(err);
          this.grantWaiters();
        },
      };
      const timer = setTimeout(
        () => waiter.fail(clientMemoryExhausted(`the broker's client-memory budget of ${this.limitBytes} bytes stayed spent for ${waitMs} ms; retry later`)),
        waitMs,
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Called by holds only. */
  adjust(delta: number): void {
    this.used += delta;
    assert.ok(this.used >= 0, 'client memory released more than it reserved');
    this.onChange(this.used, this.limitBytes);
    if (delta < 0) this.grantWaiters();
  }

  private free(): number {
    return Math.max(0, this.limitBytes - this.used);
  }

  private take(wantBytes: number): ClientMemoryHold {
    const bytes = Math.min(wantBytes, this.free());
    this.adjust(bytes);
    return new ClientMemoryHold(this, bytes);
  }

  private grantWaiters(): void {
    while (this.waiters.length > 0 && this.free() >= this.waiters[0].min) {
      const w = this.waiters[0];
      w.grant(this.take(w.want));
    }
  }
}
