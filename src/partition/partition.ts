/**
 * The partition: one owner for everything a partition is, inside exactly one shard worker for its
 * whole life. It owns its log, its Raft replica (a one-voter group while the replication factor is 1),
 * its high watermark, its parked long-poll fetches and their timers, and its config. Nothing else
 * touches the log, so there are no locks.
 *
 * It is driven the etcd way. Events in: a client op (`produce`, `fetch`, `offsets`, ...), a peer
 * message (`step`), a `tick`, a persist completing. Effects out, through `PartitionEffects`: replies to
 * client ops, messages to peers, and "I have a Ready to persist" (`needPersist`), which the shard
 * answers by calling `persist()` on every partition that asked in the same event-loop turn, so their
 * fdatasyncs are issued together (group commit across partitions).
 *
 * Order, always: persist (HardState, then log fdatasync), then send, then apply. Applying here means
 * moving the high watermark to commit + 1, which answers acks=all produces and wakes parked fetches.
 * Readers never see past the high watermark, so nothing a power loss could still erase is ever read.
 *
 * Serialization: every event is handled synchronously; only open, close and the fdatasync completion
 * are asynchronous, and the shard keeps a partition out of its table until open and after close.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError, toSluiceError } from '../errors.js';
import { PRODUCER_IDLE_EXPIRY_MS_DEFAULT, PRODUCER_SNAPSHOT_INTERVAL_BYTES } from '../constants.js';
import { validateBatches } from '../batch/codec.js';
import { PartitionLog, isDiskFull, type LogOpenOptions } from '../storage/index.js';
import type { AppendOptions, LogConfig } from '../storage/types.js';
import type { RecoveryReport } from '../storage/recovery.js';
import { EMPTY_HARD_STATE, readHardState, writeHardState } from '../storage/hard-state.js';
import { EpochCheckpoint } from '../storage/epoch-checkpoint.js';
import { emptySnapshotMeta, readSnapshotMeta, writeSnapshotMeta, type SnapshotMeta } from '../storage/snapshot-meta.js';
import { PartitionRaftStorage } from './raft-storage.js';
import { checkPartitionMeta } from '../storage/partition-meta.js';
import { SingleVoterReplica, type ReplicaReady } from './replica.js';
import type { ProducerStateTable } from './producer-state.js';
import { batchIdentities, recoverProducerState, writeProducerSnapshot, type ProducerStateRecovery } from './producer-state-store.js';

/** A client's produce: every record is validated before anything is written (replicated data is not). */
const PRODUCED: AppendOptions = Object.freeze({ produced: true });

/**
 * TEST ONLY: when set to a topic name, the process kills itself (SIGKILL) right after an idempotent
 * append to that topic is durable and before the reply leaves the shard, so a test can prove that the
 * retry after a restart is deduplicated. Never set it in production.
 */
export const TEST_CRASH_AFTER_APPEND_ENV = 'SLUICE_TEST_CRASH_AFTER_APPEND';

/** This node's id inside the partition's Raft group. One node until the cluster issue adds peers. */
export const LOCAL_NODE_ID = 1;

/** `<data-dir>/<topic>-<partition>`, the storage layout (as Kafka). */
export function partitionDir(dataDir: string, topic: string, partition: number): string {
  return path.join(dataDir, `${topic}-${partition}`);
}

export interface PartitionIdentity {
  topic: string;
  /** New at every creation of the topic; '' for a caller that has none (tests of old data dirs). */
  topicId: string;
  partition: number;
}

export interface ProduceOk {
  baseOffset: number;
  lastOffset: number;
  appendTimeMs: number;
  logStartOffset: number;
}

/** A message to another replica of this partition. The cluster issue defines its contents and transport. */
export interface PeerMessage {
  to: number;
  payload: unknown;
}

/** How a partition acts on the world. The shard implements it; tests can too. */
export interface PartitionEffects {
  /** A produce is answered (acks=all: once committed). */
  produced(p: Partition, id: number, ok: ProduceOk): void;
  /** A request failed. */
  failed(p: Partition, id: number, err: SluiceError): void;
  /** Serve a fetch now: the shard reads through `p.readInto`/`p.read` into its response ring. */
  serveFetch(p: Partition, id: number, offset: number, maxBytes: number): void;
  /** The partition has a Ready: call `persist()` at the end of this turn (with every other one). */
  needPersist(p: Partition): void;
  /** A message for a peer; sent only after the Ready that produced it is persisted. */
  send(p: Partition, msg: PeerMessage): void;
}

