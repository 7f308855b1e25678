/**
 * The two sparse per-segment indexes, kept in memory (typed arrays) and mirrored to files:
 *  - `.index`: relative offset u32 + position u32 (8 bytes), as Kafka. An entry says "the batch whose
 *    baseOffset is base+rel starts at position"; lookups start a forward header scan there.
 *  - `.timeindex`: timestamp i64 + relative offset u32 (12 bytes). An entry (T, rel) says "every batch
 *    up to and including the one at base+rel has maxTimestamp <= T"; timestamps strictly increase.
 * The active segment's entries reach the files only when it is sealed (then fdatasynced) or the log
 * closes cleanly; after a crash recovery rebuilds them. Recovery validates every index it loads.
 */
import { type StorageFs, readFully, writeFully } from './io.js';

const OFFSET_ENTRY_BYTES = 8;
const TIME_ENTRY_BYTES = 12;
const INITIAL_ENTRIES = 64;

function grow<T extends Uint32Array | Float64Array>(a: T, need: number): T {
  if (need <= a.length) return a;
  const next = new (a.constructor as { new (n: number): T })(Math.max(need, a.length * 2));
  next.set(a);
  return next;
}

function readWholeFile(fd: number, fs: StorageFs): Buffer {
  const size = fs.fstatSync(fd).size;
  const buf = Buffer.allocUnsafe(size);
  const n = readFully(fd, buf, 0, size, 0, fs);
  return buf.subarray(0, n);
}

export class OffsetIndex {
  rel = new Uint32Array(INITIAL_ENTRIES);
  pos = new Uint32Array(INITIAL_ENTRIES);
  count = 0;
  /** Entries already written to the file. */
  private persisted = 0;

  constructor(
    public fd: number,
    private readonly fs: StorageFs,
  ) {}

  append(rel: number, pos: number): void {
    this.rel = grow(this.rel, this.count + 1);
    this.pos = grow(this.pos, this.count + 1);
    this.rel[this.count] = rel;
    this.pos[this.count] = pos;
    this.count++;
  }

  /** Index of the last entry with rel <= target, or -1. */
  floor(relTarget: number): number {
    let lo = 0;
    let hi = this.count - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.rel[mid] <= relTarget) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  /**
   * Loads the file, keeping its longest valid prefix (strictly increasing rel and pos, pos below
   * `logBytes`). Returns false when the file held anything beyond that prefix.
   */
  load(logBytes: number): boolean {
    const buf = readWholeFile(this.fd, this.fs);
    const n = Math.floor(buf.length / OFFSET_ENTRY_BYTES);
    this.count = 0;
    for (let i = 0; i < n; i++) {
      const rel = buf.readUInt32BE(i * OFFSET_ENTRY_BYTES);
      const pos = buf.readUInt32BE(i * OFFSET_ENTRY_BYTES + 4);
      const prev = this.count - 1;
      if (pos >= logBytes || (prev >= 0 && (rel <= this.rel[prev] || pos <= this.pos[prev])) || (prev < 0 && pos === 0)) break;
      this.append(rel, pos);
    }
    this.persisted = this.count;
    return this.count === n && buf.length % OFFSET_ENTRY_BYTES === 0;
  }

  /** Drops entries from `count` on, in memory and in the file. */
  truncate(count: number): void {
    if (count >= this.count) return;
    this.count = count;
    if (this.persisted > count) {
      this.fs.ftruncateSync(this.fd, count * OFFSET_ENTRY_BYTES);
      this.persisted = count;
    }
  }

  /** Drops entries for batches at or after `rel`. */
  truncateFromRel(rel: number): void {
    this.truncate(this.floor(rel - 1) + 1);
  }

