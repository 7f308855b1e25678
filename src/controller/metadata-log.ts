/**
 * The controller group's durable Raft log: an ordinary `PartitionLog` in
 * `<data-dir>/__cluster/metadata/`, read by the core through `PartitionRaftStorage`, with the same
 * side files as a partition (hard-state.json, snapshot.json, leader-epoch-checkpoint.json). Each
 * metadata record is one v2 batch of one record (KRaft's __cluster_metadata does the same), and Raft's
 * own runs are the partition's control batches. It runs on the main thread: the log is small and
 * written a few times per admin request.
 *
 * Bootstrap: a founding voter starts from a snapshot at index 1, term 1 holding the voters (what
 * `bootstrapState` gives the core), so the log begins at offset 2. The snapshot metadata is written
 * last; a crash before it repeats the bootstrap on the next open. A log that is *empty* (never founded
 * and never sent a snapshot by a leader: snapshot index 0) is where a voter may still choose between
 * founding and joining (`refound`); see `controllerLogState`.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CONTROLLER_LOG_SEGMENT_BYTES } from '../constants.js';
import { SluiceError } from '../errors.js';
import type { NodeId, Offset, Term } from '../model/index.js';
import { PartitionRaftStorage } from '../partition/raft-storage.js';
import { type Entry, type HardState, type RaftInitialState, type RaftStorage, type Snapshot } from '../raft/index.js';
import { EpochCheckpoint } from '../storage/epoch-checkpoint.js';
import { EMPTY_HARD_STATE, readHardState, writeHardState, type StoredHardState } from '../storage/hard-state.js';
import { readSnapshotMeta, writeSnapshotMeta, type SnapshotMeta } from '../storage/snapshot-meta.js';
import { defaultLogConfig, FILE_MODE, mkdirOwnerOnly, PartitionLog, type LogConfig, type LogOpenOptions } from '../storage/index.js';
import { fsyncDir, replaceFileAtomically } from '../storage/io.js';

/** `<data-dir>/__cluster/metadata`: the controller log (next to topics.json, which it replaces). */
export const METADATA_DIR = path.join('__cluster', 'metadata');
/**
 * The state-machine image of the snapshot at index N (a MetadataSnapshot): `metadata-<N>.snapshot`,
 * next to snapshot.json. Named by index so that writing a new one never touches the one snapshot.json
 * still points at: the image is written first, snapshot.json switches, older images are deleted.
 */
export function snapshotDataFile(index: number): string {
  return `metadata-${String(index).padStart(20, '0')}.snapshot`;
}
const SNAPSHOT_DATA_RE = /^metadata-(\d{20})\.snapshot$/;
/**
 * Present while a joining log has not yet been sent anything past its first snapshot. The first snapshot
 * a joiner gets is often the founding one (index 1, the founding voters), and the configuration
 * changes that make it a learner come after it: a joiner stopped in between would restart believing it
 * a founding voter with a log at index 1, and vote. With this file it starts over as a joiner instead.
 */
const JOINING_FILE = 'joining';
/** The index of the founding snapshot: the log starts right after it. */
const BOOTSTRAP_INDEX = 1;

export function metadataLogConfig(): LogConfig {
  // Never deleted by retention: the log is the metadata until a snapshot covers it.
  return { ...defaultLogConfig(), segmentBytes: CONTROLLER_LOG_SEGMENT_BYTES, retentionMs: -1, retentionBytes: -1, flush: { kind: 'always' } };
}

/**
 * What a data dir's controller log holds, read from disk (a node answers this before its controller
 * is open):
 * - `empty`: no log, or one that joins and was never sent a snapshot (no configuration, no vote cast);
 * - `founded`: the founding snapshot and nothing after it (no leader ever appended here);
 * - `records`: anything a leader appended or sent (its no-op, records, a snapshot past the founding one).
 * A voter whose log is `empty` founds the group only when a majority of the voters are known to hold no
 * `records` (docs/controller.md "Bootstrap").
 */
export type ControllerLogState = 'empty' | 'founded' | 'records';

