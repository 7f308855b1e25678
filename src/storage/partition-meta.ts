/**
 * A partition directory's identity, in `<partition-dir>/partition.json`: the topic id (new at every
 * creation of the topic) and the partition number. Opening a directory whose id differs from the
 * topic table's is refused (PARTITION_MISMATCH is LOG_CORRUPT with a message saying which), so the
 * leftovers of a deleted topic are never served as a re-created namesake. A directory without the
 * file (written before topic ids existed) is adopted: the file is written on open.
 */
import { SluiceError } from '../errors.js';
import { isNonNegativeInt, readStateFile, writeStateFile } from './atomic-file.js';
import { NODE_FS, type StorageFs } from './io.js';

export const PARTITION_META_FILE = 'partition.json';
const VERSION = 1;

export interface PartitionMeta {
  topicId: string;
  partition: number;
}

export function readPartitionMeta(dir: string, f: StorageFs = NODE_FS): PartitionMeta | null {
  const b = readStateFile(dir, PARTITION_META_FILE, VERSION, f) as Partial<PartitionMeta> | null;
  if (b === null) return null;
  if (typeof b.topicId !== 'string' || b.topicId.length === 0 || !isNonNegativeInt(b.partition)) {
    throw new SluiceError('LOG_CORRUPT', `${dir}/${PARTITION_META_FILE} is malformed`);
  }
  return { topicId: b.topicId, partition: b.partition };
}

export function writePartitionMeta(dir: string, meta: PartitionMeta, f: StorageFs = NODE_FS): void {
  writeStateFile(dir, PARTITION_META_FILE, VERSION, meta, f);
}

/** Checks (or, for a directory from before topic ids, writes) the directory's identity. */
export function checkPartitionMeta(dir: string, want: PartitionMeta, f: StorageFs = NODE_FS): void {
  const have = readPartitionMeta(dir, f);
  if (have === null) return writePartitionMeta(dir, want, f);
  if (have.topicId !== want.topicId || have.partition !== want.partition) {
    throw new SluiceError(
      'LOG_CORRUPT',
      `${dir} belongs to topic id ${have.topicId} partition ${have.partition}, not ${want.topicId} partition ${want.partition}: ` +
        'it is the leftover of a deleted topic; remove the directory to let the new topic start empty',
    );
  }
}
