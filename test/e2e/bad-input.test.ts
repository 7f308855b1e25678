/**
 * Goal: every bad input of issue 3 section 6 gets a clear status with a stable ErrorInfo reason,
 * writes nothing, and leaves the server serving. Method: an in-process startBroker driven by a
 * @grpc/proto-loader client; after each bad request the topic's offsets and topic list are unchanged
 * and a good produce still succeeds.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { BATCH_BYTES_MAX_DEFAULT, GRPC_RECEIVE_BYTES_MAX, TOPIC_PARTITIONS_MAX } from '../../src/constants.js';
import { call, dynamicClients, failure, tempDir } from './helpers.js';

let running: RunningBroker;
let c: ReturnType<typeof dynamicClients>;

beforeAll(async () => {
  running = await startBroker({ dataDir: tempDir(), shards: 1, httpAddress: null });
  c = dynamicClients(running.grpcAddress);
  await call(c.admin, 'CreateTopic', { name: 'good', partitions: 2 });
  await call(c.broker, 'Produce', { topic: 'good', partition: 0, records: [{ value: Buffer.from('seed') }] });
});
afterAll(async () => {
  c?.close();
  await running?.close();
});

/** Offsets and topics: what "writes nothing" must leave unchanged. */
async function snapshot(): Promise<string> {
  const topics = await call(c.admin, 'ListTopics', {});
  const offsets = await call(c.broker, 'ListOffsets', { topic: 'good' });
  return JSON.stringify([topics.topics.map((t: any) => [t.name, t.partitionCount]).sort(), offsets.offsets]);
}

async function expectRejected(request: () => Promise<unknown>, code: grpc.status, reason: string): Promise<void> {
  const before = await snapshot();
  const f = await failure(request());
  expect([grpc.status[f.code], f.reason]).toEqual([grpc.status[code], reason]);
  expect(f.details.length).toBeGreaterThan(0);
  expect(await snapshot()).toBe(before);
  // Still serving.
  await call(c.broker, 'Fetch', { topic: 'good', partition: 0, offset: 0, maxWaitMs: 0 });
}

const goodBatch = (): Buffer => encodeBatch([{ key: null, value: Buffer.from('x') }]);

