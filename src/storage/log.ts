/**
 * PartitionLog: the segmented, durable log of one partition. Owned by one thread; every method but
 * the fdatasync completion runs synchronously on it.
 *
 * Invariants (checked by test/storage):
 *  - offsets are gapless: segment[i].nextOffset === segment[i+1].baseOffset, and every batch's
 *    baseOffset is the previous batch's lastOffset + 1;
 *  - an append either writes all its batches or throws and leaves the log unchanged;
 *  - with flush=always, `durable` resolves only after an fdatasync that started after the write;
 *  - after an fsync error nothing more is written (the log is fenced until reopened);
 *  - sealed segments are fdatasynced (log and indexes) before the next segment receives a byte, so
 *    recovery may trust them and validate only the active one.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { SluiceError } from '../errors.js';
import { INDEX_INTERVAL_BYTES } from '../constants.js';
import { asBuffer, validateBatches, patchBatch, BATCH_HEADER_BYTES, BATCH_LOG_OVERHEAD_BYTES, OFF_ATTRIBUTES, OFF_LEADER_EPOCH } from '../batch/codec.js';
import { validateLogConfig } from './config.js';
import { FILE_MODE, NODE_FS, type StorageFs, fsyncDir, mkdirOwnerOnly, storageError, writeFully, readFully } from './io.js';
import { HeaderWalker, FileWindow, scanBatches } from './scan.js';
import { Segment } from './segment.js';
import { recoverSegments, CLEAN_SHUTDOWN_FILE, type RecoveryReport } from './recovery.js';
import { validateProducedRecords } from '../batch/validate.js';
import { withTestHooks } from './test-hooks.js';
import type { AppendOptions, AppendResult, DamagedRange, LogConfig, PartitionLogApi, ReadResult } from './types.js';

export interface LogOpenOptions {
  /** Clock for append time, segment.ms and retention; defaults to Date.now. */
  nowMs?: () => number;
  /** Test seam for fault injection: replaces fs.fdatasync (same signature). */
  fdatasync?: (fd: number, callback: (err: NodeJS.ErrnoException | null) => void) => void;
  /** Test seam: replaces fs.fdatasyncSync, used when sealing a segment and on close. */
  fdatasyncSync?: (fd: number) => void;
  /** Bytes between offset-index entries; defaults to INDEX_INTERVAL_BYTES. */
  indexIntervalBytes?: number;
  /**
   * Test seam: the file system the log lives on; defaults to node:fs. The simulator passes an
   * in-memory disk (test/sim/sim-fs.ts). `fdatasync`/`fdatasyncSync` above, when given, still win.
   */
  fs?: StorageFs;
}

interface SyncGeneration {
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** The control bit of a batch's attributes (Raft's no-op and membership batches). */
const CONTROL_ATTRIBUTE = 0x20;
const OFF_LAST_OFFSET_DELTA = 23;
const OFF_BASE_TIMESTAMP = 27;
const OFF_MAX_TIMESTAMP = 35;
const RESOLVED = Promise.resolve();
const noop = (): void => {};

function newGeneration(): SyncGeneration {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The log never leaves its own promise unhandled: callers that do not wait may ignore `durable`.
  promise.catch(noop);
  return { promise, resolve, reject };
}

function readI64(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * 2 ** 32 + buf.readUInt32BE(at + 4);
}

export class PartitionLog implements PartitionLogApi {
  private segments: Segment[];
  private cfg: LogConfig;
  private readonly nowMs: () => number;
  private readonly fdatasync: NonNullable<LogOpenOptions['fdatasync']>;
  private readonly fdatasyncSync: (fd: number) => void;
  private readonly indexIntervalBytes: number;
  private readonly fs: StorageFs;
  private readonly walker = new HeaderWalker();
  /** Segments written since their last fdatasync started. */
  private readonly dirty = new Set<Segment>();
  private syncInFlight = false;
  /** The generation the running fdatasync round completes (null when none runs). */
  private syncingGen: SyncGeneration | null = null;
  /** The generation the next fdatasync round will complete (appends join it). */
  private nextGen: SyncGeneration | null = null;
  private syncScheduled = false;
  private intervalTimer: NodeJS.Timeout | null = null;
  private fencedBy: SluiceError | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  private totalBytes = 0;
  /** What recovery found when the log was opened. */
  readonly recovery: RecoveryReport;

  private constructor(
    readonly dir: string,
    config: LogConfig,
    segments: Segment[],
    recovery: RecoveryReport,
    untested: LogOpenOptions,
  ) {
    // TEST-ONLY fault hooks (chaos harness); the identity unless a SLUICE_TEST_* variable is set.
    const options = withTestHooks(untested);
    this.cfg = { ...config, flush: { ...config.flush } };
    this.segments = segments;
    this.recovery = recovery;
    this.nowMs = options.nowMs ?? Date.now;
    this.fs = options.fs ?? NODE_FS;
    this.fdatasync = options.fdatasync ?? this.fs.fdatasync;
    this.fdatasyncSync = options.fdatasyncSync ?? this.fs.fdatasyncSync;
    this.indexIntervalBytes = options.indexIntervalBytes ?? INDEX_INTERVAL_BYTES;
    for (const s of segments) this.totalBytes += s.size;
    this.armIntervalTimer();
  }

