/**
 * A power cut, after a kill -9: every segment file of a node's data dir is cut back to the size its
 * last fdatasync covered, as journalled by the broker's TEST-ONLY sync journal
 * (src/storage/test-hooks.ts, SLUICE_TEST_SYNC_JOURNAL). kill -9 alone keeps the page cache, so a
 * broker that acknowledged before fsync would lose nothing in a test; a real power cut may drop every
 * byte written after the last completed fdatasync, and this does exactly that (the worst case POSIX
 * allows; the same model as test/storage/helpers.ts `dropAllUnsynced`). A segment never synced at all is
 * cut to 0 bytes. Only `.log` segments are cut: the broker rebuilds the active segment's indexes after
 * a crash, and its small state files are replaced atomically (temp, fsync, rename).
 */
import fs from 'node:fs';
import path from 'node:path';

export interface PowerCut {
  files: number;
  /** Bytes dropped, over all files. */
  droppedBytes: number;
}

/** The last synced size of each file, from the journal (later lines win). */
export function readSyncJournal(journal: string): Map<string, number> {
  const synced = new Map<string, number>();
  if (!fs.existsSync(journal)) return synced;
  for (const line of fs.readFileSync(journal, 'utf8').split('\n')) {
    const tab = line.lastIndexOf('\t');
    if (tab <= 0) continue;
    const size = Number(line.slice(tab + 1));
    if (Number.isSafeInteger(size)) synced.set(line.slice(0, tab), size);
  }
  return synced;
}

function segmentFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...segmentFiles(p));
    else if (/^\d{20}\.log$/.test(entry.name)) out.push(p);
  }
  return out;
}

/** Cuts the segments under `dataDir` (the broker must be dead) to their synced sizes; notes them in the journal. */
export function cutPower(dataDir: string, journal: string): PowerCut {
  const synced = readSyncJournal(journal);
  const cut: PowerCut = { files: 0, droppedBytes: 0 };
  const notes: string[] = [];
  for (const file of segmentFiles(fs.realpathSync(dataDir))) {
    const size = fs.statSync(file).size;
    const keep = Math.min(size, synced.get(file) ?? 0);
    if (keep < size) {
      fs.truncateSync(file, keep);
      cut.files++;
      cut.droppedBytes += size - keep;
    }
    notes.push(`${file}\t${keep}\n`);
  }
  // What survived the cut is on disk now: the next life's journal continues from these sizes.
  fs.appendFileSync(journal, notes.join(''));
  return cut;
}
