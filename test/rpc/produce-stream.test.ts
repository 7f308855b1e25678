/**
 * Goal: ProduceStream answers each produce with its id, as a unary Produce would (the same ErrorInfo
 * reasons), keeps the stream open after a failed produce, bounds what one stream has in flight,
 * answers the produces in flight when the broker stops, and the TS client uses it (with a fallback to
 * unary Produce for a broker without it, and a request timeout that drops the stream). Method: the real gRPC front-end over an in-memory FakeBroker core
 * (test/client/fake-broker.ts), driven by the generated stub, by raw bytes and by the TS Producer; a
 * bare grpc-js server that implements only unary Produce stands in for an older broker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Admin, Producer } from '../../src/client/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { FastBrokerClient, FastBrokerService, fromStatusMessage, readErrorInfo } from '../../src/rpc/index.js';
import type { BrokerClient, ProduceRequest, ProduceStreamResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { PRODUCE_STREAM_INFLIGHT_MAX } from '../../src/constants.js';
import { isSluiceError } from '../../src/errors.js';
import { FakeBroker } from '../client/fake-broker.js';

let running: RunningBroker;
let fake: FakeBroker;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  fake = new FakeBroker();
  running = await startBroker({ openBroker: async () => fake, grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0' });
  const admin = new Admin({ brokers: running.grpcAddress });
  await admin.createTopic('s', { partitions: 2 });
  admin.close();
});
afterAll(async () => {
  for (const c of clients) c.close();
  await running?.close();
});

function stub(): BrokerClient {
  const c = new FastBrokerClient(running.grpcAddress, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

function request(topic: string, partition: number, value: string): ProduceRequest {
  const recordBatch = encodeBatch([{ key: null, value: Buffer.from(value) }]);
  return { topic, partition, records: [], recordBatch, acks: 0, producerId: undefined, producerEpoch: 0, baseSequence: 0 };
}

/** Collects a stream's answers by id, and its final status. */
function collect<Req>(call: grpc.ClientDuplexStream<Req, ProduceStreamResponse>): { answers: Map<number, ProduceStreamResponse>; status: Promise<grpc.StatusObject> } {
  const answers = new Map<number, ProduceStreamResponse>();
  call.on('data', (m: ProduceStreamResponse) => answers.set(Number(m.id), m));
  call.on('error', () => {});
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { answers, status };
}

/** Holds every produce of `core` until `release()`; `entered()` counts those that reached it. */
function gateProduces(core: FakeBroker): { entered: () => number; release: () => void; restore: () => void } {
  const real = core.produce.bind(core);
  let entered = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  core.produce = async (input) => {
    entered++;
    await gate;
    return real(input);
  };
  return { entered: () => entered, release, restore: () => void (core.produce = real) };
}

