/**
 * One ProduceStream per node: many produces on one long-lived bidirectional call, each tagged with an
 * id the broker's answer echoes (Kafka's correlation id). A unary Produce costs a new HTTP/2 stream,
 * headers and trailers, and grpc-js's per-call machinery on both ends; on a stream a produce is one
 * DATA frame each way.
 *
 * Failure model, chosen to match a unary call's:
 *  - an answer with `error` rejects that produce with the SluiceError a unary call would have thrown;
 *  - the stream failing (connection lost, broker stopping) rejects every produce still unanswered with
 *    the stream's error, and the next produce opens a new stream;
 *  - a produce unanswered after the request timeout rejects with TIMEOUT and cancels the stream, as
 *    Kafka's client drops a connection on a request timeout (the other produces on it fail the same
 *    way and are retried by the producer);
 *  - a broker without ProduceStream (UNIMPLEMENTED, an older version) is remembered, and its produces,
 *    including those that were waiting on the stream, go as unary calls.
 */
import * as grpc from '@grpc/grpc-js';
import { SluiceError } from '../errors.js';
import { fromServiceError, fromStatusMessage, readErrorInfo, type BrokerClient } from '../rpc/index.js';
import type { ProduceRequest, ProduceResponse, ProduceStreamRequest, ProduceStreamResponse } from '../rpc/gen/sluice/v1/broker.js';

/** How often unanswered produces are checked against their deadline while any are waiting. */
const PRODUCE_STREAM_SWEEP_MS = 100;

interface Waiting {
  request: ProduceRequest;
  deadlineMs: number;
  resolve(res: ProduceResponse): void;
  reject(err: unknown): void;
}

export class ProduceStream {
  private call: grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse> | null = null;
  /** Unanswered produces by id; ids ascend, so the map's order is also deadline order. */
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private sweeper: NodeJS.Timeout | null = null;
  /** The broker answered UNIMPLEMENTED: every produce goes through `unary`. */
  private unsupported = false;

  constructor(
    private readonly client: BrokerClient,
    private readonly timeoutMs: number,
    /** A unary Produce on the same node, for a broker that has no ProduceStream. */
    private readonly unary: (request: ProduceRequest) => Promise<ProduceResponse>,
    /** Turns a transport failure (no ErrorInfo) into words for the user; see explainTransportError. */
    private readonly explain: (err: SluiceError) => SluiceError,
  ) {}

  send(request: ProduceRequest): Promise<ProduceResponse> {
    if (this.unsupported) return this.unary(request);
    const call = this.call ?? this.open();
    return new Promise<ProduceResponse>((resolve, reject) => {
      const id = this.nextId++;
      this.waiting.set(id, { request, deadlineMs: Date.now() + this.timeoutMs, resolve, reject });
      call.write({ id: BigInt(id), request });
      this.sweeper ??= setInterval(() => this.sweep(), Math.min(PRODUCE_STREAM_SWEEP_MS, this.timeoutMs)).unref();
    });
  }

  /**
   * Ends our side of the stream: the broker still answers what it has (those produces settle as
   * answered, or with the stream's error if the connection goes first), then ends its side.
   */
  close(): void {
    this.call?.end();
  }

  private open(): grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse> {
    // No deadline on the stream itself: each produce has its own (the sweep).
    const call = this.client.produceStream(new grpc.Metadata(), {});
    this.call = call;
    call.on('data', (m: ProduceStreamResponse) => {
      const id = Number(m.id);
      const w = this.waiting.get(id);
      if (w === undefined) return; // timed out already
      this.waiting.delete(id);
      if (m.error !== undefined) w.reject(fromStatusMessage(m.error));
      else if (m.response !== undefined) w.resolve(m.response);
      else w.reject(new SluiceError('INTERNAL', `the broker answered produce ${id} with neither a response nor an error`));
      if (this.waiting.size === 0) this.stopSweeper();
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (err.code === grpc.status.UNIMPLEMENTED && readErrorInfo(err.metadata) === null) {
        this.unsupported = true;
        this.fail(call, null);
        return;
      }
      const e = fromServiceError(err);
      this.fail(call, readErrorInfo(err.metadata) !== null ? e : this.explain(e));
    });
    // An OK end (the broker stopped reading after our end, or is draining): nothing more will be answered.
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) this.fail(call, new SluiceError('UNAVAILABLE', 'the broker ended the produce stream before answering; retry'));
    });
    return call;
  }

  /**
   * The stream `call` is over: forget it and settle what waited on it, with `err`, or (err null: the
   * broker has no ProduceStream) by sending each again as a unary call.
   */
  private fail(call: grpc.ClientDuplexStream<ProduceStreamRequest, ProduceStreamResponse> | null, err: SluiceError | null): void {
    if (call !== null && this.call !== call) return;
    this.call = null;
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    this.stopSweeper();
    for (const w of waiting) {
      if (err === null) this.unary(w.request).then(w.resolve, w.reject);
      else w.reject(err);
    }
  }

  private sweep(): void {
    const now = Date.now();
    const first = this.waiting.values().next();
    if (first.done === true || first.value.deadlineMs > now) return;
    // The broker has not answered in time: drop the stream, as a timed-out unary call is cancelled.
    const call = this.call;
    this.fail(call, this.explain(new SluiceError('TIMEOUT', `Deadline exceeded: no answer to a produce within ${this.timeoutMs} ms`)));
    call?.cancel();
  }

  private stopSweeper(): void {
    if (this.sweeper === null) return;
    clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
