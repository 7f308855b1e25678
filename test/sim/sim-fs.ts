/**
 * A simulated disk for the deterministic simulator: an in-memory file system with the `StorageFs`
 * surface (src/storage/io.ts), so the real `PartitionLog` (and the partition's state files) run on it
 * with no real I/O. One `SimFs` is one node's disk.
 *
 * What a power loss keeps, as a real disk with a journaling file system would (the same model as the
 * storage tests' `syncedDisk`/`cutPower`):
 * - a file's bytes as of its last COMPLETED fdatasync/fsync (a sync covers the file as it was when the
 *   sync started; a newer-started sync that completed first is never undone by an older one);
 * - a directory's names (creations, renames, unlinks) as of its last fsync; a name created and never
 *   made durable vanishes, a name unlinked but not made durable comes back with its durable bytes;
 * - optionally (`crash(rng)`), some of the unsynced tail of a file that grew, maybe followed by zeros: a
 *   torn write.
 *
 * Determinism: nothing here reads a clock or randomness of its own. `fdatasync` (the async one the
 * log's group commit uses) does not complete by itself: it is queued until the simulator calls
 * `completeSyncs()`, so the order of completions is the simulator's (seeded) choice. The callback runs
 * synchronously inside `completeSyncs`; the log's promise continuations then run as microtasks, which
 * the caller drains (see partition-replica.ts).
 */
import { constants } from 'node:fs';
import path from 'node:path';
import type { StorageFs } from '../../src/storage/index.js';
import type { Prng } from './prng.js';

interface Inode {
  buf: Buffer;
  size: number;
  /** The bytes a power loss keeps. */
  durable: Buffer;
  /** Sequence number of the sync that set `durable` (a slower, older sync must not undo it). */
  durableSeq: number;
  readonly birthMs: number;
}

type Entry = { kind: 'file'; inode: Inode } | { kind: 'dir' };

interface PendingSync {
  readonly inode: Inode;
  readonly bytes: Buffer;
  readonly seq: number;
  readonly callback: (err: NodeJS.ErrnoException | null) => void;
}

interface OpenFile {
  readonly path: string;
  /** null for a directory opened to be fsynced. */
  readonly inode: Inode | null;
}

const { O_CREAT, O_TRUNC } = constants;
const FD_BASE = 1_000_000;

