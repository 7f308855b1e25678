/**
 * Thin synchronous file helpers. The log runs on its own worker thread, so blocking writes and preads
 * are the fast path (no promise per syscall); only fdatasync goes through libuv's pool (see log.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';

const OFFSET_NAME_DIGITS = 20;

/**
 * The file-system calls storage makes, as node:fs spells them. `NODE_FS` (node:fs itself) is the only
 * one production uses; the deterministic simulator passes an in-memory disk that loses unsynced writes
 * on a simulated crash and completes fdatasyncs when it chooses (test/sim/sim-fs.ts). Every helper
 * below takes it as an optional last argument defaulting to node:fs, so the production path is the
 * same calls as before.
 */
export interface StorageFs {
  openSync(path: string, flags: number | string, mode?: number): number;
  closeSync(fd: number): void;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  fstatSync(fd: number): { size: number; birthtimeMs: number };
  ftruncateSync(fd: number, len: number): void;
  fdatasync(fd: number, callback: (err: NodeJS.ErrnoException | null) => void): void;
  fdatasyncSync(fd: number): void;
  fsyncSync(fd: number): void;
  mkdirSync(path: string, options: { recursive: true; mode: number }): string | undefined;
  readdirSync(path: string): string[];
  existsSync(path: string): boolean;
  unlinkSync(path: string): void;
  rmSync(path: string, options: { force: true }): void;
  renameSync(from: string, to: string): void;
  writeFileSync(path: string, data: string, options: { mode: number }): void;
  readFileSync(path: string, encoding: 'utf8'): string;
}

/** node:fs, the storage's file system everywhere but in the simulator. */
export const NODE_FS: StorageFs = fs;

export function segmentFileName(baseOffset: number, ext: 'log' | 'index' | 'timeindex' | 'damaged'): string {
  return `${String(baseOffset).padStart(OFFSET_NAME_DIGITS, '0')}.${ext}`;
}

/** Parses `00000000000000000042.log` to 42; null for any other name. */
export function parseSegmentFileName(name: string): { baseOffset: number; ext: string } | null {
  const m = /^(\d{20})\.(log|index|timeindex|damaged)$/.exec(name);
  if (!m) return null;
  const baseOffset = Number(m[1]);
  return Number.isSafeInteger(baseOffset) ? { baseOffset, ext: m[2] } : null;
}

/**
 * ENOSPC (no space) or EDQUOT (quota), here or in the error's `cause` chain: the disk is full for us,
 * which more space cures.
 */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e !== null && typeof e === 'object' && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'DISK_FULL') return true;
  }
  return false;
}

/**
 * A failed file operation as a SluiceError: DISK_FULL (retriable: it clears when space is freed) for
 * ENOSPC/EDQUOT, STORAGE_ERROR for anything else.
 */
export function storageError(what: string, err: unknown): SluiceError {
  const msg = err instanceof Error ? err.message : String(err);
  if (isDiskFull(err)) return new SluiceError('DISK_FULL', `${what}: the disk is full (${msg}); free space or grow the volume, then retry`, { cause: err });
  return new SluiceError('STORAGE_ERROR', `${what}: ${msg}`, { cause: err });
}

export function writeFully(fd: number, buf: Uint8Array, offset: number, length: number, position: number, f: StorageFs = fs): void {
  while (length > 0) {
    const n = f.writeSync(fd, buf, offset, length, position);
    offset += n;
    length -= n;
    position += n;
  }
}

/** Reads up to `length` bytes; returns how many were read (fewer only at end of file). */
export function readFully(fd: number, buf: Uint8Array, offset: number, length: number, position: number, f: StorageFs = fs): number {
  let total = 0;
  while (total < length) {
    const n = f.readSync(fd, buf, offset + total, length - total, position + total);
    if (n === 0) break;
    total += n;
  }
  return total;
}

/** Makes creations, renames and deletions in `dir` durable. */
export function fsyncDir(dir: string, f: StorageFs = fs): void {
  const fd = f.openSync(dir, 'r');
  try {
    f.fsyncSync(fd);
  } finally {
    f.closeSync(fd);
  }
}

/**
 * Modes of everything Sluice creates under its data dir: owner-only, as the data is the users' records.
 * A umask can only clear bits, so creating with these modes is owner-only whatever the umask.
 */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** Creates `dir` (and missing parents) owner-only; returns the first directory created, if any. */
export function mkdirOwnerOnly(dir: string, f: StorageFs = fs): string | undefined {
  return f.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
}

/** Opens read-write, creating the file (owner-only) when missing. */
export function openRw(file: string, f: StorageFs = fs): number {
  return f.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, FILE_MODE);
}

/**
 * Replaces `file` with `text` atomically and durably: a fresh owner-only temp file beside it, written
 * and fdatasynced, renamed over `file`, then the directory fsynced. A crash leaves the old file or the
 * new one, never a torn one. On failure the temp file is removed (best effort) and the error rethrown
 * as it is; callers say what they were writing.
 */
export function replaceFileAtomically(file: string, text: string, f: StorageFs = fs): void {
  const temp = `${file}.tmp`;
  try {
    // A temp file left by a crash would keep its old mode under 'w': start it afresh, owner-only.
    f.rmSync(temp, { force: true });
    const fd = f.openSync(temp, 'w', FILE_MODE);
    try {
      const bytes = Buffer.from(text);
      writeFully(fd, bytes, 0, bytes.length, 0, f);
      f.fdatasyncSync(fd);
    } finally {
      f.closeSync(fd);
    }
    f.renameSync(temp, file);
    fsyncDir(path.dirname(file), f);
  } catch (err) {
    try {
      f.rmSync(temp, { force: true });
    } catch {
      // Best effort: the next replace removes it first anyway.
    }
    throw err;
  }
}

export function unlinkIfExists(file: string, f: StorageFs = fs): void {
  try {
    f.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export function join(dir: string, name: string): string {
  return path.join(dir, name);
}
