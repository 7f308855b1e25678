/**
 * Replica comparison after healing: the logs of one partition's replicas must be byte-identical below
 * the high watermark (same batches, same offsets, same terms). Works on partition directories
 * (`<data-dir>/<topic>-<partition>/`), reading the `.log` segments in offset order and walking whole
 * v2 batches by their headers. A cluster run (3+ nodes) compares every partition's replicas after they
 * reached the final high watermark and the nodes stopped; the function is also tested on copies of real
 * partition directories.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BATCH_LOG_OVERHEAD_BYTES } from '../../src/batch/index.js';
import { parseSegmentFileName } from '../../src/storage/index.js';

const OFF_BASE_OFFSET = 0;
const OFF_LENGTH = 8;

export interface ReplicaComparison {
  /** Replicas compared (directories). */
  replicas: number;
  /** Bytes below the high watermark compared in each. */
  bytes: number;
  /** The first offset compared: the latest log start among the replicas. */
  from: number;
  /** null when identical; else the first batch (by base offset) where a replica differs from the first. */
  firstDifference: { offset: number; replica: string; why: string } | null;
}

interface BatchRef {
  baseOffset: number;
  bytes: Buffer;
}

/** Whole batches of a partition directory whose base offset is below `hw`, in offset order. */
export function batchesBelow(dir: string, hw: number): BatchRef[] {
  const segments = fs
    .readdirSync(dir)
    .map((n) => ({ name: n, parsed: parseSegmentFileName(n) }))
    .filter((s) => s.parsed !== null && s.parsed.ext === 'log')
    .sort((a, b) => a.parsed!.baseOffset - b.parsed!.baseOffset);
  const out: BatchRef[] = [];
  for (const s of segments) {
    const data = fs.readFileSync(path.join(dir, s.name));
    for (let pos = 0; pos + BATCH_LOG_OVERHEAD_BYTES <= data.length; ) {
      const baseOffset = Number(data.readBigInt64BE(pos + OFF_BASE_OFFSET));
      const size = BATCH_LOG_OVERHEAD_BYTES + data.readInt32BE(pos + OFF_LENGTH);
      if (baseOffset >= hw || size <= BATCH_LOG_OVERHEAD_BYTES || pos + size > data.length) break;
      out.push({ baseOffset, bytes: data.subarray(pos, pos + size) });
      pos += size;
    }
  }
  return out;
}

/**
 * Compares the replicas' logs below `hw` byte for byte; the first directory is the reference. Replicas
 * may start at different offsets (retention, or a follower rebuilt from a snapshot, moves one log's
 * start on its own), so the comparison runs from the latest first offset among them (`from`).
 */
export function compareReplicas(dirs: readonly string[], hw: number): ReplicaComparison {
  if (dirs.length === 0) throw new Error('compareReplicas needs at least one directory');
  const all = dirs.map((d) => batchesBelow(d, hw));
  const from = Math.max(0, ...all.map((bs) => bs[0]?.baseOffset ?? 0));
  const [reference, ...others] = all.map((bs) => bs.filter((b) => b.baseOffset >= from));
  const bytes = reference.reduce((n, b) => n + b.bytes.length, 0);
  for (const [i, other] of others.entries()) {
    const dir = dirs[i + 1];
    for (let i = 0; i < Math.max(reference.length, other.length); i++) {
      const a = reference[i];
      const b = other[i];
      if (a === undefined || b === undefined) {
        const at = (a ?? b)!.baseOffset;
        return { replicas: dirs.length, bytes, from, firstDifference: { offset: at, replica: dir, why: a === undefined ? 'has a batch the reference lacks' : 'lacks a batch below the high watermark' } };
      }
      if (a.baseOffset !== b.baseOffset || !a.bytes.equals(b.bytes)) {
        return { replicas: dirs.length, bytes, from, firstDifference: { offset: Math.min(a.baseOffset, b.baseOffset), replica: dir, why: 'batch bytes differ' } };
      }
    }
  }
  return { replicas: dirs.length, bytes, from, firstDifference: null };
}
