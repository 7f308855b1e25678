/**
 * Goal: the producer state follows the log across crashes and restarts. (1) kill -9 of the broker
 * after a batch is written (and fsynced) but before the reply leaves: the retry after the restart is
 * answered with the original offsets and writes nothing. (2) After a clean stop the retry is still
 * deduplicated (state restored from the snapshot). (3) The partition actor restores from its snapshot
 * and replays only the log after it; a torn snapshot, or one newer than the log, is ignored and the
 * whole log replayed, with the same decisions.
 * Method: (1)-(2) the real `sluice serve` as a child process with the test-only hook
 * SLUICE_TEST_CRASH_AFTER_APPEND=<topic> (the broker SIGKILLs itself right after such an append is
 * durable), driven by a proto-loader client; (3) a Partition on a temp dir (one voter, acks=all).
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { spawnBroker, waitExit } from '../../bench/broker-process.js';
import { call, dynamicClients, failure, tempDir } from '../e2e/helpers.js';
import { Partition, PRODUCER_SNAPSHOT_FILE, TEST_CRASH_AFTER_APPEND_ENV, type PartitionEffects, type ProduceOk } from '../../src/partition/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { defaultLogConfig } from '../../src/storage/index.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function start(dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; dyn: ReturnType<typeof dynamicClients> }> {
  const b = await spawnBroker(dataDir, ['--shards', '1'], env);
  children.push(b.child);
  return { child: b.child, dyn: dynamicClients(b.grpcAddress) };
}

const recs = (...vs: string[]): object[] => vs.map((v) => ({ value: Buffer.from(v) }));

describe('kill -9 between the write and the reply', () => {
  it('deduplicates the retry after the restart, and after a clean restart', async () => {
    const dataDir = tempDir('sluice-idem-crash-');
    let b = await start(dataDir, { [TEST_CRASH_AFTER_APPEND_ENV]: 'crashy' });
    await call(b.dyn.admin, 'CreateTopic', { name: 'crashy', partitions: 1 });
    // A plain record first: the hook fires only for idempotent appends.
    await call(b.dyn.broker, 'Produce', { topic: 'crashy', partition: 0, records: recs('plain') });
    const { producerId, producerEpoch } = await call(b.dyn.broker, 'InitProducer', {});
    const req = { topic: 'crashy', partition: 0, records: recs('a', 'b'), producerId, producerEpoch, baseSequence: 0 };
    const lost = await failure(call(b.dyn.broker, 'Produce', req));
    expect(lost.code).toBe(grpc.status.UNAVAILABLE);
    expect((await waitExit(b.child)).signal).toBe('SIGKILL');
    b.dyn.close();

    b = await start(dataDir);
    // Offsets: the first term's no-op 0, 'plain' 1, 'a' 'b' 2-3, the restart's no-op 4.
    const retried = await call(b.dyn.broker, 'Produce', req);
    expect(retried).toMatchObject({ baseOffset: '2', lastOffset: '3' });
    const f = await call(b.dyn.broker, 'Fetch', { topic: 'crashy', partition: 0, offset: 0, maxWaitMs: 0 });
    expect(f.records.map((r: { value: Buffer }) => r.value.toString())).toEqual(['plain', 'a', 'b']);
    const next = await call(b.dyn.broker, 'Produce', { ...req, records: recs('c'), baseSequence: 2 });
    expect(next.baseOffset).toBe('5');

    // Clean stop: the snapshot is written, and the next start restores from it.
    b.child.kill('SIGTERM');
    expect((await waitExit(b.child)).code).toBe(0);
    b.dyn.close();
    expect(fs.existsSync(path.join(dataDir, 'crashy-0', PRODUCER_SNAPSHOT_FILE))).toBe(true);
    b = await start(dataDir);
    expect(await call(b.dyn.broker, 'Produce', { ...req, records: recs('c'), baseSequence: 2 })).toMatchObject({ baseOffset: '5', lastOffset: '5' });
    expect(await call(b.dyn.broker, 'Produce', req)).toMatchObject({ baseOffset: '2', lastOffset: '3' });
    // 'c' at 5, then this start's no-op at 6.
    const end = await call(b.dyn.broker, 'ListOffsets', { topic: 'crashy', partitions: [0] });
    expect(end.offsets[0].offset).toBe('7');
    b.child.kill('SIGTERM');
    await waitExit(b.child);
    b.dyn.close();
  }, 60_000);
});

describe('partition recovery of the producer state', () => {
  const batch = (pid: bigint, seq: number, n = 1): Buffer =>
    encodeBatch(Array.from({ length: n }, (_, i) => ({ key: null, value: Buffer.from(`${pid}-${seq + i}`) })), { producerId: pid, producerEpoch: 0, baseSequence: seq });
  /** A partition whose produces (acks=all) are promises of their answer; persists run at the end of the turn. */
  interface Opened {
    p: Partition;
    append(bytes: Buffer): Promise<ProduceOk>;
    close(remove: boolean): Promise<void>;
  }
  const open = async (dir: string, producerIdleExpiryMs?: number): Promise<Opened> => {
    const waiting = new Map<number, { resolve: (ok: ProduceOk) => void; reject: (err: unknown) => void }>();
    const effects: PartitionEffects = {
      produced: (_p, id, ok) => waiting.get(id)?.resolve(ok),
      failed: (_p, id, err) => waiting.get(id)?.reject(err),
      serveFetch: () => {},
      needPersist: (p) => void setImmediate(() => p.persist()),
      send: () => {},
    };
    const p = await Partition.open(dir, { topic: 't', topicId: '', partition: 0 }, defaultLogConfig(), false, {}, effects, producerIdleExpiryMs);
    let next = 0;
    const append = (bytes: Buffer): Promise<ProduceOk> =>
      new Promise((resolve, reject) => {
        const id = ++next;
        waiting.set(id, { resolve, reject });
        try {
          p.produce(id, bytes, 2);
        } catch (err) {
          reject(err);
        }
      });
    return { p, append, close: (remove) => p.close(remove) };
  };

  it('restores from the snapshot and replays only what follows; ignores a torn or too-new snapshot', async () => {
    const dir = tempDir('sluice-idem-recovery-');
    const a = await open(dir);
    expect(a.p.producerRecovery).toEqual({ snapshotOffset: null, replayedBatches: 0 });
    await a.append(batch(1n, 0, 2));
    await a.append(batch(2n, 0));
    await a.close(false);

    // Every open starts a term whose no-op takes one offset: a's log is noop 0, producer 1 at 1-2,
    // producer 2 at 3; b's no-op is 4, c's is 6. Replays count every batch, control batches too.
    const b = await open(dir);
    expect(b.p.producerRecovery).toEqual({ snapshotOffset: 4, replayedBatches: 0 });
    expect((await b.append(batch(1n, 0, 2))).baseOffset).toBe(1); // a retry, answered from the snapshot
    expect((await b.append(batch(1n, 2))).baseOffset).toBe(5);
    // No close: as after a crash, the snapshot is behind the log.
    const c = await open(dir);
    expect(c.p.producerRecovery).toEqual({ snapshotOffset: 4, replayedBatches: 2 });
    expect((await c.append(batch(1n, 2))).baseOffset).toBe(5);
    expect((await c.append(batch(2n, 0))).baseOffset).toBe(3);
    await expect(c.append(batch(1n, 7))).rejects.toThrow(/sequence/);
    expect(c.p.logEndOffset).toBe(7);

    // Torn snapshot: the whole log is replayed, with the same answers.
    const snap = path.join(dir, 't-0', PRODUCER_SNAPSHOT_FILE);
    const body = fs.readFileSync(snap);
    fs.writeFileSync(snap, body.subarray(0, body.length - 5));
    const d = await open(dir);
    expect(d.p.producerRecovery).toEqual({ snapshotOffset: null, replayedBatches: 6 });
    expect((await d.append(batch(1n, 2))).baseOffset).toBe(5);

    // A snapshot newer than the log (the log lost a tail it had seen) is ignored and removed.
    const json = JSON.parse(fs.readFileSync(snap, 'utf8')) as { offset: number };
    fs.writeFileSync(snap, JSON.stringify({ ...json, offset: 1_000 }));
    const e = await open(dir);
    expect(e.p.producerRecovery.snapshotOffset).toBeNull();
    expect((await e.append(batch(2n, 0))).baseOffset).toBe(3);
    for (const x of [b, c, d, e]) await x.close(false).catch(() => {});
  });

  it('expires idle producers on the periodic pass', async () => {
    const dir = tempDir('sluice-idem-expiry-');
    const a = await open(dir, 60_000);
    await a.append(batch(5n, 0));
    a.p.enforceRetention(Date.now());
    expect(a.p.producers.entry(5n)).toBeDefined();
    a.p.enforceRetention(Date.now() + 60_000);
    expect(a.p.producers.entry(5n)).toBeUndefined();
    await expect(a.append(batch(5n, 1))).rejects.toThrow(/no state for it/);
    await a.close(false);
  });
});
