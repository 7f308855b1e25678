/**
 * Small state files of a partition directory (HardState, leader-epoch checkpoint, snapshot metadata,
 * partition identity), replaced atomically: write a temp file, fdatasync it, rename it over the old
 * one, fsync the directory. A crash leaves either the old file or the new one, never a torn one, so a
 * file that does not parse is corruption (LOG_CORRUPT), not a crash artifact.
 *
 * The body is JSON with a version and a CRC-32C of the payload, so a flipped bit is caught too.
 */
import { crc32c } from '@node-rs/crc32';
import { SluiceError } from '../errors.js';
import { NODE_FS, type StorageFs, join, replaceFileAtomically, storageError, unlinkIfExists } from './io.js';

const TEMP_SUFFIX = '.tmp';

interface Envelope {
  v: number;
  crc: number;
  body: unknown;
}

/** Writes `body` to `<dir>/<name>` atomically and durably. Throws STORAGE_ERROR. */
export function writeStateFile(dir: string, name: string, version: number, body: unknown, f: StorageFs = NODE_FS): void {
  const json = JSON.stringify(body);
  const envelope: Envelope = { v: version, crc: crc32c(json) >>> 0, body };
  const file = join(dir, name);
  try {
    replaceFileAtomically(file, JSON.stringify(envelope), f);
  } catch (err) {
    throw storageError(`cannot write ${file}`, err);
  }
}

/**
 * Reads `<dir>/<name>`: null when it does not exist. A leftover temp file (a crash before the rename)
 * is removed. Throws LOG_CORRUPT for a file that does not parse, fails its CRC or has another version.
 */
export function readStateFile(dir: string, name: string, version: number, f: StorageFs = NODE_FS): unknown {
  const file = join(dir, name);
  unlinkIfExists(file + TEMP_SUFFIX, f);
  let text: string;
  try {
    text = f.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw storageError(`cannot read ${file}`, err);
  }
  let envelope: Envelope;
  try {
    envelope = JSON.parse(text) as Envelope;
  } catch {
    throw new SluiceError('LOG_CORRUPT', `${file} is not valid JSON`);
  }
  if (envelope === null || typeof envelope !== 'object' || envelope.v !== version) {
    throw new SluiceError('LOG_CORRUPT', `${file} has version ${String(envelope?.v)}, expected ${version}`);
  }
  if ((crc32c(JSON.stringify(envelope.body)) >>> 0) !== envelope.crc) {
    throw new SluiceError('LOG_CORRUPT', `${file} fails its CRC-32C`);
  }
  return envelope.body;
}

export function isNonNegativeInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}
