/**
 * Forward scans over a segment's batches through one reusable buffer: the recovery scan (lengths,
 * offsets, optionally CRCs) and the header walk that reads and timestamp lookups use. No allocation
 * per batch: a window of the file is read once and headers are parsed in place.
 */
import { BATCH_BYTES_MAX_LIMIT, STORAGE_SCAN_CHUNK_BYTES } from '../constants.js';
import {
  BATCH_HEADER_BYTES,
  BATCH_LOG_OVERHEAD_BYTES,
  MAGIC_V2,
  computeBatchCrc,
} from '../batch/codec.js';
import { SluiceError } from '../errors.js';
import { NODE_FS, type StorageFs, readFully } from './io.js';
import type { Segment } from './segment.js';

const OFF_LENGTH = 8;
const OFF_LEADER_EPOCH = 12;
const OFF_MAGIC = 16;
const OFF_CRC = 17;
const OFF_LAST_OFFSET_DELTA = 23;
const OFF_MAX_TIMESTAMP = 35;
const OFF_RECORD_COUNT = 57;

/** A window over a file, refilled on demand; the buffer is reused across calls. */
export class FileWindow {
  buf: Buffer;
  /** File position of buf[0] and of the end of the valid data. */
  start = 0;
  end = 0;
  fd = -1;

  constructor(bytes = STORAGE_SCAN_CHUNK_BYTES) {
    this.buf = Buffer.allocUnsafe(bytes);
  }

  /** The file system `fd` belongs to. */
  private fs: StorageFs = NODE_FS;

  reset(fd: number, fs: StorageFs = NODE_FS): void {
    this.fd = fd;
    this.fs = fs;
    this.start = 0;
    this.end = 0;
  }

  /**
   * Makes [pos, pos+n) readable in `buf`, reading ahead up to the buffer size (bounded by `fileEnd`).
   * Returns the index of pos in buf, or -1 when the file ends before pos+n.
   */
  ensure(pos: number, n: number, fileEnd: number, readAheadBytes = this.buf.length): number {
    if (pos >= this.start && pos + n <= this.end) return pos - this.start;
    if (pos + n > fileEnd) return -1;
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
    const want = Math.min(Math.max(n, Math.min(readAheadBytes, this.buf.length)), fileEnd - pos);
    const got = readFully(this.fd, this.buf, 0, want, pos, this.fs);
    this.start = pos;
    this.end = pos + got;
    return got >= n ? 0 : -1;
  }
}

function readI64(buf: Buffer, at: number): number {
  return buf.readInt32BE(at) * 2 ** 32 + buf.readUInt32BE(at + 4);
}

export interface ScanOutcome {
  /** Position after the last valid batch. */
  endPos: number;
  /** Why the scan stopped before the end of the file; null when it reached it cleanly. */
  problem: string | null;
}

/**
 * Walks batches from `pos` (whose batch must have baseOffset `expectOffset`) to `fileEnd`, feeding each
 * valid one to `seg.onBatch`. Stops at the first batch that is torn or invalid. With `verifyCrc` the
 * whole batch is read and its CRC-32C checked; without, only headers are read (trusted segments).
 */