  /**
   * Opens (creating it if needed) the log in `dir` and recovers it: sealed segments are trusted
   * (their indexes checked and the tail walked), the active segment is validated batch by batch with
   * CRCs unless the last close was clean, a torn or corrupt tail is truncated, bad indexes rebuilt.
   * Throws LOG_CORRUPT naming file and position for corruption inside a sealed segment.
   */
  static async open(dir: string, config: LogConfig, options: LogOpenOptions = {}): Promise<PartitionLog> {
    validateLogConfig(config);
    const indexIntervalBytes = options.indexIntervalBytes ?? INDEX_INTERVAL_BYTES;
    const sfs = options.fs ?? NODE_FS;
    let created: string | undefined;
    try {
      created = mkdirOwnerOnly(dir, sfs);
    } catch (err) {
      throw storageError(`cannot create log directory ${dir}`, err);
    }
    if (created !== undefined) fsyncDir(path.dirname(path.resolve(dir)), sfs);
    const { segments, report } = recoverSegments(dir, indexIntervalBytes, (options.nowMs ?? Date.now)(), sfs);
    return new PartitionLog(dir, config, segments, report, options);
  }

  /** The file system the log lives on (node:fs but in the simulator): the partition's state files go there too. */
  get storageFs(): StorageFs {
    return this.fs;
  }

  get config(): Readonly<LogConfig> {
    return this.cfg;
  }

  get logStartOffset(): number {
    return this.segments[0].baseOffset;
  }

  get nextOffset(): number {
    return this.active.nextOffset;
  }

  get sizeBytes(): number {
    return this.totalBytes;
  }

  /** Number of segments (for tests, metrics). */
  get segmentCount(): number {
    return this.segments.length;
  }

  /** Base offsets of all segments, oldest first. */
  segmentBaseOffsets(): number[] {
    return this.segments.map((s) => s.baseOffset);
  }

  /** Non-null once an fsync failed: the error every write now throws. */
  get fenced(): SluiceError | null {
    return this.fencedBy;
  }

  private get active(): Segment {
    return this.segments[this.segments.length - 1];
  }

  private checkOpen(): void {
    if (this.closed) throw new SluiceError('LOG_CLOSED', `log ${this.dir} is closed`);
  }

  private checkWritable(): void {
    this.checkOpen();
    if (this.closing) throw new SluiceError('LOG_CLOSED', `log ${this.dir} is closing`);
    if (this.fencedBy) throw this.fencedBy;
  }

  // --- Append ----------------------------------------------------------------------------------

