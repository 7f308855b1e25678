/**
 * sluice.v1.Broker: Produce, Fetch, Subscribe, ListOffsets, GetMetadata as thin adapters over
 * BrokerApi. Checks here are the ones only the edge can make (int64 range, negative offsets, enum
 * values, the records/record_batch choice); the core checks everything about topics and batches.
 */
import type { ServerWritableStream } from '@grpc/grpc-js';
import { SluiceError, isSluiceError } from '../errors.js';
import { FETCH_BYTES_MAX_DEFAULT, FETCH_BYTES_MAX_LIMIT, FETCH_WAIT_MS_MAX } from '../constants.js';
import type { BrokerApi, FetchInput, ProduceInput } from '../broker/types.js';
import type { BrokerServer, FetchRequest, FetchResponse, ProduceRequest, SubscribeRequest } from './gen/sluice/v1/broker.js';
import { toAcks, toFetchResponse, toOffset, toOffsetSpec, toPbTopic, toRecordInputs } from './convert.js';
import { toServiceError } from './errors.js';
import { ServiceContext } from './context.js';

/** How long one Subscribe long-poll waits before looping (it also bounds how late a cancel is seen). */
export const SUBSCRIBE_POLL_MS = 1_000;

function toProduceInput(r: ProduceRequest): ProduceInput {
  const hasBatch = r.recordBatch.length > 0;
  const hasRecords = r.records.length > 0;
  if (hasBatch === hasRecords) {
    throw new SluiceError('INVALID_REQUEST', hasBatch ? 'set either records or record_batch, not both' : 'a produce needs records or a record_batch');
  }
  if (r.partition !== undefined && r.partition < 0) throw new SluiceError('UNKNOWN_PARTITION', `partition ${r.partition} does not exist (partitions are numbered from 0)`);
  const input: ProduceInput = { topic: r.topic, acks: toAcks(r.acks) };
  if (r.partition !== undefined) input.partition = r.partition;
  if (hasBatch) input.batches = r.recordBatch;
  else input.records = toRecordInputs(r.records);
  if (r.producerId !== undefined) {
    if (hasBatch) throw new SluiceError('INVALID_REQUEST', 'raw record batches carry producer id, epoch and sequence in their v2 headers; leave producer_id unset');
    input.producer = { producerId: r.producerId, producerEpoch: r.producerEpoch, baseSequence: r.baseSequence };
  } else if (r.producerEpoch !== 0 || r.baseSequence !== 0) {
    throw new SluiceError('INVALID_REQUEST', 'producer_epoch and base_sequence need producer_id');
  }
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

/** Resolves when `p` settles or the call ends, whichever is first. */
function untilSettledOrAborted(p: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      signal.removeEventListener('abort', done);
      resolve();
    };
    signal.addEventListener('abort', done, { once: true });
    void p.then(done);
  });
}

async function tail(api: BrokerApi, call: ServerWritableStream<SubscribeRequest, FetchResponse>, signal: AbortSignal): Promise<void> {
  const r = call.request;
  if (r.partition < 0) throw new SluiceError('UNKNOWN_PARTITION', `partition ${r.partition} does not exist (partitions are numbered from 0)`);
  let offset = toOffset(r.offset);
  const maxBytes = fetchBytes(r.maxBytes);
  let sending: Promise<void> | null = null;
  while (!signal.aborted) {
    const result = await api.fetch({ topic: r.topic, partition: r.partition, offset, maxBytes, maxWaitMs: SUBSCRIBE_POLL_MS }, signal);
    if (signal.aborted) return;
    if (result.batches.length === 0 || result.nextOffset <= offset) continue;
    const message = toFetchResponse(result, offset, r.raw);
    offset = result.nextOffset;
    // Flow control. grpc-js's object-mode stream reports backpressure (write() === false) only after
    // 16 queued messages, up to 16 MiB each; so besides honouring 'drain' we keep at most one message
    // handed to HTTP/2 and not yet flushed (its write callback), while the next one is being read.
    // A reader that stops reading fills the HTTP/2 window and the subscription stops fetching.
    if (sending !== null) await untilSettledOrAborted(sending, signal);
    if (signal.aborted) return;
    let flushed!: () => void;
    sending = new Promise<void>((resolve) => (flushed = resolve));
    if (!call.write(message, () => flushed())) await drained(call, signal);
  }
}

export function brokerService(ctx: ServiceContext): BrokerServer {
  return {
    produce(call, callback) {
      ctx.unary('Produce', async () => {
        const input = toProduceInput(call.request);
        const result = await ctx.api().produce(input);
        return {
          partition: result.partition,
          baseOffset: BigInt(result.baseOffset),
          lastOffset: BigInt(result.lastOffset),
          appendTimeMs: BigInt(result.appendTimeMs),
          logStartOffset: BigInt(result.logStartOffset),
        };
      }, callback);
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
          const result = await ctx.api().fetch(input, signal);
          return toFetchResponse(result, input.offset, call.request.raw);
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
        api = ctx.api();
      } catch (err) {
        finish(err);
        return;
      }
      tail(api, call, signal).then(
        () => finish(null),
        (err: unknown) => finish(signal.aborted && !isSluiceError(err) ? signal.reason : err),
      );
    },

    listOffsets(call, callback) {
      ctx.unary('ListOffsets', async () => {
        const r = call.request;
        const api = ctx.api();
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
          brokers: m.brokers.map((b) => ({ nodeId: b.nodeId, grpcAddress: b.grpcAddress, httpAddress: b.httpAddress })),
          topics: m.topics.map(toPbTopic),
        };
      }, callback);
    },
  };
}
