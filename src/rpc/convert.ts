/**
 * Conversions between the protobuf messages (bigint int64s, Buffers, enums) and the transport-neutral
 * BrokerApi types (numbers, Uint8Array, string unions). Input checks that only the edge can make —
 * an int64 beyond 2^53, a negative offset, an unknown enum — live here and throw SluiceErrors.
 */
import { SluiceError } from '../errors.js';
import { decodeStoredBatches } from '../batch/index.js';
import type { RecordInput } from '../batch/types.js';
import type { Acks, FetchResult, OffsetSpec, PartitionInfo, TopicDescription } from '../broker/types.js';
import { Acks as PbAcks, type Record as PbRecord } from './gen/sluice/v1/records.js';
import { OffsetSpec as PbOffsetSpec, type FetchResponse } from './gen/sluice/v1/broker.js';
import { withEncodedRecords } from './fast-codec.js';
import type { PartitionDescription, TopicDescription as PbTopicDescription } from './gen/sluice/v1/admin.js';

/** A protobuf int64 as a safe JS number, or INVALID_OFFSET/INVALID_REQUEST naming the field. */
export function toSafeNumber(value: bigint, field: string, code: 'INVALID_OFFSET' | 'INVALID_REQUEST' = 'INVALID_REQUEST'): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new SluiceError(code, `${field} ${value} is out of the supported range`);
  }
  return Number(value);
}

export function toOffset(value: bigint, field = 'offset'): number {
  if (value < 0n) throw new SluiceError('INVALID_OFFSET', `${field} must not be negative (got ${value})`);
  return toSafeNumber(value, field, 'INVALID_OFFSET');
}

export function toAcks(acks: PbAcks): Acks {
  switch (acks) {
    case PbAcks.ACKS_UNSPECIFIED:
    case PbAcks.ACKS_ALL:
      return 'all';
    case PbAcks.ACKS_LEADER:
      return 'leader';
    case PbAcks.ACKS_NONE:
      return 'none';
    default:
      throw new SluiceError('INVALID_REQUEST', `unknown acks value ${acks as number}`);
  }
}

export function fromAcks(acks: Acks): PbAcks {
  return acks === 'all' ? PbAcks.ACKS_ALL : acks === 'leader' ? PbAcks.ACKS_LEADER : PbAcks.ACKS_NONE;
}

export function toOffsetSpec(spec: PbOffsetSpec, timestampMs: bigint): OffsetSpec {
  switch (spec) {
    case PbOffsetSpec.OFFSET_SPEC_UNSPECIFIED:
    case PbOffsetSpec.OFFSET_SPEC_LATEST:
      return { kind: 'latest' };
    case PbOffsetSpec.OFFSET_SPEC_EARLIEST:
      return { kind: 'earliest' };
    case PbOffsetSpec.OFFSET_SPEC_TIMESTAMP:
      return { kind: 'timestamp', timestampMs: toSafeNumber(timestampMs, 'timestamp_ms') };
    default:
      throw new SluiceError('INVALID_REQUEST', `unknown offset spec ${spec as number}`);
  }
}

/** Protobuf records → codec input. Absent key/value stay null (tombstones are not empty values). */
export function toRecordInputs(records: PbRecord[]): RecordInput[] {
  const out: RecordInput[] = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    out[i] = {
      key: r.key ?? null,
      value: r.value ?? null,
      headers: r.headers.length === 0 ? undefined : r.headers.map((h) => ({ key: h.key, value: h.value ?? null })),
      timestampMs: r.timestampMs === 0n ? undefined : toSafeNumber(r.timestampMs, 'timestamp_ms'),
    };
  }
  return out;
}

const asPbBytes = (u8: Uint8Array): Buffer => (Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength));

/**
 * Decodes fetched batches into protobuf records, dropping those below `fromOffset`. Each batch's CRC
 * is verified first (a damaged batch is LOG_CORRUPT, never served as data).
 */
export function toPbRecords(batches: Uint8Array, fromOffset: number): PbRecord[] {
  const out: PbRecord[] = [];
  for (const batch of decodeStoredBatches(batches)) {
    // Raft's own entries (leader no-op, membership) are control batches: never shown as records.
    if (batch.header.isControl) continue;
    for (const r of batch.records) {
      if (r.offset < fromOffset) continue;
      out.push({
        key: r.key === null ? undefined : asPbBytes(r.key),
        value: r.value === null ? undefined : asPbBytes(r.value),
        headers: r.headers.map((h) => ({ key: h.key, value: h.value === null ? undefined : asPbBytes(h.value) })),
        timestampMs: BigInt(r.timestampMs),
        offset: BigInt(r.offset),
      });
    }
  }
  return out;
}

/**
 * A FetchResult as a FetchResponse. Structured records come pre-encoded from the shard when the fetch
 * asked for format 'pb-records' (spliced in by the fast encoder); a core that returns raw batches
 * instead (an embedder's fake) gets them decoded here.
 */
export function toFetchResponse(result: FetchResult, fromOffset: number, raw: boolean): FetchResponse {
  const m: FetchResponse = {
    records: raw || result.pbRecords !== undefined ? [] : toPbRecords(result.batches, fromOffset),
    recordBatches: raw ? asPbBytes(result.batches) : Buffer.alloc(0),
    highWatermark: BigInt(result.highWatermark),
    logStartOffset: BigInt(result.logStartOffset),
    nextOffset: BigInt(result.nextOffset),
  };
  return !raw && result.pbRecords !== undefined ? withEncodedRecords(m, result.pbRecords) : m;
}

export function toPbPartition(p: PartitionInfo): PartitionDescription {
  return {
    partition: p.partition,
    logStartOffset: BigInt(p.logStartOffset),
    highWatermark: BigInt(p.highWatermark),
    leader: p.leader,
    replicas: p.replicas,
    sizeBytes: BigInt(p.sizeBytes),
    damagedRanges: p.damagedRanges,
    leaderEpoch: p.leaderEpoch ?? 0,
    inSyncReplicas: p.inSyncReplicas ?? (p.replicas.length === 1 ? p.replicas : []),
  };
}

export function toPbTopic(t: TopicDescription): PbTopicDescription {
  return { name: t.name, partitions: t.partitions.map(toPbPartition), replicationFactor: t.replicationFactor, configs: { ...t.configs } };
}

export function fromPbTopic(t: PbTopicDescription): TopicDescription {
  return {
    name: t.name,
    replicationFactor: t.replicationFactor,
    configs: { ...t.configs },
    partitions: t.partitions.map((p) => ({
      partition: p.partition,
      logStartOffset: Number(p.logStartOffset),
      highWatermark: Number(p.highWatermark),
      leader: p.leader,
      replicas: [...p.replicas],
      sizeBytes: Number(p.sizeBytes),
      damagedRanges: p.damagedRanges,
      leaderEpoch: p.leaderEpoch,
      inSyncReplicas: [...p.inSyncReplicas],
    })),
  };
}
