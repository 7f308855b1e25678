/**
 * The producer-state table of one partition (the idempotent producer, Kafka KIP-98 style): for each
 * producer id, its current epoch and the sequence ranges and offsets of its last
 * PRODUCER_BATCHES_CACHED batches. The partition's append path asks `check` before writing and calls
 * `record` after a successful append; recovery feeds every batch header of the log to `apply`.
 *
 * Pure: no I/O, no clock (callers pass `nowMs`), no timers. The state is a function of the log's batch
 * headers (plus the idle-expiry clock), so any replica that replays the same log builds the same table;
 * `snapshot`/`restore` only save the replay of a long log prefix.
 *
 * Rules for one idempotent batch (producer id >= 0) against the table:
 *  - epoch older than the producer's current one: PRODUCER_FENCED;
 *  - epoch newer than the current one, or a producer not in the table: its sequence must be 0;
 *  - same epoch: a batch whose [first, last] sequence equals a cached one is a duplicate (answered
 *    with the cached offsets, nothing written); otherwise its first sequence must follow the last one
 *    written (sequences wrap from 2^31-1 to 0, as Kafka's); anything else is OUT_OF_ORDER_SEQUENCE.
 *
 * Bounded: at most PRODUCER_STATE_PRODUCERS_MAX producers; the least recently written one is forgotten
 * first (the Map is kept in last-write order, so this is the same on every replica of the log).
 */
import assert from 'node:assert/strict';
import { SluiceError } from '../errors.js';
import { PRODUCER_BATCHES_CACHED, PRODUCER_STATE_PRODUCERS_MAX } from '../constants.js';

/** The producer id of a batch written without idempotence (Kafka's NO_PRODUCER_ID). */
export const NO_PRODUCER_ID = -1n;
/** Sequences are non-negative int32s that wrap to 0 after this. */
const SEQUENCE_MAX = 0x7fffffff;
const SNAPSHOT_VERSION = 1;

/** What the table needs from a v2 batch header. */
export interface BatchIdentity {
  producerId: bigint;
  producerEpoch: number;
  baseSequence: number;
  /** recordCount (= lastOffsetDelta + 1 in a valid batch). */
  recordCount: number;
}

/** A batch as recovery scans it: its identity, where it sits, and its newest timestamp. */
export interface ScannedBatch extends BatchIdentity {
  baseOffset: number;
  maxTimestampMs: number;
}

export interface CachedBatch {
  firstSeq: number;
  lastSeq: number;
  baseOffset: number;
  lastOffset: number;
  /** Broker append time; -1 when rebuilt from the log (the header does not carry it). */
  appendTimeMs: number;
}

interface ProducerEntry {
  epoch: number;
  /** Oldest first; at most PRODUCER_BATCHES_CACHED. */
  batches: CachedBatch[];
  lastSeenMs: number;
}

export type CheckResult =
  | { kind: 'append' }
  | { kind: 'duplicate'; baseOffset: number; lastOffset: number; appendTimeMs: number }
  | { kind: 'error'; error: SluiceError };

const APPEND: CheckResult = Object.freeze({ kind: 'append' });

/** The sequence `n` after `seq`, wrapping past 2^31-1 to 0. */
export function addSequence(seq: number, n: number): number {
  return (seq + n) % (SEQUENCE_MAX + 1);
}

function lastSequenceOf(b: BatchIdentity): number {
  return addSequence(b.baseSequence, b.recordCount - 1);
}

const outOfOrder = (message: string): CheckResult => ({ kind: 'error', error: new SluiceError('OUT_OF_ORDER_SEQUENCE', message) });

export class ProducerStateTable {
  private readonly producers = new Map<bigint, ProducerEntry>();

  constructor(private readonly producersMax = PRODUCER_STATE_PRODUCERS_MAX) {}

  get size(): number {
    return this.producers.size;
  }

  /** The cached state of one producer (tests, diagnostics). */
  entry(producerId: bigint): Readonly<{ epoch: number; batches: readonly CachedBatch[]; lastSeenMs: number }> | undefined {
    return this.producers.get(producerId);
  }

