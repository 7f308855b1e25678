/**
 * Goal: a batch with a valid header and CRC but broken records, a control/transactional bit, a
 * decompression bomb or a timestamp in 2100 is refused through the real gRPC API with INVALID_ARGUMENT
 * and a stable reason, writes nothing, and leaves the partition readable by structured Fetch and by the
 * TS Consumer (issue 9 §2, and issue 10's "a client may never write a control batch").
 * Method: the real `sluice serve` child process; raw `record_batch` produces built by patching a good
 * batch and recomputing its CRC; ListOffsets before and after each; a LogAppendTime topic set through
 * AlterTopicConfig stamps the broker's time.
 */
import { gzipSync } from 'node:zlib';
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Compression, computeBatchCrc, encodeBatch } from '../../src/batch/index.js';
import { Consumer } from '../../src/client/index.js';
import { spawnBroker, type BrokerProcess } from '../../bench/broker-process.js';
import { call, dynamicClients, failure, tempDir } from './helpers.js';

const children: ChildProcess[] = [];
let broker: BrokerProcess;
let c: ReturnType<typeof dynamicClients>;

beforeAll(async () => {
  broker = await spawnBroker(tempDir('sluice-bad-records-'));
  children.push(broker.child);
  c = dynamicClients(broker.grpcAddress);
  await call(c.admin, 'CreateTopic', { name: 'br', partitions: 1 });
  await call(c.broker, 'Produce', { topic: 'br', partition: 0, records: [{ value: Buffer.from('seed') }] });
}, 60_000);

afterAll(() => {
  c?.close();
  for (const ch of children) if (ch.exitCode === null && ch.signalCode === null) ch.kill('SIGKILL');
});

/** A good two-record batch with `patch` applied to it, CRC recomputed. */
function patched(patch: (b: Buffer) => void, records = [{ key: null, value: Buffer.from('a') }, { key: null, value: Buffer.from('b') }]): Buffer {
  const b = encodeBatch(records);
  patch(b);
  b.writeUInt32BE(computeBatchCrc(b, 0, b.length), 17);
  return b;
}

/** Same header around another body (recordCount/lastOffsetDelta given), CRC recomputed. */
function withBody(body: Buffer, count: number, attributes = 0): Buffer {
  const h = encodeBatch([{ key: null, value: null }]).subarray(0, 61);
  const b = Buffer.concat([h, body]);
  b.writeInt32BE(b.length - 12, 8);
  b.writeInt16BE(attributes, 21);
  b.writeInt32BE(count - 1, 23);
  b.writeInt32BE(count, 57);
  b.writeUInt32BE(computeBatchCrc(b, 0, b.length), 17);
  return b;
}

async function logEnd(): Promise<number> {
  return Number((await call(c.broker, 'ListOffsets', { topic: 'br' })).offsets[0].offset);
}

test.each([
  // recordCount 3, lastOffsetDelta 2, but two records.
  ['record count mismatch', () => patched((b) => (b.writeInt32BE(3, 57), b.writeInt32BE(2, 23))), 'INVALID_RECORD'],
  ['offset delta +1000', () => patched((b) => (b[61 + 1 + 1 + 1 + 2 + 2 + 1 + 3] = 0xd0)), 'INVALID_RECORD'],
  ['control bit', () => patched((b) => b.writeInt16BE(0x20, 21)), 'CONTROL_BATCH_NOT_ALLOWED'],
  ['transactional bit', () => patched((b) => b.writeInt16BE(0x10, 21)), 'CONTROL_BATCH_NOT_ALLOWED'],
  ['empty body', () => withBody(Buffer.alloc(0), 1), 'INVALID_RECORD'],
  ['gzip garbage', () => withBody(Buffer.from('garbage, not gzip'), 1, Compression.Gzip), 'CORRUPT_BATCH'],
  ['gzip bomb', () => withBody(gzipSync(Buffer.alloc(80 << 20)), 1, Compression.Gzip), 'CORRUPT_BATCH'],
  ['a record stamped 2100', () => encodeBatch([{ key: null, value: Buffer.from('x'), timestampMs: Date.UTC(2100, 0, 1) }]), 'INVALID_TIMESTAMP'],
] as const)('%s: INVALID_ARGUMENT, nothing written, partition readable', async (_name, make, reason) => {
  const before = await logEnd();
  const f = await failure(call(c.broker, 'Produce', { topic: 'br', partition: 0, recordBatch: make() }));
  expect(f.code, f.details).toBe(grpc.status.INVALID_ARGUMENT);
  expect(f.reason).toBe(reason);
  expect(await logEnd()).toBe(before);
  const r = await call(c.broker, 'Fetch', { topic: 'br', partition: 0, offset: 0, maxWaitMs: 0 });
  expect(Buffer.from(r.records[0].value).toString()).toBe('seed');
}, 30_000);

test('the offset-delta patch really hits the delta (the case above cannot pass by accident)', () => {
  const b = encodeBatch([{ key: null, value: Buffer.from('a') }, { key: null, value: Buffer.from('b') }]);
  // Second record: length, attributes, tsDelta, offsetDelta = zig-zag(1) = 2.
  expect(b[61 + 1 + 1 + 1 + 2 + 2 + 1 + 3]).toBe(2);
});

test('after every refusal the TS Consumer reads the partition to its end; LogAppendTime stamps the broker time', async () => {
  await call(c.broker, 'Produce', { topic: 'br', partition: 0, records: [{ value: Buffer.from('last') }] });
  const consumer = new Consumer({ brokers: broker.grpcAddress, topic: 'br', stopAtEnd: true });
  const values: string[] = [];
  for await (const r of consumer) values.push(r.value!.toString());
  consumer.close();
  expect(values).toEqual(['seed', 'last']);

  await call(c.admin, 'AlterTopicConfig', { name: 'br', set: { 'message.timestamp.type': 'LogAppendTime' }, remove: [] });
  const t0 = Date.now();
  const p = await call(c.broker, 'Produce', { topic: 'br', partition: 0, recordBatch: encodeBatch([{ key: null, value: Buffer.from('lat'), timestampMs: Date.UTC(2100, 0, 1) }]) });
  const r = await call(c.broker, 'Fetch', { topic: 'br', partition: 0, offset: Number(p.baseOffset), maxWaitMs: 0 });
  const ts = Number(r.records[0].timestampMs);
  expect(ts).toBeGreaterThanOrEqual(t0 - 1000);
  expect(ts).toBeLessThanOrEqual(Date.now() + 1000);
  const bad = await failure(call(c.admin, 'AlterTopicConfig', { name: 'br', set: { 'message.timestamp.type': 'Sometime' }, remove: [] }));
  expect(bad.reason).toBe('INVALID_CONFIG');
}, 30_000);
