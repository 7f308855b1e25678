/**
 * Contract of the partition log (src/storage). One `PartitionLog` per partition, in
 * `<data-dir>/<topic>-<partition>/`, owned by exactly one thread (its shard). Not thread-safe by design.
 *
 * Offsets are JS numbers (see src/model). All reads and writes are of whole Kafka v2 batches.
 */

export type FlushPolicy =
  /** Group commit: every append waiting in one turn shares one fdatasync; `durable` resolves after it. */
  | { kind: 'always' }
  /** fdatasync at most every `intervalMs`; `durable` resolves once the write reached the OS. */
  | { kind: 'interval'; intervalMs: number }
  /** Never fdatasync on our own (close still syncs); `durable` resolves once the write reached the OS. */
  | { kind: 'none' };

/**
 * A byte range of a segment that failed verification during recovery and was followed by a valid batch
 * (corruption, not a torn tail). It is fenced: its offsets are never reused, reads of them answer
 * LOG_CORRUPT, and the log reports itself damaged until the segment is deleted or truncated away.
 */
export interface DamagedRange {
  /** Position and length of the damaged bytes in the segment's .log file. */
  pos: number;
  bytes: number;
  /** The offsets those bytes held: [fromOffset, toOffset). */
  fromOffset: number;
  toOffset: number;
  /** The .log file, for operators. */
  file: string;
  /** What the scan found first (CRC mismatch, bad length, ...). */
  reason: string;
}

export interface LogConfig {
  /** `segment.bytes`: roll the active segment when it would exceed this. */
  segmentBytes: number;
  /** `segment.ms`: roll when the active segment's first batch is older than this. */
  segmentMs: number;
  /** `retention.ms`: delete sealed segments whose newest record is older; -1 = forever. */
  retentionMs: number;
  /** `retention.bytes`: delete oldest sealed segments while the log is larger; -1 = unlimited. */
  retentionBytes: number;
  /** `max.message.bytes`: the largest batch accepted. */
  maxBatchBytes: number;
  flush: FlushPolicy;
  /** `message.timestamp.type`: keep the producer's timestamps, or stamp the broker's append time. */
  timestampType: 'CreateTime' | 'LogAppendTime';
  /** `message.timestamp.before.max.ms` (CreateTime): refuse records older than now - this. */
  timestampBeforeMaxMs: number;
  /** `message.timestamp.after.max.ms` (CreateTime): refuse records newer than now + this. */
  timestampAfterMaxMs: number;
}

export interface AppendOptions {
  /**
   * A client's produce: validate every record (src/batch/validate.ts) under the topic's timestamp
   * configs before anything is written, and apply LogAppendTime. Broker-internal writers of batches
   * they built themselves (or a replica copying its leader's) leave it off.
   */
  produced?: boolean;
}

export interface AppendResult {
  baseOffset: number;
  lastOffset: number;
  /** Broker time of the append, ms. */
  appendTimeMs: number;
  /**
   * Resolves when the appended bytes are durable under the log's flush policy (after the covering
   * fdatasync for `always`). Rejects with a STORAGE_ERROR SluiceError if that fsync failed; after that the
   * log is fenced. Never left unhandled by the log itself: callers that do not wait may ignore it.
   */
  durable: Promise<void>;
}

export interface ReadResult {
  /** Whole batches, concatenated. Empty when `offset` equals the log end offset. */
  data: Uint8Array;
  /** Offset after the last batch returned (= the offset to read next). */
  nextOffset: number;
}

export interface PartitionLogApi {
  readonly dir: string;
  /** First offset still in the log. */
  readonly logStartOffset: number;
  /** Offset the next append gets (log end offset). */
  readonly nextOffset: number;
  /** Total bytes of all segments' .log files. */
  readonly sizeBytes: number;
  readonly config: Readonly<LogConfig>;

  /**
   * Appends one or more concatenated v2 batches. Validates every header and CRC first; on any error
   * throws a typed SluiceError and writes nothing. Patches baseOffset and partitionLeaderEpoch in place
   * in `data` (both outside the CRC), so `data` must be writable and is consumed.
   */
  append(data: Uint8Array, leaderEpoch?: number, options?: AppendOptions): AppendResult;

  /**
   * Whole batches starting with the one containing `offset`, up to `maxBytes` (but always at least one
   * batch when any exists at or after `offset`). Throws OFFSET_OUT_OF_RANGE below logStartOffset or above
   * nextOffset. Batches come from one segment per call (follow `nextOffset`). `maxOffset` (exclusive,
   * optional) stops before any batch reaching it: pass the high watermark to hide uncommitted batches.
   */
  read(offset: number, maxBytes: number, maxOffset?: number): ReadResult;

  /**
   * Same as `read`, but preads straight into `target` (e.g. a SharedArrayBuffer ring slot). Throws
   * INVALID_REQUEST if `target` cannot hold the first batch.
   */
  readInto(offset: number, maxBytes: number, target: Uint8Array, maxOffset?: number): { bytes: number; nextOffset: number };

  /** The first offset whose batch maxTimestamp >= timestampMs, or null when none. */
  offsetForTimestamp(timestampMs: number): number | null;

  /** Applies retention.ms / retention.bytes now; returns the number of segments deleted. */
  enforceRetention(nowMs: number): number;

  /** Removes every batch at or after `offset` (Raft follower truncation). */
  truncateTo(offset: number): void;

  /** Changes config for the future (flush, retention, limits); does not rewrite segments. */
  updateConfig(config: Partial<LogConfig>): void;

  /** Waits for everything appended so far to be fdatasynced. */
  flush(): Promise<void>;

  /** Flushes and closes file handles. */
  close(): Promise<void>;
}