async function until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; !check(); i++) {
    if (Date.now() > deadline || i > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('ProduceStream', () => {
  it('answers each produce by id, a failed one with the unary ErrorInfo, and stays open', async () => {
    const call = stub().produceStream();
    const { answers, status } = collect(call);
    call.write({ id: 7n, request: request('s', 0, 'a') });
    call.write({ id: 8n, request: request('no-such-topic', 0, 'b') });
    call.write({ id: 9n, request: request('s', 0, 'c') });
    call.write({ id: 10n, request: undefined });
    await until('four answers', () => answers.size === 4);
    expect(answers.get(7)!.response!.baseOffset).toBe(0n);
    expect(answers.get(9)!.response!.baseOffset).toBe(1n);
    const unknown = fromStatusMessage(answers.get(8)!.error!);
    expect(unknown.code).toBe('UNKNOWN_TOPIC');
    expect(answers.get(8)!.error!.code).toBe(grpc.status.NOT_FOUND);
    expect(fromStatusMessage(answers.get(10)!.error!).code).toBe('INVALID_REQUEST');
    // Still open after the failures: one more, then our end ends it cleanly.
    call.write({ id: 11n, request: request('s', 0, 'd') });
    await until('the fifth answer', () => answers.size === 5);
    expect(answers.get(11)!.response!.baseOffset).toBe(2n);
    call.end();
    expect((await status).code).toBe(grpc.status.OK);
  });

  it('ends the stream with MALFORMED_REQUEST on bytes that are not a ProduceStreamRequest', async () => {
    const Raw = grpc.makeGenericClientConstructor(
      { produceStream: { ...FastBrokerService.produceStream, requestSerialize: (b: Buffer) => b } },
      'sluice.v1.Broker',
    );
    const raw = new Raw(running.grpcAddress, grpc.credentials.createInsecure()) as unknown as grpc.Client & { produceStream(): grpc.ClientDuplexStream<Buffer, ProduceStreamResponse> };
    clients.push(raw);
    const call = raw.produceStream();
    const { status } = collect(call);
    call.write(Buffer.from([0x12, 0x7f, 0x01])); // field 2 claims 127 bytes; 1 follows
    const s = await status;
    expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(readErrorInfo(s.metadata)?.reason).toBe('MALFORMED_REQUEST');
    // The server is still serving.
    const producer = new Producer({ brokers: running.grpcAddress });
    expect((await producer.send('s', { partition: 1, value: 'after' })).partition).toBe(1);
    await producer.close();
  });

  it(`holds at most ${PRODUCE_STREAM_INFLIGHT_MAX} produces of one stream in flight, and answers them all`, async () => {
    const gate = gateProduces(fake);
    try {
      const call = stub().produceStream();
      const { answers, status } = collect(call);
      const total = PRODUCE_STREAM_INFLIGHT_MAX + 150;
      for (let i = 1; i <= total; i++) call.write({ id: BigInt(i), request: request('s', 1, `v${i}`) });
      await until('the stream to fill', () => gate.entered() >= PRODUCE_STREAM_INFLIGHT_MAX);
      await new Promise((r) => setTimeout(r, 200));
      expect(gate.entered()).toBe(PRODUCE_STREAM_INFLIGHT_MAX);
      gate.release();
      await until('every answer', () => answers.size === total);
      expect([...answers.values()].every((a) => a.response !== undefined)).toBe(true);
      // Appended in the order sent.
      const offsets = Array.from({ length: total }, (_, i) => Number(answers.get(i + 1)!.response!.baseOffset));
      expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
      call.end();
      expect((await status).code).toBe(grpc.status.OK);
    } finally {
      gate.restore();
    }
  });

  it('the client times a produce out, drops the stream, and the next produce opens a new one', async () => {
    const gate = gateProduces(fake);
    const producer = new Producer({ brokers: running.grpcAddress, requestTimeoutMs: 300, retries: 0, idempotent: false });
    try {
      const err = await producer.send('s', { partition: 0, value: 'slow' }).then(() => null, (e: unknown) => e);
      expect(isSluiceError(err, 'TIMEOUT')).toBe(true);
    } finally {
      gate.restore();
      gate.release();
    }
    expect((await producer.send('s', { partition: 0, value: 'fast' })).partition).toBe(0);
    await producer.close();
  });
});

describe('ProduceStream and a broker that stops', () => {
  it('answers the produces in flight, refuses new ones with SHUTTING_DOWN, then ends the stream with SHUTTING_DOWN', async () => {
    const core = new FakeBroker();
    const broker = await startBroker({ openBroker: async () => core, grpcAddress: '127.0.0.1:0', httpAddress: null });
    const admin = new Admin({ brokers: broker.grpcAddress });
    await admin.createTopic('stop', { partitions: 1 });
    admin.close();
    const gate = gateProduces(core);
    const c = new FastBrokerClient(broker.grpcAddress, grpc.credentials.createInsecure());
    clients.push(c);
    const call = c.produceStream();
    const { answers, status } = collect(call);
    for (let i = 1; i <= 3; i++) call.write({ id: BigInt(i), request: request('stop', 0, `v${i}`) });
    await until('three produces in the core', () => gate.entered() === 3);
    const closed = broker.close();
    await new Promise((r) => setTimeout(r, 100));
    call.write({ id: 4n, request: request('stop', 0, 'late') });
    await until('the late produce refused', () => answers.has(4));
    expect(fromStatusMessage(answers.get(4)!.error!).code).toBe('SHUTTING_DOWN');
    expect(gate.entered()).toBe(3);
    gate.release();
    const s = await status;
    expect(s.code).toBe(grpc.status.UNAVAILABLE);
    expect(readErrorInfo(s.metadata)?.reason).toBe('SHUTTING_DOWN');
    expect([1, 2, 3].map((i) => Number(answers.get(i)?.response?.baseOffset))).toEqual([0, 1, 2]);
    await closed;
  });
});

describe('a broker without ProduceStream', () => {
  let server: grpc.Server;
  let address: string;
  let unaryCalls = 0;

  beforeAll(async () => {
    server = new grpc.Server();
    // Only unary Produce, as a broker from before ProduceStream: the rest answers UNIMPLEMENTED.
    server.addService(FastBrokerService, {
      produce(call: grpc.ServerUnaryCall<ProduceRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
        unaryCalls++;
        callback(null, { partition: call.request.partition ?? 0, baseOffset: BigInt(unaryCalls - 1), lastOffset: BigInt(unaryCalls - 1), appendTimeMs: 0n, logStartOffset: 0n });
      },
    });
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    address = `127.0.0.1:${port}`;
  });
  afterAll(() => server?.forceShutdown());

  it('gets its produces as unary calls, the first one (sent on the stream before UNIMPLEMENTED) included', async () => {
    const producer = new Producer({ brokers: address, idempotent: false });
    expect((await producer.send('t', { partition: 0, value: 'v0' })).offset).toBe(0);
    expect((await producer.send('t', { partition: 0, value: 'v1' })).offset).toBe(1);
    expect(unaryCalls).toBe(2);
    await producer.close();
  });
});
