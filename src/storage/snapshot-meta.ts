/**
 * Snapshot metadata of the partition's Raft log, in `<partition-dir>/snapshot.json`: the last index
 * and term the snapshot covers, the configuration at that index, and the log start offset. For a
 * partition the "state machine" is the log itself, so a snapshot is only this record: the batches
 * after it stay in the segments. Retention moves the log start by writing a new snapshot first and
 * deleting segments after, so every replica's log start comes from Raft state, and a crash between
 * the two is finished on the next open (segments below `logStartOffset` are deleted then).
 */
import { SluiceError } from '../errors.js';
import { isNonNegativeInt, readStateFile, writeStateFile } from './atomic-file.js';
import { NODE_FS, type StorageFs } from './io.js';

export const SNAPSHOT_META_FILE = 'snapshot.json';
const VERSION = 1;

export interface SnapshotMeta {
  /** Last Raft index (= offset) covered; logStartOffset - 1, or -1 when nothing was ever compacted. */
  index: number;
  term: number;
  voters: number[];
  learners: number[];
  logStartOffset: number;
}

export function emptySnapshotMeta(voters: number[]): SnapshotMeta {
  return { index: -1, term: 0, voters: [...voters], learners: [], logStartOffset: 0 };
}

function isIdList(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((n) => isNonNegativeInt(n));
}

export function readSnapshotMeta(dir: string, f: StorageFs = NODE_FS): SnapshotMeta | null {
  const b = readStateFile(dir, SNAPSHOT_META_FILE, VERSION, f) as Partial<SnapshotMeta> | null;
  if (b === null) return null;
  const ok =
    typeof b.index === 'number' &&
    Number.isSafeInteger(b.index) &&
    b.index >= -1 &&
    isNonNegativeInt(b.term) &&
    isIdList(b.voters) &&
    isIdList(b.learners) &&
    isNonNegativeInt(b.logStartOffset) &&
    b.logStartOffset === b.index + 1;
  if (!ok) throw new SluiceError('LOG_CORRUPT', `${dir}/${SNAPSHOT_META_FILE} is malformed`);
  return { index: b.index!, term: b.term!, voters: b.voters!, learners: b.learners!, logStartOffset: b.logStartOffset! };
}

export function writeSnapshotMeta(dir: string, meta: SnapshotMeta, f: StorageFs = NODE_FS): void {
  writeStateFile(dir, SNAPSHOT_META_FILE, VERSION, meta, f);
}