interface Parked {
  id: number;
  offset: number;
  maxBytes: number;
  timer: NodeJS.Timeout;
}

interface PendingAck {
  id: number;
  ok: ProduceOk;
}

export class Partition {
  private readonly parked = new Map<number, Parked>();
  /** acks=all produces waiting for commit, in offset order. */
  private readonly pendingAcks: PendingAck[] = [];
  private hw: number;
  /** The highest offset an fdatasync was requested through (so a sync in flight is not asked twice). */
  private syncRequestedTo: number;
  private closed = false;
  /** Log bytes appended since the producer-state snapshot was last written. */
  private bytesSinceSnapshot = 0;
  private readonly crashAfterAppend = process.env[TEST_CRASH_AFTER_APPEND_ENV] ?? null;

  private constructor(
    readonly id: PartitionIdentity,
    private readonly log: PartitionLog,
    private readonly replica: SingleVoterReplica,
    private readonly epochs: EpochCheckpoint,
    private readonly effects: PartitionEffects,
    /** Idempotent producers' sequences and offsets (rebuilt from the log on open). */
    readonly producers: ProducerStateTable,
    readonly producerRecovery: ProducerStateRecovery,
    private readonly producerIdleExpiryMs: number,
  ) {
    this.hw = replica.commitIndex + 1;
    this.syncRequestedTo = replica.lastIndex;
  }

  /**
   * Opens (recovering) the partition: log, identity check, Raft state, leader-epoch checkpoint; then
   * the one voter elects itself in the next term (its HardState is persisted with the first Ready).
   * With `fresh`, first removes whatever a deleted namesake left behind.
   *
   * A data dir written before partitions were replicas opens as is: its batches carry epoch 0, it has
   * no HardState (term 0) and no checkpoint (rebuilt from the batch headers once).
   */
  static async open(
    dataDir: string,
    id: PartitionIdentity,
    config: LogConfig,
    fresh: boolean,
    options: LogOpenOptions,
    effects: PartitionEffects,
    producerIdleExpiryMs = PRODUCER_IDLE_EXPIRY_MS_DEFAULT,
  ): Promise<Partition> {
    const dir = partitionDir(dataDir, id.topic, id.partition);
    if (fresh) await fs.promises.rm(dir, { recursive: true, force: true });
    const log = await PartitionLog.open(dir, config, options);
    try {
      if (id.topicId !== '') checkPartitionMeta(dir, { topicId: id.topicId, partition: id.partition });
      const snap = readSnapshotMeta(dir);
      // A retention cut that wrote its snapshot but crashed before deleting every segment.
      if (snap && snap.logStartOffset > log.logStartOffset) log.dropSegmentsBelow(snap.logStartOffset);
      let epochs = EpochCheckpoint.load(dir);
      if (epochs) epochs.truncateFrom(log.nextOffset);
      else epochs = EpochCheckpoint.create(dir, log.epochStartsFrom(log.logStartOffset));
      // A cut on a full disk that deleted before its snapshot could be written (see enforceRetention),
      // or a data dir from before Raft whose retention already moved the start: record it now.
      if (log.logStartOffset > (snap?.logStartOffset ?? 0)) recordLogStart(dir, epochs, log.logStartOffset);
      const hs = readHardState(dir) ?? EMPTY_HARD_STATE;
      // The term never goes back: a batch's epoch is a term this node (or a leader) already had.
      const replica = new SingleVoterReplica(LOCAL_NODE_ID, { term: Math.max(hs.term, epochs.lastEpoch, 0), vote: hs.vote }, log.nextOffset - 1);
      // The new term's HardState goes out with the first Ready (persist()), not here: opening many
      // partitions must not cost two fsyncs each (a shard reopening hundreds would stall its thread).
      // Safe for one voter: the first batch of the term is preceded by its checkpoint entry, so a
      // restart never reuses a term that wrote anything.
      replica.campaign();
      const { table, report } = recoverProducerState(log);
      const p = new Partition(id, log, replica, epochs, effects, table, report, producerIdleExpiryMs);
      if (report.replayedBatches > 0) p.snapshotProducers();
      return p;
    } catch (err) {
      await log.close().catch(() => {});
      throw err;
    }
  }

  get name(): string {
    return `${this.id.topic}/${this.id.partition}`;
  }

  get dir(): string {
    return this.log.dir;
  }

  /** Commit index + 1: the first offset nobody may read yet. */
  get highWatermark(): number {
    return this.hw;
  }

