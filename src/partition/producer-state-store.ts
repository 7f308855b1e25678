/**
 * The I/O around the pure producer-state table (./producer-state.ts): reading a v2 request's batch
 * identities, rebuilding the table from the log on open, and its snapshot file.
 *
 * The snapshot (`<partition dir>/producer-state.snapshot`) records the table as of a log offset, with a
 * CRC-32C. It is an optimisation only: recovery restores it and replays the log from its offset, and
 * falls back to replaying the whole log when it is missing, torn, or newer than the log (a crash lost
 * a tail the snapshot had seen). It is written with fsync (file, then directory) so a stale snapshot
 * can never survive the fresh one that replaced it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { FETCH_BYTES_MAX_DEFAULT } from '../constants.js';
import {
  BATCH_HEADER_BYTES,
  OFF_BASE_SEQUENCE,
  OFF_LENGTH,
  OFF_MAX_TIMESTAMP,
  OFF_PRODUCER_EPOCH,
  OFF_PRODUCER_ID,
  OFF_RECORD_COUNT,
  BATCH_LOG_OVERHEAD_BYTES,
  asBuffer,
  readInt64,
} from '../batch/codec.js';
import { replaceFileAtomically, type PartitionLog } from '../storage/index.js';
import { NO_PRODUCER_ID, ProducerStateTable, type BatchIdentity } from './producer-state.js';

export const PRODUCER_SNAPSHOT_FILE = 'producer-state.snapshot';

/**
 * The identities of the batches in a produce request, or null when none is idempotent (the hot path
 * for plain producers) or the bytes are not even walkable (the log's validation then names the fault).
 */
export function batchIdentities(data: Uint8Array): BatchIdentity[] | null {
  const buf = asBuffer(data);
  const out: BatchIdentity[] = [];
  let idempotent = false;
  for (let pos = 0; pos < buf.length; ) {
    if (pos + BATCH_HEADER_BYTES > buf.length) return null;
    const size = buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
    if (size < BATCH_HEADER_BYTES || pos + size > buf.length) return null;
    const producerId = buf.readBigInt64BE(pos + OFF_PRODUCER_ID);
    if (producerId !== NO_PRODUCER_ID) idempotent = true;
    out.push({
      producerId,
      producerEpoch: buf.readInt16BE(pos + OFF_PRODUCER_EPOCH),
      baseSequence: buf.readInt32BE(pos + OFF_BASE_SEQUENCE),
      recordCount: buf.readInt32BE(pos + OFF_RECORD_COUNT),
    });
    pos += size;
  }
  return idempotent && out.length > 0 ? out : null;
}

export interface ProducerStateRecovery {
  /** Offset the snapshot covered up to, or null when none was usable. */
  snapshotOffset: number | null;
  /** Batches replayed from the log after the snapshot. */
  replayedBatches: number;
}

interface SnapshotFile {
  offset: number;
  crc: number;
  body: string;
}

/** Restores the snapshot (if usable) and replays the log after it. */
export function recoverProducerState(log: PartitionLog): { table: ProducerStateTable; report: ProducerStateRecovery } {
  let table: ProducerStateTable | null = null;
  let from = log.logStartOffset;
  let snapshotOffset: number | null = null;
  const snap = readSnapshot(log.dir);
  if (snap !== null && snap.offset <= log.nextOffset) {
    try {
      table = ProducerStateTable.restore(JSON.parse(snap.body));
      snapshotOffset = snap.offset;
      from = Math.max(from, snap.offset);
    } catch {
      table = null;
    }
  }
  // An unusable snapshot must not outlive this open: once the log grows past its offset again it
  // would look valid. Remove it now (durably); the caller writes a fresh one after the replay.
  if (snapshotOffset === null && fs.existsSync(path.join(log.dir, PRODUCER_SNAPSHOT_FILE))) removeSnapshot(log.dir);
  table ??= new ProducerStateTable();
  let replayedBatches = 0;
  // Fenced (corrupt) ranges hold no batch to replay: step over them, as readers do.
  const damaged = log.damagedRanges;
  while (from < log.nextOffset) {
    const fence = damaged.find((d) => from >= d.fromOffset && from < d.toOffset);
    if (fence !== undefined) {
      from = fence.toOffset;
      continue;
    }
    const { data, nextOffset } = log.read(from, FETCH_BYTES_MAX_DEFAULT);
    const buf = asBuffer(data);
    for (let pos = 0; pos < buf.length; ) {
      const size = buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
      const baseOffset = readInt64(buf, pos);
      // The first batch of a read may start below `from` (it straddles the snapshot offset): it was
      // seen by the snapshot already.
      if (baseOffset >= from || snapshotOffset === null) {
        table.apply({
          producerId: buf.readBigInt64BE(pos + OFF_PRODUCER_ID),
          producerEpoch: buf.readInt16BE(pos + OFF_PRODUCER_EPOCH),
          baseSequence: buf.readInt32BE(pos + OFF_BASE_SEQUENCE),
          recordCount: buf.readInt32BE(pos + OFF_RECORD_COUNT),
          baseOffset,
          maxTimestampMs: readInt64(buf, pos + OFF_MAX_TIMESTAMP),
        });
        replayedBatches++;
      }
      pos += size;
    }
    if (nextOffset <= from) break;
    from = nextOffset;
  }
  return { table, report: { snapshotOffset, replayedBatches } };
}

function removeSnapshot(dir: string): void {
  fs.rmSync(path.join(dir, PRODUCER_SNAPSHOT_FILE), { force: true });
  const dfd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}

function readSnapshot(dir: string): SnapshotFile | null {
  let raw: string;
  try {
    raw = fs.readFileSync(path.join(dir, PRODUCER_SNAPSHOT_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    const s = JSON.parse(raw) as SnapshotFile;
    if (!Number.isSafeInteger(s.offset) || typeof s.body !== 'string' || crc32c(Buffer.from(s.body, 'utf8')) >>> 0 !== s.crc) return null;
    return s;
  } catch {
    return null;
  }
}

/** Writes the table as of `offset` (the log end): temp file, fsync, rename, fsync dir. */
export function writeProducerSnapshot(dir: string, table: ProducerStateTable, offset: number): void {
  const body = JSON.stringify(table.snapshot());
  const file: SnapshotFile = { offset, crc: crc32c(Buffer.from(body, 'utf8')) >>> 0, body };
  replaceFileAtomically(path.join(dir, PRODUCER_SNAPSHOT_FILE), JSON.stringify(file));
}
