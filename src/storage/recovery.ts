/**
 * Recovery on open. Rules (docs/storage.md has the why):
 *  - sealed segments were fdatasynced when they were sealed, so they are trusted: their indexes are
 *    checked for shape, and only the batch headers after the last index entry are walked (no CRC);
 *    a sealed segment whose index is missing or malformed is CRC-scanned in full and re-indexed;
 *    anything wrong inside a sealed segment is LOG_CORRUPT naming the file and position;
 *  - the active segment is CRC-validated batch by batch from its start after an unclean shutdown
 *    (no clean-shutdown marker), and the first torn or corrupt batch and everything after it is
 *    truncated; its indexes are rebuilt from that scan. After a clean shutdown it is treated like a
 *    sealed segment, falling back to the full scan if anything looks wrong;
 *  - offsets must be gapless across segments; index files without a .log are removed.
 */
import fs from 'node:fs';
import { SluiceError } from '../errors.js';
import { fsyncDir, join, parseSegmentFileName, segmentFileName, unlinkIfExists } from './io.js';
import { FileWindow, scanBatches } from './scan.js';
import { Segment } from './segment.js';

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
  durationMs: number;
}

function corrupt(seg: Segment, problem: string): SluiceError {
  return new SluiceError('LOG_CORRUPT', `sealed segment ${seg.logPath} is corrupt: ${problem}`);
}

function listBases(dir: string): { bases: number[]; clean: boolean } {
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
      unlinkIfExists(join(dir, o.name));
      removed = true;
    }
  }
  const clean = names.includes(CLEAN_SHUTDOWN_FILE);
  if (clean) unlinkIfExists(join(dir, CLEAN_SHUTDOWN_FILE));
  if (removed || clean) fsyncDir(dir);
  return { bases: [...logs].sort((a, b) => a - b), clean };
}

/** When a recovered segment started, for segment.ms: its file's birth time, else now. */
function rollStartOf(seg: Segment, nowMs: number): number | null {
  if (seg.size === 0) return null;
  const birth = fs.fstatSync(seg.fd).birthtimeMs;
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
 * CRC-validates every batch from the start and rebuilds both indexes. Returns the scan's problem (the
 * first invalid batch) and where the valid prefix ends; the caller decides between truncating and failing.
 */
function recoverFull(seg: Segment, win: FileWindow, report: RecoveryReport): { problem: string | null; endPos: number; fileEnd: number } {
  const fileEnd = seg.fileBytes();
  seg.resetState();
  const out = scanBatches(seg, win, 0, seg.baseOffset, fileEnd, true);
  seg.offsetIndex.rewrite();
  seg.timeIndex.rewrite();
  report.rebuiltIndexes.push(seg.indexPath, seg.timeIndexPath);
  return { problem: out.problem, endPos: out.endPos, fileEnd };
}

function recoverActive(seg: Segment, win: FileWindow, report: RecoveryReport, trust: boolean): void {
  if (trust && recoverTrusted(seg, win, report) === null) return;
  const { problem, endPos, fileEnd } = recoverFull(seg, win, report);
  if (endPos < fileEnd) {
    fs.ftruncateSync(seg.fd, endPos);
    report.truncatedBytes = fileEnd - endPos;
    report.truncationReason = problem;
  }
}

function recoverSealed(seg: Segment, win: FileWindow, report: RecoveryReport, indexesExist: boolean): void {
  if (indexesExist) {
    const problem = recoverTrusted(seg, win, report);
    if (problem === null) return;
    // A torn tail here is corruption too (sealed segments were synced), but a bad index only needs a rebuild.
    if (!problem.startsWith('malformed')) throw corrupt(seg, problem);
  }
  const { problem } = recoverFull(seg, win, report);
  if (problem) throw corrupt(seg, problem);
  seg.sealTimeIndex();
  seg.persistIndexes();
}

export function recoverSegments(dir: string, indexIntervalBytes: number, nowMs: number): { segments: Segment[]; report: RecoveryReport } {
  const t0 = performance.now();
  const { bases, clean } = listBases(dir);
  const report: RecoveryReport = {
    cleanShutdown: clean,
    truncatedBytes: 0,
    truncationReason: null,
    rebuiltIndexes: [],
    segmentCount: 0,
    durationMs: 0,
  };
  const segments: Segment[] = [];
  const win = new FileWindow();
  try {
    if (bases.length === 0) {
      segments.push(Segment.create(dir, 0, indexIntervalBytes));
      fsyncDir(dir);
    }
    for (let i = 0; i < bases.length; i++) {
      const indexesExist =
        fs.existsSync(join(dir, segmentFileName(bases[i], 'index'))) && fs.existsSync(join(dir, segmentFileName(bases[i], 'timeindex')));
      const seg = Segment.open(dir, bases[i], indexIntervalBytes);
      segments.push(seg);
      if (i < bases.length - 1) recoverSealed(seg, win, report, indexesExist);
      else recoverActive(seg, win, report, clean && indexesExist);
      seg.rollStartMs = rollStartOf(seg, nowMs);
      const prev = segments[i - 1];
      if (prev && prev.nextOffset !== seg.baseOffset) {
        throw new SluiceError(
          'LOG_CORRUPT',
          `segments of ${dir} are not contiguous: ${prev.logPath} ends at offset ${prev.nextOffset}, next segment starts at ${seg.baseOffset}`,
        );
      }
    }
  } catch (err) {
    for (const s of segments) s.close();
    if (err instanceof SluiceError) throw err;
    throw new SluiceError('STORAGE_ERROR', `recovery of ${dir} failed: ${(err as Error).message}`, { cause: err });
  }
  report.segmentCount = segments.length;
  report.durationMs = performance.now() - t0;
  return { segments, report };
}