function errno(code: string, syscall: string, p: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: simulated disk, ${syscall} '${p}'`);
  err.code = code;
  err.syscall = syscall;
  err.path = p;
  return err;
}

export class SimFs implements StorageFs {
  /** Path -> entry, as the running system sees it. */
  private names = new Map<string, Entry>();
  /** Path -> entry, as a power loss would leave it. */
  private durableNames = new Map<string, Entry>();
  private readonly fds = new Map<number, OpenFile>();
  private nextFd = FD_BASE;
  /** fds below this were open before the last crash: their owner is dead, its async calls vanish. */
  private crashedBelowFd = FD_BASE;
  private syncSeq = 0;
  private pending: PendingSync[] = [];
  /** Statistics for the caller (the simulator's trace and tests). */
  readonly stats = { syncs: 0, crashes: 0, tornFiles: 0 };

  constructor(private readonly nowMs: () => number = () => 0) {
    this.names.set('/', { kind: 'dir' });
    this.durableNames.set('/', { kind: 'dir' });
  }

  // --- The simulator's controls ------------------------------------------------------------------

  /** fdatasyncs issued and not yet completed. */
  get pendingSyncs(): number {
    return this.pending.length;
  }

  /**
   * Completes up to `max` queued fdatasyncs, oldest first (each covers the file as it was when it was
   * issued), calling their callbacks. Returns how many completed.
   */
  completeSyncs(max = Number.POSITIVE_INFINITY): number {
    let n = 0;
    while (n < max && this.pending.length > 0) {
      const s = this.pending.shift()!;
      this.makeDurable(s.inode, s.bytes, s.seq);
      n++;
      s.callback(null);
    }
    return n;
  }

  /**
   * A power loss: every open fd is gone, queued syncs never complete (their callbacks are dropped),
   * names and bytes fall back to what was durable. With `rng`, a file whose unsynced content is longer
   * than its durable content may keep some of that tail (and then zeros): a torn write.
   */
  crash(rng?: Prng): void {
    this.stats.crashes++;
    this.fds.clear();
    this.crashedBelowFd = this.nextFd;
    this.pending = [];
    this.names = new Map(this.durableNames);
    for (const [, e] of [...this.names].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      if (e.kind !== 'file') continue;
      const ino = e.inode;
      let keep: Buffer = ino.durable;
      if (rng !== undefined && ino.size > ino.durable.length && rng.chance(0.5)) {
        const unsynced = ino.size - ino.durable.length;
        const extra = rng.int(unsynced + 1);
        const zeros = rng.chance(0.3) ? rng.int(unsynced - extra + 1) : 0;
        keep = Buffer.concat([ino.durable, ino.buf.subarray(ino.durable.length, ino.durable.length + extra), Buffer.alloc(zeros)]);
        if (extra + zeros > 0) this.stats.tornFiles++;
      }
      ino.buf = Buffer.from(keep);
      ino.size = keep.length;
      // What survived is on the platter now.
      ino.durable = Buffer.from(keep);
    }
  }

  /** Every file path, sorted (tests). */
  files(): string[] {
    return [...this.names].filter(([, e]) => e.kind === 'file').map(([p]) => p).sort();
  }

  // --- StorageFs ---------------------------------------------------------------------------------

  openSync = (p: string, flags: number | string, _mode?: number): number => {
    const file = path.resolve(p);
    let e = this.names.get(file);
    const create = typeof flags === 'string' ? flags.startsWith('w') || flags.startsWith('a') : (flags & O_CREAT) !== 0;
    const truncate = typeof flags === 'string' ? flags.startsWith('w') : (flags & O_TRUNC) !== 0;
    if (e === undefined) {
      if (!create) throw errno('ENOENT', 'open', p);
      this.parentDir(file, 'open');
      e = { kind: 'file', inode: { buf: Buffer.alloc(0), size: 0, durable: Buffer.alloc(0), durableSeq: -1, birthMs: this.nowMs() } };
      this.names.set(file, e);
    }
    if (e.kind === 'file' && truncate) e.inode.size = 0;
    const fd = this.nextFd++;
    this.fds.set(fd, { path: file, inode: e.kind === 'file' ? e.inode : null });
    return fd;
  };

  closeSync = (fd: number): void => {
    if (!this.fds.delete(fd)) throw errno('EBADF', 'close', String(fd));
  };

  writeSync = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number => {
    const ino = this.inode(fd, 'write');
    const end = position + length;
    this.reserve(ino, end);
    if (position > ino.size) ino.buf.fill(0, ino.size, position);
    ino.buf.set(buffer.subarray(offset, offset + length), position);
    if (end > ino.size) ino.size = end;
    return length;
  };

  readSync = (fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number => {
    const ino = this.inode(fd, 'read');
    const n = Math.max(0, Math.min(length, ino.size - position));
    if (n > 0) buffer.set(ino.buf.subarray(position, position + n), offset);
    return n;
  };

  fstatSync = (fd: number): { size: number; birthtimeMs: number } => {
    const ino = this.inode(fd, 'fstat');
    return { size: ino.size, birthtimeMs: ino.birthMs };
  };

  ftruncateSync = (fd: number, len: number): void => {
    const ino = this.inode(fd, 'ftruncate');
    if (len > ino.size) {
      this.reserve(ino, len);
      ino.buf.fill(0, ino.size, len);
    }
    ino.size = len;
  };

  fdatasync = (fd: number, callback: (err: NodeJS.ErrnoException | null) => void): void => {
    const f = this.fds.get(fd);
    if (f === undefined && fd < this.crashedBelowFd) return; // the process that issued it died in a crash
    if (f === undefined || f.inode === null) return queueMicrotask(() => callback(errno('EBADF', 'fdatasync', String(fd))));
    const ino = f.inode;
    this.pending.push({ inode: ino, bytes: Buffer.from(ino.buf.subarray(0, ino.size)), seq: this.syncSeq++, callback });
  };

  fdatasyncSync = (fd: number): void => {
    this.fsyncSync(fd);
  };

  fsyncSync = (fd: number): void => {
    const f = this.fds.get(fd);
    if (f === undefined) throw errno('EBADF', 'fsync', String(fd));
    if (f.inode !== null) return this.makeDurable(f.inode, Buffer.from(f.inode.buf.subarray(0, f.inode.size)), this.syncSeq++);
    // A directory: its names (creations, renames, unlinks) become durable.
    for (const p of [...this.durableNames.keys()]) if (path.dirname(p) === f.path && p !== f.path) this.durableNames.delete(p);
    for (const [p, e] of this.names) if (path.dirname(p) === f.path && p !== f.path) this.durableNames.set(p, e);
  };

  mkdirSync = (p: string, _options: { recursive: true; mode: number }): string | undefined => {
    const dir = path.resolve(p);
    let first: string | undefined;
    const missing: string[] = [];
    for (let d = dir; !this.names.has(d); d = path.dirname(d)) missing.unshift(d);
    for (const d of missing) {
      this.names.set(d, { kind: 'dir' });
      first ??= d;
    }
    if (this.names.get(dir)!.kind !== 'dir') throw errno('ENOTDIR', 'mkdir', p);
    return first;
  };

  readdirSync = (p: string): string[] => {
    const dir = path.resolve(p);
    if (this.names.get(dir)?.kind !== 'dir') throw errno('ENOENT', 'scandir', p);
    const out: string[] = [];
    for (const name of this.names.keys()) if (name !== dir && path.dirname(name) === dir) out.push(path.basename(name));
    return out.sort();
  };

  existsSync = (p: string): boolean => this.names.has(path.resolve(p));

  unlinkSync = (p: string): void => {
    const file = path.resolve(p);
    const e = this.names.get(file);
    if (e === undefined) throw errno('ENOENT', 'unlink', p);
    if (e.kind !== 'file') throw errno('EISDIR', 'unlink', p);
    this.names.delete(file);
  };

  rmSync = (p: string, _options: { force: true }): void => {
    const target = path.resolve(p);
    for (const name of [...this.names.keys()]) if (name === target || name.startsWith(`${target}/`)) this.names.delete(name);
  };

  renameSync = (from: string, to: string): void => {
    const src = path.resolve(from);
    const e = this.names.get(src);
    if (e === undefined || e.kind !== 'file') throw errno('ENOENT', 'rename', from);
    const dst = path.resolve(to);
    this.parentDir(dst, 'rename');
    this.names.delete(src);
    this.names.set(dst, e);
  };

  writeFileSync = (p: string, data: string, options: { mode: number }): void => {
    const fd = this.openSync(p, 'w', options.mode);
    const bytes = Buffer.from(data);
    this.writeSync(fd, bytes, 0, bytes.length, 0);
    this.closeSync(fd);
  };

  readFileSync = (p: string, _encoding: 'utf8'): string => {
    const e = this.names.get(path.resolve(p));
    if (e === undefined) throw errno('ENOENT', 'open', p);
    if (e.kind !== 'file') throw errno('EISDIR', 'read', p);
    return e.inode.buf.toString('utf8', 0, e.inode.size);
  };

  // --- Internals ---------------------------------------------------------------------------------

  private inode(fd: number, syscall: string): Inode {
    const f = this.fds.get(fd);
    if (f === undefined) throw errno('EBADF', syscall, String(fd));
    if (f.inode === null) throw errno('EISDIR', syscall, f.path);
    return f.inode;
  }

  private parentDir(file: string, syscall: string): void {
    if (this.names.get(path.dirname(file))?.kind !== 'dir') throw errno('ENOENT', syscall, file);
  }

  private reserve(ino: Inode, bytes: number): void {
    if (bytes <= ino.buf.length) return;
    const next = Buffer.alloc(Math.max(bytes, ino.buf.length * 2, 4096));
    ino.buf.copy(next, 0, 0, ino.size);
    ino.buf = next;
  }

  private makeDurable(ino: Inode, bytes: Buffer, seq: number): void {
    this.stats.syncs++;
    if (seq < ino.durableSeq) return;
    ino.durable = bytes;
    ino.durableSeq = seq;
  }
}
