/**
 * Turning fetched raw batches into records, shared by the low-level Consumer and the GroupConsumer.
 */
import { decodeStoredBatches } from '../batch/index.js';
import type { ConsumedRecord } from './types.js';

/**
 * Decodes raw batches into records at or above `fromOffset` (the first batch may start below it).
 * With `copy`, keys and values are copied out, so a kept record does not pin the whole response
 * buffer; without it they are views, for callers whose buffer belongs to this batch of records alone.
 */
export function decodeFetched(topic: string, partition: number, batches: Uint8Array, fromOffset: number, copy = true): ConsumedRecord[] {
  const out: ConsumedRecord[] = [];
  const bytes = (b: Uint8Array | null): Buffer | null =>
    b === null ? null : copy ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  // Raw fetches are not CRC-checked by the broker: the client verifies every batch (LOG_CORRUPT on a mismatch).
  for (const batch of decodeStoredBatches(batches)) {
    // Control batches (Raft's no-op and membership entries, Kafka's markers) hold no user records.
    if (batch.header.isControl) continue;
    for (const r of batch.records) {
      if (r.offset < fromOffset) continue;
      out.push({ topic, partition, offset: r.offset, timestampMs: r.timestampMs, key: bytes(r.key), value: bytes(r.value), headers: r.headers });
    }
  }
  return out;
}
