/**
 * The partition's Raft HardState (current term and vote), in `<partition-dir>/hard-state.json`,
 * replaced atomically (./atomic-file.ts). It must be durable before any message that depends on it
 * leaves the node (a vote) and before a batch of the new term is appended, which is why the driver
 * writes it synchronously: it changes once per election, never per record.
 *
 * It also carries a commit index the partition had made visible (its high watermark - 1) when it was
 * written — at every term or vote change and at a clean close, never per record — so a restarted
 * replica of a larger group resumes its high watermark from there instead of its log start. The
 * field is optional: a file without it (older, or the controller's) reads as "no commit known".
 *
 * A missing file is the state of a partition that never had a term: a data dir written before the
 * partition became a Raft replica (its batches carry epoch 0), or a new partition.
 */
import { SluiceError } from '../errors.js';
import { isNonNegativeInt, readStateFile, writeStateFile } from './atomic-file.js';
import { NODE_FS, type StorageFs } from './io.js';

export const HARD_STATE_FILE = 'hard-state.json';
const VERSION = 1;

export interface StoredHardState {
  term: number;
  /** Node voted for in `term`; 0 = none. */
  vote: number;
  /**
   * A committed index every entry up to which was durable in this log when the file was written
   * (entries below a high watermark are never truncated); absent = unknown.
   */
  commit?: number;
  /**
   * Written by a clean close (with nothing shown after it): `commit` + 1 is exactly the high watermark
   * the replica last showed. Trusted only together with the log's clean-shutdown marker, which the
   * log writes after this file and removes at the next open.
   */
  clean?: boolean;
}

export const EMPTY_HARD_STATE: Readonly<StoredHardState> = Object.freeze({ term: 0, vote: 0 });

export function readHardState(dir: string, f: StorageFs = NODE_FS): StoredHardState | null {
  const body = readStateFile(dir, HARD_STATE_FILE, VERSION, f) as Partial<StoredHardState> | null;
  if (body === null) return null;
  if (!isNonNegativeInt(body.term) || !isNonNegativeInt(body.vote)) {
    throw new SluiceError('LOG_CORRUPT', `${dir}/${HARD_STATE_FILE} holds an invalid term or vote`);
  }
  if (body.commit === undefined) return { term: body.term, vote: body.vote };
  if (!Number.isSafeInteger(body.commit) || body.commit < -1 || (body.clean !== undefined && body.clean !== true)) {
    throw new SluiceError('LOG_CORRUPT', `${dir}/${HARD_STATE_FILE} holds an invalid commit index`);
  }
  return body.clean === true ? { term: body.term, vote: body.vote, commit: body.commit, clean: true } : { term: body.term, vote: body.vote, commit: body.commit };
}

export function writeHardState(dir: string, hs: StoredHardState, f: StorageFs = NODE_FS): void {
  const body = hs.commit === undefined ? { term: hs.term, vote: hs.vote } : hs.clean === true ? { term: hs.term, vote: hs.vote, commit: hs.commit, clean: true } : { term: hs.term, vote: hs.vote, commit: hs.commit };
  writeStateFile(dir, HARD_STATE_FILE, VERSION, body, f);
}