  /**
   * Decides what an append of these batches (one request, in order) must do. Batches without a
   * producer id are always appended. An idempotent request carries one producer's batches only; it is
   * either entirely a retry of cached batches (`duplicate`, spanning them) or entirely new and in order.
   */
  check(batches: readonly BatchIdentity[]): CheckResult {
    assert.ok(batches.length > 0, 'check needs at least one batch');
    const first = batches[0];
    if (first.producerId === NO_PRODUCER_ID) {
      for (const b of batches) {
        if (b.producerId !== NO_PRODUCER_ID) return invalid('a request mixes idempotent and plain batches');
      }
      return APPEND;
    }
    for (const b of batches) {
      if (b.producerId !== first.producerId || b.producerEpoch !== first.producerEpoch) {
        return invalid('an idempotent request carries the batches of one producer id and epoch');
      }
      if (b.producerId < 0n || b.producerEpoch < 0 || b.baseSequence < 0) {
        return invalid(`producer id ${b.producerId}, epoch ${b.producerEpoch}, base sequence ${b.baseSequence}: none may be negative`);
      }
    }
    const entry = this.producers.get(first.producerId);
    if (entry !== undefined && first.producerEpoch < entry.epoch) {
      return {
        kind: 'error',
        error: new SluiceError(
          'PRODUCER_FENCED',
          `producer ${first.producerId} epoch ${first.producerEpoch} is fenced: epoch ${entry.epoch} has written to this partition`,
        ),
      };
    }
    if (entry !== undefined && first.producerEpoch === entry.epoch) {
      const dup = this.findDuplicate(entry, batches);
      if (dup !== null) return dup;
    }
    const continuesEpoch = entry !== undefined && first.producerEpoch === entry.epoch;
    let expected = continuesEpoch ? addSequence(entry.batches[entry.batches.length - 1].lastSeq, 1) : 0;
    for (const b of batches) {
      if (b.baseSequence !== expected) {
        const why = continuesEpoch
          ? `expected sequence ${expected} (after ${entry.batches[entry.batches.length - 1].lastSeq})`
          : entry === undefined
            ? 'the broker has no state for it (new, or expired after being idle); a first batch has sequence 0'
            : `epoch ${first.producerEpoch} is new here, so it starts at sequence 0`;
        return outOfOrder(`producer ${first.producerId} epoch ${first.producerEpoch} sent base sequence ${b.baseSequence}: ${why}`);
      }
      expected = addSequence(lastSequenceOf(b), 1);
    }
    return APPEND;
  }

  /** A request that is exactly a run of cached batches (the common retry is one batch). */
  private findDuplicate(entry: ProducerEntry, batches: readonly BatchIdentity[]): CheckResult | null {
    const cached = entry.batches;
    const start = cached.findIndex((c) => c.firstSeq === batches[0].baseSequence);
    if (start < 0) return null;
    if (cached[start].lastSeq !== lastSequenceOf(batches[0])) {
      return outOfOrder(
        `producer ${batches[0].producerId} re-sent sequence ${batches[0].baseSequence} with ${batches[0].recordCount} records; the batch written at that sequence ends at ${cached[start].lastSeq}`,
      );
    }
    for (let i = 1; i < batches.length; i++) {
      const c = cached[start + i];
      if (c === undefined || c.firstSeq !== batches[i].baseSequence || c.lastSeq !== lastSequenceOf(batches[i])) {
        return outOfOrder(`producer ${batches[0].producerId}: a request mixes re-sent and new batches`);
      }
    }
    const last = cached[start + batches.length - 1];
    return { kind: 'duplicate', baseOffset: cached[start].baseOffset, lastOffset: last.lastOffset, appendTimeMs: cached[start].appendTimeMs };
  }

  /** Records batches that `check` allowed and the log appended from `baseOffset` on, in order. */
  record(batches: readonly BatchIdentity[], baseOffset: number, appendTimeMs: number): void {
    let offset = baseOffset;
    for (const b of batches) {
      if (b.producerId !== NO_PRODUCER_ID) this.add(b, offset, appendTimeMs, appendTimeMs);
      offset += b.recordCount;
    }
  }

