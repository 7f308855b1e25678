/**
 * Goal: corruption on disk is loud and never silently truncates acknowledged data (issue 9 §1).
 * Method: the real `sluice serve` as a child process. (1) Produce 60 one-record batches with acks=all
 * (each fsynced before its answer), kill -9 the broker, flip one bit inside record 20's value in the
 * active segment (record i is at offset i + 1: offset 0 is the first term's no-op, a control batch),
 * restart: the 39 acknowledged records after the damage are still served, the next produce goes
 * after everything (no offset reused), Fetch of record 20's offset answers DATA_LOSS / LOG_CORRUPT
 * (structured and raw), DescribeTopic and /metrics show the partition damaged, and the broker's log
 * names the file. (2) Stop the broker cleanly (so the next open trusts the segment and does not scan),
 * flip a bit in a record value: structured Fetch answers LOG_CORRUPT (CRC check before decoding),
 * raw Fetch serves the batch unchecked, and the TS Consumer, which verifies CRCs, throws LOG_CORRUPT.
 * (Header damage found at read time is covered in test/storage/log.test.ts.)
 */
import { controlBatch } from '../../src/partition/index.js';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { afterAll, expect, test } from 'vitest';
import { Consumer } from '../../src/client/index.js';
import { readBatchHeader } from '../../src/batch/index.js';
import { isSluiceError } from '../../src/errors.js';
import { spawnBroker, waitExit, type BrokerProcess } from '../../bench/broker-process.js';
import { call, dynamicClients, failure, tempDir } from './helpers.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function start(dataDir: string): Promise<BrokerProcess> {
  const b = await spawnBroker(dataDir, ['--log-level', 'info']);
  children.push(b.child);
  return b;
}

/**
 * The first value byte of a one-record batch with no key and no headers: the 61-byte header, then
 * length, attributes, timestamp delta, offset delta, key length (-1) and value length, one byte each.
 */
const VALUE_AT = 61 + 6;

/** Start positions of the batches of a .log file, by base offset. */
function batchPositions(file: string): Map<number, number> {
  const bytes = fs.readFileSync(file);
  const out = new Map<number, number>();
  for (let pos = 0; pos < bytes.length; ) {
    const h = readBatchHeader(bytes, pos);
    out.set(h.baseOffset, pos);
    pos += h.sizeBytes;
  }
  return out;
}

function xorByte(file: string, pos: number, mask: number): void {
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, pos);
  b[0] ^= mask;
  fs.writeSync(fd, b, 0, 1, pos);
  fs.closeSync(fd);
}

async function value(broker: ReturnType<typeof dynamicClients>['broker'], offset: number): Promise<string> {
  const r = await call(broker, 'Fetch', { topic: 'cx', partition: 0, offset, maxWaitMs: 0, maxBytes: 100 });
  return Buffer.from(r.records[0].value).toString();
}