describe('bad input', () => {
  it.each(['', '.', '..', 'has space', 'slash/name', 'x'.repeat(250), 'ünïcode'])('rejects topic name %j', async (name) => {
    await expectRejected(() => call(c.admin, 'CreateTopic', { name, partitions: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_TOPIC_NAME');
  });

  it.each([0, -1, TOPIC_PARTITIONS_MAX + 1])('rejects %i partitions', async (partitions) => {
    await expectRejected(() => call(c.admin, 'CreateTopic', { name: 'p-bad', partitions }), grpc.status.INVALID_ARGUMENT, 'INVALID_PARTITIONS');
  });

  it('refuses replica moves, decommission, recommission and rebalance on a single node (they need cluster mode)', async () => {
    await expectRejected(() => call(c.admin, 'MovePartition', { topic: 'good', partition: 0, replicas: [1] }), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    await expectRejected(() => call(c.admin, 'DecommissionNode', { nodeId: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    await expectRejected(() => call(c.admin, 'RecommissionNode', { nodeId: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    await expectRejected(() => call(c.admin, 'Rebalance', {}), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    await expectRejected(() => call(c.admin, 'ListReassignments', {}), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
  });

  it('rejects an existing topic and shrinking partitions', async () => {
    await expectRejected(() => call(c.admin, 'CreateTopic', { name: 'good', partitions: 1 }), grpc.status.ALREADY_EXISTS, 'TOPIC_ALREADY_EXISTS');
    await expectRejected(() => call(c.admin, 'CreatePartitions', { name: 'good', totalPartitions: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_PARTITIONS');
  });

  it('rejects negative offsets in Fetch and Subscribe, and offsets past the end', async () => {
    await expectRejected(() => call(c.broker, 'Fetch', { topic: 'good', partition: 0, offset: -1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_OFFSET');
    await expectRejected(() => call(c.broker, 'Fetch', { topic: 'good', partition: 0, offset: 1000 }), grpc.status.OUT_OF_RANGE, 'OFFSET_OUT_OF_RANGE');
    const subscribe = (): Promise<unknown> =>
      new Promise((_, reject) => (c.broker.Subscribe({ topic: 'good', partition: 0, offset: -5 }) as grpc.ClientReadableStream<unknown>).on('error', reject));
    await expectRejected(subscribe, grpc.status.INVALID_ARGUMENT, 'INVALID_OFFSET');
  });

  it('rejects an oversized request at the gRPC layer and an oversized batch in the core', async () => {
    const huge = Buffer.alloc(GRPC_RECEIVE_BYTES_MAX + 1);
    const f = await failure(call(c.broker, 'Produce', { topic: 'good', partition: 0, recordBatch: huge }));
    expect(f.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const big = encodeBatch([{ key: null, value: Buffer.alloc(BATCH_BYTES_MAX_DEFAULT + 1024) }]);
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: 0, recordBatch: big }), grpc.status.RESOURCE_EXHAUSTED, 'RECORD_TOO_LARGE');
  });

  it('rejects corrupt record batches', async () => {
    const flipped = goodBatch();
    flipped[flipped.length - 1] ^= 0xff; // breaks the CRC
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: 0, recordBatch: flipped }), grpc.status.INVALID_ARGUMENT, 'CORRUPT_BATCH');
    const truncated = goodBatch().subarray(0, 40);
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: 0, recordBatch: truncated }), grpc.status.INVALID_ARGUMENT, 'CORRUPT_BATCH');
    const garbage = Buffer.from('this is not a kafka record batch at all, not even close!!!!!!!!!!!!!!');
    // Text read as a batch header declares an absurd length: refused as corrupt or too large.
    const g = await failure(call(c.broker, 'Produce', { topic: 'good', partition: 0, recordBatch: garbage }));
    expect(['CORRUPT_BATCH', 'RECORD_TOO_LARGE', 'UNSUPPORTED_MAGIC']).toContain(g.reason);
    // A good batch followed by a bad one: all or nothing.
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: 0, recordBatch: Buffer.concat([goodBatch(), flipped]) }), grpc.status.INVALID_ARGUMENT, 'CORRUPT_BATCH');
  });

  it('rejects unknown topics and partitions', async () => {
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'nope', records: [{ value: Buffer.from('x') }] }), grpc.status.NOT_FOUND, 'UNKNOWN_TOPIC');
    await expectRejected(() => call(c.broker, 'Fetch', { topic: 'nope', partition: 0, offset: 0 }), grpc.status.NOT_FOUND, 'UNKNOWN_TOPIC');
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: 7, records: [{ value: Buffer.from('x') }] }), grpc.status.NOT_FOUND, 'UNKNOWN_PARTITION');
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: -1, records: [{ value: Buffer.from('x') }] }), grpc.status.NOT_FOUND, 'UNKNOWN_PARTITION');
    await expectRejected(() => call(c.broker, 'Fetch', { topic: 'good', partition: 9, offset: 0 }), grpc.status.NOT_FOUND, 'UNKNOWN_PARTITION');
    await expectRejected(() => call(c.admin, 'DescribeTopic', { name: 'nope' }), grpc.status.NOT_FOUND, 'UNKNOWN_TOPIC');
    await expectRejected(() => call(c.admin, 'DeleteTopic', { name: 'nope' }), grpc.status.NOT_FOUND, 'UNKNOWN_TOPIC');
  });

  it('rejects malformed produce requests', async () => {
    await expectRejected(() => call(c.broker, 'Produce', { topic: 'good', partition: 0 }), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST');
    await expectRejected(
      () => call(c.broker, 'Produce', { topic: 'good', partition: 0, records: [{ value: Buffer.from('x') }], recordBatch: goodBatch() }),
      grpc.status.INVALID_ARGUMENT,
      'INVALID_REQUEST',
    );
    await expectRejected(() => call(c.admin, 'AlterTopicConfig', { name: 'good', set: { 'no.such.config': '1' } }), grpc.status.INVALID_ARGUMENT, 'INVALID_CONFIG');
  });
});
