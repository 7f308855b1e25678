/**
 * Recovery on open. Rules (docs/storage.md has the why):
 *  - sealed segments were fdatasynced when they were sealed, so they are trusted: their indexes are
 *    checked for shape, and only the batch headers after the last index entry are walked (no CRC);
 *    when anything there does not check out, the segment is CRC-scanned in full and re-indexed;
 *  - the active segment is CRC-validated batch by batch from its start after an unclean shutdown
 *    (no clean-shutdown marker); its indexes are rebuilt from that scan. After a clean shutdown it is
 *    treated like a sealed segment, falling back to the full scan if anything looks wrong;
 *  - a full scan that meets an invalid batch looks for a valid batch after it. None (in the active
 *    segment): a torn tail, truncated. One: corruption, not a torn write. The damaged range is fenced
 *    (its offsets are kept, never reused, and reads of them answer LOG_CORRUPT) and recorded in
 *    `<base>.damaged`, which makes every later open re-scan that segment. In a sealed segment even
 *    trailing damage is fenced, up to the next segment's base offset: sealed bytes were synced, so
 *    nothing there is a torn write;
 *  - offsets must be gapless across segments; index files without a .log are removed.
 */
import { SluiceError } from '../errors.js';
import { NODE_FS, type StorageFs, fsyncDir, join, parseSegmentFileName, segmentFileName, unlinkIfExists } from './io.js';
import { FileWindow, findNextBatch, scanBatches } from './scan.js';
import { Segment } from './segment.js';
import type { DamagedRange } from './types.js';

/** Written by a successful close(), removed by open() before any write. */
export const CLEAN_SHUTDOWN_FILE = '.clean-shutdown';

export interface RecoveryReport {
  /** The previous close() completed, so the active segment was trusted. */
  cleanShutdown: boolean;
  /** Bytes cut from the tail of the active segment (torn or corrupt). */
  truncatedBytes: number;
  /** Why the tail was cut (first invalid batch), or null. */
  truncationReason: string | null;
  /** Index files that were rebuilt or extended. */
  rebuiltIndexes: string[];
  segmentCount: number;
  /** Segments CRC-scanned in full, and their bytes. */
  scannedSegments: number;
  scannedBytes: number;
  /** Every fenced range of the log (found now, or again after an earlier open found it). */
  damaged: DamagedRange[];
  durationMs: number;
}

function listBases(dir: string, fs: StorageFs): { bases: number[]; clean: boolean } {
  const names = fs.readdirSync(dir);
  const logs = new Set<number>();
  const others: { name: string; base: number }[] = [];
  for (const name of names) {
    const parsed = parseSegmentFileName(name);
    if (!parsed) continue;
    if (parsed.ext === 'log') logs.add(parsed.baseOffset);
    else others.push({ name, base: parsed.baseOffset });
  }
  let removed = false;
  for (const o of others) {
    if (!logs.has(o.base)) {
      unlinkIfExists(join(dir, o.name), fs);
      removed = true;
    }
  }
  const clean = names.includes(CLEAN_SHUTDOWN_FILE);
  if (clean) unlinkIfExists(join(dir, CLEAN_SHUTDOWN_FILE), fs);
  if (removed || clean) fsyncDir(dir, fs);
  return { bases: [...logs].sort((a, b) => a - b), clean };
}

/** When a recovered segment started, for segment.ms: its file's birth time, else now. */
function rollStartOf(seg: Segment, nowMs: number): number | null {
  if (seg.size === 0) return null;
  const birth = seg.fs.fstatSync(seg.fd).birthtimeMs;
  return birth > 0 ? Math.min(birth, nowMs) : nowMs;
}

/**
 * Trusts the segment's indexes and walks headers (no CRC) from the last offset-index entry to the end
 * of the file. Returns a problem string when the indexes or the tail do not check out.
 */
function recoverTrusted(seg: Segment, win: FileWindow, report: RecoveryReport): string | null {
  const fileEnd = seg.fileBytes();
  if (!seg.offsetIndex.load(fileEnd)) return 'malformed offset index';
  if (!seg.timeIndex.load(2 ** 32)) return 'malformed time index';
  const idx = seg.offsetIndex;
  const n = idx.count;
  const fromPos = n === 0 ? 0 : idx.pos[n - 1];
  const fromOffset = seg.baseOffset + (n === 0 ? 0 : idx.rel[n - 1]);
  seg.syncIndexCursor();
  seg.maxTimestamp = seg.timeIndex.lastTimestamp;
  const indexCount = idx.count;
  const timeCount = seg.timeIndex.count;
  const out = scanBatches(seg, win, fromPos, fromOffset, fileEnd, false);
  if (out.problem) return out.problem;
  if (timeCount > 0 && seg.timeIndex.rel[timeCount - 1] >= seg.nextOffset - seg.baseOffset) {
    return 'malformed time index: it names offsets past the end of the segment';
  }
  if (idx.count !== indexCount || seg.timeIndex.count !== timeCount) {
    seg.persistIndexes();
    report.rebuiltIndexes.push(seg.indexPath);
  }
  return null;
}

/**
 * CRC-validates every batch from the start and rebuilds both indexes, fencing damage that a valid
 * batch follows. `nextBase` is the next segment's base offset for a sealed segment (damage up to the
 * end of the file is then fenced too), null for the active one. Returns where the valid data ends and,
 * when that is before the end of the file, why: the torn tail the caller truncates.
 */
