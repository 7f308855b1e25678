/**
 * Goal (issue 9 §5): a full disk is an expected condition, not an internal error. Method: each
 * scenario runs a broker on its own small tmpfs (mounted here, so root only; skipped with a message
 * otherwise, and run by .ci/run, which runs as root), filled to the last byte or inode by filler files
 * that the test then removes. Checked over gRPC and HTTP:
 *  - Produce answers RESOURCE_EXHAUSTED / DISK_FULL (retriable) and writes nothing; CreateTopic too,
 *    all-or-nothing; DeleteTopic works and frees space; retention works and frees space.
 *  - A partition that cannot be opened at start for lack of space is offline, /readyz says 503 naming
 *    it, and it comes back by itself once space returns.
 *  - `sluice serve` whose logs cannot be flushed at shutdown reports it and exits non-zero.
 *  - Storage level: retention empties a log whose one segment expired though it cannot be sealed.
 *  - Partition level: retention through the Raft snapshot still frees space when the snapshot file
 *    cannot be written first (the start is recorded right after the deletion).
 *  - CreateTopic is all-or-nothing when one partition's directory cannot be made (a read-only mount).
 * Loops are bounded in count and time; waits poll the real condition (readiness, a produce).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { spawnBroker, waitExit } from '../../bench/broker-process.js';
import { encodeBatch } from '../../src/batch/index.js';
import { PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { Partition, type PartitionEffects } from '../../src/partition/index.js';
import { call, dynamicClients, failure } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Mounting needs root (CAP_SYS_ADMIN); say why when we cannot. */
function mountProbe(): string | null {
  if (process.platform !== 'linux') return 'not Linux';
  if (process.getuid?.() !== 0) return 'not root (run as root, as .ci/run does, to mount a tmpfs)';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return `cannot mount a tmpfs: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const cannotMount = mountProbe();
if (cannotMount !== null) console.warn(`full-disk tests skipped: ${cannotMount}`);

const mounts: string[] = [];
afterAll(() => {
  for (const m of mounts.splice(0)) {
    try {
      execFileSync('umount', [m], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', m], { stdio: 'pipe' });
    }
    fs.rmSync(m, { recursive: true, force: true });
  }
});

/** A fresh tmpfs of `sizeBytes` (and `inodes`), removed after the file's tests. */
function tmpfs(sizeBytes: number, inodes = 4096): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},nr_inodes=${inodes},mode=0700`, 'tmpfs', dir], { stdio: 'pipe' });
  mounts.push(dir);
  return dir;
}

