/**
 * Goal: the broker's life cycle is safe: one broker per data dir (with a clear message naming the
 * holder), stale locks from dead processes are taken over, an unusable data dir is a clear error,
 * close drains what was accepted and refuses the rest, and retention runs on its own.
 * Method: in-process brokers on temp dirs; lock files written by hand with live and dead pids;
 * acks=all produces fired right before close, then a reopen that counts them.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Broker, LOCK_FILE } from '../../src/broker/index.js';
import { batchOf, expectCode, openBroker, readAll, tempDir } from './helpers.js';

describe('data dir lock', () => {
  it('stops a second broker on the same dir, naming the holder, and frees the dir on close', async () => {
    const dir = tempDir();
    const first = await openBroker({ dataDir: dir });
    const err = await expectCode(Broker.open({ dataDir: dir, shards: 1 }), 'DATA_DIR_LOCKED');
    expect(err.message).toContain(String(process.pid));
    expect(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    await first.close();
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const second = await openBroker({ dataDir: dir });
    await second.close();
  });

  it('refuses a dir locked by another live process', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, LOCK_FILE), `${process.ppid}\n`);
    const err = await expectCode(Broker.open({ dataDir: dir, shards: 1 }), 'DATA_DIR_LOCKED');
    expect(err.message).toContain(`pid ${process.ppid}`);
  });

  it('takes over a stale lock left by a dead process', async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    fs.writeFileSync(path.join(dir, LOCK_FILE), `${dead.stdout}\n`);
    const broker = await openBroker({ dataDir: dir });
    expect(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim()).toBe(String(process.pid));
    await broker.close();
  });

  it('reports an unusable data dir clearly', async () => {
    const file = path.join(tempDir(), 'not-a-dir');
    fs.writeFileSync(file, 'x');
    const err = await expectCode(Broker.open({ dataDir: path.join(file, 'data'), shards: 1 }), 'STORAGE_ERROR');
    expect(err.message).toMatch(/data dir .* is not usable/);
  });
});

describe('close', () => {
  it('drains accepted acks=all produces, refuses new requests, and reopens with everything', async () => {
    const dir = tempDir();
    const broker = await openBroker({ dataDir: dir });
    await broker.createTopic('drain', 2, 1, {});
    const inflight = Array.from({ length: 50 }, (_, i) => broker.produce({ topic: 'drain', partition: i % 2, batches: batchOf(10), acks: 'all' }));
    const closed = broker.close();
    await expectCode(broker.produce({ topic: 'drain', partition: 0, batches: batchOf(1), acks: 'all' }), 'SHUTTING_DOWN');
    await expectCode(broker.listTopics(), 'SHUTTING_DOWN');
    const results = await Promise.all(inflight);
    expect(results.every((r) => r.lastOffset - r.baseOffset === 9)).toBe(true);
    await closed;
    const again = await openBroker({ dataDir: dir });
    // 250 records after the first term's no-op; the reopened term's no-op (251) may have committed too.
    for (const p of (await again.describeTopic('drain')).partitions) expect([251, 252]).toContain(p.highWatermark);
    expect(await readAll(again, 'drain', 1)).toHaveLength(250);
    await again.close();
  });
});

describe('recovery', () => {
  it('opens with a partition whose log cannot be opened, keeping it offline and the rest serving', async () => {
    const dir = tempDir();
    let broker = await openBroker({ dataDir: dir });
    await broker.createTopic('half', 2, 1, {});
    await broker.produce({ topic: 'half', partition: 1, batches: batchOf(2), acks: 'all' });
    await broker.close();
    fs.rmSync(path.join(dir, 'half-0'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'half-0'), 'not a directory');
    broker = await openBroker({ dataDir: dir });
    const err = await expectCode(broker.produce({ topic: 'half', partition: 0, batches: batchOf(1), acks: 'all' }), 'STORAGE_ERROR');
    expect(err.message).toContain('offline');
    expect(await readAll(broker, 'half', 1)).toEqual(['v0', 'v1']);
    await broker.deleteTopic('half');
    expect(fs.existsSync(path.join(dir, 'half-0'))).toBe(false);
    await broker.close();
  });
});

describe('retention', () => {
  it('is enforced periodically in the shard', async () => {
    const broker = await openBroker({ retentionCheckMs: 50 });
    await broker.createTopic('short', 1, 1, { 'segment.ms': '1', 'retention.ms': '1' });
    await broker.produce({ topic: 'short', partition: 0, batches: batchOf(3), acks: 'all' });
    await new Promise((r) => setTimeout(r, 10));
    await broker.produce({ topic: 'short', partition: 0, batches: batchOf(3), acks: 'all' });
    await expect.poll(async () => (await broker.describeTopic('short')).partitions[0].logStartOffset, { timeout: 5_000 }).toBeGreaterThan(0);
    await broker.close();
  });
});
