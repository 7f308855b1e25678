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

export function storageError(what: string, err: unknown): SluiceError {
  const msg = err instanceof Error ? err.message : String(err);
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

/** Opens read-write, creating the file when missing. */
export function openRw(file: string): number {
  return fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
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