export function controllerLogStateOnDisk(dataDir: string): ControllerLogState {
  const dir = path.join(dataDir, METADATA_DIR);
  const meta = readSnapshotMeta(dir);
  if (meta === null) return fs.existsSync(dir) && segmentBytes(dir) > 0 ? 'records' : 'empty';
  if (meta.index > BOOTSTRAP_INDEX || segmentBytes(dir) > 0) return 'records';
  return meta.index === BOOTSTRAP_INDEX && !fs.existsSync(path.join(dir, JOINING_FILE)) ? 'founded' : 'empty';
}

/** The bytes in the log's segment files (0 for a log that holds no batch). */
function segmentBytes(dir: string): number {
  let n = 0;
  for (const name of fs.readdirSync(dir)) if (name.endsWith('.log')) n += fs.statSync(path.join(dir, name)).size;
  return n;
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

export class MetadataLog implements RaftStorage {
  private readonly inner: PartitionRaftStorage;

  private constructor(
    readonly dir: string,
    private readonly log: PartitionLog,
    private readonly epochs: EpochCheckpoint,
    private meta: SnapshotMeta,
    private hs: StoredHardState,
    private snapData: Uint8Array,
  ) {
    this.inner = new PartitionRaftStorage(log, epochs, () => this.meta, () => this.hs);
  }

  /**
   * Opens (bootstrapping on first use) the controller log of `dataDir` for a group of `voters`. Refuses a
   * voter list that differs from the one the log was founded with: changing the controller's voters is
   * a membership change, not a flag edit.
   */
  static async open(dataDir: string, voters: readonly NodeId[], join: boolean, options: LogOpenOptions = {}): Promise<MetadataLog> {
    const dir = path.join(dataDir, METADATA_DIR);
    mkdirOwnerOnly(path.dirname(dir));
    const log = await PartitionLog.open(dir, metadataLogConfig(), options);
    try {
      let meta = readSnapshotMeta(dir);
      if (meta === null) {
        // A crash part-way through a bootstrap leaves an empty log; anything else is not ours to wipe.
        if (log.nextOffset > log.logStartOffset) {
          throw new SluiceError('LOG_CORRUPT', `${dir} holds a log but no ${'snapshot.json'}; refusing to bootstrap over it`);
        }
        meta = join ? bootstrapJoining(dir, log) : bootstrap(dir, log, voters);
      } else if (meta.index <= BOOTSTRAP_INDEX && log.nextOffset === log.logStartOffset && fs.existsSync(path.join(dir, JOINING_FILE))) {
        // A joiner stopped after its first snapshot and before anything after it: it joins again (its
        // term and vote are kept), rather than take the founding configuration it was sent for its own.
        meta = restartJoining(dir, log);
      } else if (meta.index > 0 && !sameIds(meta.voters, voters)) {
        throw new SluiceError(
          'INVALID_CONFIG',
          `the controller log in ${dir} was founded with voters [${meta.voters.join(',')}] but this node was started with [${[...voters].join(',')}]; ` +
            `start it with --controller-voters ${meta.voters.join(',')}`,
        );
      }
      if (meta.logStartOffset > log.logStartOffset) log.dropSegmentsBelow(meta.logStartOffset);
      let epochs = EpochCheckpoint.load(dir);
      if (epochs) epochs.truncateFrom(log.nextOffset);
      else epochs = EpochCheckpoint.create(dir, log.epochStartsFrom(log.logStartOffset));
      const hs = readHardState(dir) ?? EMPTY_HARD_STATE;
      const data = readSnapshotData(dir, meta.index);
      const opened = new MetadataLog(dir, log, epochs, meta, { term: Math.max(hs.term, epochs.lastEpoch, meta.term), vote: hs.vote }, data);
      opened.joining = fs.existsSync(path.join(dir, JOINING_FILE));
      opened.settleJoining();
      return opened;
    } catch (err) {
      await log.close().catch(() => {});
      throw err;
    }
  }

  /** As `controllerLogStateOnDisk`, for the open log. */
  get state(): ControllerLogState {
    if (this.meta.index > BOOTSTRAP_INDEX || this.lastIndex() > Math.max(this.meta.index, 0)) return 'records';
    return this.meta.index === BOOTSTRAP_INDEX && !this.joining ? 'founded' : 'empty';
  }

  /** The joining marker is on disk (see JOINING_FILE). */
  private joining = false;

  /** Once a joining log durably holds more than its first snapshot, it is an ordinary member's log. */
  settleJoining(): void {
    if (!this.joining || this.state !== 'records') return;
    fs.rmSync(path.join(this.dir, JOINING_FILE), { force: true });
    fsyncDir(this.dir);
    this.joining = false;
  }

  /**
   * Turns an `empty` log (opened to join, and never sent a snapshot) into a founding voter's log, for a
   * voter that found out no majority of the group holds records: the same bootstrap as a first start.
   */
  refound(voters: readonly NodeId[]): void {
    assert.equal(this.state, 'empty', 'metadata log: only an empty log can be founded');
    this.meta = bootstrap(this.dir, this.log, voters);
    this.joining = false;
    this.hs = { term: BOOTSTRAP_INDEX, vote: 0 };
    this.epochs.truncateFrom(0);
  }

  // --- RaftStorage (reads) --------------------------------------------------------------------------

  /**
   * As the partition's, plus the membership changes after the snapshot: the controller's log is small,
   * so it is read whole once at open to collect them (membership takes effect when appended).
   */
  initialState(): RaftInitialState {
    const init = this.inner.initialState();
    const last = this.lastIndex();
    const confEntries: Entry[] = [];
    for (let i = this.firstIndex(); i <= last; ) {
      const runs = this.entries(i, last, Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY);
      if (runs.length === 0) break;
      for (const e of runs) if (e.kind === 'conf') confEntries.push(e);
      const end = runs[runs.length - 1];
      i = end.index + end.count;
    }
    return { ...init, confEntries };
  }

  /**
   * snapshot.index + 1. The segments may still hold older batches (they are deleted only whole, and only
   * once the snapshot is durable); the core never reads below this.
   */
  firstIndex(): number {
    return this.meta.index + 1;
  }

  lastIndex(): number {
    return this.inner.lastIndex();
  }

  term(i: number): number {
    if (i < this.meta.index) return -1;
    return this.inner.term(i);
  }

  /** The index of the latest snapshot (compaction point). */
  get snapshotIndex(): number {
    return this.meta.index;
  }

  entries(lo: number, hi: number, bytesMax: number, countMax: number): readonly Entry[] {
    return this.inner.entries(lo, hi, bytesMax, countMax);
  }

  snapshot(): Snapshot {
    return { ...this.inner.snapshot(), data: this.snapData };
  }

  get hardState(): StoredHardState {
    return this.hs;
  }

  // --- The driver's write side ----------------------------------------------------------------------

  /** Term and vote, replaced atomically and durable on return (the commit index is re-learned). */
  writeHardState(h: HardState): void {
    if (h.term === this.hs.term && h.vote === this.hs.vote) return;
    const next = { term: h.term, vote: h.vote };
    writeHardState(this.dir, next);
    this.hs = next;
  }

  /**
   * Appends runs verbatim (each run's data is a batch whose baseOffset and epoch are its index and
   * term); when the first overlaps the log, truncates from its index first (a follower's conflict).
   * Resolves when they are fdatasynced.
   */
  append(entries: readonly Entry[]): Promise<void> {
    assert.ok(entries.length > 0);
    const first = entries[0].index;
    if (first < this.log.nextOffset) {
      this.log.truncateTo(first);
      this.epochs.truncateFrom(first);
    }
    assert.equal(first, this.log.nextOffset, 'metadata log: append leaves a gap');
    // Each epoch is recorded before its first batch is written (the checkpoint may run ahead, never behind).
    for (const e of entries) this.epochs.assign(e.term, e.index);
    const bytes = Buffer.concat(entries.map((e) => e.data));
    return this.log.appendReplicated(bytes).durable;
  }

  /**
   * Replaces the whole log by a snapshot from the leader: its image first, then the metadata that makes
   * it the log start, then the empty log after it.
   */
  installSnapshot(snap: Snapshot): void {
    this.switchSnapshot(snap);
    this.log.truncateFullyAndStartAt(snap.index + 1);
    this.epochs.truncateFrom(0);
  }

  /**
   * Compaction: `snap` (made by the core's `compact()` at an applied index, with the state image) becomes
   * the log start. The image and snapshot.json are durable before any segment is deleted; segments
   * wholly below the new start are deleted (the rest stay until a later compaction passes them).
   */
  compact(snap: Snapshot): void {
    assert.ok(snap.index > this.meta.index && snap.index <= this.lastIndex(), `metadata log: bad compaction index ${snap.index}`);
    this.switchSnapshot(snap);
    this.log.dropSegmentsBelow(snap.index + 1);
    this.epochs.truncateBefore(this.log.logStartOffset);
  }

  private switchSnapshot(snap: Snapshot): void {
    if (snap.data.length > 0) writeSnapshotData(this.dir, snap.index, snap.data);
    const meta: SnapshotMeta = { index: snap.index, term: snap.term, voters: [...snap.conf.voters], learners: [...snap.conf.learners], logStartOffset: snap.index + 1 };
    writeSnapshotMeta(this.dir, meta);
    this.meta = meta;
    this.snapData = snap.data;
    removeOlderSnapshotData(this.dir, snap.index);
  }

  close(): Promise<void> {
    return this.log.close();
  }
}

function bootstrap(dir: string, log: PartitionLog, voters: readonly NodeId[]): SnapshotMeta {
  log.truncateFullyAndStartAt(BOOTSTRAP_INDEX + 1);
  writeHardState(dir, { term: BOOTSTRAP_INDEX, vote: 0 });
  const meta: SnapshotMeta = {
    index: BOOTSTRAP_INDEX as Offset,
    term: BOOTSTRAP_INDEX as Term,
    voters: [...voters].sort((a, b) => a - b),
    learners: [],
    logStartOffset: BOOTSTRAP_INDEX + 1,
  };
  writeSnapshotMeta(dir, meta);
  fs.rmSync(path.join(dir, JOINING_FILE), { force: true });
  fsyncDir(dir);
  return meta;
}

/** Replaced atomically and durably: temp file, fdatasync, rename, fsync of the directory. */
/**
 * A node that joins an existing group (not a founding voter, or one back with an empty disk): an empty
 * log at index 0 with no configuration, so it can neither campaign nor count itself a voter; the leader
 * sends it a snapshot first, which carries the configuration.
 */
function bootstrapJoining(dir: string, log: PartitionLog): SnapshotMeta {
  replaceFileAtomically(path.join(dir, JOINING_FILE), 'a joining controller log: no record from a leader past its first snapshot yet\n');
  log.truncateFullyAndStartAt(1);
  writeHardState(dir, { term: 0, vote: 0 });
  const meta: SnapshotMeta = { index: 0, term: 0, voters: [], learners: [], logStartOffset: 1 };
  writeSnapshotMeta(dir, meta);
  return meta;
}

/** A joiner's log back to empty (index 0, no configuration), its hard state kept. */
function restartJoining(dir: string, log: PartitionLog): SnapshotMeta {
  log.truncateFullyAndStartAt(1);
  const meta: SnapshotMeta = { index: 0, term: 0, voters: [], learners: [], logStartOffset: 1 };
  writeSnapshotMeta(dir, meta);
  return meta;
}

function writeSnapshotData(dir: string, index: number, data: Uint8Array): void {
  const file = path.join(dir, snapshotDataFile(index));
  const temp = `${file}.tmp`;
  fs.rmSync(temp, { force: true });
  const fd = fs.openSync(temp, 'w', FILE_MODE);
  try {
    fs.writeFileSync(fd, data);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
  fsyncDir(dir);
}

/** The image of the snapshot at `index`; empty for the founding snapshot (the empty state). */
function readSnapshotData(dir: string, index: number): Uint8Array {
  const file = path.join(dir, snapshotDataFile(index));
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && index <= BOOTSTRAP_INDEX) return new Uint8Array(0);
    throw new SluiceError('LOG_CORRUPT', `${file} (the metadata snapshot at index ${index}) cannot be read: ${(err as Error).message}`, { cause: err });
  }
}

/** Images older than the one snapshot.json names (a crash may leave one behind; best effort). */
function removeOlderSnapshotData(dir: string, index: number): void {
  for (const name of fs.readdirSync(dir)) {
    const m = SNAPSHOT_DATA_RE.exec(name);
    if (m && Number(m[1]) < index) fs.rmSync(path.join(dir, name), { force: true });
  }
}
