/**
 * sluice.v1.Broker: Produce, Fetch, Subscribe, ListOffsets, GetMetadata as thin adapters over
 * BrokerApi. Checks here are the ones only the edge can make (int64 range, negative offsets, enum
 * values, the records/record_batch choice); the core checks everything about topics and batches.
 */
import type { ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import { SluiceError, isSluiceError } from '../errors.js';
import {
  CLIENT_MEMORY_FETCH_MIN_BYTES,
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_BYTES_MAX_LIMIT,
  FETCH_WAIT_MS_MAX,
  PRODUCE_STREAM_INFLIGHT_MAX,
  SUBSCRIBE_MESSAGES_UNFLUSHED_MAX,
  SUBSCRIBE_WINDOW_BYTES,
} from '../constants.js';
import type { BrokerApi, FetchInput, FetchResult, ProduceInput } from '../broker/types.js';
import { FetchChain } from '../broker/index.js';
import type {
  BrokerServer,
  FetchRequest,
  FetchResponse,
  ProduceRequest,
  ProduceResponse,
  ProduceStreamRequest,
  ProduceStreamResponse,
  SubscribeRequest,
} from './gen/sluice/v1/broker.js';
import { toAcks, toFetchResponse, toOffset, toOffsetSpec, toPbTopic, toRecordInputs } from './convert.js';
import { statusName, toServiceError, toStatusMessage } from './errors.js';
import { ServiceContext } from './context.js';
import type { ClientMemoryHold } from './client-memory.js';
import { onCallEnd } from './call-end.js';
import { encodedProduceRecords, encodedRecordsBytes, recordsOf } from './fast-codec.js';
import { encodeRecordsBatch } from './structured-produce.js';
import { isForwarded } from './forward.js';

/**
 * Paths whose handlers need to know when the call ends (see ./call-end.ts): Fetch and Subscribe hold
 * client memory until then; a ProduceStream ended by grpc-js (a malformed message answered by the
 * interceptor) is otherwise never told to its handler.
 */
export const MEMORY_HOLDING_PATHS: ReadonlySet<string> = new Set(['/sluice.v1.Broker/Fetch', '/sluice.v1.Broker/Subscribe', '/sluice.v1.Broker/ProduceStream']);

/** Per-record overhead counted for structured records (the protobuf and RecordBatch framing, the objects). */
const RECORD_OVERHEAD_BYTES = 64;

/**
 * Bytes a produce holds while it is handled: its body, and for structured records the v2 batch the
 * broker encodes from them (so twice their payload).
 */
function produceBytes(r: ProduceRequest): number {
  let n = r.recordBatch.length;
  const encoded = encodedProduceRecords(r);
  if (encoded !== undefined) return n + 2 * (encoded.bytes + encoded.count * RECORD_OVERHEAD_BYTES);
  for (const rec of r.records) {
    let payload = RECORD_OVERHEAD_BYTES + (rec.key?.length ?? 0) + (rec.value?.length ?? 0);
    for (const h of rec.headers) payload += h.key.length + (h.value?.length ?? 0);
    n += 2 * payload;
  }
  return n;
}

/** Bytes a FetchResponse holds until it is flushed: its batches, or its records (encoded or objects). */
function fetchResponseBytes(m: FetchResponse): number {
  let n = m.recordBatches.length + encodedRecordsBytes(m);
  for (const rec of m.records) n += RECORD_OVERHEAD_BYTES + (rec.key?.length ?? 0) + (rec.value?.length ?? 0);
  return n;
}

/** How long one Subscribe long-poll waits before looping (it also bounds how late a cancel is seen). */
export const SUBSCRIBE_POLL_MS = 1_000;

function toProduceInput(r: ProduceRequest): ProduceInput {
  const hasBatch = r.recordBatch.length > 0;
  const encoded = encodedProduceRecords(r);
  const hasRecords = r.records.length > 0 || encoded !== undefined;
  if (hasBatch === hasRecords) {
    throw new SluiceError('INVALID_REQUEST', hasBatch ? 'set either records or record_batch, not both' : 'a produce needs records or a record_batch');
  }
  if (r.partition !== undefined && r.partition < 0) throw new SluiceError('UNKNOWN_PARTITION', `partition ${r.partition} does not exist (partitions are numbered from 0)`);
  const input: ProduceInput = { topic: r.topic, acks: toAcks(r.acks) };
  if (r.partition !== undefined) input.partition = r.partition;
  if (r.producerId !== undefined) {
    if (hasBatch) throw new SluiceError('INVALID_REQUEST', 'raw record batches carry producer id, epoch and sequence in their v2 headers; leave producer_id unset');
    input.producer = { producerId: r.producerId, producerEpoch: r.producerEpoch, baseSequence: r.baseSequence };
  } else if (r.producerEpoch !== 0 || r.baseSequence !== 0) {
    throw new SluiceError('INVALID_REQUEST', 'producer_epoch and base_sequence need producer_id');
  }
  if (hasBatch) {
    input.batches = r.recordBatch;
    return input;
  }
  // Structured records: written straight into one v2 batch (./structured-produce.ts), the producer's
  // id, epoch and sequence stamped in its header, exactly the batch the core would build from them; it
  // then travels as a batch (the core checks and fences it as any batch). Whatever that path does not
  // take (odd timestamps, non-UTF-8 header keys, out-of-range producer fields, ...) goes the generic
  // way, whose rules and messages stay the only ones.
  const batch = encoded === undefined ? null : encodeRecordsBatch(encoded, input.producer, Date.now());
  if (batch !== null) {
    input.batches = batch;
    delete input.producer;
  } else input.records = toRecordInputs(recordsOf(r));
  return input;
}

function fetchBytes(maxBytes: number): number {
  if (maxBytes < 0) throw new SluiceError('INVALID_REQUEST', `max_bytes must not be negative (got ${maxBytes})`);
  return maxBytes === 0 ? FETCH_BYTES_MAX_DEFAULT : Math.min(maxBytes, FETCH_BYTES_MAX_LIMIT);
}

function toFetchInput(r: FetchRequest): FetchInput {
  if (r.maxWaitMs < 0) throw new SluiceError('INVALID_REQUEST', `max_wait_ms must not be negative (got ${r.maxWaitMs})`);
  if (r.partition < 0) throw new SluiceError('UNKNOWN_PARTITION', `partition ${r.partition} does not exist (partitions are numbered from 0)`);
  return {
    topic: r.topic,
    partition: r.partition,
    offset: toOffset(r.offset),
    maxBytes: fetchBytes(r.maxBytes),
    maxWaitMs: Math.min(r.maxWaitMs, FETCH_WAIT_MS_MAX),
  };
}

/** Times a structured read may come back asking for more (data can change between two reads). */
const STRUCTURED_RETRIES_MAX = 3;

/**
 * One read under a hold. A structured read whose first batch decodes to more than the hold comes back
 * empty with `needBytes`: the hold is swapped (through `swap`, so the caller's release sees the new
 * one) for exactly that much, and the read is asked again.
 */
async function heldFetch(
  ctx: ServiceContext,
  api: BrokerApi,
  rpc: string,
  input: FetchInput,
  hold: ClientMemoryHold,
  swap: (next: ClientMemoryHold) => void,
  signal: AbortSignal,
  chain?: FetchChain,
): Promise<{ result: FetchResult; hold: ClientMemoryHold }> {
  for (let attempt = 0; ; attempt++) {
    // A retry asks for a bigger read than the chain repeats: a plain fetch (the chain ended on the shard).
    const result = await api.fetch({ ...input, maxBytes: hold.bytes }, signal, attempt === 0 ? chain : undefined);
    if (result.needBytes === undefined || attempt === STRUCTURED_RETRIES_MAX) return { result, hold };
    hold.release();
    hold = await ctx.holdExactly(rpc, result.needBytes, signal);
    swap(hold);
  }
}

/** Resolves when the stream drains, or when the call ends (cancel, shutdown) so a stuck client frees us. */
function drained(call: ServerWritableStream<SubscribeRequest, FetchResponse>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * A subscription's window: bytes and messages handed to HTTP/2 and not yet flushed to the socket (each
 * message's write callback). A reader that stops reading fills the HTTP/2 flow-control window, the
 * write callbacks stop, and the subscription stops fetching once SUBSCRIBE_WINDOW_BYTES or
 * SUBSCRIBE_MESSAGES_UNFLUSHED_MAX messages are queued for it.
 * Each queued message also holds its bytes of the broker's client-memory budget until flushed, or
 * until the call ends.
 */
class SubscribeWindow {
  private queuedBytes = 0;
  private queuedCount = 0;
  /**
   * Slow start: a subscription's reads begin at the smallest read and double with each message the
   * client actually took (flushed), up to its max_bytes. A reader that never reads so holds a few small
   * messages instead of a window of big ones, and costs the shard little work.
   */
  private flushedCount = 0;
  private readonly holds = new Set<ClientMemoryHold>();
  private wake: (() => void) | null = null;

  /** Room for the next message (0 while a reader that stopped reading has the window full). */
  get room(): number {
    return this.queuedCount >= SUBSCRIBE_MESSAGES_UNFLUSHED_MAX ? 0 : SUBSCRIBE_WINDOW_BYTES - this.queuedBytes;
  }

  add(hold: ClientMemoryHold): void {
    this.holds.add(hold);
  }

  /** The next read's size: slow start, then `maxBytes`, never more than the room left. */
  nextRead(maxBytes: number): number {
    const ramp = CLIENT_MEMORY_FETCH_MIN_BYTES * 2 ** Math.min(this.flushedCount, 16);
    return Math.min(maxBytes, ramp, this.room);
  }

  queued(hold: ClientMemoryHold): () => void {
    const bytes = hold.bytes;
    this.queuedBytes += bytes;
    this.queuedCount++;
    return () => {
      this.queuedBytes -= bytes;
      this.queuedCount--;
      this.flushedCount++;
      this.drop(hold);
    };
  }

  drop(hold: ClientMemoryHold): void {
    hold.release();
    this.holds.delete(hold);
    this.wake?.();
  }

  /** Resolves when some queued message was flushed (or the call ended). */
  flushed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.wake = null;
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  releaseAll(): void {
    for (const h of this.holds) h.release();
    this.holds.clear();
    this.queuedBytes = 0;
    this.queuedCount = 0;
  }
}

async function tail(ctx: ServiceContext, api: BrokerApi, call: ServerWritableStream<SubscribeRequest, FetchResponse>, signal: AbortSignal): Promise<void> {
  const r = call.request;
  if (r.partition < 0) throw new SluiceError('UNKNOWN_PARTITION', `partition ${r.partition} does not exist (partitions are numbered from 0)`);
  let offset = toOffset(r.offset);
  const maxBytes = fetchBytes(r.maxBytes);
  const window = new SubscribeWindow();
  // While caught up, the long-polls are one chained fetch: the shard renews it after each answer.
  const chain = new FetchChain();
  onCallEnd(call.metadata, () => {
    chain.close();
    window.releaseAll();
  });
  // A caught-up subscription long-polls with the smallest read, so idle subscribers hold little budget.
  let caughtUp = false;
  while (!signal.aborted) {
    if (window.room < CLIENT_MEMORY_FETCH_MIN_BYTES) {
      await window.flushed(signal);
      continue;
    }
    const want = caughtUp ? CLIENT_MEMORY_FETCH_MIN_BYTES : window.nextRead(maxBytes);
    let hold: ClientMemoryHold;
    try {
      hold = await ctx.holdRead('Subscribe', want, signal);
    } catch (err) {
      if (isSluiceError(err, 'CLIENT_MEMORY_EXHAUSTED')) continue; // a stream waits as long as it lives
      throw err;
    }
    window.add(hold);
    let result: FetchResult;
    try {
      const format = r.raw ? 'batches' : 'pb-records';
      const input: FetchInput = { topic: r.topic, partition: r.partition, offset, maxBytes: hold.bytes, maxWaitMs: SUBSCRIBE_POLL_MS, format };
      if (!caughtUp) chain.close();
      ({ result, hold } = await heldFetch(ctx, api, 'Subscribe', input, hold, (next) => window.add(next), signal, caughtUp ? chain : undefined));
    } catch (err) {
      window.drop(hold);
      throw err;
    }
    if (signal.aborted || result.nextOffset <= offset) {
      window.drop(hold);
      caughtUp = true;
      continue;
    }
    caughtUp = result.nextOffset >= result.highWatermark;
    const message = toFetchResponse(result, offset, r.raw);
    offset = result.nextOffset;
    hold.resize(fetchResponseBytes(message));
    const flushed = window.queued(hold);
    if (!call.write(message, flushed)) await drained(call, signal);
  }
}

/** One produce, for Produce and for each ProduceStream message alike. */
async function produceOne(ctx: ServiceContext, request: ProduceRequest, forwarded: boolean): Promise<ProduceResponse> {
  // The body is already received (grpc-js buffers a whole message before the handler runs); what
  // the budget bounds is how many bodies are held at once while shards append them.
  const hold = ctx.holdRequest('Produce', produceBytes(request));
  try {
    const input = toProduceInput(request);
    const result = await ctx.api(forwarded).produce(input);
    return {
      partition: result.partition,
      baseOffset: BigInt(result.baseOffset),
      lastOffset: BigInt(result.lastOffset),
      appendTimeMs: BigInt(result.appendTimeMs),
      logStartOffset: BigInt(result.logStartOffset),
    };
  } finally {
    hold.release();
  }
}

/**
 * ProduceStream: each message is a produce answered on the same stream with its id, timed and counted
 * as a Produce. Reading pauses while PRODUCE_STREAM_INFLIGHT_MAX produces are in flight or as many
 * answers wait to be flushed, so HTTP/2 flow control holds the client back. The stream ends (OK) once
 * the client has ended its side and every produce is answered; on broker shutdown, new messages are
 * answered SHUTTING_DOWN and the stream ends with SHUTTING_DOWN once the ones in flight are answered.
 */
function produceStream(ctx: ServiceContext, call: ServerDuplexStream<ProduceStreamRequest, ProduceStreamResponse>): void {
  const started = process.hrtime.bigint();
  const { signal, controller, release } = ctx.longCall();
  const forwarded = isForwarded(call.metadata);
  const cancelled = new SluiceError('UNAVAILABLE', 'cancelled by the client');
  let inflight = 0;
  let inputEnded = false;
  let paused = false;
  /** PRODUCE_STREAM_INFLIGHT_MAX answers are queued unflushed; cleared on 'drain'. */
  let writeBlocked = false;
  let ended = false;
  // Reading pauses while too many produces are in flight or answers back up (a client that sends but
  // does not read), so neither grows without bound.
  const flow = (): void => {
    const stop = !ended && (inflight >= PRODUCE_STREAM_INFLIGHT_MAX || writeBlocked);
    if (stop === paused) return;
    paused = stop;
    if (stop) call.pause();
    else call.resume();
  };
  call.on('drain', () => {
    writeBlocked = false;
    flow();
  });
  const finish = (err: unknown): void => {
    if (ended) return;
    ended = true;
    release();
    ctx.finished('ProduceStream', 'stream', started, ServiceContext.streamStatus(err, signal.reason === cancelled));
    if (signal.reason === cancelled) return;
    if (err === null) call.end();
    else call.emit('error', toServiceError(err));
  };
  const settle = (): void => {
    if (ended || inflight > 0) return;
    if (signal.aborted) finish(signal.reason);
    else if (inputEnded) finish(null);
  };
  const answer = (message: ProduceStreamResponse): void => {
    if (ended) return;
    call.write(message);
    // write() says false past 16 queued messages (objectMode's default), which a burst of answers
    // reaches in normal running; only a backlog as long as the in-flight bound stops reading.
    if (call.writableLength < PRODUCE_STREAM_INFLIGHT_MAX) return;
    writeBlocked = true;
    flow();
  };
  call.on('data', (message: ProduceStreamRequest) => {
    if (ended) return;
    const id = message.id;
    const begun = process.hrtime.bigint();
    const failed = (err: unknown): void => {
      const status = toServiceError(err);
      ctx.finished('Produce', 'unary', begun, statusName(status.code));
      answer({ id, response: undefined, error: toStatusMessage(status) });
    };
    if (signal.aborted) return failed(signal.reason);
    if (message.request === undefined) return failed(new SluiceError('INVALID_REQUEST', `ProduceStream message ${id} has no request`));
    inflight++;
    flow();
    produceOne(ctx, message.request, forwarded)
      .then(
        (response) => {
          ctx.finished('Produce', 'unary', begun, 'OK');
          answer({ id, response, error: undefined });
        },
        failed,
      )
      .finally(() => {
        inflight--;
        flow();
        settle();
      });
  });
  call.on('end', () => {
    inputEnded = true;
    settle();
  });
  call.on('cancelled', () => {
    controller.abort(cancelled);
    finish(cancelled);
  });
  // Ended without us (status sent by an interceptor): stop answering and forget the call; uncounted,
  // as a malformed unary request is. (A server without the call-end interceptor runs the hook at once:
  // ignored, the stream then just lacks this cleanup.)
  let registering = true;
  onCallEnd(call.metadata, () => {
    if (registering || ended) return;
    ended = true;
    release();
  });
  registering = false;
  signal.addEventListener('abort', settle, { once: true });
}

export function brokerService(ctx: ServiceContext): BrokerServer {
  return {
    produce(call, callback) {
      ctx.unary('Produce', () => produceOne(ctx, call.request, isForwarded(call.metadata)), callback);
    },

    produceStream(call) {
      produceStream(ctx, call);
    },

    fetch(call, callback) {
      const { signal, controller, release } = ctx.longCall();
      // A client that gives up (deadline, cancel) frees its parked long-poll in the core at once.
      call.on('cancelled', () => {
        controller.abort(new SluiceError('UNAVAILABLE', 'cancelled by the client'));
        release();
      });
      ctx.unary('Fetch', async () => {
        try {
          const input = toFetchInput(call.request);
          // Reserved before the read, so the read is bounded by what the budget can hold; the response
          // holds it until grpc-js has written it and sent the status (or the client went away).
          let held = await ctx.holdRead('Fetch', input.maxBytes, signal);
          onCallEnd(call.metadata, () => held.release());
          const format = call.request.raw ? 'batches' : 'pb-records';
          const { result } = await heldFetch(ctx, ctx.api(isForwarded(call.metadata)), 'Fetch', { ...input, format }, held, (next) => (held = next), signal);
          const message = toFetchResponse(result, input.offset, call.request.raw);
          held.resize(fetchResponseBytes(message));
          return message;
        } finally {
          release();
        }
      }, callback, { kind: call.request.maxWaitMs > 0 ? 'long-poll' : 'unary', cancelled: () => call.cancelled });
    },

    subscribe(call) {
      const started = process.hrtime.bigint();
      const { signal, controller, release } = ctx.longCall();
      const cancelled = new SluiceError('UNAVAILABLE', 'cancelled by the client');
      call.on('cancelled', () => controller.abort(cancelled));
      const finish = (err: unknown): void => {
        release();
        ctx.finished('Subscribe', 'stream', started, ServiceContext.streamStatus(err ?? (signal.aborted ? signal.reason : null), signal.reason === cancelled));
        if (signal.reason === cancelled) return;
        if (err === null && !signal.aborted) call.end();
        else call.emit('error', toServiceError(err ?? signal.reason));
      };
      let api: BrokerApi;
      try {
        api = ctx.api(isForwarded(call.metadata));
      } catch (err) {
        finish(err);
        return;
      }
      tail(ctx, api, call, signal).then(
        () => finish(null),
        (err: unknown) => finish(signal.aborted && !isSluiceError(err) ? signal.reason : err),
      );
    },

    listOffsets(call, callback) {
      ctx.unary('ListOffsets', async () => {
        const r = call.request;
        const api = ctx.api(isForwarded(call.metadata));
        const spec = toOffsetSpec(r.spec, r.timestampMs);
        let partitions = r.partitions;
        if (partitions.length === 0) partitions = (await api.describeTopic(r.topic)).partitions.map((p) => p.partition);
        const results = await Promise.all(partitions.map((p) => api.listOffsets(r.topic, p, spec)));
        return { offsets: results.map((o) => ({ partition: o.partition, offset: BigInt(o.offset) })) };
      }, callback);
    },

    initProducer(call, callback) {
      ctx.unary('InitProducer', async () => {
        const r = await ctx.api().initProducer(call.request.producerName);
        return { producerId: r.producerId, producerEpoch: r.producerEpoch };
      }, callback);
    },

    getMetadata(call, callback) {
      ctx.unary('GetMetadata', async () => {
        const topics = call.request.topics;
        const m = await ctx.api().metadata(topics.length === 0 ? undefined : topics);
        return {
          clusterId: m.clusterId,
          controllerId: m.controllerId,
          brokers: m.brokers.map((b) => ({ nodeId: b.nodeId, grpcAddress: b.grpcAddress, httpAddress: b.httpAddress, rack: b.rack ?? '', alive: b.alive ?? true, state: b.state ?? 'alive', nodeUuid: b.nodeUuid ?? '', controllerRole: b.controllerRole ?? '' })),
          topics: m.topics.map(toPbTopic),
        };
      }, callback);
    },
  };
}
