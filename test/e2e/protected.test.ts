/**
 * Goal (issue 9 §4, §5): internal state is not a client's to change, and bytes that are not a request
 * are the client's error. Method: an in-process startBroker driven over gRPC by a @grpc/proto-loader
 * client (as another language would) and by a raw grpc-js client that sends arbitrary bytes.
 *  - Produce, AlterTopicConfig, CreatePartitions and DeleteTopic on `__consumer_offsets` answer
 *    PERMISSION_DENIED / INTERNAL_TOPIC and change nothing, while the broker's own writer (a group
 *    commit) still appends there.
 *  - Garbage bytes to unary and streaming methods answer INVALID_ARGUMENT / MALFORMED_REQUEST, not
 *    INTERNAL, and the server keeps serving.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { loadSluiceDefinition, readErrorInfo } from '../../src/rpc/index.js';
import { call, dynamicClients, failure, tempDir, type DynClient } from './helpers.js';

const OFFSETS = '__consumer_offsets';

let running: RunningBroker;
let c: ReturnType<typeof dynamicClients>;
let groups: DynClient;

beforeAll(async () => {
  running = await startBroker({ dataDir: tempDir(), shards: 1, httpAddress: null });
  c = dynamicClients(running.grpcAddress);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const pkg = grpc.loadPackageDefinition(loadSluiceDefinition()) as any;
  groups = new pkg.sluice.v1.Groups(running.grpcAddress, grpc.credentials.createInsecure()) as DynClient;
  await call(c.admin, 'CreateTopic', { name: 'orders', partitions: 2 });
  await call(c.broker, 'Produce', { topic: 'orders', partition: 0, records: [{ value: Buffer.from('a') }, { value: Buffer.from('b') }] });
  // A standalone commit makes the groups subsystem create and write __consumer_offsets.
  await call(groups, 'CommitOffsets', { groupId: 'g1', offsets: [{ topic: 'orders', partition: 0, offset: '1' }] });
});
afterAll(async () => {
  groups?.close();
  c?.close();
  await running?.close();
});

/** What "changes nothing" must leave as it was: the internal topic's shape, configs and offsets. */
async function offsetsTopicState(): Promise<string> {
  const d = await call(c.admin, 'DescribeTopic', { name: OFFSETS });
  const ends = await call(c.broker, 'ListOffsets', { topic: OFFSETS });
  return JSON.stringify([d.topic.partitions.length, d.topic.configs, ends.offsets]);
}

describe('internal topics', () => {
  it('exist and were written by the broker itself', async () => {
    const ends = await call(c.broker, 'ListOffsets', { topic: OFFSETS });
    const written = ends.offsets.reduce((n: number, o: { offset: string }) => n + Number(o.offset), 0);
    expect(written).toBeGreaterThan(0);
  });

  const attempts: Array<[string, () => Promise<unknown>]> = [
    ['Produce', () => call(c.broker, 'Produce', { topic: OFFSETS, partition: 0, records: [{ value: Buffer.from('x') }] })],
    ['Produce without a partition', () => call(c.broker, 'Produce', { topic: OFFSETS, records: [{ value: Buffer.from('x') }] })],
    ['AlterTopicConfig', () => call(c.admin, 'AlterTopicConfig', { name: OFFSETS, set: { 'retention.ms': '1' } })],
    ['AlterTopicConfig remove', () => call(c.admin, 'AlterTopicConfig', { name: OFFSETS, remove: ['cleanup.policy'] })],
    ['CreatePartitions', () => call(c.admin, 'CreatePartitions', { name: OFFSETS, totalPartitions: 64 })],
    ['DeleteTopic', () => call(c.admin, 'DeleteTopic', { name: OFFSETS })],
  ];

  it.each(attempts)('refuses %s with PERMISSION_DENIED / INTERNAL_TOPIC and changes nothing', async (_what, attempt) => {
    const before = await offsetsTopicState();
    const f = await failure(attempt());
    expect([grpc.status[f.code], f.reason]).toEqual(['PERMISSION_DENIED', 'INTERNAL_TOPIC']);
    expect(f.details).toContain(OFFSETS);
    expect(await offsetsTopicState()).toBe(before);
  });

  it('still lets the broker write its offsets, and clients read the topic', async () => {
    await call(groups, 'CommitOffsets', { groupId: 'g1', offsets: [{ topic: 'orders', partition: 0, offset: '2' }] });
    const got = await call(groups, 'FetchOffsets', { groupId: 'g1' });
    expect(got.offsets.map((o: { topic: string; partition: number; offset: string }) => [o.topic, o.partition, o.offset])).toEqual([['orders', 0, '2']]);
    const topics = await call(c.admin, 'ListTopics', {});
    expect(topics.topics.map((t: { name: string }) => t.name)).toContain(OFFSETS);
  });

  it('still refuses to create a topic with the reserved prefix', async () => {
    const f = await failure(call(c.admin, 'CreateTopic', { name: '__mine', partitions: 1 }));
    expect([grpc.status[f.code], f.reason]).toEqual(['INVALID_ARGUMENT', 'INVALID_TOPIC_NAME']);
  });
});