/** Fills the file system holding `dir` to its last byte (bounded: it is a small tmpfs). Returns the fillers. */
function fillBytes(dir: string): string[] {
  const file = path.join(dir, `filler-${fs.readdirSync(dir).length}`);
  const fd = fs.openSync(file, 'w');
  try {
    for (const chunk of [64 * KiB, 4 * KiB, 1]) {
      const buf = Buffer.alloc(chunk, 0xaa);
      for (let i = 0; i < 4096; i++) {
        try {
          fs.writeSync(fd, buf);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
          break;
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return [file];
}

/** Uses up every free inode of the file system holding `dir` but `spare`. Returns the fillers. */
function fillInodes(dir: string, spare: number): string[] {
  const sub = path.join(dir, 'inode-fillers');
  fs.mkdirSync(sub);
  const made: string[] = [];
  for (let i = 0; i < 100_000; i++) {
    try {
      fs.closeSync(fs.openSync(path.join(sub, String(i)), 'w'));
      made.push(path.join(sub, String(i)));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      break;
    }
  }
  for (const f of made.splice(made.length - spare)) fs.unlinkSync(f);
  return [...made, sub];
}

function free(fillers: string[]): void {
  for (const f of fillers) fs.rmSync(f, { recursive: true, force: true });
}

/** Polls `probe` every 100 ms until it returns true or `ms` pass; returns the last answer. */
async function until(probe: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < 10_000 && Date.now() < deadline; i++) {
    if (await probe()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return probe();
}

const value = (bytes: number, fill = 1): Buffer => Buffer.alloc(bytes, fill);

describe.skipIf(cannotMount !== null)('a full disk', () => {
  it('answers Produce and CreateTopic with DISK_FULL, and lets DeleteTopic and retention free space', async () => {
    const dataDir = path.join(tmpfs(12 * MiB), 'data');
    const running: RunningBroker = await startBroker({ dataDir, shards: 1, httpAddress: null, tuning: { retentionCheckMs: 100 } });
    const c = dynamicClients(running.grpcAddress);
    try {
      await call(c.admin, 'CreateTopic', { name: 'data', partitions: 1 });
      await call(c.admin, 'CreateTopic', { name: 'big', partitions: 1 });
      await call(c.admin, 'CreateTopic', { name: 'old', partitions: 1, configs: { 'retention.ms': '60000', 'segment.bytes': String(MiB) } });
      for (let i = 0; i < 8; i++) await call(c.broker, 'Produce', { topic: 'big', partition: 0, records: [{ value: value(256 * KiB) }] });
      // Stamped so that they expire about 12 s from now: retention then has work to do on a full disk.
      const stamp = String(Date.now() - 48_000);
      for (let i = 0; i < 12; i++) await call(c.broker, 'Produce', { topic: 'old', partition: 0, records: [{ value: value(256 * KiB), timestampMs: stamp }] });
      const fillers = fillBytes(dataDir);

      // Produce: RESOURCE_EXHAUSTED / DISK_FULL, retriable, and nothing written.
      const before = await call(c.broker, 'ListOffsets', { topic: 'data' });
      const f = await failure(call(c.broker, 'Produce', { topic: 'data', partition: 0, records: [{ value: value(64 * KiB) }] }));
      expect([grpc.status[f.code], f.reason]).toEqual(['RESOURCE_EXHAUSTED', 'DISK_FULL']);
      expect(f.details).toMatch(/disk is full/);
      expect(await call(c.broker, 'ListOffsets', { topic: 'data' })).toEqual(before);

      // CreateTopic: DISK_FULL too, and all-or-nothing.
      const cf = await failure(call(c.admin, 'CreateTopic', { name: 'later', partitions: 3 }));
      expect([grpc.status[cf.code], cf.reason]).toEqual(['RESOURCE_EXHAUSTED', 'DISK_FULL']);
      expect((await call(c.admin, 'ListTopics', {})).topics.map((t: { name: string }) => t.name)).not.toContain('later');
      expect(fs.readdirSync(dataDir).filter((d) => d.startsWith('later-'))).toEqual([]);

      // DeleteTopic works on the full disk and frees its space: produce works again.
      await call(c.admin, 'DeleteTopic', { name: 'big' });
      expect((await call(c.admin, 'ListTopics', {})).topics.map((t: { name: string }) => t.name)).not.toContain('big');
      await call(c.broker, 'Produce', { topic: 'data', partition: 0, records: [{ value: value(64 * KiB) }] });

      // Fill again; retention (records expiring now) must free space on the full disk by itself.
      fillers.push(...fillBytes(dataDir));
      const f2 = await failure(call(c.broker, 'Produce', { topic: 'data', partition: 0, records: [{ value: value(512 * KiB) }] }));
      expect(f2.reason).toBe('DISK_FULL');
      // Retention has not run yet (else this scenario would not test it on a full disk).
      expect(Number((await call(c.admin, 'DescribeTopic', { name: 'old' })).topic.partitions[0].sizeBytes)).toBeGreaterThan(2 * MiB);
      const freed = await until(async () => {
        const d = await call(c.admin, 'DescribeTopic', { name: 'old' });
        return Number(d.topic.partitions[0].sizeBytes) === 0;
      }, 30_000);
      expect(freed).toBe(true);
      const old = await call(c.admin, 'DescribeTopic', { name: 'old' });
      expect(old.topic.partitions[0].logStartOffset).toBe('13'); // the first term's no-op and 12 records went
      await call(c.broker, 'Produce', { topic: 'data', partition: 0, records: [{ value: value(512 * KiB) }] });
      await call(c.broker, 'Produce', { topic: 'old', partition: 0, records: [{ value: value(10) }] });
      free(fillers);
    } finally {
      c.close();
      await running.close();
    }
  });

  it('keeps a partition offline (and /readyz 503) while the disk is full at start, and brings it back when space returns', async () => {
    const mount = tmpfs(4 * MiB, 256);
    const dataDir = path.join(mount, 'data');
    let running = await startBroker({ dataDir, shards: 1, httpAddress: null });
    await running.broker.createTopic('back', 1, 1, {});
    await running.broker.produce({ topic: 'back', partition: 0, records: [{ key: null, value: value(10) }], acks: 'all' });
    await running.broker.createTopic('gone', 2, 1, {});
    await running.close();
    // As a delete interrupted between removing the directories and rewriting the table leaves it:
    // the table names `gone`, whose directories must be created again at start, which needs inodes.
    for (const p of [0, 1]) fs.rmSync(path.join(dataDir, `gone-${p}`), { recursive: true });
    const fillers = fillInodes(mount, 1); // one spare inode: for the data dir's lock file

    running = await startBroker({ dataDir, shards: 1 });
    const c = dynamicClients(running.grpcAddress);
    try {
      const ready = await fetch(`http://${running.httpAddress}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.text()).toMatch(/2 partition\(s\) offline \(gone\/0, gone\/1\)/);
      const f = await failure(call(c.broker, 'Produce', { topic: 'gone', partition: 0, records: [{ value: value(10) }] }));
      expect([grpc.status[f.code], f.reason]).toEqual(['RESOURCE_EXHAUSTED', 'DISK_FULL']);
      expect(f.details).toMatch(/offline/);
      // The partitions that did open serve reads. (Their first write in the restarted Raft term needs a
      // transient inode for its state files' temp copies, so with no inode left it may be DISK_FULL.)
      const read = await call(c.broker, 'Fetch', { topic: 'back', partition: 0, offset: 0, maxWaitMs: 0 });
      // The first term's no-op (0) and the record (1); this start's no-op could not be written.
      expect([read.records.length, read.highWatermark]).toEqual([1, '2']);

      free(fillers);
      const back = await until(async () => (await fetch(`http://${running.httpAddress}/readyz`)).status === 200, 30_000);
      expect(back).toBe(true);
      const g = await call(c.broker, 'Produce', { topic: 'gone', partition: 1, records: [{ value: value(10) }] });
      expect(g.baseOffset).toBe('1'); // after its first no-op
      // A refused write left nothing behind: the term's no-op, written now, takes 2 and the record 3.
      const r = await call(c.broker, 'Produce', { topic: 'back', partition: 0, records: [{ value: value(10) }] });
      expect(r.baseOffset).toBe('3');
    } finally {
      c.close();
      await running.close();
    }
  });

  it('makes `sluice serve` report a failed flush at shutdown and exit non-zero', async () => {
    const dataDir = path.join(tmpfs(4 * MiB), 'data');
    const broker = await spawnBroker(dataDir, ['--shards', '1']);
    try {
      const c = dynamicClients(broker.grpcAddress);
      await call(c.admin, 'CreateTopic', { name: 't', partitions: 1 });
      // Enough batches for offset-index entries, which a clean close must write to disk.
      for (let i = 0; i < 16; i++) await call(c.broker, 'Produce', { topic: 't', partition: 0, records: [{ value: value(16 * KiB) }] });
      c.close();
      fillBytes(dataDir);
      broker.child.kill('SIGTERM');
      const exit = await waitExit(broker.child);
      expect(exit.code, broker.stderr()).toBe(1);
      expect(broker.stderr()).toMatch(/shutdown failed/);
      expect(broker.stderr()).toMatch(/disk is full|ENOSPC/);
    } finally {
      if (broker.child.exitCode === null && broker.child.signalCode === null) broker.child.kill('SIGKILL');
    }
  });

  it('lets retention empty a single expired segment on a full disk, keeping its offsets', async () => {
    const mount = tmpfs(2 * MiB);
    const dir = path.join(mount, 'p-0');
    let now = 1_000_000;
    const config = { ...defaultLogConfig(), retentionMs: 60_000 };
    const log = await PartitionLog.open(dir, config, { nowMs: () => now });
    // One segment with offset-index entries held in memory: sealing it would have to write them.
    for (let i = 0; i < 40; i++) log.append(encodeBatch([{ key: null, value: value(8 * KiB), timestampMs: now }]));
    await log.flush();
    expect(log.segmentCount).toBe(1);
    const fillers = fillBytes(mount);
    expect(() => log.append(encodeBatch([{ key: null, value: value(64 * KiB), timestampMs: now }]))).toThrow(/disk is full/);
    now += 120_000;
    expect(log.enforceRetention(now)).toBe(1);
    expect([log.logStartOffset, log.nextOffset, log.sizeBytes, log.fenced]).toEqual([40, 40, 0, null]);
    // The space is back: appends continue at the same offsets, and a reopen agrees.
    log.append(encodeBatch([{ key: null, value: value(10), timestampMs: now }]));
    await log.close();
    free(fillers);
    const again = await PartitionLog.open(dir, config, { nowMs: () => now });
    expect([again.logStartOffset, again.nextOffset]).toEqual([40, 41]);
    await again.close();
  });

  it('lets a partition cut retention on a full disk, recording the new log start right after the deletion', async () => {
    const mount = tmpfs(4 * MiB);
    let now = 1_000_000;
    const config = { ...defaultLogConfig(), retentionMs: 60_000, segmentBytes: 256 * KiB };
    const effects: PartitionEffects = { produced: () => {}, failed: () => {}, serveFetch: () => {}, needPersist: (p) => p.persist(), send: () => {} };
    const p = await Partition.open(mount, { topic: 'r', topicId: '', partition: 0 }, config, false, { nowMs: () => now }, effects);
    for (let i = 0; i < 12; i++) p.produce(i, encodeBatch([{ key: null, value: value(64 * KiB), timestampMs: now }]), 1);
    // The first term's no-op at 0, then the 12 records.
    await until(async () => p.highWatermark === 13, 10_000);
    expect(p.highWatermark).toBe(13);
    p.produce(99, encodeBatch([{ key: null, value: value(10), timestampMs: now + 120_000 }]), 1);
    await until(async () => p.highWatermark === 14, 10_000);
    // Neither a byte nor an inode left: the snapshot file (temp + rename) cannot be written first.
    const fillers = [...fillBytes(mount), ...fillInodes(mount, 0)];
    now += 120_000;
    const deleted = p.enforceRetention(now);
    expect(deleted).toBeGreaterThan(0);
    expect(p.logStartOffset).toBeGreaterThan(0);
    // The deletion freed space and the start was recorded at once, as Raft state.
    expect(p.snapshotMeta()).toMatchObject({ index: p.logStartOffset - 1, logStartOffset: p.logStartOffset });
    free(fillers);
    await p.close(false);
  });

  it('creates a topic all-or-nothing when one partition cannot be created', async () => {
    const dataDir = path.join(tmpfs(4 * MiB), 'data');
    const running = await startBroker({ dataDir, shards: 1, httpAddress: null });
    const c = dynamicClients(running.grpcAddress);
    // A read-only mount where partition 2 would go: its fresh directory cannot be cleared or written.
    const blocker = path.join(dataDir, 'half-2');
    fs.mkdirSync(blocker);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,ro', 'tmpfs', blocker], { stdio: 'pipe' });
    try {
      const f = await failure(call(c.admin, 'CreateTopic', { name: 'half', partitions: 4 }));
      expect(grpc.status[f.code]).not.toBe('OK');
      expect((await call(c.admin, 'ListTopics', {})).topics).toEqual([]);
      expect(fs.readdirSync(dataDir).filter((d) => d.startsWith('half-')).sort()).toEqual(['half-2']);
    } finally {
      execFileSync('umount', [blocker], { stdio: 'pipe' });
      c.close();
      await running.close();
    }
  });
});