  /** Replays one batch from the log (recovery, or a replica applying its log). Trusts it: the log is the truth. */
  apply(batch: ScannedBatch): void {
    if (batch.producerId === NO_PRODUCER_ID) return;
    this.add(batch, batch.baseOffset, -1, batch.maxTimestampMs);
  }

  private add(b: BatchIdentity, baseOffset: number, appendTimeMs: number, seenMs: number): void {
    let entry = this.producers.get(b.producerId);
    if (entry === undefined || b.producerEpoch !== entry.epoch) entry = { epoch: b.producerEpoch, batches: [], lastSeenMs: seenMs };
    // Re-inserted on every write: the Map's first key is the least recently written producer.
    this.producers.delete(b.producerId);
    this.producers.set(b.producerId, entry);
    if (this.producers.size > this.producersMax) this.producers.delete(this.producers.keys().next().value!);
    entry.batches.push({ firstSeq: b.baseSequence, lastSeq: lastSequenceOf(b), baseOffset, lastOffset: baseOffset + b.recordCount - 1, appendTimeMs });
    if (entry.batches.length > PRODUCER_BATCHES_CACHED) entry.batches.shift();
    if (seenMs > entry.lastSeenMs) entry.lastSeenMs = seenMs;
  }

  /** Forgets producers idle for `idleMs` or more (Kafka's producer.id.expiration.ms); returns how many. */
  expire(nowMs: number, idleMs: number): number {
    let n = 0;
    for (const [id, e] of this.producers) {
      if (nowMs - e.lastSeenMs >= idleMs) {
        this.producers.delete(id);
        n++;
      }
    }
    return n;
  }

  /** A plain, JSON-able copy of the table. `restore` of it builds an equal table. */
  snapshot(): ProducerStateSnapshot {
    const producers: ProducerStateSnapshot['producers'] = [];
    for (const [id, e] of this.producers) {
      producers.push({ id: id.toString(), epoch: e.epoch, lastSeenMs: e.lastSeenMs, batches: e.batches.map((b) => ({ ...b })) });
    }
    return { version: SNAPSHOT_VERSION, producers };
  }

  /** Builds a table from a snapshot; throws LOG_CORRUPT if it is not one this version wrote. */
  static restore(snap: unknown, producersMax = PRODUCER_STATE_PRODUCERS_MAX): ProducerStateTable {
    const table = new ProducerStateTable(producersMax);
    const s = snap as ProducerStateSnapshot;
    const bad = (why: string): SluiceError => new SluiceError('LOG_CORRUPT', `producer-state snapshot is invalid: ${why}`);
    if (s === null || typeof s !== 'object' || s.version !== SNAPSHOT_VERSION || !Array.isArray(s.producers)) throw bad('unknown version or shape');
    for (const p of s.producers) {
      if (typeof p?.id !== 'string' || !/^\d{1,19}$/.test(p.id) || !Number.isInteger(p.epoch) || !Number.isFinite(p.lastSeenMs) || !Array.isArray(p.batches)) {
        throw bad('malformed producer entry');
      }
      if (p.batches.length === 0 || p.batches.length > PRODUCER_BATCHES_CACHED) throw bad(`producer ${p.id} has ${p.batches.length} batches`);
      const batches = p.batches.map((b) => {
        const ok = [b?.firstSeq, b?.lastSeq, b?.baseOffset, b?.lastOffset, b?.appendTimeMs].every((v) => Number.isSafeInteger(v));
        if (!ok || b.lastOffset < b.baseOffset) throw bad(`producer ${p.id} has a malformed batch`);
        return { firstSeq: b.firstSeq, lastSeq: b.lastSeq, baseOffset: b.baseOffset, lastOffset: b.lastOffset, appendTimeMs: b.appendTimeMs };
      });
      table.producers.set(BigInt(p.id), { epoch: p.epoch, lastSeenMs: p.lastSeenMs, batches });
    }
    return table;
  }
}

export interface ProducerStateSnapshot {
  version: number;
  producers: Array<{ id: string; epoch: number; lastSeenMs: number; batches: CachedBatch[] }>;
}

function invalid(message: string): CheckResult {
  return { kind: 'error', error: new SluiceError('INVALID_REQUEST', message) };
}
