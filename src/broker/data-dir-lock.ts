/**
 * The data-dir lock: `<data-dir>/.lock`, created with O_EXCL and holding the owner's pid. A second
 * broker on the same directory fails with DATA_DIR_LOCKED naming the holder; a lock left by a process
 * that no longer exists (kill -9) is stale and is taken over.
 *
 * Two brokers in one process (tests, embedders) are told apart by a per-process registry, since both
 * would write the same pid.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';
import { FILE_MODE, mkdirOwnerOnly } from '../storage/index.js';

export const LOCK_FILE = '.lock';

const heldInThisProcess = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function unwritable(dataDir: string, err: unknown): SluiceError {
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new SluiceError('STORAGE_ERROR', `data dir ${dataDir} is not usable (${code}): ${(err as Error).message}`, { cause: err });
}

export class DataDirLock {
  private released = false;

  private constructor(
    readonly dataDir: string,
    readonly file: string,
  ) {}

  /** Creates the data dir if needed and takes its lock. */
  static acquire(dataDir: string): DataDirLock {
    const dir = path.resolve(dataDir);
    try {
      mkdirOwnerOnly(dir);
      fs.accessSync(dir, fs.constants.W_OK | fs.constants.R_OK | fs.constants.X_OK);
    } catch (err) {
      throw unwritable(dir, err);
    }
    if (heldInThisProcess.has(dir)) {
      throw new SluiceError('DATA_DIR_LOCKED', `data dir ${dir} is locked by another broker in this process (pid ${process.pid})`);
    }
    const file = path.join(dir, LOCK_FILE);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = fs.openSync(file, 'wx', FILE_MODE);
        try {
          fs.writeSync(fd, `${process.pid}\n`);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        heldInThisProcess.add(dir);
        return new DataDirLock(dir, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw unwritable(dir, err);
      }
      const holder = readHolder(file);
      if (holder !== null && holder !== process.pid && pidAlive(holder)) {
        throw new SluiceError('DATA_DIR_LOCKED', `data dir ${dir} is locked by pid ${holder} (${file}); stop that broker or use another --data-dir`);
      }
      // Stale: its owner is gone (or the file is unreadable garbage from a crash mid-write).
      try {
        fs.unlinkSync(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw unwritable(dir, err);
      }
    }
    throw new SluiceError('DATA_DIR_LOCKED', `data dir ${dir}: another process keeps taking the lock ${file}`);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    heldInThisProcess.delete(this.dataDir);
    try {
      if (readHolder(this.file) === process.pid) fs.unlinkSync(this.file);
    } catch {
      // Already gone: nothing to release.
    }
  }
}

function readHolder(file: string): number | null {
  try {
    const n = Number.parseInt(fs.readFileSync(file, 'utf8').trim(), 10);
    return Number.isSafeInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}
