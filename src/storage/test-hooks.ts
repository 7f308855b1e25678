/**
 * TEST-ONLY fault hooks for the chaos harness (`npm run chaos`, test/chaos, docs/chaos.md). Every hook
 * is off unless its `SLUICE_TEST_*` environment variable is set when the broker process starts; with
 * none set, `withTestHooks` returns the options it was given, untouched, and costs nothing. They are
 * not flags of `sluice serve` on purpose: nobody should find them in `--help` and run them in
 * production. They wrap only the two fdatasync seams that `LogOpenOptions` already has for tests.
 *
 *  - `SLUICE_TEST_FAULTS_FILE=<path>`: a JSON file the harness rewrites (atomically) while the broker
 *    runs; `{"fsyncDelayMs": n}` delays every group-commit fdatasync by n ms (a slow disk). It is read
 *    on each fdatasync, so a fault starts and heals without restarting the broker.
 *  - `SLUICE_TEST_SYNC_JOURNAL=<path>`: after each successful fdatasync, and BEFORE the log learns of
 *    it (so before anything it covered is acknowledged), appends "<file>\t<size at sync start>\n".
 *    After a kill -9 the harness cuts every segment file back to its last journalled size: what a power
 *    cut may leave of a file whose page cache was never flushed (the same model as
 *    test/storage/helpers.ts `cutPower`). kill -9 alone keeps the page cache, so without this a broker
 *    that acknowledges before fsync would never lose anything in a test.
 *  - `SLUICE_TEST_ACK_BEFORE_FSYNC=1`: the deliberate bug (the twin of the simulator's
 *    ack-before-persist): the log is told its fdatasync succeeded at once, and the real one runs
 *    only once the file has been idle for `TEST_ACK_BEFORE_FSYNC_LAG_MS`, a lazy flush. With the
 *    journal and a kill -9 under load, the acknowledged tail is lost, and the chaos checker must say so.
 */
import fs from 'node:fs';
import { TEST_ACK_BEFORE_FSYNC_LAG_MS } from '../constants.js';
import type { LogOpenOptions } from './log.js';

export const TEST_FAULTS_FILE_ENV = 'SLUICE_TEST_FAULTS_FILE';
export const TEST_SYNC_JOURNAL_ENV = 'SLUICE_TEST_SYNC_JOURNAL';
export const TEST_ACK_BEFORE_FSYNC_ENV = 'SLUICE_TEST_ACK_BEFORE_FSYNC';

/** What the harness writes into the faults file. */
export interface TestFaults {
  fsyncDelayMs?: number;
}

type AsyncSync = NonNullable<LogOpenOptions['fdatasync']>;

export interface HookConfig {
  faultsFile: string | null;
  journal: string | null;
  ackBeforeFsync: boolean;
}

function hookConfig(env: NodeJS.ProcessEnv): HookConfig {
  return {
    faultsFile: env[TEST_FAULTS_FILE_ENV] || null,
    journal: env[TEST_SYNC_JOURNAL_ENV] || null,
    ackBeforeFsync: env[TEST_ACK_BEFORE_FSYNC_ENV] === '1',
  };
}

/** Read once per thread: the hooks are chosen when the process starts, never toggled. */
const CONFIG = hookConfig(process.env);

/** The faults in force now; a missing or half-written file means none. */
function currentFsyncDelayMs(file: string): number {
  try {
    const faults = JSON.parse(fs.readFileSync(file, 'utf8')) as TestFaults;
    const ms = Number(faults.fsyncDelayMs ?? 0);
    return Number.isFinite(ms) && ms > 0 ? ms : 0;
  } catch {
    return 0;
  }
}

/** Wraps one fdatasync so that success is journalled with the size the file had when it started. */
function journalled(journal: string, sync: AsyncSync): AsyncSync {
  return (fd, cb) => {
    let file: string;
    let size: number;
    try {
      file = fs.readlinkSync(`/proc/self/fd/${fd}`);
      size = fs.fstatSync(fd).size;
    } catch (err) {
      return cb(err as NodeJS.ErrnoException);
    }
    sync(fd, (err) => {
      if (err === null) fs.appendFileSync(journal, `${file}\t${size}\n`);
      cb(err);
    });
  };
}

/**
 * Returns `options` with the hooks the environment asks for applied to its fdatasync seams (defaults:
 * the real ones). Identity when no hook is set.
 */
export function withTestHooks(options: LogOpenOptions, config: HookConfig = CONFIG): LogOpenOptions {
  if (config.faultsFile === null && config.journal === null && !config.ackBeforeFsync) return options;
  let sync: AsyncSync = options.fdatasync ?? fs.fdatasync;
  let syncSync = options.fdatasyncSync ?? fs.fdatasyncSync;
  if (config.journal !== null) {
    const journal = config.journal;
    sync = journalled(journal, sync);
    const inner = syncSync;
    syncSync = (fd) => {
      const file = fs.readlinkSync(`/proc/self/fd/${fd}`);
      const size = fs.fstatSync(fd).size;
      inner(fd);
      fs.appendFileSync(journal, `${file}\t${size}\n`);
    };
  }
  if (config.faultsFile !== null) {
    const file = config.faultsFile;
    const inner = sync;
    sync = (fd, cb) => {
      const delayMs = currentFsyncDelayMs(file);
      if (delayMs === 0) inner(fd, cb);
      else setTimeout(() => inner(fd, cb), delayMs);
    };
  }
  if (config.ackBeforeFsync) {
    const inner = sync;
    const deferred = new Map<number, NodeJS.Timeout>();
    sync = (fd, cb) => {
      // A lazy flush: the real sync of an fd runs once it has been idle for the lag, so under steady
      // load the acknowledged tail is never synced and a power cut always finds some of it.
      clearTimeout(deferred.get(fd));
      deferred.set(
        fd,
        setTimeout(() => {
          deferred.delete(fd);
          // The fd may be closed (or even reused) by now: a lazy flush has no one to report to.
          inner(fd, () => {});
        }, TEST_ACK_BEFORE_FSYNC_LAG_MS),
      );
      queueMicrotask(() => cb(null));
    };
  }
  return { ...options, fdatasync: sync, fdatasyncSync: syncSync };
}