test('a flipped bit mid active segment after kill -9: fenced, later acks kept, no offset reused, DATA_LOSS on the range', async () => {
  const dataDir = tempDir('sluice-corrupt-');
  let broker = await start(dataDir);
  let c = dynamicClients(broker.grpcAddress);
  await call(c.admin, 'CreateTopic', { name: 'cx', partitions: 1 });
  for (let i = 0; i < 60; i++) {
    const r = await call(c.broker, 'Produce', { topic: 'cx', partition: 0, records: [{ value: Buffer.from(`v${i}`) }], acks: 'ACKS_ALL' });
    expect(Number(r.baseOffset)).toBe(i + 1);
  }
  c.close();
  broker.child.kill('SIGKILL');
  await waitExit(broker.child);

  const file = path.join(dataDir, 'cx-0', '00000000000000000000.log');
  const pos = batchPositions(file).get(21)!;
  xorByte(file, pos + VALUE_AT, 0x10); // inside record 20's value
  const before = fs.statSync(file).size;

  broker = await start(dataDir);
  c = dynamicClients(broker.grpcAddress);
  try {
    // Nothing was cut: the 39 acknowledged records after the damage are still there, and the only
    // growth is this start's no-op (a control batch).
    expect(fs.statSync(file).size).toBe(before + controlBatch('noop', 61, 2, null).length);
    for (const i of [0, 19, 21, 40, 59]) expect(await value(c.broker, i + 1)).toBe(`v${i}`);
    for (const raw of [false, true]) {
      const f = await failure(call(c.broker, 'Fetch', { topic: 'cx', partition: 0, offset: 21, maxWaitMs: 0, raw }));
      expect(f.code, f.details).toBe(grpc.status.DATA_LOSS);
      expect(f.reason).toBe('LOG_CORRUPT');
      expect(f.details).toContain('00000000000000000000.log');
      expect(f.details).toContain('[21, 22)');
    }
    // The next produce does not reuse an offset: records end at 60, the restart's no-op took 61.
    const offsets = await call(c.broker, 'ListOffsets', { topic: 'cx' });
    expect(Number(offsets.offsets[0].offset)).toBe(62);
    const next = await call(c.broker, 'Produce', { topic: 'cx', partition: 0, records: [{ value: Buffer.from('v60') }] });
    expect(Number(next.baseOffset)).toBe(62);
    expect(await value(c.broker, 62)).toBe('v60');
    // Visibly damaged: DescribeTopic, /metrics, the log, the .damaged file.
    const d = await call(c.admin, 'DescribeTopic', { name: 'cx' });
    expect(d.topic.partitions[0].damagedRanges).toBe(1);
    const metricsDeadline = Date.now() + 20_000;
    let metrics = '';
    while (!/sluice_partition_damaged\{topic="cx",partition="0"\} 1/.test(metrics)) {
      expect(Date.now(), metrics).toBeLessThan(metricsDeadline);
      metrics = await (await fetch(`http://${broker.httpAddress}/metrics`)).text();
      if (!/sluice_partition_damaged\{topic="cx",partition="0"\} 1/.test(metrics)) await new Promise((r) => setTimeout(r, 200));
    }
    expect(broker.stderr()).toMatch(/partition cx\/0 damaged: offsets \[21, 22\) fenced.*00000000000000000000\.log/);
    expect(broker.stderr()).toMatch(/partition cx\/0 recovered/);
    expect(fs.existsSync(path.join(dataDir, 'cx-0', '00000000000000000000.damaged'))).toBe(true);
  } finally {
    c.close();
    broker.child.kill('SIGTERM');
    expect((await waitExit(broker.child)).code).toBe(0);
  }

  // The fence survives a clean restart (the .damaged marker forces the scan again).
  broker = await start(dataDir);
  c = dynamicClients(broker.grpcAddress);
  try {
    const f = await failure(call(c.broker, 'Fetch', { topic: 'cx', partition: 0, offset: 21, maxWaitMs: 0 }));
    expect(f.reason).toBe('LOG_CORRUPT');
    expect(await value(c.broker, 22)).toBe('v21');
    expect(Number((await call(c.broker, 'ListOffsets', { topic: 'cx' })).offsets[0].offset)).toBe(64); // v60 at 62, this start's no-op at 63
  } finally {
    c.close();
    broker.child.kill('SIGKILL');
    await waitExit(broker.child);
  }
}, 120_000);

test('damage in a cleanly closed segment: structured reads verify CRCs, the TS client verifies raw batches', async () => {
  const dataDir = tempDir('sluice-corrupt-clean-');
  let broker = await start(dataDir);
  let c = dynamicClients(broker.grpcAddress);
  await call(c.admin, 'CreateTopic', { name: 'cx', partitions: 1 });
  for (let i = 0; i < 30; i++) await call(c.broker, 'Produce', { topic: 'cx', partition: 0, records: [{ value: Buffer.from(`v${i}`) }] });
  c.close();
  broker.child.kill('SIGTERM');
  expect((await waitExit(broker.child)).code).toBe(0);

  const file = path.join(dataDir, 'cx-0', '00000000000000000000.log');
  const positions = batchPositions(file);
  xorByte(file, positions.get(5)! + VALUE_AT, 0x01); // a record value byte: only the CRC notices

  broker = await start(dataDir);
  c = dynamicClients(broker.grpcAddress);
  try {
    // Record i is at offset i + 1 (0 is the first term's no-op): offset 5 holds v4.
    expect(await value(c.broker, 4)).toBe('v3');
    // The clean open trusted the segment (the header walk found nothing): the read finds the damage.
    expect((await call(c.admin, 'DescribeTopic', { name: 'cx' })).topic.partitions[0].damagedRanges).toBe(0);
    const f = await failure(call(c.broker, 'Fetch', { topic: 'cx', partition: 0, offset: 5, maxWaitMs: 0, maxBytes: 100 }));
    expect(f.code, f.details).toBe(grpc.status.DATA_LOSS);
    expect(f.reason).toBe('LOG_CORRUPT');
    expect(f.details).toContain('(baseOffset 5)');
    expect(await value(c.broker, 6)).toBe('v5');
    // Raw fetch serves the batch unchecked; the TypeScript client checks it.
    const raw = await call(c.broker, 'Fetch', { topic: 'cx', partition: 0, offset: 5, maxWaitMs: 0, maxBytes: 100, raw: true });
    expect(readBatchHeader(raw.recordBatches).baseOffset).toBe(5);
    const consumer = new Consumer({ brokers: broker.grpcAddress, topic: 'cx', partitions: [0], from: 5, stopAtEnd: true });
    let err: unknown = null;
    try {
      for await (const r of consumer) void r;
    } catch (e) {
      err = e;
    } finally {
      consumer.close();
    }
    expect(isSluiceError(err, 'LOG_CORRUPT'), String(err)).toBe(true);
  } finally {
    c.close();
    broker.child.kill('SIGKILL');
    await waitExit(broker.child);
  }
}, 120_000);