  get logStartOffset(): number {
    return this.log.logStartOffset;
  }

  /** Offset the next append gets (may be above the high watermark until the append commits). */
  get logEndOffset(): number {
    return this.log.nextOffset;
  }

  get sizeBytes(): number {
    return this.log.sizeBytes;
  }

  get term(): number {
    return this.replica.term;
  }

  get parkedCount(): number {
    return this.parked.size;
  }

  get pendingAckCount(): number {
    return this.pendingAcks.length;
  }

  get config(): Readonly<LogConfig> {
    return this.log.config;
  }

  /** What recovery checked, truncated, rebuilt and fenced when the log opened. */
  get recovery(): RecoveryReport {
    return this.log.recovery;
  }

  /** Fenced (corrupt) ranges of the log; 0 on a healthy partition. */
  get damagedRangeCount(): number {
    return this.log.damagedRangeCount;
  }

  /** The leader-epoch checkpoint (epoch -> first offset), for the RaftStorage adapter and tests. */
  get epochCheckpoint(): EpochCheckpoint {
    return this.epochs;
  }

  /** src/raft's RaftStorage over this partition's log (what RaftNode will read; see raft-storage.ts). */
  raftStorage(): PartitionRaftStorage {
    return new PartitionRaftStorage(this.log, this.epochs, () => this.snapshotMeta() ?? emptySnapshotMeta([LOCAL_NODE_ID]), () => this.replica.hardState);
  }

  /** The snapshot metadata on disk, or null before the first retention cut. */
  snapshotMeta(): SnapshotMeta | null {
    return readSnapshotMeta(this.log.dir);
  }

  private checkOpen(): void {
    if (this.closed) throw new SluiceError('UNKNOWN_PARTITION', `partition ${this.name} is being deleted`);
  }

  // --- Client events ---------------------------------------------------------------------------

  /**
   * Appends client batches as the leader (offsets and epoch assigned in place). acks=all is answered
   * once committed; acks=leader and acks=none at once (the host answers acks=none even earlier).
   * Throws on bad input or a fenced log, having written nothing.
   */
  produce(id: number, bytes: Uint8Array, acks: 0 | 1 | 2): void {
    this.checkOpen();
    if (this.replica.role !== 'leader') throw new SluiceError('NOT_LEADER', `this node does not lead ${this.name}`);
    // Idempotent producers: checked against the table before anything is written. On the one voter
    // the leader's check-then-append keeps the table in log order; followers (the cluster issue) will
    // feed it from the log they replicate instead.
    const ids = batchIdentities(bytes);
    if (ids !== null) {
      const check = this.producers.check(ids);
      if (check.kind !== 'append') {
        // A malformed batch is reported as such, not as a sequence problem.
        validateBatches(bytes, this.log.config.maxBatchBytes);
        if (check.kind === 'error') throw check.error;
        // A retry: answered with the original offsets once they are committed, writing nothing.
        return this.answerAtCommit(id, { baseOffset: check.baseOffset, lastOffset: check.lastOffset, appendTimeMs: check.appendTimeMs, logStartOffset: this.log.logStartOffset });
      }
    }
    const term = this.replica.term;
    // The term's first write: its HardState first (a vote must be durable before anything of the term).
    if (this.epochs.lastEpoch !== term && this.replica.hasReady()) this.persistHardState();
    // The epoch is on disk before the first batch of the term, so the checkpoint is never behind the log.
    if (this.epochs.lastEpoch !== term) this.epochs.assign(term, this.log.nextOffset);
    const r = this.log.append(bytes, term, PRODUCED);
    if (ids !== null) {
      this.producers.record(ids, r.baseOffset, r.appendTimeMs);
      this.bytesSinceSnapshot += bytes.length;
      if (this.crashAfterAppend === this.id.topic) void this.log.flush().then(() => process.kill(process.pid, 'SIGKILL'));
    }
    const ok: ProduceOk = { baseOffset: r.baseOffset, lastOffset: r.lastOffset, appendTimeMs: r.appendTimeMs, logStartOffset: this.log.logStartOffset };
    if (this.log.config.flush.kind === 'always') {
      this.replica.appended(r.lastOffset);
      if (acks === 2) this.pendingAcks.push({ id, ok });
      else this.effects.produced(this, id, ok);
      this.effects.needPersist(this);
    } else {
      // A relaxed flush policy is the topic's opt-out of durability: reaching the OS is persisting.
      this.replica.appendedDurable(r.lastOffset);
      this.effects.produced(this, id, ok);
      this.applyCommit();
    }
  }

