/**
 * Thin synchronous file helpers. The log runs on its own worker thread, so blocking writes and preads
 * are the fast path (no promise per syscall); only fdatasync goes through libuv's pool (see log.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';

const OFFSET_NAME_DIGITS = 20;

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

export function writeFully(fd: number, buf: Uint8Array, offset: number, length: number, position: number): void {
  while (length > 0) {
    const n = fs.writeSync(fd, buf, offset, length, position);
    offset += n;
    length -= n;
    position += n;
  }
}

/** Reads up to `length` bytes; returns how many were read (fewer only at end of file). */
export function readFully(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
  let total = 0;
  while (total < length) {
    const n = fs.readSync(fd, buf, offset + total, length - total, position + total);
    if (n === 0) break;
    total += n;
  }
  return total;
}

/** Makes creations, renames and deletions in `dir` durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Modes of everything Sluice creates under its data dir: owner-only, as the data is the users' records.
 * A umask can only clear bits, so creating with these modes is owner-only whatever the umask.
 */
export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** Creates `dir` (and missing parents) owner-only; returns the first directory created, if any. */
export function mkdirOwnerOnly(dir: string): string | undefined {
  return fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
}

/** Opens read-write, creating the file (owner-only) when missing. */
export function openRw(file: string): number {
  return fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, FILE_MODE);
}

/**
 * Replaces `file` with `text` atomically and durably: a fresh owner-only temp file beside it, written
 * and fdatasynced, renamed over `file`, then the directory fsynced. A crash leaves the old file or the
 * new one, never a torn one. On failure the temp file is removed (best effort) and the error rethrown
 * as it is; callers say what they were writing.
 */
export function replaceFileAtomically(file: string, text: string): void {
  const temp = `${file}.tmp`;
  try {
    // A temp file left by a crash would keep its old mode under 'w': start it afresh, owner-only.
    fs.rmSync(temp, { force: true });
    const fd = fs.openSync(temp, 'w', FILE_MODE);
    try {
      fs.writeSync(fd, text);
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
    fsyncDir(path.dirname(file));
  } catch (err) {
    try {
      fs.rmSync(temp, { force: true });
    } catch {
      // Best effort: the next replace removes it first anyway.
    }
    throw err;
  }
}

export function unlinkIfExists(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export function join(dir: string, name: string): string {
  return path.join(dir, name);
}