function recoverFull(
  seg: Segment,
  win: FileWindow,
  report: RecoveryReport,
  nextBase: number | null,
): { problem: string | null; endPos: number; fileEnd: number } {
  const fileEnd = seg.fileBytes();
  seg.resetState();
  report.scannedSegments++;
  report.scannedBytes += fileEnd;
  let pos = 0;
  let expect = seg.baseOffset;
  let result: { problem: string | null; endPos: number };
  for (;;) {
    const out = scanBatches(seg, win, pos, expect, fileEnd, true);
    if (out.problem === null) {
      result = { problem: null, endPos: out.endPos };
      break;
    }
    expect = seg.nextOffset;
    const next = findNextBatch(seg, win, out.endPos + 1, fileEnd, expect, nextBase ?? Number.MAX_SAFE_INTEGER);
    if (next !== null) {
      seg.noteDamage(damaged(seg, out.endPos, next.pos - out.endPos, expect, next.baseOffset, out.problem));
      pos = next.pos;
      expect = next.baseOffset;
      continue;
    }
    if (nextBase === null) {
      result = { problem: out.problem, endPos: out.endPos };
      break;
    }
    if (expect > nextBase) {
      // Valid batches already claim offsets the next segment starts with: no fence can fix that.
      throw new SluiceError('LOG_CORRUPT', `${seg.logPath} holds offsets up to ${expect - 1}, past the next segment's base ${nextBase}`);
    }
    seg.noteDamage(damaged(seg, out.endPos, fileEnd - out.endPos, expect, nextBase, out.problem));
    seg.size = fileEnd;
    result = { problem: null, endPos: fileEnd };
    break;
  }
  seg.offsetIndex.rewrite();
  seg.timeIndex.rewrite();
  report.rebuiltIndexes.push(seg.indexPath, seg.timeIndexPath);
  return { ...result, fileEnd };
}

function damaged(seg: Segment, pos: number, bytes: number, fromOffset: number, toOffset: number, reason: string): DamagedRange {
  return { pos, bytes, fromOffset, toOffset, file: seg.logPath, reason };
}

function recoverActive(seg: Segment, win: FileWindow, report: RecoveryReport, trust: boolean): void {
  if (trust && recoverTrusted(seg, win, report) === null) return;
  const { problem, endPos, fileEnd } = recoverFull(seg, win, report, null);
  if (endPos < fileEnd) {
    // The cut is durable before anything is appended after it: otherwise a second crash can keep the
    // torn bytes (durable since the first) followed by a torn tail of the new batches, which recovery
    // then takes for corruption followed by valid data and fences (partition simulator, seed 16351).
    seg.fs.ftruncateSync(seg.fd, endPos);
    seg.fs.fdatasyncSync(seg.fd);
    report.truncatedBytes = fileEnd - endPos;
    report.truncationReason = problem;
  }
}

function recoverSealed(seg: Segment, win: FileWindow, report: RecoveryReport, trust: boolean, nextBase: number): void {
  if (trust && recoverTrusted(seg, win, report) === null) return;
  recoverFull(seg, win, report, nextBase);
  seg.sealTimeIndex();
  seg.persistIndexes();
}

export function recoverSegments(dir: string, indexIntervalBytes: number, nowMs: number, fs: StorageFs = NODE_FS): { segments: Segment[]; report: RecoveryReport } {
  const t0 = performance.now();
  const { bases, clean } = listBases(dir, fs);
  const report: RecoveryReport = {
    cleanShutdown: clean,
    truncatedBytes: 0,
    truncationReason: null,
    rebuiltIndexes: [],
    segmentCount: 0,
    scannedSegments: 0,
    scannedBytes: 0,
    damaged: [],
    durationMs: 0,
  };
  const segments: Segment[] = [];
  const win = new FileWindow();
  let dirChanged = false;
  try {
    if (bases.length === 0) {
      segments.push(Segment.create(dir, 0, indexIntervalBytes, fs));
      fsyncDir(dir, fs);
    }
    for (let i = 0; i < bases.length; i++) {
      const exists = (ext: 'index' | 'timeindex' | 'damaged'): boolean => fs.existsSync(join(dir, segmentFileName(bases[i], ext)));
      // A segment that held damage is always re-scanned: its indexes skip the fenced ranges, and only
      // the scan finds them again.
      const trust = exists('index') && exists('timeindex') && !exists('damaged');
      const seg = Segment.open(dir, bases[i], indexIntervalBytes, fs);
      segments.push(seg);
      if (i < bases.length - 1) recoverSealed(seg, win, report, trust, bases[i + 1]);
      else recoverActive(seg, win, report, clean && trust);
      if (seg.persistDamage()) dirChanged = true;
      report.damaged.push(...seg.damage);
      seg.rollStartMs = rollStartOf(seg, nowMs);
      const prev = segments[i - 1];
      if (prev && prev.nextOffset !== seg.baseOffset) {
        throw new SluiceError(
          'LOG_CORRUPT',
          `segments of ${dir} are not contiguous: ${prev.logPath} ends at offset ${prev.nextOffset}, next segment starts at ${seg.baseOffset}`,
        );
      }
    }
    if (dirChanged) fsyncDir(dir, fs);
  } catch (err) {
    for (const s of segments) s.close();
    if (err instanceof SluiceError) throw err;
    throw new SluiceError('STORAGE_ERROR', `recovery of ${dir} failed: ${(err as Error).message}`, { cause: err });
  }
  report.segmentCount = segments.length;
  report.durationMs = performance.now() - t0;
  return { segments, report };
}
