/**
 * What the gRPC services share: the broker (which may not be open yet, or already closing), the probe,
 * and the long-lived calls (long-poll fetches, subscriptions) that shutdown must cut short.
 */
import { SluiceError, isSluiceError } from '../errors.js';
import { CLIENT_MEMORY_BYTES_DEFAULT, CLIENT_MEMORY_FETCH_MIN_BYTES, CLIENT_MEMORY_WAIT_MS_MAX } from '../constants.js';
import type { BrokerApi } from '../broker/types.js';
import type { BrokerProbe, RequestKind } from '../broker/probe.js';
import { statusName, toServiceError } from './errors.js';
import { ClientMemoryBudget, clientMemoryExhausted, type ClientMemoryHold } from './client-memory.js';

/** How a finished call is reported: `cancelled` tells a client's cancel (not an error) from a failure. */
export interface CallReport {
  kind?: RequestKind;
  cancelled?: () => boolean;
}

export class ServiceContext {
  private broker: BrokerApi | null = null;
  /** What answers requests another node forwarded here (./forward.ts): never forwards again. */
  private forwardedBroker: BrokerApi | null = null;
  private closing = false;
  /** Aborted on shutdown so long-polls and streams end at once instead of holding the drain. */
  private readonly longCalls = new Set<AbortController>();

  /** Bytes held on behalf of clients (see ./client-memory.ts). */
  readonly memory: ClientMemoryBudget;

  constructor(
    readonly probe: BrokerProbe,
    clientMemoryBytes: number = CLIENT_MEMORY_BYTES_DEFAULT,
  ) {
    this.memory = new ClientMemoryBudget(clientMemoryBytes, (used, limit) => probe.clientMemory(used, limit));
  }

  /** All of a request body's `bytes`, or CLIENT_MEMORY_EXHAUSTED (retriable, with a retry hint). */
  holdRequest(rpc: string, bytes: number): ClientMemoryHold {
    if (bytes > this.memory.limitBytes) {
      throw new SluiceError('RECORD_TOO_LARGE', `a ${rpc} of ${bytes} bytes is larger than the broker's whole client-memory budget (${this.memory.limitBytes} bytes)`);
    }
    const hold = this.memory.tryReserve(bytes);
    if (hold !== null) return hold;
    this.probe.clientMemoryRefused(rpc);
    throw clientMemoryExhausted(`the broker holds ${this.memory.usedBytes} of its ${this.memory.limitBytes} bytes of client memory; retry later`);
  }

  /** Exactly `bytes` for a read that cannot be smaller (one big structured batch), waiting (bounded) for them. */
  async holdExactly(rpc: string, bytes: number, signal: AbortSignal): Promise<ClientMemoryHold> {
    if (bytes > this.memory.limitBytes) {
      throw new SluiceError('RECORD_TOO_LARGE', `a batch decodes to ${bytes} bytes, more than the broker's whole client-memory budget (${this.memory.limitBytes}); fetch it raw`);
    }
    if (this.memory.limitBytes - this.memory.usedBytes < bytes) this.probe.clientMemoryRefused(rpc);
    try {
      return await this.memory.reserveUpTo(bytes, bytes, CLIENT_MEMORY_WAIT_MS_MAX, signal);
    } catch (err) {
      throw isSluiceError(err) ? err : signal.reason;
    }
  }

  /** Budget for a read of up to `wantBytes`: less when short, waiting (bounded) below the floor. */
  async holdRead(rpc: string, wantBytes: number, signal: AbortSignal): Promise<ClientMemoryHold> {
    const waits = this.memory.waiting > 0 || this.memory.limitBytes - this.memory.usedBytes < Math.min(wantBytes, CLIENT_MEMORY_FETCH_MIN_BYTES);
    if (waits) this.probe.clientMemoryRefused(rpc);
    try {
      return await this.memory.reserveUpTo(wantBytes, CLIENT_MEMORY_FETCH_MIN_BYTES, CLIENT_MEMORY_WAIT_MS_MAX, signal);
    } catch (err) {
      throw isSluiceError(err) ? err : signal.reason;
    }
  }

  /** `forwarded`: the API for requests another node forwarded here (default: `broker`). */
  attach(broker: BrokerApi, forwarded?: BrokerApi): void {
    this.broker = broker;
    this.forwardedBroker = forwarded ?? null;
  }

  get ready(): boolean {
    return this.broker !== null && !this.closing;
  }

  /**
   * The broker, or a retriable error while it is starting or stopping. `forwarded`: the request came
   * from another node (metadata `sluice-forwarded`), so it is answered here or refused, never forwarded.
   */
  api(forwarded = false): BrokerApi {
    if (this.closing) throw new SluiceError('SHUTTING_DOWN', 'the broker is shutting down; retry against another broker or after restart');
    if (this.broker === null) throw new SluiceError('UNAVAILABLE', 'the broker is still starting; retry shortly');
    return forwarded ? (this.forwardedBroker ?? this.broker) : this.broker;
  }

  /** Stops intake and ends every long-lived call. */
  beginShutdown(): void {
    this.closing = true;
    for (const ac of this.longCalls) ac.abort(new SluiceError('SHUTTING_DOWN', 'the broker is shutting down'));
    this.longCalls.clear();
  }

  /** An AbortController registered for shutdown; call the returned release when the call ends. */
  longCall(): { signal: AbortSignal; controller: AbortController; release: () => void } {
    const controller = new AbortController();
    if (this.closing) controller.abort(new SluiceError('SHUTTING_DOWN', 'the broker is shutting down'));
    else this.longCalls.add(controller);
    return { signal: controller.signal, controller, release: () => this.longCalls.delete(controller) };
  }

  /**
   * Runs one unary handler: times it for the probe and maps a thrown error to a gRPC status with an
   * ErrorInfo detail. `callback` is grpc-js's sendUnaryData. `report.kind` 'long-poll' marks a call
   * that may wait for data (counted, not timed); `report.cancelled` tells a client's cancel apart.
   */
  unary<T>(rpc: string, work: () => Promise<T>, callback: (err: ReturnType<typeof toServiceError> | null, value?: T) => void, report: CallReport = {}): void {
    const started = process.hrtime.bigint();
    const fail = (err: unknown): void => {
      const status = toServiceError(err);
      this.finished(rpc, report.kind ?? 'unary', started, report.cancelled?.() === true ? 'CANCELLED' : statusName(status.code));
      callback(status);
    };
    let promise: Promise<T>;
    try {
      promise = work();
    } catch (err) {
      fail(err);
      return;
    }
    promise.then(
      (value) => {
        this.finished(rpc, report.kind ?? 'unary', started, 'OK');
        callback(null, value);
      },
      fail,
    );
  }

  /** Reports a finished call to the probe; `started` is its process.hrtime.bigint() at arrival. */
  finished(rpc: string, kind: RequestKind, started: bigint, status: string): void {
    this.probe.requestFinished(rpc, kind, Number(process.hrtime.bigint() - started) / 1e9, status);
  }

  /** The status name a stream that ended with `err` reports: OK, CANCELLED (the client left), or the error's. */
  static streamStatus(err: unknown, cancelled: boolean): string {
    if (cancelled) return 'CANCELLED';
    return err === null || err === undefined ? 'OK' : statusName(toServiceError(err).code);
  }
}