export function scanBatches(
  seg: Segment,
  win: FileWindow,
  pos: number,
  expectOffset: number,
  fileEnd: number,
  verifyCrc: boolean,
): ScanOutcome {
  win.reset(seg.fd, seg.fs);
  const readAhead = verifyCrc ? win.buf.length : 16 * 1024;
  while (pos < fileEnd) {
    let at = win.ensure(pos, BATCH_LOG_OVERHEAD_BYTES, fileEnd, readAhead);
    if (at < 0) return { endPos: pos, problem: `torn batch header at position ${pos}` };
    const size = win.buf.readInt32BE(at + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
    if (size < BATCH_HEADER_BYTES || size > BATCH_BYTES_MAX_LIMIT) {
      return { endPos: pos, problem: `invalid batch length ${size} at position ${pos}` };
    }
    if (pos + size > fileEnd) return { endPos: pos, problem: `torn batch at position ${pos}: ${size} bytes declared, ${fileEnd - pos} present` };
    at = win.ensure(pos, verifyCrc ? size : BATCH_HEADER_BYTES, fileEnd, readAhead);
    const b = win.buf;
    const baseOffset = readI64(b, at);
    const lastOffsetDelta = b.readInt32BE(at + OFF_LAST_OFFSET_DELTA);
    const recordCount = b.readInt32BE(at + OFF_RECORD_COUNT);
    if (b.readInt8(at + OFF_MAGIC) !== MAGIC_V2) return { endPos: pos, problem: `bad magic at position ${pos}` };
    if (baseOffset !== expectOffset) {
      return { endPos: pos, problem: `batch at position ${pos} has baseOffset ${baseOffset}, expected ${expectOffset}` };
    }
    if (lastOffsetDelta < 0 || recordCount < 0) return { endPos: pos, problem: `invalid counts in batch at position ${pos}` };
    if (verifyCrc && computeBatchCrc(b, at, size) !== b.readUInt32BE(at + OFF_CRC)) {
      return { endPos: pos, problem: `CRC-32C mismatch in batch at position ${pos}` };
    }
    seg.onBatch(baseOffset - seg.baseOffset, pos, size, lastOffsetDelta, readI64(b, at + OFF_MAX_TIMESTAMP));
    expectOffset = baseOffset + lastOffsetDelta + 1;
    pos += size;
  }
  return { endPos: pos, problem: null };
}

/** A valid batch found after damage: where it starts and its base offset. */
export interface Resync {
  pos: number;
  baseOffset: number;
}

/**
 * Looks for the first valid batch that starts at or after `from`, up to `fileEnd`: magic 2 at the right
 * place, a plausible length and counts, a baseOffset in [minOffset, maxOffset), a leader epoch >= 0,
 * the whole batch inside the file, and a matching CRC-32C. This is what tells a
 * torn tail (nothing valid follows the damage) from corruption in the middle (something does). Candidates
 * are found with a native byte search for the magic, so a scan of a long damaged tail stays cheap.
 */
export function findNextBatch(
  seg: Segment,
  win: FileWindow,
  from: number,
  fileEnd: number,
  minOffset: number,
  maxOffset: number,
): Resync | null {
  const probe = new FileWindow(64 * 1024);
  probe.reset(seg.fd, seg.fs);
  win.reset(seg.fd, seg.fs);
  let q = from;
  while (q + BATCH_HEADER_BYTES <= fileEnd) {
    const at = win.ensure(q, BATCH_HEADER_BYTES, fileEnd);
    if (at < 0) return null;
    const valid = win.buf.subarray(0, win.end - win.start);
    const lastStart = valid.length - BATCH_HEADER_BYTES;
    for (let i = valid.indexOf(MAGIC_V2, at + OFF_MAGIC); i >= 0 && i - OFF_MAGIC <= lastStart; i = valid.indexOf(MAGIC_V2, i + 1)) {
      const c = i - OFF_MAGIC;
      const size = valid.readInt32BE(c + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
      if (size < BATCH_HEADER_BYTES || size > BATCH_BYTES_MAX_LIMIT || win.start + c + size > fileEnd) continue;
      const baseOffset = readI64(valid, c);
      const lastOffsetDelta = valid.readInt32BE(c + OFF_LAST_OFFSET_DELTA);
      const recordCount = valid.readInt32BE(c + OFF_RECORD_COUNT);
      if (recordCount < 1 || lastOffsetDelta !== recordCount - 1) continue;
      if (baseOffset < minOffset || baseOffset + lastOffsetDelta >= maxOffset) continue;
      // Every batch the log wrote carries a leader epoch >= 0; a client-built batch (-1 from Kafka
      // producers and the TS client) embedded in a record value must not pass for one.
      if (valid.readInt32BE(c + OFF_LEADER_EPOCH) < 0) continue;
      const abs = win.start + c;
      const p = probe.ensure(abs, size, fileEnd, size);
      if (p >= 0 && computeBatchCrc(probe.buf, p, size) === probe.buf.readUInt32BE(p + OFF_CRC)) return { pos: abs, baseOffset };
    }
    // Every start up to lastStart was tried; continue with the first one that was not.
    q = win.start + Math.max(lastStart + 1, at + 1);
  }
  return null;
}

/** Header fields the read path needs, filled in place by `HeaderWalker.at`. */
export interface HeaderView {
  pos: number;
  size: number;
  baseOffset: number;
  lastOffset: number;
  maxTimestamp: number;
}

/** Reads batch headers at arbitrary positions of a segment through a small reusable window. */
export class HeaderWalker {
  private readonly win = new FileWindow(16 * 1024);
  readonly view: HeaderView = { pos: 0, size: 0, baseOffset: 0, lastOffset: 0, maxTimestamp: 0 };

  /** Fills `view` from the header at `pos`; false when no complete header is there. */
  at(seg: Segment, pos: number): boolean {
    if (this.win.fd !== seg.fd) this.win.reset(seg.fd, seg.fs);
    const at = this.win.ensure(pos, BATCH_HEADER_BYTES, seg.size);
    if (at < 0) return false;
    const b = this.win.buf;
    const v = this.view;
    v.pos = pos;
    v.size = b.readInt32BE(at + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
    if (v.size < BATCH_HEADER_BYTES || pos + v.size > seg.size || b.readInt8(at + OFF_MAGIC) !== MAGIC_V2) {
      // Stored bytes that are not a batch header: damage the open did not find (sealed and cleanly
      // closed segments are not CRC-scanned on open). Loud, never served as data.
      throw new SluiceError(
        'LOG_CORRUPT',
        `${seg.logPath}: the batch header at position ${pos} is damaged (length ${v.size}, magic ${b.readInt8(at + OFF_MAGIC)}, segment size ${seg.size})`,
      );
    }
    v.baseOffset = readI64(b, at);
    v.lastOffset = v.baseOffset + b.readInt32BE(at + OFF_LAST_OFFSET_DELTA);
    v.maxTimestamp = readI64(b, at + OFF_MAX_TIMESTAMP);
    return true;
  }

  /** Forgets cached bytes (after a truncation or when an fd number may have been reused). */
  invalidate(): void {
    this.win.reset(-1);
  }
}