  /** Answers now if `ok` is committed, else when it is (pending acks stay in offset order). */
  private answerAtCommit(id: number, ok: ProduceOk): void {
    if (ok.lastOffset < this.hw) return this.effects.produced(this, id, ok);
    let at = this.pendingAcks.length;
    while (at > 0 && this.pendingAcks[at - 1].ok.lastOffset > ok.lastOffset) at--;
    this.pendingAcks.splice(at, 0, { id, ok });
  }

  /**
   * A fetch: served at once when `offset` is below the high watermark, parked (when `mayPark`) when it
   * is at it and the caller is willing to wait. Offsets above the high watermark are out of range.
   * Returns true when the fetch was parked (it is answered later, on commit or timeout).
   */
  fetch(id: number, offset: number, maxBytes: number, maxWaitMs: number, mayPark: boolean): boolean {
    this.checkOpen();
    const start = this.log.logStartOffset;
    if (offset < start || offset > this.hw) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${offset} is outside [${start}, ${this.hw}] of ${this.name}`);
    }
    if (offset === this.hw && maxWaitMs > 0 && mayPark) {
      const timer = setTimeout(() => {
        if (this.unpark(id)) this.effects.serveFetch(this, id, offset, maxBytes);
      }, maxWaitMs);
      this.parked.set(id, { id, offset, maxBytes, timer });
      return true;
    }
    this.effects.serveFetch(this, id, offset, maxBytes);
    return false;
  }

  /** Removes a parked fetch (timeout or cancel); true if it was still parked. */
  unpark(id: number): boolean {
    const f = this.parked.get(id);
    if (!f) return false;
    this.parked.delete(id);
    clearTimeout(f.timer);
    return true;
  }

  /** Committed batches from `offset` into `target` (never past the high watermark). */
  readInto(offset: number, maxBytes: number, target: Uint8Array): { bytes: number; nextOffset: number } {
    return this.log.readInto(offset, maxBytes, target, this.hw);
  }

  /** Committed batches from `offset` (never past the high watermark). */
  read(offset: number, maxBytes: number): { data: Uint8Array; nextOffset: number } {
    return this.log.read(offset, maxBytes, this.hw);
  }

  /** ListOffsets: 'latest' is the high watermark, so no one is pointed at uncommitted data. */
  offsetFor(spec: 'earliest' | 'latest' | number): number {
    this.checkOpen();
    if (spec === 'earliest') return this.log.logStartOffset;
    if (spec === 'latest') return this.hw;
    const at = this.log.offsetForTimestamp(spec);
    return at === null || at >= this.hw ? -1 : at;
  }

  updateConfig(config: LogConfig): void {
    this.log.updateConfig(config);
  }

  // --- Raft events -----------------------------------------------------------------------------

  /** A message from a peer replica. With one voter there are none; the cluster issue routes them here. */
  step(msg: PeerMessage): void {
    throw new SluiceError('INVALID_REQUEST', `partition ${this.name} has no peer ${String(msg.to)}: it is a one-voter group`);
  }

  /** One logical tick (the shard ticks every partition on one interval). */
  tick(): void {
    if (this.closed) return;
    this.replica.tick();
    if (this.replica.hasReady()) this.effects.needPersist(this);
  }

  /**
   * Handles the replica's Ready: HardState (synchronously, atomically), then the log's fdatasync
   * (asynchronously, joining the log's group commit); on completion the entries are persisted, the
   * one voter commits them, and only then are peers sent to and the commit applied.
   */
  persist(): void {
    if (this.closed || !this.replica.hasReady()) return;
    const rd = this.replica.ready();
    try {
      if (rd.hardState) writeHardState(this.log.dir, rd.hardState);
    } catch (err) {
      this.replica.hardStateNotPersisted();
      return this.failPending(toSluiceError(err));
    }
    this.requestSync(rd.syncTo, rd.messages);
  }

  /** Writes a pending HardState now (synchronously), leaving the rest of the Ready for persist(). */
  private persistHardState(): void {
    const rd = this.replica.ready();
    try {
      if (rd.hardState) writeHardState(this.log.dir, rd.hardState);
    } catch (err) {
      // Nothing of the term is written yet (a full disk): the next produce tries again.
      this.replica.hardStateNotPersisted();
      throw err;
    }
    this.requestSync(rd.syncTo, rd.messages);
  }

  private requestSync(syncTo: number, messages: ReplicaReady['messages']): void {
    const rd = { messages };
    if (syncTo <= this.syncRequestedTo) return;
    this.syncRequestedTo = syncTo;
    this.log.flush().then(
      () => {
        this.replica.persisted(syncTo);
        for (const m of rd.messages) this.effects.send(this, m);
        this.applyCommit();
      },
      (err) => this.failPending(toSluiceError(err)),
    );
  }

  /** Moves the high watermark to commit + 1: answers acks=all produces and wakes parked fetches. */
  private applyCommit(): void {
    const hw = this.replica.commitIndex + 1;
    if (hw <= this.hw) return;
    this.hw = hw;
    let n = 0;
    while (n < this.pendingAcks.length && this.pendingAcks[n].ok.lastOffset < hw) n++;
    for (const a of this.pendingAcks.splice(0, n)) this.effects.produced(this, a.id, a.ok);
    if (this.parked.size === 0) return;
    const ready = [...this.parked.values()].filter((f) => f.offset < hw);
    for (const f of ready) {
      this.unpark(f.id);
      this.effects.serveFetch(this, f.id, f.offset, f.maxBytes);
    }
  }

  /** A persist failed: the log is fenced, and nothing waiting for commit can succeed here. */
  private failPending(err: SluiceError): void {
    for (const a of this.pendingAcks.splice(0)) this.effects.failed(this, a.id, err);
  }

  // --- Retention and life cycle ----------------------------------------------------------------

  /**
   * Applies retention through the Raft state: the log start moves only to a committed offset, and the
   * snapshot metadata recording it (and the trimmed epoch checkpoint) is written before any segment
   * is deleted, so every replica derives its log start from the same Raft snapshot.
   */
  enforceRetention(nowMs: number): number {
    if (this.closed) return 0;
    this.producers.expire(nowMs, this.producerIdleExpiryMs);
    if (this.bytesSinceSnapshot >= PRODUCER_SNAPSHOT_INTERVAL_BYTES) this.snapshotProducers();
    let deferred = false;
    const n = this.log.enforceRetention(nowMs, this.hw, (newStart) => {
      try {
        recordLogStart(this.log.dir, this.epochs, newStart);
      } catch (err) {
        // A full disk: the cut is what frees space, and the snapshot needs a little. Only committed
        // data goes, so the one voter deletes first and records the start right after (or at the
        // next open, which repairs a snapshot behind the log start).
        if (!isDiskFull(err)) throw err;
        deferred = true;
      }
    });
    if (deferred) recordLogStart(this.log.dir, this.epochs, this.log.logStartOffset);
    return n;
  }

  /** Writes the producer-state snapshot as of the log end. A failure only costs a longer replay later. */
  snapshotProducers(): void {
    try {
      writeProducerSnapshot(this.log.dir, this.producers, this.log.nextOffset);
      this.bytesSinceSnapshot = 0;
    } catch {
      // Recovery replays from an older snapshot, or the whole log; nothing is lost.
    }
  }

  /** Answers every parked fetch (close: with what is there, or with `err`). */
  releaseParked(err: SluiceError | null): void {
    for (const f of [...this.parked.values()]) {
      this.unpark(f.id);
      if (err) this.effects.failed(this, f.id, err);
      else this.effects.serveFetch(this, f.id, f.offset, f.maxBytes);
    }
  }

  /** Flushes and closes; acks=all produces still waiting are answered after that final flush. */
  async close(remove: boolean): Promise<void> {
    const wasOpen = !this.closed;
    this.closed = true;
    if (wasOpen && !remove && this.bytesSinceSnapshot > 0) this.snapshotProducers();
    try {
      await this.log.close();
      this.replica.persisted(this.replica.lastIndex);
      this.applyCommit();
    } catch (err) {
      this.failPending(toSluiceError(err));
      throw err;
    } finally {
      if (remove) await fs.promises.rm(this.log.dir, { recursive: true, force: true });
    }
  }
}

/**
 * Records a new log start in the Raft snapshot metadata (index = start - 1, with its term) and trims
 * the leader-epoch checkpoint to it.
 */
function recordLogStart(dir: string, epochs: EpochCheckpoint, newStart: number): void {
  const index = newStart - 1;
  writeSnapshotMeta(dir, { index, term: Math.max(0, epochs.epochAt(index)), voters: [LOCAL_NODE_ID], learners: [], logStartOffset: newStart });
  epochs.truncateBefore(newStart);
}