  append(data: Uint8Array, leaderEpoch = 0, options?: AppendOptions): AppendResult {
    this.checkWritable();
    const buf = asBuffer(data);
    const summary = validateBatches(buf, this.cfg.maxBatchBytes);
    const now = this.nowMs();
    if (options?.produced) {
      const c = this.cfg;
      validateProducedRecords(buf, { nowMs: now, timestampType: c.timestampType, timestampBeforeMaxMs: c.timestampBeforeMaxMs, timestampAfterMaxMs: c.timestampAfterMaxMs });
    }
    this.maybeRoll(summary.sizeBytes, now);
    const baseOffset = this.active.nextOffset;
    let offset = baseOffset;
    for (let pos = 0; pos < buf.length; ) {
      patchBatch(buf, pos, offset, leaderEpoch);
      offset += buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA) + 1;
      pos += buf.readInt32BE(pos + 8) + BATCH_LOG_OVERHEAD_BYTES;
    }
    return this.writeValidated(buf, baseOffset, offset - 1, now);
  }

  /**
   * Appends batches written by a leader, verbatim: offsets, epochs and CRCs unchanged. Checks
   * continuity (the first baseOffset is nextOffset, each next one follows the previous lastOffset) and
   * that epochs never decrease; writes nothing when a check fails (INVALID_OFFSET / CORRUPT_BATCH).
   */
  appendReplicated(data: Uint8Array, lastEpoch = -1): AppendResult {
    this.checkWritable();
    const buf = asBuffer(data);
    const summary = validateBatches(buf, this.cfg.maxBatchBytes);
    const baseOffset = this.active.nextOffset;
    let expect = baseOffset;
    let epoch = lastEpoch;
    for (let pos = 0; pos < buf.length; ) {
      const base = readI64(buf, pos);
      if (base !== expect) throw new SluiceError('INVALID_OFFSET', `replicated batch has baseOffset ${base}, the log expects ${expect} in ${this.dir}`);
      const e = buf.readInt32BE(pos + OFF_LEADER_EPOCH);
      if (e < epoch) throw new SluiceError('CORRUPT_BATCH', `replicated batch at offset ${base} has epoch ${e}, below ${epoch}`);
      epoch = e;
      expect += buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA) + 1;
      pos += buf.readInt32BE(pos + 8) + BATCH_LOG_OVERHEAD_BYTES;
    }
    const now = this.nowMs();
    this.maybeRoll(summary.sizeBytes, now);
    return this.writeValidated(buf, baseOffset, expect - 1, now);
  }

  /** Writes validated, offset-assigned batches at the end of the active segment. */
  private writeValidated(buf: Buffer, baseOffset: number, lastOffset: number, now: number): AppendResult {
    const seg = this.active;
    assert.equal(baseOffset, seg.nextOffset, 'batches must continue the log');
    const startPos = seg.size;
    try {
      writeFully(seg.fd, buf, 0, buf.length, startPos, this.fs);
    } catch (err) {
      this.undoPartialWrite(seg, startPos, err);
    }
    for (let pos = 0; pos < buf.length; ) {
      const size = buf.readInt32BE(pos + 8) + BATCH_LOG_OVERHEAD_BYTES;
      const base = readI64(buf, pos);
      seg.onBatch(base - seg.baseOffset, startPos + pos, size, buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA), readI64(buf, pos + OFF_MAX_TIMESTAMP));
      pos += size;
    }
    this.totalBytes += buf.length;
    // Index entries of the active segment stay in memory until it is sealed or the log closes: after
    // a crash recovery rebuilds them from the CRC scan anyway, and writing them here would add two
    // more dirty files to every group-commit fdatasync (ext4 data=ordered flushes them with the journal).
    this.dirty.add(seg);
    if (seg.rollStartMs === null) seg.rollStartMs = now;
    return { baseOffset, lastOffset, appendTimeMs: now, durable: this.durableFor() };
  }

  /** A failed write may have left part of the batches on disk: cut them off, or fence if we cannot. */
  private undoPartialWrite(seg: Segment, startPos: number, err: unknown): never {
    const failure = storageError(`write to ${seg.logPath} failed`, err);
    try {
      this.fs.ftruncateSync(seg.fd, startPos);
    } catch (truncErr) {
      this.fence(storageError(`cannot undo a failed write to ${seg.logPath}`, truncErr));
    }
    throw failure;
  }

  private durableFor(): Promise<void> {
    if (this.cfg.flush.kind !== 'always') return RESOLVED;
    return this.requestSync();
  }

  private maybeRoll(incomingBytes: number, now: number): void {
    const seg = this.active;
    if (seg.size === 0) return;
    const full = seg.size + incomingBytes > this.cfg.segmentBytes;
    const old = seg.rollStartMs !== null && now - seg.rollStartMs >= this.cfg.segmentMs;
    if (full || old) this.roll();
  }

  /**
   * Seals the active segment (final time-index entry, fdatasync of log and indexes) and starts a new
   * one at nextOffset, fsyncing the directory. The sync makes sealed segments trustworthy on recovery.
   */
  private roll(): void {
    const seg = this.active;
    try {
      seg.sealTimeIndex();
      seg.persistIndexes();
    } catch (err) {
      // Nothing was synced yet, so nothing is fenced: a full disk refuses this roll (DISK_FULL) and the
      // next append tries again; the index writes are idempotent.
      throw this.fenceUnlessDiskFull(storageError(`cannot write the indexes of ${seg.logPath}`, err));
    }
    try {
      seg.fdatasyncAllSync(this.fdatasyncSync);
    } catch (err) {
      throw this.fence(storageError(`fdatasync while sealing ${seg.logPath} failed`, err));
    }
    this.startSegment(seg.nextOffset);
  }

  /** Creates the next active segment at `baseOffset` and makes its name durable. */
  private startSegment(baseOffset: number): void {
    let next: Segment;
    try {
      next = Segment.create(this.dir, baseOffset, this.indexIntervalBytes, this.fs);
    } catch (err) {
      throw this.fenceUnlessDiskFull(storageError(`cannot create segment ${baseOffset} in ${this.dir}`, err));
    }
    try {
      fsyncDir(this.dir, this.fs);
    } catch (err) {
      next.close();
      throw this.fence(storageError(`fsync of directory ${this.dir} failed`, err));
    }
    this.segments.push(next);
    // A new segment may reuse the fd number of a deleted one: drop any cached header bytes.
    this.walker.invalidate();
  }

  /** DISK_FULL passes through (retriable, nothing half-done); any other failure fences the log. */
  private fenceUnlessDiskFull(err: SluiceError): SluiceError {
    return err.code === 'DISK_FULL' ? err : this.fence(err);
  }

  // --- Durability ------------------------------------------------------------------------------

  /** Joins the next fdatasync round, starting one at the end of this turn if none is running. */
  private requestSync(): Promise<void> {
    if (this.fencedBy) {
      const failed = Promise.reject(this.fencedBy);
      failed.catch(noop);
      return failed;
    }
    if (this.nextGen === null) this.nextGen = newGeneration();
    if (!this.syncInFlight && !this.syncScheduled) {
      this.syncScheduled = true;
      // A promise reaction, not queueMicrotask: same queue and order, but queueMicrotask builds an
      // AsyncResource per call, which cost as much as the record walk of a 1,000-record batch (measured).
      void RESOLVED.then(this.startSyncFn);
    }
    return this.nextGen.promise;
  }

  private readonly startSyncFn = (): void => this.startSync();

  private startSync(): void {
    this.syncScheduled = false;
    const gen = this.nextGen;
    if (gen === null || this.syncInFlight) return;
    this.nextGen = null;
    if (this.fencedBy) {
      gen.reject(this.fencedBy);
      return;
    }
    const segs = [...this.dirty].sort((a, b) => a.baseOffset - b.baseOffset);
    this.dirty.clear();
    this.syncInFlight = true;
    this.syncingGen = gen;
    for (const s of segs) s.syncsInFlight++;
    this.syncEach(segs, 0, (err) => {
      for (const s of segs) s.syncDone();
      this.syncInFlight = false;
      this.syncingGen = null;
      if (err) {
        const failure = storageError(`fdatasync of ${this.dir} failed`, err);
        this.fence(failure);
        gen.reject(failure);
        if (this.nextGen) {
          this.nextGen.reject(failure);
          this.nextGen = null;
        }
        return;
      }
      gen.resolve();
      if (this.nextGen !== null) this.startSync();
    });
  }

  /** fdatasyncs segments one after another, oldest first, so a synced newer segment implies synced older ones. */
  private syncEach(segs: Segment[], i: number, done: (err: NodeJS.ErrnoException | null) => void): void {
    if (i >= segs.length) return done(null);
    this.fdatasync(segs[i].fd, (err) => (err ? done(err) : this.syncEach(segs, i + 1, done)));
  }

  /** Refuses all further writes. Never retried: after a failed fsync the page cache may lie. */
  private fence(cause: SluiceError): SluiceError {
    if (!this.fencedBy) {
      this.fencedBy = new SluiceError('LOG_FENCED', `log ${this.dir} refuses writes after a storage failure: ${cause.message}`, { cause });
    }
    return this.fencedBy;
  }

  private armIntervalTimer(): void {
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.intervalTimer = null;
    const f = this.cfg.flush;
    if (f.kind !== 'interval' || this.closed) return;
    this.intervalTimer = setInterval(() => {
      if (this.dirty.size > 0 && !this.fencedBy) void this.requestSync().catch(noop);
    }, f.intervalMs);
    this.intervalTimer.unref();
  }

  flush(): Promise<void> {
    this.checkOpen();
    if (this.fencedBy) return Promise.reject(this.fencedBy);
    if (this.dirty.size === 0) {
      if (!this.syncInFlight) return RESOLVED;
      // Nothing was written since the running round took the dirty segments, so that round covers
      // every write so far: wait for it rather than queue an empty round behind it (a generation, a
      // promise and another pass through startSync per batch: the Raft driver flushes each Ready
      // right after the append that started the round).
      if (this.syncingGen !== null) return this.syncingGen.promise;
    }
    return this.requestSync();
  }

  // --- Reads -----------------------------------------------------------------------------------

  private checkRange(offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < this.logStartOffset || offset > this.nextOffset) {
      throw new SluiceError(
        'OFFSET_OUT_OF_RANGE',
        `offset ${offset} is outside the log [${this.logStartOffset}, ${this.nextOffset}] of ${this.dir}`,
      );
    }
  }

  /** The segment holding `offset` (binary search on base offsets). */
  private segmentIndexFor(offset: number): number {
    let lo = 0;
    let hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.segments[mid].baseOffset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * Finds the batch containing `offset` in `seg` (index floor, then a forward header walk) and leaves
   * its header in `walker.view`. Returns false when the segment holds no batch at or after it.
   */
  private locate(seg: Segment, offset: number): boolean {
    if (seg.damage.length > 0) this.checkNotDamaged(seg, offset);
    const i = seg.offsetIndex.floor(offset - seg.baseOffset);
    let pos = i < 0 ? 0 : seg.offsetIndex.pos[i];
    let expect = i < 0 ? seg.baseOffset : seg.baseOffset + seg.offsetIndex.rel[i];
    const v = this.walker.view;
    while (pos < seg.size) {
      const d = seg.damage.length > 0 ? seg.damageAt(pos) : undefined;
      if (d) {
        pos += d.bytes;
        expect = d.toOffset;
        continue;
      }
      if (!this.walker.at(seg, pos)) break;
      // A header the walk lands on must continue the offsets: a damaged baseOffset or length is not data.
      if (v.baseOffset !== expect) {
        throw new SluiceError('LOG_CORRUPT', `${seg.logPath}: the batch at position ${pos} has baseOffset ${v.baseOffset}, expected ${expect}`);
      }
      if (v.lastOffset >= offset) return true;
      expect = v.lastOffset + 1;
      pos += v.size;
    }
    return false;
  }

  /** Reads of a fenced range answer LOG_CORRUPT, naming the file, the bytes and the offsets lost. */
  private checkNotDamaged(seg: Segment, offset: number): void {
    const d = seg.damageForOffset(offset);
    if (d === undefined) return;
    throw new SluiceError(
      'LOG_CORRUPT',
      `offset ${offset} of ${this.dir} is in a damaged range: offsets [${d.fromOffset}, ${d.toOffset}) in ${d.file}, ` +
        `${d.bytes} bytes at position ${d.pos} (${d.reason}); read from offset ${d.toOffset} to skip it`,
    );
  }

  /** How many fenced ranges the log holds (0 on a healthy log); cheap, for periodic stats. */
  get damagedRangeCount(): number {
    let n = 0;
    for (const s of this.segments) n += s.damage.length;
    return n;
  }

  /** Every fenced range of the log, oldest first (empty on a healthy log). */
  get damagedRanges(): DamagedRange[] {
    const out: DamagedRange[] = [];
    for (const s of this.segments) if (s.damage.length > 0) out.push(...s.damage);
    return out;
  }

  /** Locates the first batch at or after `offset`, moving to later segments when needed. */
  private locateFrom(offset: number): Segment | null {
    for (let si = this.segmentIndexFor(offset); si < this.segments.length; si++) {
      const seg = this.segments[si];
      if (seg.size > 0 && this.locate(seg, Math.max(offset, seg.baseOffset))) return seg;
    }
    return null;
  }

  /**
   * Whole batches from the one containing `offset`, up to `maxBytes` (at least one batch), within one
   * segment. `maxOffset` (exclusive, optional) stops before any batch that reaches it: pass the high
   * watermark so uncommitted batches are never returned.
   */
  read(offset: number, maxBytes: number, maxOffset?: number): ReadResult {
    this.checkOpen();
    this.checkRange(offset);
    const seg = this.locateFrom(offset);
    if (seg === null) return { data: new Uint8Array(0), nextOffset: offset };
    const v = this.walker.view;
    if (maxOffset !== undefined && v.lastOffset >= maxOffset) return { data: new Uint8Array(0), nextOffset: offset };
    const want = Math.max(v.size, Math.min(maxBytes, this.readEnd(seg, v.pos) - v.pos));
    const out = Buffer.allocUnsafe(want);
    const { bytes, nextOffset } = this.fill(seg, v.pos, v.size, v.baseOffset, out, maxOffset);
    return { data: out.subarray(0, bytes), nextOffset };
  }

  readInto(offset: number, maxBytes: number, target: Uint8Array, maxOffset?: number): { bytes: number; nextOffset: number } {
    this.checkOpen();
    this.checkRange(offset);
    const seg = this.locateFrom(offset);
    if (seg === null) return { bytes: 0, nextOffset: offset };
    const v = this.walker.view;
    if (maxOffset !== undefined && v.lastOffset >= maxOffset) return { bytes: 0, nextOffset: offset };
    if (v.size > target.length) {
      throw new SluiceError('INVALID_REQUEST', `target of ${target.length} bytes cannot hold the ${v.size}-byte batch at offset ${v.baseOffset}`);
    }
    const want = Math.max(v.size, Math.min(maxBytes, this.readEnd(seg, v.pos) - v.pos, target.length));
    return this.fill(seg, v.pos, v.size, v.baseOffset, asBuffer(target).subarray(0, want), maxOffset);
  }

  /** Where a contiguous read from `pos` must stop: the segment end, or the next fenced range. */
  private readEnd(seg: Segment, pos: number): number {
    return seg.damage.length === 0 ? seg.size : seg.readLimit(pos);
  }

  /**
   * Preads into `out` from `pos`, then cuts at the last whole batch (and before maxOffset). A header
   * that does not continue the chain (damaged length or baseOffset) ends the read before it; the next
   * read starts there and answers LOG_CORRUPT from `locate`.
   */
  private fill(
    seg: Segment,
    pos: number,
    firstSize: number,
    firstBase: number,
    out: Buffer,
    maxOffset: number | undefined,
  ): { bytes: number; nextOffset: number } {
    const got = readFully(seg.fd, out, 0, out.length, pos, this.fs);
    if (got < firstSize) throw new SluiceError('STORAGE_ERROR', `short read of ${seg.logPath} at position ${pos}`);
    let end = 0;
    let next = firstBase;
    while (end + OFF_BASE_TIMESTAMP <= got) {
      const size = out.readInt32BE(end + 8) + BATCH_LOG_OVERHEAD_BYTES;
      if (size < BATCH_HEADER_BYTES || end + size > got) break;
      const base = readI64(out, end);
      if (base !== next && end > 0) break;
      const last = base + out.readInt32BE(end + OFF_LAST_OFFSET_DELTA);
      if (maxOffset !== undefined && last >= maxOffset && end > 0) break;
      end += size;
      next = last + 1;
    }
    return { bytes: end, nextOffset: next };
  }

  offsetForTimestamp(timestampMs: number): number | null {
    this.checkOpen();
    for (const seg of this.segments) {
      if (seg.size === 0 || seg.maxTimestamp < timestampMs) continue;
      const t = seg.timeIndex.lastBelow(timestampMs);
      let startOffset = t < 0 ? seg.baseOffset : seg.baseOffset + seg.timeIndex.rel[t];
      for (let d = seg.damageForOffset(startOffset); d !== undefined; d = seg.damageForOffset(startOffset)) startOffset = d.toOffset;
      if (startOffset >= seg.nextOffset) continue;
      if (!this.locate(seg, startOffset)) continue;
      const v = this.walker.view;
      let pos = v.pos;
      while (pos < seg.size) {
        const d = seg.damage.length > 0 ? seg.damageAt(pos) : undefined;
        if (d) {
          pos += d.bytes;
          continue;
        }
        if (!this.walker.at(seg, pos)) break;
        if (v.maxTimestamp >= timestampMs) return v.baseOffset;
        pos += v.size;
      }
    }
    return null;
  }

  // --- Retention and truncation ----------------------------------------------------------------

  /**
   * Applies retention.ms / retention.bytes now; returns the number of segments deleted. The log start
   * never moves above `maxLogStart` (the partition passes its high watermark, so only committed data
   * is dropped), and `beforeDelete(newLogStart)` runs before the first file goes: the partition records
   * the new start in its Raft snapshot there, so the log start comes from Raft state.
   */
  enforceRetention(nowMs: number, maxLogStart = Number.MAX_SAFE_INTEGER, beforeDelete?: (newLogStart: number) => void): number {
    this.checkWritable();
    const { retentionMs, retentionBytes } = this.cfg;
    const newest = this.newestTimestamps();
    const expired = (s: Segment): boolean => retentionMs >= 0 && s.size > 0 && nowMs - (newest.get(s) ?? Infinity) > retentionMs;
    const allExpired = this.segments.every(expired);
    // Sealed segments go first: on a full disk that frees the space the roll below needs.
    let deleted = this.deleteOldestWhile(expired, retentionBytes, maxLogStart, beforeDelete);
    // An expired active segment is rolled so that it can go too (Kafka does the same), once all of it
    // may go (every offset in it is below `maxLogStart`).
    if (allExpired && this.segments.length === 1 && expired(this.active) && this.nextOffset <= maxLogStart) {
      this.rollExpiredActive();
      deleted += this.deleteOldestWhile(expired, retentionBytes, maxLogStart, beforeDelete);
    }
    return deleted;
  }

  /**
   * The timestamp retention.ms ages each segment by: its newest batch's, except for a segment with no
   * timestamp above 0 (only Raft's control batches, a term's no-op, which carry timestamp 0), which is
   * as old as the next segment that has one (everything there was written after it), or never expires
   * when none follows. Aged by its own 0, a leader's first segment, holding only its no-op, was deleted
   * as soon as it rolled, and its log start moved past its followers' (chaos finding D).
   */
  private newestTimestamps(): Map<Segment, number> {
    const out = new Map<Segment, number>();
    let later = Infinity;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i];
      if (s.maxTimestamp > 0) later = s.maxTimestamp;
      out.set(s, s.maxTimestamp > 0 ? s.maxTimestamp : later);
    }
    return out;
  }

  /**
   * Deletes the oldest segments while they are expired or over the size limit, never the active one
   * and never past `maxLogStart`; `beforeDelete(newLogStart)` runs once, before the first file goes.
   */
  private deleteOldestWhile(
    expired: (s: Segment) => boolean,
    retentionBytes: number,
    maxLogStart: number,
    beforeDelete: ((newLogStart: number) => void) | undefined,
  ): number {
    let n = 0;
    let bytes = this.totalBytes;
    while (n < this.segments.length - 1) {
      const oldest = this.segments[n];
      if (this.segments[n + 1].baseOffset > maxLogStart) break;
      const overSize = retentionBytes >= 0 && bytes - oldest.size >= retentionBytes;
      if (!expired(oldest) && !overSize) break;
      bytes -= oldest.size;
      n++;
    }
    if (n === 0) return 0;
    beforeDelete?.(this.segments[n].baseOffset);
    for (let i = 0; i < n; i++) this.deleteOldest();
    this.syncDirOrFence();
    return n;
  }

  /** Deletes whole segments that end at or below `offset` (finishing a retention cut a crash interrupted). */
  dropSegmentsBelow(offset: number): number {
    this.checkWritable();
    let n = 0;
    while (this.segments.length > 1 && this.segments[1].baseOffset <= offset) {
      this.deleteOldest();
      n++;
    }
    if (n > 0) this.syncDirOrFence();
    return n;
  }

  /**
   * (epoch, first offset) for every change of partitionLeaderEpoch from `offset` to the log end: a
   * header walk that reads 4 bytes per batch. Used to rebuild a missing leader-epoch checkpoint (a data
   * dir from before Raft), so its cost is paid once.
   */
  epochStartsFrom(offset: number): Array<{ epoch: number; startOffset: number }> {
    const out: Array<{ epoch: number; startOffset: number }> = [];
    const four = Buffer.allocUnsafe(4);
    this.walkHeaders(offset, (seg, pos, baseOffset) => {
      if (readFully(seg.fd, four, 0, 4, pos + OFF_LEADER_EPOCH, this.fs) !== 4) return;
      const epoch = four.readInt32BE(0);
      if (out.length === 0 || out[out.length - 1].epoch !== epoch) out.push({ epoch, startOffset: Math.max(baseOffset, offset) });
    });
    return out;
  }

  /**
   * The base offsets of the control batches (attributes bit 5) from `offset` to the log end: a header
   * walk that reads 2 bytes per batch. The partition reads Raft's membership changes out of them when
   * it opens (they are few: a no-op per term and the changes).
   */
  controlBatchOffsetsFrom(offset: number): number[] {
    const out: number[] = [];
    const two = Buffer.allocUnsafe(2);
    this.walkHeaders(offset, (seg, pos, baseOffset) => {
      if (readFully(seg.fd, two, 0, 2, pos + OFF_ATTRIBUTES, this.fs) === 2 && (two.readInt16BE(0) & CONTROL_ATTRIBUTE) !== 0) out.push(baseOffset);
    });
    return out;
  }

  /** Calls `visit` for every batch that ends at or after `offset`, in order, stepping over fenced ranges. */
  private walkHeaders(offset: number, visit: (seg: Segment, pos: number, baseOffset: number) => void): void {
    this.checkOpen();
    const v = this.walker.view;
    for (let si = this.segmentIndexFor(Math.max(offset, this.logStartOffset)); si < this.segments.length; si++) {
      const seg = this.segments[si];
      let pos = 0;
      while (pos < seg.size) {
        // A fenced (corrupt) range is stepped over, as reads do.
        const d = seg.damage.length > 0 ? seg.damageAt(pos) : undefined;
        if (d) {
          pos += d.bytes;
          continue;
        }
        if (!this.walker.at(seg, pos)) break;
        // The view is the walker's: read what is needed of it before `visit` may move the walker.
        const size = v.size;
        if (v.lastOffset >= offset) visit(seg, pos, v.baseOffset);
        pos += size;
      }
    }
  }

  /**
   * Rolls an active segment whose every record has expired, so it can be deleted. On a full disk the
   * seal (index writes) may be refused; the segment is about to be deleted, so we then skip the seal
   * and only create its successor, which needs no data blocks. A crash between the two leaves the
   * unsealed segment before an empty active one: recovery checks it as sealed, and it expires again.
   */
  private rollExpiredActive(): void {
    try {
      this.roll();
    } catch (err) {
      if (!(err instanceof SluiceError) || err.code !== 'DISK_FULL') throw err;
      this.startSegment(this.active.nextOffset);
    }
  }

  private deleteOldest(): void {
    const seg = this.segments.shift()!;
    this.dirty.delete(seg);
    this.totalBytes -= seg.size;
    this.walker.invalidate();
    try {
      seg.deleteFiles();
    } catch (err) {
      throw this.fence(storageError(`cannot delete segment ${seg.logPath}`, err));
    }
  }

  private syncDirOrFence(): void {
    try {
      fsyncDir(this.dir, this.fs);
    } catch (err) {
      throw this.fence(storageError(`fsync of directory ${this.dir} failed`, err));
    }
  }

  /**
   * Removes every batch at or after `offset`. Truncation is by whole batch: when `offset` falls inside
   * a batch, that batch goes too and nextOffset becomes its baseOffset. Below logStartOffset throws
   * OFFSET_OUT_OF_RANGE; at logStartOffset the log becomes empty.
   */
  truncateTo(offset: number): void {
    this.checkWritable();
    if (offset >= this.nextOffset) return;
    if (offset < this.logStartOffset) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `cannot truncate to ${offset}, below logStartOffset ${this.logStartOffset}`);
    }
    this.walker.invalidate();
    let deletedFiles = false;
    while (this.segments.length > 1 && this.active.baseOffset >= offset) {
      const seg = this.segments.pop()!;
      this.dirty.delete(seg);
      this.totalBytes -= seg.size;
      try {
        seg.deleteFiles();
      } catch (err) {
        throw this.fence(storageError(`cannot delete segment ${seg.logPath}`, err));
      }
      deletedFiles = true;
    }
    // The deletions are durable before the cut, so a crash in between leaves a prefix of the old log
    // (the active segment uncut), never a cut segment followed by a resurrected later one.
    if (deletedFiles) this.syncDirOrFence();
    const seg = this.active;
    const target = Math.max(offset, seg.baseOffset);
    // Truncating into a fenced range drops the whole range (and everything after it).
    const hole = seg.damageForOffset(target);
    const cutPos = hole !== undefined ? hole.pos : this.locate(seg, target) ? this.walker.view.pos : seg.size;
    this.truncateSegmentAt(seg, cutPos);
  }

  /**
   * Cuts `seg` at `pos` (a batch boundary) and rebuilds its indexes by walking the kept headers.
   * Truncation is rare (Raft follower repair), so a header walk of one segment is an acceptable cost.
   *
   * The cut is fdatasynced before anything is written after it. Without that a power loss may keep
   * the old, durable bytes past `pos` (the cut never reached the disk) followed by some of the new
   * bytes written after the cut (a torn tail): when the cut-off batches and the new ones have the same
   * sizes, recovery finds a valid log whose old batches sit under a newer term's, and Raft's append
   * check (one index and term) accepts it. Found by the partition simulator (seed 12931).
   */
  private truncateSegmentAt(seg: Segment, pos: number): void {
    this.totalBytes -= seg.size;
    let outcome;
    try {
      this.fs.ftruncateSync(seg.fd, pos);
      this.fdatasyncSync(seg.fd);
      const kept = seg.damage.filter((d) => d.pos < pos);
      seg.resetState();
      // Walk the kept headers, jumping over the fenced ranges that stay.
      const win = new FileWindow(256 * 1024);
      let from = 0;
      let expect = seg.baseOffset;
      outcome = { endPos: 0, problem: null as string | null };
      for (const d of kept) {
        outcome = scanBatches(seg, win, from, expect, d.pos, false);
        if (outcome.problem) break;
        seg.noteDamage(d);
        from = d.pos + d.bytes;
        expect = d.toOffset;
      }
      if (!outcome.problem) outcome = scanBatches(seg, win, from, expect, pos, false);
      if (seg.persistDamage()) fsyncDir(this.dir, this.fs);
      seg.offsetIndex.rewrite();
      seg.timeIndex.rewrite();
    } catch (err) {
      throw this.fence(storageError(`cannot truncate ${seg.logPath}`, err));
    }
    this.totalBytes += seg.size;
    this.dirty.add(seg);
    // The header window may hold bytes past the cut that new appends will overwrite.
    this.walker.invalidate();
    if (outcome.problem) {
      throw this.fence(new SluiceError('LOG_CORRUPT', `${seg.logPath} is corrupt: ${outcome.problem}`));
    }
  }

  /**
   * Empties the log and restarts it at `offset` (Raft snapshot install; a follower that must forget
   * its log). Segments are deleted newest first, so a crash part-way leaves a valid prefix.
   */
  truncateFullyAndStartAt(offset: number): void {
    this.checkWritable();
    if (!Number.isSafeInteger(offset) || offset < 0) throw new SluiceError('INVALID_OFFSET', `cannot restart the log at ${offset}`);
    this.walker.invalidate();
    try {
      while (this.segments.length > 0) {
        const seg = this.segments.pop()!;
        this.dirty.delete(seg);
        seg.deleteFiles();
      }
      this.totalBytes = 0;
      this.segments.push(Segment.create(this.dir, offset, this.indexIntervalBytes, this.fs));
      fsyncDir(this.dir, this.fs);
    } catch (err) {
      throw this.fence(storageError(`cannot restart ${this.dir} at offset ${offset}`, err));
    }
  }

  // --- Config and lifecycle --------------------------------------------------------------------

  updateConfig(config: Partial<LogConfig>): void {
    this.checkOpen();
    const next: LogConfig = { ...this.cfg, ...config, flush: { ...(config.flush ?? this.cfg.flush) } };
    validateLogConfig(next);
    this.cfg = next;
    this.armIntervalTimer();
  }

  /**
   * Flushes, then (if every sync succeeded) leaves a clean-shutdown marker so the next open can trust
   * the active segment's index instead of re-validating it, and closes all files.
   */
  close(): Promise<void> {
    // Idempotent, and concurrent calls share one close.
    if (this.closing === null) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    let failure: unknown = null;
    if (!this.fencedBy) {
      try {
        await this.flush();
        this.active.persistIndexes();
        this.active.fdatasyncAllSync(this.fdatasyncSync);
        this.fs.writeFileSync(path.join(this.dir, CLEAN_SHUTDOWN_FILE), '', { mode: FILE_MODE });
        fsyncDir(this.dir, this.fs);
      } catch (err) {
        failure = err;
      }
    }
    this.closed = true;
    if (this.intervalTimer) clearInterval(this.intervalTimer);
    this.intervalTimer = null;
    for (const s of this.segments) s.close();
    if (failure) throw failure instanceof SluiceError ? failure : storageError(`closing ${this.dir} failed`, failure);
  }
}
