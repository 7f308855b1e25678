/** Shared helpers for the storage tests: temp dirs, seeded randomness, batch builders, model checks. */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeBatch, decodeBatches, readBatchHeader, validateBatches } from '../../src/batch/index.js';
import type { LogOpenOptions, PartitionLog } from '../../src/storage/index.js';

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `sluice-${prefix}-`));
}

export function rmDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The seed for a randomized test: from env (replay) or the clock; always printed. */
export function testSeed(name: string): number {
  const seed = Number(process.env.SEED ?? Date.now() % 2 ** 31);
  console.log(`${name} seed=${seed} (replay with SEED=${seed})`);
  return seed;
}

/** mulberry32: small, fast, deterministic. */
export function rng(seed: number): { next(): number; int(lo: number, hi: number): number } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)) };
}

/** A batch of `count` records of `valueBytes` bytes; the first value names `tag` so batches differ. */
export function makeBatch(count: number, valueBytes: number, tag: string, timestampMs = 1_700_000_000_000): Buffer {
  const records = [];
  for (let i = 0; i < count; i++) {
    const v = Buffer.alloc(valueBytes, i & 0xff);
    v.write(`${tag}:${i}`.slice(0, valueBytes));
    records.push({ key: null, value: v, timestampMs: timestampMs + i });
  }
  return encodeBatch(records);
}

/** Reads the whole log from logStartOffset as a list of raw batches, checking continuity on the way. */
export function readAllBatches(log: PartitionLog, maxBytes = 64 * 1024): Buffer[] {
  const out: Buffer[] = [];
  let offset = log.logStartOffset;
  while (offset < log.nextOffset) {
    const r = log.read(offset, maxBytes);
    if (r.data.length === 0) throw new Error(`empty read at ${offset} below nextOffset ${log.nextOffset}`);
    const buf = Buffer.from(r.data);
    validateBatches(buf, 16 << 20);
    let pos = 0;
    while (pos < buf.length) {
      const h = readBatchHeader(buf, pos);
      if (h.baseOffset !== offset) throw new Error(`gap: batch at ${h.baseOffset}, expected ${offset}`);
      out.push(Buffer.from(buf.subarray(pos, pos + h.sizeBytes)));
      offset = h.baseOffset + h.lastOffsetDelta + 1;
      pos += h.sizeBytes;
    }
    if (r.nextOffset !== offset) throw new Error(`nextOffset ${r.nextOffset} != ${offset}`);
  }
  return out;
}

export function decodeValues(batches: Buffer[]): string[] {
  return decodeBatches(Buffer.concat(batches)).flatMap((b) => b.records.map((r) => Buffer.from(r.value!).toString('latin1')));
}

/** Every file of a directory with its bytes, to prove an operation changed nothing. */
export function snapshotDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) out[name] = fs.readFileSync(path.join(dir, name)).toString('base64');
  return out;
}

export function segmentFiles(dir: string, ext: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => n.endsWith(`.${ext}`))
    .sort()
    .map((n) => path.join(dir, n));
}

/** Bytes of each file covered by a completed fdatasync, by path. */
export function syncedDisk(): { synced: Map<string, number>; options: LogOpenOptions } {
  const synced = new Map<string, number>();
  // A completed sync covers the file as it was when the sync started; the latest-started one wins
  // (an older, slower sync completing later must not shrink what a newer one covered).
  const startedAt = new Map<string, number>();
  let seq = 0;
  const record = (p: string, size: number, started: number): void => {
    if ((startedAt.get(p) ?? -1) < started) {
      startedAt.set(p, started);
      synced.set(p, size);
    }
  };
  const pathOf = (fd: number): string => fs.readlinkSync(`/proc/self/fd/${fd}`);
  return {
    synced,
    options: {
      indexIntervalBytes: 256,
      fdatasync: (fd, cb) => {
        const p = pathOf(fd);
        const size = fs.fstatSync(fd).size;
        const started = seq++;
        fs.fdatasync(fd, (err) => {
          if (!err) record(p, size, started);
          cb(err);
        });
      },
      fdatasyncSync: (fd) => {
        const p = pathOf(fd);
        const size = fs.fstatSync(fd).size;
        const started = seq++;
        fs.fdatasyncSync(fd);
        record(p, size, started);
      },
    },
  };
}

/**
 * Copies `from` to `to` as a disk would hold it after a power cut: each file keeps what a completed
 * fdatasync covered, plus (at random, from `r`) some or none of the bytes written after it, possibly
 * followed by zeros; never more than was written. `.json` state files are replaced atomically (temp,
 * fsync, rename, dir fsync), so they are whole. `dropAllUnsynced` keeps exactly the synced bytes.
 */
export function cutPower(from: string, to: string, synced: Map<string, number>, r: { int(lo: number, hi: number): number }, dropAllUnsynced = false): void {
  fs.mkdirSync(to, { recursive: true });
  for (const name of fs.readdirSync(from)) {
    const src = path.join(from, name);
    const bytes = fs.readFileSync(src);
    if (name.endsWith('.json')) {
      fs.writeFileSync(path.join(to, name), bytes);
      continue;
    }
    const keep = Math.min(bytes.length, synced.get(src) ?? 0);
    const unsynced = bytes.length - keep;
    const mode = unsynced === 0 || dropAllUnsynced ? 0 : r.int(0, 2);
    const extra = mode === 0 ? 0 : r.int(0, unsynced);
    const zeros = mode === 2 ? r.int(0, unsynced - extra) : 0;
    fs.writeFileSync(path.join(to, name), Buffer.concat([bytes.subarray(0, keep + extra), Buffer.alloc(zeros)]));
  }
}

/**
 * Runs a crash fixture (`node fixture ...args`) and kill -9s it `killAfterMs` after it prints OPEN;
 * resolves with everything it printed. A child that exits by itself (it never opened, or it failed)
 * is an error carrying its stderr.
 */
export function killAfterOpen(fixture: string, args: readonly string[], killAfterMs: number): Promise<{ out: string; opened: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fixture, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let opened = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!opened && out.includes('OPEN')) {
        opened = true;
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`child exited ${code} ${signal}: ${err}`));
      else resolve({ out, opened });
    });
  });
}
