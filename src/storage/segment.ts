/**
 * One segment: `<base>.log` plus its `.index` and `.timeindex`, the in-memory index state, and the
 * bookkeeping the log needs (size, next offset, max timestamp). Segments know nothing of flush policy,
 * retention or recovery order; log.ts and recovery.ts drive them.
 */
import { OffsetIndex, TimeIndex } from './indexes.js';
import { NODE_FS, type StorageFs, join, openRw, segmentFileName, unlinkIfExists, writeFully } from './io.js';
import type { DamagedRange } from './types.js';

export class Segment {
  readonly logPath: string;
  readonly indexPath: string;
  readonly timeIndexPath: string;
  /** `<base>.damaged`: present while the segment holds fenced ranges; forces a full scan on every open. */
  readonly damagedPath: string;
  readonly fd: number;
  readonly offsetIndex: OffsetIndex;
  readonly timeIndex: TimeIndex;
  /** Bytes of the .log file that hold valid batches (= where the next batch goes). */
  size = 0;
  /** Offset after the last batch (= baseOffset while empty). */
  nextOffset: number;
  /** Largest batch maxTimestamp in the segment; -Infinity while empty. */
  maxTimestamp = -Infinity;
  /**
   * Broker time of the segment's first append: what `segment.ms` is measured from. Kafka uses the first
   * batch's own timestamp, which makes a producer with an old clock roll a segment per append; broker
   * time cannot. After a restart it is the file's birth time (or the open time where unsupported).
   */
  rollStartMs: number | null = null;
  /** Relative offset of the last batch's base (for the final time-index entry on seal). */
  lastBatchRel = -1;
  /** Position of the last offset-index entry (0 when none): the index interval counts from here. */
  lastIndexedPos = 0;
  /** Fenced ranges, in position order (empty on a healthy segment, which is the hot path). */
  damage: DamagedRange[] = [];
  /** fdatasyncs in flight on this segment's fd; closing waits for them (an fd must not be reused under them). */
  syncsInFlight = 0;
  private closeRequested = false;
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly baseOffset: number,
    private readonly indexIntervalBytes: number,
    /** The file system the segment's files live on (node:fs but in the simulator). */
    readonly fs: StorageFs,
  ) {
    this.logPath = join(dir, segmentFileName(baseOffset, 'log'));
    this.indexPath = join(dir, segmentFileName(baseOffset, 'index'));
    this.timeIndexPath = join(dir, segmentFileName(baseOffset, 'timeindex'));
    this.damagedPath = join(dir, segmentFileName(baseOffset, 'damaged'));
    this.nextOffset = baseOffset;
    // All three or none: a failure part-way (a full disk) must not leak the fds already opened, since
    // an offline partition's open is retried for as long as the disk stays full.
    const fds: number[] = [];
    try {
      for (const file of [this.logPath, this.indexPath, this.timeIndexPath]) fds.push(openRw(file, this.fs));
    } catch (err) {
      for (const fd of fds) this.fs.closeSync(fd);
      throw err;
    }
    this.fd = fds[0];
    this.offsetIndex = new OffsetIndex(fds[1], this.fs);
    this.timeIndex = new TimeIndex(fds[2], this.fs);
  }

  /** Opens (creating when missing) the three files of the segment at `baseOffset`. */
  static open(dir: string, baseOffset: number, indexIntervalBytes: number, fs: StorageFs = NODE_FS): Segment {
    return new Segment(dir, baseOffset, indexIntervalBytes, fs);
  }

  /**
   * Starts a brand-new segment: like `open`, but empties any file left under the same name (say, by a
   * truncation whose unlink did not reach the disk), so stale bytes can never follow new ones.
   */
  static create(dir: string, baseOffset: number, indexIntervalBytes: number, fs: StorageFs = NODE_FS): Segment {
    const seg = new Segment(dir, baseOffset, indexIntervalBytes, fs);
    fs.ftruncateSync(seg.fd, 0);
    fs.ftruncateSync(seg.offsetIndex.fd, 0);
    fs.ftruncateSync(seg.timeIndex.fd, 0);
    return seg;
  }

  /** Size of the .log file on disk (may exceed `size` before recovery truncates a torn tail). */
  fileBytes(): number {
    return this.fs.fstatSync(this.fd).size;
  }

  /** Records a batch written at `pos`: updates the in-memory indexes and bookkeeping. */
  onBatch(rel: number, pos: number, size: number, lastOffsetDelta: number, maxTimestamp: number): void {
    if (maxTimestamp > this.maxTimestamp) this.maxTimestamp = maxTimestamp;
    if (pos - this.lastIndexedPos >= this.indexIntervalBytes) {
      this.offsetIndex.append(rel, pos);
      this.lastIndexedPos = pos;
      if (this.maxTimestamp > this.timeIndex.lastTimestamp) this.timeIndex.append(this.maxTimestamp, rel);
    }
    this.lastBatchRel = rel;
    this.size = pos + size;
    this.nextOffset = this.baseOffset + rel + lastOffsetDelta + 1;
  }

  /**
   * Fences a damaged range found by recovery. The next valid batch always gets an offset-index entry,
   * so a lookup of an offset after the damage never walks headers through it.
   */
  noteDamage(range: DamagedRange): void {
    this.damage.push(range);
    this.lastIndexedPos = -Infinity;
    this.nextOffset = range.toOffset;
  }

  /** The fenced range holding `offset`, if any. */
  damageForOffset(offset: number): DamagedRange | undefined {
    for (const d of this.damage) if (offset >= d.fromOffset && offset < d.toOffset) return d;
    return undefined;
  }

  /** The fenced range starting exactly at `pos`, if any (header walks jump over it). */
  damageAt(pos: number): DamagedRange | undefined {
    for (const d of this.damage) if (d.pos === pos) return d;
    return undefined;
  }

  /** Where a contiguous read from `pos` must stop: the next fenced range, else the segment end. */
  readLimit(pos: number): number {
    for (const d of this.damage) if (d.pos > pos) return d.pos;
    return this.size;
  }

  /**
   * Mirrors `damage` to the `.damaged` file (JSON, one range per line, for operators and as the marker
   * that makes the next open re-scan this segment), or removes the file when nothing is fenced.
   * Returns true when the directory changed (the caller fsyncs it).
   */
  persistDamage(): boolean {
    if (this.damage.length === 0) {
      const existed = this.fs.existsSync(this.damagedPath);
      unlinkIfExists(this.damagedPath, this.fs);
      return existed;
    }
    const text = this.damage.map((d) => JSON.stringify(d)).join('\n') + '\n';
    const fd = openRw(this.damagedPath, this.fs);
    try {
      this.fs.ftruncateSync(fd, 0);
      const bytes = Buffer.from(text);
      writeFully(fd, bytes, 0, bytes.length, 0, this.fs);
      this.fs.fdatasyncSync(fd);
    } finally {
      this.fs.closeSync(fd);
    }
    return true;
  }

  /** Adds the time-index entry that makes the segment's max timestamp visible after it is sealed. */
  sealTimeIndex(): void {
    if (this.lastBatchRel >= 0 && this.maxTimestamp > this.timeIndex.lastTimestamp) {
      this.timeIndex.append(this.maxTimestamp, this.lastBatchRel);
    }
  }

  persistIndexes(): void {
    this.offsetIndex.persist();
    this.timeIndex.persist();
  }

  /** Forgets all batches (in memory only; the caller truncates or rewrites files). */
  resetState(): void {
    this.offsetIndex.truncate(0);
    this.timeIndex.truncate(0);
    this.size = 0;
    this.nextOffset = this.baseOffset;
    this.maxTimestamp = -Infinity;
    this.rollStartMs = null;
    this.lastBatchRel = -1;
    this.lastIndexedPos = 0;
    this.damage = [];
  }

  /** Restores lastIndexedPos after the offset index was loaded or truncated. */
  syncIndexCursor(): void {
    const n = this.offsetIndex.count;
    this.lastIndexedPos = n === 0 ? 0 : this.offsetIndex.pos[n - 1];
  }

  fdatasyncAllSync(sync: (fd: number) => void = (fd) => this.fs.fdatasyncSync(fd)): void {
    sync(this.fd);
    sync(this.offsetIndex.fd);
    sync(this.timeIndex.fd);
  }

  /** Closes the fds now, or as soon as the fdatasyncs in flight on them finish. */
  close(): void {
    if (this.closed) return;
    if (this.syncsInFlight > 0) {
      this.closeRequested = true;
      return;
    }
    this.closed = true;
    this.fs.closeSync(this.fd);
    this.fs.closeSync(this.offsetIndex.fd);
    this.fs.closeSync(this.timeIndex.fd);
  }

  /** Called by the log when an fdatasync on this segment completes. */
  syncDone(): void {
    this.syncsInFlight--;
    if (this.closeRequested && this.syncsInFlight === 0) this.close();
  }

  /** Closes and unlinks the files, .log first so a crash in between leaves orphan indexes, not an index-less log. */
  deleteFiles(): void {
    this.close();
    unlinkIfExists(this.logPath, this.fs);
    unlinkIfExists(this.indexPath, this.fs);
    unlinkIfExists(this.timeIndexPath, this.fs);
    unlinkIfExists(this.damagedPath, this.fs);
  }
}
