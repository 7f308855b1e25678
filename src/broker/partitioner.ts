/**
 * Picks a partition when a produce names none, as Kafka's default partitioner does: murmur2 of the
 * key for keyed records (the first record's key decides for the whole request), otherwise sticky
 * round-robin — each request without a key sticks to one partition and the next one moves on, so
 * batches stay whole and the load spreads.
 *
 * For raw batches the first record's key is read straight from the bytes of an uncompressed batch
 * (a few varints, no decode); compressed batches count as unkeyed.
 */
import { partitionForKey } from '../model/murmur2.js';
import { readVarint, readVarlong, type Cursor } from '../batch/varint.js';
import type { RecordInput } from '../batch/types.js';

const BATCH_HEADER_BYTES = 61;
const OFF_ATTRIBUTES = 21;
const COMPRESSION_MASK = 0x07;

/** The key of the first record of the first batch, or null (no key, compressed, or unparseable). */
export function firstRecordKey(batches: Uint8Array): Uint8Array | null {
  if (batches.length < BATCH_HEADER_BYTES + 2) return null;
  const attributes = (batches[OFF_ATTRIBUTES] << 8) | batches[OFF_ATTRIBUTES + 1];
  if ((attributes & COMPRESSION_MASK) !== 0) return null;
  try {
    const c: Cursor = { pos: BATCH_HEADER_BYTES, end: batches.length };
    readVarint(batches, c); // record length
    c.pos++; // record attributes
    readVarlong(batches, c); // timestamp delta
    readVarint(batches, c); // offset delta
    const keyLength = readVarint(batches, c);
    if (keyLength < 0 || c.pos + keyLength > batches.length) return null;
    return batches.subarray(c.pos, c.pos + keyLength);
  } catch {
    // A corrupt batch is rejected by validation in the shard; here it only means "no key".
    return null;
  }
}

export class StickyPartitioner {
  private readonly next = new Map<string, number>();

  /** Partition for a produce with no explicit partition. */
  pick(topic: string, partitionCount: number, key: Uint8Array | null): number {
    if (key !== null) return partitionForKey(key, partitionCount);
    const n = this.next.get(topic) ?? Math.floor(Math.random() * partitionCount);
    this.next.set(topic, (n + 1) % partitionCount);
    return n % partitionCount;
  }

  forget(topic: string): void {
    this.next.delete(topic);
  }
}

export function firstKeyOfRecords(records: RecordInput[]): Uint8Array | null {
  return records.length > 0 ? records[0].key : null;
}