describe('undecodable protobuf', () => {
  let raw: grpc.Client;
  beforeAll(() => {
    raw = new grpc.Client(running.grpcAddress, grpc.credentials.createInsecure());
  });
  afterAll(() => raw?.close());

  const identity = (b: Buffer): Buffer => b;
  function rawUnary(path: string, bytes: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      raw.makeUnaryRequest(path, identity, identity, bytes, { deadline: Date.now() + 10_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
    });
  }

  // Each is invalid protobuf: a length-delimited field longer than the message, a truncated varint,
  // and the reserved wire type 7. (A lone end-group tag is not here: the generated decoders read it as
  // the end of the message, which protobuf runtimes commonly tolerate.)
  const garbage: Array<[string, Buffer]> = [
    ['field 1 longer than the message', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])],
    ['truncated varint', Buffer.from([0x10, 0xff, 0xff])],
    ['wire type 7', Buffer.from([0x0f, 0x01, 0x02])],
  ];
  const methods = [
    '/sluice.v1.Broker/Produce',
    '/sluice.v1.Broker/Fetch',
    '/sluice.v1.Broker/GetMetadata',
    '/sluice.v1.Admin/CreateTopic',
    '/sluice.v1.Admin/DeleteTopic',
    '/sluice.v1.Groups/CommitOffsets',
  ];

  it.each(methods.flatMap((m) => garbage.map(([what, bytes]) => [m, what, bytes] as const)))(
    '%s with %s is INVALID_ARGUMENT / MALFORMED_REQUEST',
    async (method, _what, bytes) => {
      const f = await failure(rawUnary(method, bytes));
      expect([grpc.status[f.code], f.reason]).toEqual(['INVALID_ARGUMENT', 'MALFORMED_REQUEST']);
      expect(f.details).toContain(method);
    },
  );

  it('answers a server-streaming method (Subscribe) the same way', async () => {
    const stream = raw.makeServerStreamRequest('/sluice.v1.Broker/Subscribe', identity, identity, garbage[0][1], { deadline: Date.now() + 10_000 });
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on('data', () => {});
      stream.on('error', resolve);
    });
    expect([grpc.status[err.code], readErrorInfo(err.metadata)?.reason]).toEqual(['INVALID_ARGUMENT', 'MALFORMED_REQUEST']);
  });

  it('answers a bidi-streaming method (Groups/Consume) the same way', async () => {
    const stream = raw.makeBidiStreamRequest('/sluice.v1.Groups/Consume', identity, identity, { deadline: Date.now() + 10_000 });
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      stream.on('data', () => {});
      stream.on('error', resolve);
      stream.write(garbage[1][1]);
    });
    expect([grpc.status[err.code], readErrorInfo(err.metadata)?.reason]).toEqual(['INVALID_ARGUMENT', 'MALFORMED_REQUEST']);
  });

  it('keeps serving good requests afterwards', async () => {
    const r = await call(c.broker, 'Produce', { topic: 'orders', partition: 1, records: [{ value: Buffer.from('after') }] });
    expect(r.baseOffset).toBe('1'); // after the first term's no-op
  });
});