  /** Writes entries not yet in the file with one write. */
  persist(): void {
    const n = this.count - this.persisted;
    if (n <= 0) return;
    const buf = Buffer.allocUnsafe(n * OFFSET_ENTRY_BYTES);
    for (let i = 0; i < n; i++) {
      buf.writeUInt32BE(this.rel[this.persisted + i], i * OFFSET_ENTRY_BYTES);
      buf.writeUInt32BE(this.pos[this.persisted + i], i * OFFSET_ENTRY_BYTES + 4);
    }
    writeFully(this.fd, buf, 0, buf.length, this.persisted * OFFSET_ENTRY_BYTES, this.fs);
    this.persisted = this.count;
  }

  /** Replaces the file's content with the in-memory entries. */
  rewrite(): void {
    this.fs.ftruncateSync(this.fd, 0);
    this.persisted = 0;
    this.persist();
  }
}

export class TimeIndex {
  ts = new Float64Array(INITIAL_ENTRIES);
  rel = new Uint32Array(INITIAL_ENTRIES);
  count = 0;
  private persisted = 0;

  constructor(
    public fd: number,
    private readonly fs: StorageFs,
  ) {}

  get lastTimestamp(): number {
    return this.count === 0 ? -Infinity : this.ts[this.count - 1];
  }

  append(ts: number, rel: number): void {
    this.ts = grow(this.ts, this.count + 1);
    this.rel = grow(this.rel, this.count + 1);
    this.ts[this.count] = ts;
    this.rel[this.count] = rel;
    this.count++;
  }

  /** Index of the last entry with ts < target, or -1: scanning may start at that entry's batch. */
  lastBelow(target: number): number {
    let lo = 0;
    let hi = this.count - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ts[mid] < target) {
        ans = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return ans;
  }

  /** Loads the longest valid prefix (strictly increasing timestamps, rel below `relEnd`). */
  load(relEnd: number): boolean {
    const buf = readWholeFile(this.fd, this.fs);
    const n = Math.floor(buf.length / TIME_ENTRY_BYTES);
    this.count = 0;
    for (let i = 0; i < n; i++) {
      const hi = buf.readInt32BE(i * TIME_ENTRY_BYTES);
      const ts = hi * 2 ** 32 + buf.readUInt32BE(i * TIME_ENTRY_BYTES + 4);
      const rel = buf.readUInt32BE(i * TIME_ENTRY_BYTES + 8);
      if (rel >= relEnd || !(ts > this.lastTimestamp)) break;
      this.append(ts, rel);
    }
    this.persisted = this.count;
    return this.count === n && buf.length % TIME_ENTRY_BYTES === 0;
  }

  truncate(count: number): void {
    if (count >= this.count) return;
    this.count = count;
    if (this.persisted > count) {
      this.fs.ftruncateSync(this.fd, count * TIME_ENTRY_BYTES);
      this.persisted = count;
    }
  }

  /** Drops entries that name batches at or after `rel` (entries are kept in rel order by their writers). */
  truncateFromRel(rel: number): void {
    let keep = 0;
    while (keep < this.count && this.rel[keep] < rel) keep++;
    this.truncate(keep);
  }

  persist(): void {
    const n = this.count - this.persisted;
    if (n <= 0) return;
    const buf = Buffer.allocUnsafe(n * TIME_ENTRY_BYTES);
    for (let i = 0; i < n; i++) {
      const ts = this.ts[this.persisted + i];
      const hi = Math.floor(ts / 2 ** 32);
      buf.writeInt32BE(hi, i * TIME_ENTRY_BYTES);
      buf.writeUInt32BE(ts - hi * 2 ** 32, i * TIME_ENTRY_BYTES + 4);
      buf.writeUInt32BE(this.rel[this.persisted + i], i * TIME_ENTRY_BYTES + 8);
    }
    writeFully(this.fd, buf, 0, buf.length, this.persisted * TIME_ENTRY_BYTES, this.fs);
    this.persisted = this.count;
  }

  rewrite(): void {
    this.fs.ftruncateSync(this.fd, 0);
    this.persisted = 0;
    this.persist();
  }
}
