/**
 * The partition: one owner for everything a partition is, inside exactly one shard worker for its
 * whole life. It owns its log, its Raft replica (src/raft's `RaftNode` over `PartitionRaftStorage`),
 * its high watermark, its parked long-poll fetches and their timers, and its config. Nothing else
 * touches the log, so there are no locks.
 *
 * It is driven the etcd way. Events in: a client op (`produce`, `fetch`, `offsetFor`, ...), a peer
 * message (`step`), a `tick`, a persist completing. Effects out, through `PartitionEffects`: replies to
 * client ops, messages to peers (`send`), and "I have a Ready to persist" (`needPersist`), which the
 * shard answers by calling `persist()` on every partition that asked in the same event-loop turn, so
 * their fdatasyncs are issued together (group commit across partitions).
 *
 * Order, always: persist (snapshot, HardState, entries, then the log's fdatasync), then send answers;
 * requests (a leader's appends and heartbeats, a candidate's vote requests) go at once (Raft allows
 * it: the leader counts itself toward a commit only once persisted). Applying here means moving the
 * high watermark to commit + 1, which answers acks=all produces and wakes parked fetches; only what is
 * committed AND durable on this replica is applied. Readers never see past the high watermark, so
 * nothing a power loss or a new leader could still erase is ever read.
 *
 * Writes reach the log as early as they can, fsyncs as late as they must. Every run the core appends
 * (the leader's no-op, a client batch, a follower's copy of the leader's runs) is written to the log
 * (page cache) right after the event that made it, before any later event, so that a client batch gets
 * its offsets and its acks=leader answer at once; `persist()` then only adds the fdatasync. Entries
 * written this way are tracked by identity (`written`): the core never re-creates an Entry, so the
 * Ready's entries are recognised, and a divergent suffix (the core truncated and appended others) is
 * cut from the log first.
 *
 * Storage writes are asynchronous (the core's `asyncStorageWrites`, etcd-raft's design): the core
 * takes every input at once, even while fdatasyncs are in flight, and each Ready is persisted as soon
 * as it exists. So a follower's fsync and its leader's overlap with the next appends instead of
 * serializing them (with one Ready at a time, pipelined produces at replication factor 3 waited for
 * a leader fsync and a follower fsync each, in turn). Readies complete in the order they were taken
 * (`pending`): each one's durability is acknowledged to the core (`persisted`) and its answers (to
 * appends and votes) are sent only then, because an append answer in a later Ready may claim runs an
 * earlier Ready is still making durable. At most PARTITION_READIES_IN_FLIGHT_MAX are in flight.
 *
 * Serialization: every event is handled synchronously; only open, close and the fdatasync completion
 * are asynchronous, and the shard keeps a partition out of its table until open and after close.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError, toSluiceError } from '../errors.js';
import { PARTITION_CONTROL_TAIL_OFFSETS_MAX, PARTITION_READIES_IN_FLIGHT_MAX, PRODUCER_IDLE_EXPIRY_MS_DEFAULT, PRODUCER_SNAPSHOT_INTERVAL_BYTES, REPLICA_ISR_LAG_OFFSETS_MAX, REPLICA_ISR_LAG_TICKS_MAX, REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS } from '../constants.js';
import { validateBatches, readInt64, OFF_LAST_OFFSET_DELTA, OFF_LENGTH, OFF_LEADER_EPOCH, OFF_MAX_TIMESTAMP, OFF_PRODUCER_ID, OFF_PRODUCER_EPOCH, OFF_BASE_SEQUENCE, OFF_RECORD_COUNT, OFF_ATTRIBUTES, asBuffer } from '../batch/codec.js';
import { NODE_FS, PartitionLog, isDiskFull, type LogOpenOptions } from '../storage/index.js';
import type { AppendOptions, LogConfig } from '../storage/types.js';
import type { RecoveryReport } from '../storage/recovery.js';
import { EMPTY_HARD_STATE, readHardState, writeHardState, type StoredHardState } from '../storage/hard-state.js';
import { EpochCheckpoint } from '../storage/epoch-checkpoint.js';
import { readSnapshotMeta, writeSnapshotMeta, type SnapshotMeta } from '../storage/snapshot-meta.js';
import { MessageType, RAFT_DEFAULTS, RaftNode, applyConfChange, lastIndexOf, type ConfChange, type ConfState, type Entry, type Message, type RaftOptions, type RaftStatus, type Role, type Snapshot, type StorageAck } from '../raft/index.js';
import type { NodeId, Offset, Term } from '../model/index.js';
import { PartitionRaftStorage, confRunsAfter } from './raft-storage.js';
import { checkPartitionMeta } from '../storage/partition-meta.js';
import { controlBatch } from './control-batch.js';
import { NotLeaderError } from './errors.js';
import { NO_PRODUCER_ID, ProducerStateTable } from './producer-state.js';
import { batchIdentities, recoverProducerState, writeProducerSnapshot, type ProducerStateRecovery } from './producer-state-store.js';
import { PARTITION_DRIVER_BUGS, type PartitionDriverBug } from './driver-bugs.js';

/**
 * The answers a replica sends only once the Ready that made them, and every earlier one, is durable:
 * they may claim runs still being written (etcd-raft's "messages after append").
 */
const ANSWERS_AFTER_PERSIST: ReadonlySet<number> = new Set([MessageType.AppResp, MessageType.VoteResp, MessageType.PreVoteResp]);

/** A Ready taken from the core and not yet completed (see `Partition.pending`). */
interface PendingReady {
  readonly ack: StorageAck | null;
  /** Its answers, sent when it completes; null when none. */
  readonly after: Message[] | null;
  /** Its writes are durable (its fdatasync completed, or it needed none). */
  synced: boolean;
}

/** A client's produce: every record is validated before anything is written (replicated data is not). */
const PRODUCED: AppendOptions = Object.freeze({ produced: true });
const EMPTY = new Uint8Array(0);
/** The v2 batch's fixed prefix not counted by its length field (baseOffset + length). */
const BATCH_LOG_OVERHEAD = 12;
/** attributes bit 5: a control batch (Raft's no-op or a membership change). */
const CONTROL_ATTRIBUTE = 0x20;
/** Enough for PARTITION_CONTROL_TAIL_OFFSETS_MAX control batches (about 70 bytes each). */
const CONTROL_TAIL_READ_BYTES = 4096;

/**
 * TEST ONLY: when set to a topic name, the process kills itself (SIGKILL) right after an idempotent
 * append to that topic is durable and before the reply leaves the shard, so a test can prove that the
 * retry after a restart is deduplicated. Never set it in production.
 */
export const TEST_CRASH_AFTER_APPEND_ENV = 'SLUICE_TEST_CRASH_AFTER_APPEND';

/** This node's id when none is given (`--node-id` defaults to 1): a one-node cluster. */
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

/** A message to another replica of this partition: a Raft message (`msg.to` is the peer's node id). */
export type PeerMessage = Message;

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
  /**
   * A message for a peer, handed out only after the Ready that produced it is persisted. Entries'
   * `data` are whole v2 batches, to be carried byte for byte (the receiver writes them verbatim).
   */
  send(p: Partition, msg: PeerMessage): void;
}

/** The timers a partition uses (only parked-fetch timeouts); injectable for the simulator. */
export interface PartitionTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export { PARTITION_DRIVER_BUGS, type PartitionDriverBug };

const NO_BUGS: ReadonlySet<PartitionDriverBug> = new Set();

const REAL_TIMERS: PartitionTimers = Object.freeze({
  setTimeout: (fn: () => void, ms: number): unknown => setTimeout(fn, ms),
  clearTimeout: (h: unknown): void => clearTimeout(h as NodeJS.Timeout),
});


/** The Raft knobs a caller may set; identity, applyEntries and controlData belong to the partition. */
export type PartitionRaftOptions = Omit<RaftOptions, 'id' | 'applyEntries' | 'controlData'>;

/** The partition's place in its Raft group, and its injectable parts. All optional. */
export interface ReplicaOptions {
  /** This node's id (its Raft id in every group). Default LOCAL_NODE_ID. */
  nodeId?: number;
  /**
   * The group's voters when the partition is created (no snapshot metadata yet): its bootstrap
   * configuration. Ignored once the partition has one (the configuration then comes from its Raft
   * state). Default: this node alone, a one-voter group.
   */
  voters?: readonly number[];
  /** Bootstrap learners (replicate, never vote). Default none. */
  learners?: readonly number[];
  raft?: PartitionRaftOptions;
  /**
   * A brand-new group (created now: no snapshot metadata, no HardState, an empty log) elects its
   * preferred replica, the first of `voters` as given (unsorted), at once: that replica pre-votes on its
   * first tick and again every REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS while no vote has happened, for
   * one election timeout, and the other voters hold their election clocks for that election timeout
   * first (so they elect someone only when the preferred replica is down). Never on a restart or a
   * group with any state, where a campaign would disturb a leader. Default false (the simulator's
   * replicas and one-node partitions); cluster replicas set it (docs/cluster.md "Election of new groups").
   */
  preferredLeaderFirst?: boolean;
  /** Parked-fetch timeouts. Default: the real setTimeout. */
  timers?: PartitionTimers;
  /** TEST ONLY (the simulator's `--bug` modes): deliberately broken driver paths. Never set in production. */
  driverBugs?: readonly PartitionDriverBug[];
}

/** See `Partition.membership()`. */
export interface PartitionMembership {
  role: Role;
  /** The leader this replica knows, 0 = none. */
  leader: number;
  term: number;
  voters: number[];
  learners: number[];
  /** A membership change is appended but not committed (a new one would be refused). */
  confPending: boolean;
  commit: number;
  lastIndex: number;
  /** Leader only: the match index of each member, in the order voters then learners (itself: its last index); else empty. */
  match: number[];
}

interface Parked {
  id: number;
  offset: number;
  maxBytes: number;
  timer: unknown;
}

interface PendingAck {
  id: number;
  ok: ProduceOk;
}

export class Partition {
  private readonly parked = new Map<number, Parked>();
  /** acks=all produces (and idempotent retries) waiting for commit, in offset order. */
  private readonly pendingAcks: PendingAck[] = [];
  private hw: number;
  /**
   * An upper bound on the high watermark this replica showed before its last restart: its log end at
   * open (everything below a high watermark was fsynced before it was shown, and is never
   * truncated), lowered by every later truncation or snapshot install (a cut cannot reach below a
   * committed entry). While the high watermark is below it, it is provisional: see
   * `highWatermarkProvisional`.
   */
  private hwBound: number;
  private closed = false;
  /** Log bytes appended since the producer-state snapshot was last written. */
  private bytesSinceSnapshot = 0;
  private readonly crashAfterAppend = process.env[TEST_CRASH_AFTER_APPEND_ENV] ?? null;
  /** TEST ONLY: see `ReplicaOptions.driverBugs`; empty in production. */
  private bugs: ReadonlySet<PartitionDriverBug> = NO_BUGS;
  private readonly raft: RaftNode;
  private readonly storage: PartitionRaftStorage;
  /** The core's unstable runs already written to the log, in order (compared by identity). */
  private readonly written: Entry[] = [];
  /**
   * Readies taken from the core and not yet completed, oldest first: written, and with `synced`
   * once their fdatasync is done. Completed strictly in this order (see the header).
   */
  private readonly pending: PendingReady[] = [];
  /** A Ready whose writes failed (a full disk): `persist()` retries it. */
  private retryReady: ReturnType<RaftNode['ready']> | null = null;
  /** A fdatasync failed: the log is fenced and no later Ready completes. */
  private syncFailed = false;
  /**
   * A brand-new group's first election (`ReplicaOptions.preferredLeaderFirst`) while no vote has
   * happened (term 0) and no leader is known, for `ticksLeft` more ticks: the preferred replica
   * pre-votes when `campaignIn` reaches 0; any other voter holds its election clock. Null otherwise.
   */
  private firstElection: { readonly preferred: boolean; ticksLeft: number; campaignIn: number } | null = null;
  /** Leader: per voter, consecutive ticks of term `isrTerm` its match was past the in-sync lag bound. */
  private readonly isrBehindTicks = new Map<number, number>();
  private isrTerm = -1;
  /** The HardState on disk (what `hard-state.json` holds). */
  private storedHs: StoredHardState;
  private producerTable: ProducerStateTable;
  /** Why the kept Ready could not be written. */
  private persistError: SluiceError | null = null;
  /** Settles when the last fdatasync persist() started has completed (or failed). */
  private persistDone: Promise<void> = Promise.resolve();

  private constructor(
    readonly id: PartitionIdentity,
    private readonly log: PartitionLog,
    private readonly epochs: EpochCheckpoint,
    private snapMeta: SnapshotMeta,
    hs: StoredHardState,
    private readonly effects: PartitionEffects,
    producers: ProducerStateTable,
    readonly producerRecovery: ProducerStateRecovery,
    private readonly producerIdleExpiryMs: number,
    readonly nodeId: number,
    raftOptions: PartitionRaftOptions,
    private readonly timers: PartitionTimers,
  ) {
    this.producerTable = producers;
    this.storedHs = { ...hs };
    // The term never goes back: a batch's epoch is a term this node (or a leader) already had. A data
    // dir from before Raft has epoch-0 batches and no HardState, which is term 0.
    const term = Math.max(hs.term, epochs.lastEpoch, 0);
    const hard = { term, vote: term === hs.term ? hs.vote : 0 };
    // A clean close recorded exactly the high watermark shown last (see checkpointCommit).
    const clean = log.recovery.cleanShutdown && hs.clean === true;
    // The configuration is the snapshot's with the log's membership changes applied (apply at append).
    const confRuns = confRunsAfter(log, snapMeta.index);
    const conf = confRuns.reduce<ConfState>((c, e) => applyConfChange(c, e.change!), { voters: snapMeta.voters as NodeId[], learners: snapMeta.learners as NodeId[] });
    const commitAtOpen = isSoleVoterOf(conf, nodeId) ? log.nextOffset - 1 : this.resumedCommit(hs, clean);
    this.storage = new PartitionRaftStorage(log, epochs, () => this.snapMeta, () => (this.storedHs.term >= hard.term ? this.storedHs : hard), commitAtOpen, confRuns);
    this.raft = new RaftNode({ ...raftOptions, id: nodeId as NodeId, applyEntries: false, controlData: controlBatch, asyncStorageWrites: true }, this.storage);
    this.hw = this.raft.getCommit() + 1;
    this.hwBound = clean ? this.hw : log.nextOffset;
  }

  /**
   * The commit a member of a larger group resumes from: the one its HardState recorded (a high
   * watermark it had shown), within its log, never below its snapshot; undefined (the snapshot
   * index) when none was recorded, or, after a crash, under a relaxed flush policy, whose log may
   * have lost what that commit covered.
   */
  private resumedCommit(hs: StoredHardState, clean: boolean): number | undefined {
    if (hs.commit === undefined || (!clean && this.log.config.flush.kind !== 'always')) return undefined;
    return Math.max(this.snapMeta.index, Math.min(hs.commit, this.log.nextOffset - 1));
  }

  /**
   * Opens (recovering) the partition: log, identity check, snapshot metadata (written at creation:
   * the group's bootstrap configuration), leader-epoch checkpoint, HardState, producer state; then the
   * Raft replica over it. A one-voter group elects itself at once (its HardState, checkpoint entry and
   * no-op are written with its first Ready); a member of a larger group waits for ticks or a leader.
   * With `fresh`, first removes whatever a deleted namesake left behind.
   *
   * A data dir written before partitions were replicas opens as is: its batches carry epoch 0 (they
   * become term-0 entries), it has no HardState (term 0) and no checkpoint (rebuilt from the batch
   * headers once).
   */
  static async open(
    dataDir: string,
    id: PartitionIdentity,
    config: LogConfig,
    fresh: boolean,
    options: LogOpenOptions,
    effects: PartitionEffects,
    producerIdleExpiryMs = PRODUCER_IDLE_EXPIRY_MS_DEFAULT,
    replica: ReplicaOptions = {},
  ): Promise<Partition> {
    const nodeId = replica.nodeId ?? LOCAL_NODE_ID;
    const voters = [...(replica.voters ?? [nodeId])].sort((a, b) => a - b);
    const learners = [...(replica.learners ?? [])].sort((a, b) => a - b);
    checkMembership(nodeId, voters, learners);
    const dir = partitionDir(dataDir, id.topic, id.partition);
    if (fresh) await fs.promises.rm(dir, { recursive: true, force: true });
    const log = await PartitionLog.open(dir, config, options);
    try {
      const sfs = options.fs ?? NODE_FS;
      if (id.topicId !== '') checkPartitionMeta(dir, { topicId: id.topicId, partition: id.partition }, sfs);
      let snap = readSnapshotMeta(dir, sfs);
      // A snapshot install that wrote its metadata and crashed before the log was restarted, or a
      // retention cut that crashed before deleting every segment.
      if (snap && snap.logStartOffset > log.nextOffset) log.truncateFullyAndStartAt(snap.logStartOffset);
      else if (snap && snap.logStartOffset > log.logStartOffset) log.dropSegmentsBelow(snap.logStartOffset);
      let epochs = EpochCheckpoint.load(dir, sfs);
      if (epochs) epochs.truncateFrom(log.nextOffset);
      // After a crash the checkpoint may be ahead of the log: a follower cut a divergent suffix, wrote
      // the new term's start (durable at once), and crashed before the cut reached the disk, so the
      // old suffix is back under a checkpoint that names the new term (found by the simulator, seed 19
      // of `--replica partition`). The batches are the truth: rebuild it from them. A clean close
      // synced both, so only an unclean open pays for the scan of batch headers.
      if (epochs && !log.recovery.cleanShutdown) {
        const truth = log.epochStartsFrom(log.logStartOffset);
        const have = epochs.list.filter((e) => e.startOffset >= log.logStartOffset);
        const same = truth.length === have.length && truth.every((t, i) => t.epoch === have[i].epoch && t.startOffset === have[i].startOffset);
        if (!same) epochs = EpochCheckpoint.create(dir, truth, sfs);
      }
      if (!epochs) epochs = EpochCheckpoint.create(dir, log.epochStartsFrom(log.logStartOffset), sfs);
      // A cut on a full disk that deleted before its snapshot could be written (see enforceRetention),
      // or a data dir from before Raft whose retention already moved the start: record it now.
      const conf = snap ?? { voters, learners };
      if (log.logStartOffset > (snap?.logStartOffset ?? 0)) snap = recordLogStart(dir, epochs, log.logStartOffset, conf.voters, conf.learners, sfs);
      const bootstrap = snap === null;
      if (snap === null) {
        // Bootstrap: the group's first configuration is the snapshot at index -1 (the log starts at 0).
        snap = { index: log.logStartOffset - 1, term: 0, voters, learners, logStartOffset: log.logStartOffset };
        writeSnapshotMeta(dir, snap, sfs);
      }
      const storedHs = readHardState(dir, sfs);
      const hs = storedHs ?? EMPTY_HARD_STATE;
      const { table, report } = recoverProducerState(log);
      const p = new Partition(id, log, epochs, snap, hs, effects, table, report, producerIdleExpiryMs, nodeId, replica.raft ?? {}, replica.timers ?? REAL_TIMERS);
      if (replica.driverBugs !== undefined && replica.driverBugs.length > 0) p.bugs = new Set(replica.driverBugs);
      if (p.bugs.has('hw-restart-settled')) p.hwBound = p.hw;
      if (report.replayedBatches > 0) p.snapshotProducers();
      if (replica.preferredLeaderFirst === true && bootstrap && storedHs === null && log.nextOffset === 0) p.startFirstElection(replica.voters?.[0] === nodeId, replica.raft?.electionTicks ?? RAFT_DEFAULTS.electionTicks);
      // A group of one elects itself now (no timeout to wait for, nobody to ask) and commits its
      // no-op before the open returns, so an opened partition's high watermark is its log end.
      if (p.isSoleVoter()) {
        p.raft.campaign();
        p.writeThroughQuietly();
        p.persist();
        await p.persistDone;
        p.persist(); // the core learns what it applied (no fdatasync)
      }
      p.afterCoreEvent();
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

  /**
   * True after a restart (of a member of a larger group) while the high watermark may still be below
   * the one this replica showed before it: a crash lost the commit it had learned since its last
   * HardState write, and it re-learns it from the leader. The high watermark is then a lower bound:
   * everything below it is committed and here, but offsets up to the log end at open may have been
   * shown. Meanwhile a fetch there is not out of range (it parks, or is answered empty) and
   * ListOffsets(latest) is UNAVAILABLE (retriable), so no client sees a high watermark go back.
   */
  get highWatermarkProvisional(): boolean {
    return this.hw < this.hwBound;
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
    return this.raft.getTerm();
  }

  get role(): Role {
    return this.raft.getRole();
  }

  /** The leader this replica knows in its term (itself when it leads); 0 when none. */
  get leaderId(): number {
    return this.raft.getLeader();
  }

  /**
   * Leader: an entry of its own term is committed, so its commit index is at least every earlier
   * leader's (Raft's leader completeness) and its high watermark never below one shown before.
   */
  private committedInTerm(): boolean {
    const commit = this.raft.getCommit();
    return commit > this.snapMeta.index && this.raft.log.term(commit) === this.raft.getTerm();
  }

  /** The group's voters as this replica's Raft state has them. */
  get voters(): readonly number[] {
    return this.raft.log.conf().voters;
  }

  /** This node is a learner of the group (replicates, never votes). */
  get isLearner(): boolean {
    return this.raft.log.conf().learners.includes(this.nodeId as NodeId);
  }

  /**
   * Leader only (else empty): Kafka's in-sync replicas. A voter is in sync while its match index is
   * within `lagMax` offsets of the leader's last index (itself included: its match is what it
   * persisted), and stays so until it has been further behind for REPLICA_ISR_LAG_TICKS_MAX
   * consecutive ticks of this leadership. A new leader does not know its followers' match indexes
   * until they answer, so without the grace it reported itself alone for a moment after every election.
   */
  inSyncVoters(lagMax: number): number[] {
    if (this.raft.getRole() !== 'leader') return [];
    const floor = this.raft.log.lastIndex() - lagMax;
    const sameTerm = this.isrTerm === this.raft.getTerm();
    return this.raft.log.conf().voters.filter((v) => this.raft.matchOf(v as NodeId) >= floor || (sameTerm ? (this.isrBehindTicks.get(v) ?? 0) : 0) < REPLICA_ISR_LAG_TICKS_MAX);
  }

  /** Once per tick, as leader: how long each voter has been past the in-sync lag bound (see inSyncVoters). */
  private trackInSync(): void {
    if (this.raft.getRole() !== 'leader') return;
    const term = this.raft.getTerm();
    if (term !== this.isrTerm) {
      this.isrTerm = term;
      this.isrBehindTicks.clear();
    }
    const floor = this.raft.log.lastIndex() - REPLICA_ISR_LAG_OFFSETS_MAX;
    for (const v of this.raft.log.conf().voters) this.isrBehindTicks.set(v, this.raft.matchOf(v as NodeId) >= floor ? 0 : (this.isrBehindTicks.get(v) ?? 0) + 1);
  }

  /** The Raft core's state (allocates; for tests, stats and diagnostics). */
  raftStatus(): RaftStatus {
    return this.raft.status();
  }

  /** Readies are being persisted (written, their fdatasyncs not completed; or a write to retry). */
  get persisting(): boolean {
    return this.pending.length > 0 || this.retryReady !== null;
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

  /** Idempotent producers' sequences and offsets (rebuilt from the log on open and after a truncation). */
  get producers(): ProducerStateTable {
    return this.producerTable;
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

  /** src/raft's RaftStorage over this partition's log: what the RaftNode reads. */
  raftStorage(): PartitionRaftStorage {
    return this.storage;
  }

  /** The snapshot metadata on disk, or null before the first retention cut. */
  snapshotMeta(): SnapshotMeta | null {
    return readSnapshotMeta(this.log.dir, this.log.storageFs);
  }

  /** The configuration is this node alone: everything it persists is on a majority. */
  private isSoleVoter(): boolean {
    return isSoleVoterOf(this.raft === undefined ? this.snapMeta : this.raft.log.conf(), this.nodeId);
  }

  private checkOpen(): void {
    if (this.closed) throw new SluiceError('UNKNOWN_PARTITION', `partition ${this.name} is being deleted`);
  }

  private notLeader(): NotLeaderError {
    return new NotLeaderError(this.name, this.nodeId, this.raft.getLeader(), this.raft.getTerm());
  }

  // --- Client events ---------------------------------------------------------------------------

  /**
   * Appends client batches as the leader: the log assigns offsets and the term in place, and each
   * batch is proposed as one run. acks=all is answered once committed; acks=leader at once (it is in
   * the leader's log); acks=none too (the host answers it even earlier). A follower refuses with
   * NOT_LEADER naming the leader it knows. Throws on bad input or a fenced log, having written nothing.
   */
  produce(id: number, bytes: Uint8Array, acks: 0 | 1 | 2): void {
    this.checkOpen();
    if (this.raft.getRole() !== 'leader') throw this.notLeader();
    // The core refuses proposals while it hands leadership away; refused here, before the log holds the
    // batch: a batch written but never proposed would leave the log ahead of the core (the next
    // advance() asserts, and the shard dies).
    const transferee = this.raft.getTransferee();
    if (transferee !== 0) throw new SluiceError('PROPOSAL_DROPPED', `${this.name}: leadership is being handed to node ${transferee}; retry shortly`);
    // Idempotent producers: checked against the table before anything is written. The leader's
    // check-then-append keeps the table in log order (followers apply what they write).
    const ids = batchIdentities(bytes);
    if (ids !== null) {
      const check = this.producerTable.check(ids);
      if (check.kind !== 'append') {
        // A malformed batch is reported as such, not as a sequence problem.
        validateBatches(bytes, this.log.config.maxBatchBytes);
        if (check.kind === 'error') throw check.error;
        // A retry: answered with the original offsets once they are committed, writing nothing.
        return this.answerAtCommit(id, { baseOffset: check.baseOffset, lastOffset: check.lastOffset, appendTimeMs: check.appendTimeMs, logStartOffset: this.log.logStartOffset });
      }
    }
    // The term's no-op (and anything else the core appended) goes first; its HardState and
    // checkpoint entry were written before it. Normally it is already written; a Ready whose writes
    // failed (a full disk) is written now, or this produce fails as it did.
    if (this.retryReady !== null) {
      this.persist();
      if (this.retryReady !== null) throw this.persistError ?? new SluiceError('STORAGE_ERROR', `${this.name}: the last Ready could not be written`);
    }
    this.writeThrough();
    const term = this.raft.getTerm();
    if (this.epochs.lastEpoch !== term) assert.fail(`${this.name}: the leader's term ${term} has no no-op in the log`);
    const r = this.log.append(bytes, term, PRODUCED);
    const { runs, counts } = splitRuns(bytes, !this.isSoleVoter());
    this.propose(runs, counts, r.baseOffset);
    if (ids !== null) {
      this.producerTable.record(ids, r.baseOffset, r.appendTimeMs);
      this.bytesSinceSnapshot += bytes.length;
      if (this.crashAfterAppend === this.id.topic) void this.log.flush().then(() => process.kill(process.pid, 'SIGKILL'));
    }
    const ok: ProduceOk = { baseOffset: r.baseOffset, lastOffset: r.lastOffset, appendTimeMs: r.appendTimeMs, logStartOffset: this.log.logStartOffset };
    if (acks === 2 && !this.bugs.has('ack-before-persist')) this.pendingAcks.push({ id, ok });
    else this.effects.produced(this, id, ok);
    // A relaxed flush policy is the topic's opt-out of durability: reaching the OS is persisting, so
    // the Ready is handled now (a one-voter group commits, and answers acks=all, at once).
    if (this.log.config.flush.kind !== 'always') this.persist();
    else this.effects.needPersist(this);
  }

  /** Proposes runs the log already holds at `first..`; the core must put them exactly there. */
  private propose(runs: readonly Uint8Array[], counts: readonly number[], first: number): void {
    const u = this.raft.log.unstable;
    const before = u.length;
    if (this.written.length !== before) assert.fail(`${this.name}: proposing before the core's runs are written`);
    const at = this.raft.proposeBatch(runs, counts);
    if (at !== first) assert.fail(`${this.name}: the core put a run at ${at}, the log at ${first}`);
    for (let k = before; k < u.length; k++) this.written.push(u[k]);
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
    // A provisional high watermark (see highWatermarkProvisional) may be below offsets already shown.
    const end = Math.max(this.hw, this.hwBound);
    if (offset < start || offset > end) {
      throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${offset} is outside [${start}, ${end}] of ${this.name}`);
    }
    if (maxWaitMs > 0 && mayPark && (offset >= this.hw || this.onlyControlBelowHw(offset))) {
      const timer = this.timers.setTimeout(() => {
        if (this.unpark(id)) this.effects.serveFetch(this, id, offset, maxBytes);
      }, maxWaitMs);
      this.parked.set(id, { id, offset, maxBytes, timer });
      return true;
    }
    this.effects.serveFetch(this, id, offset, maxBytes);
    return false;
  }

  /**
   * True when [offset, hw) holds control batches only (a term's no-op at the tail): a long-poll there
   * has nothing to show a reader yet, so it parks. Checked only a few offsets below the high
   * watermark, with one small read.
   */
  private onlyControlBelowHw(offset: number): boolean {
    if (offset >= this.hw || this.hw - offset > PARTITION_CONTROL_TAIL_OFFSETS_MAX) return false;
    try {
      const r = this.log.read(offset, CONTROL_TAIL_READ_BYTES, this.hw);
      const buf = asBuffer(r.data);
      for (let pos = 0; pos < buf.length; pos += buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD) {
        if ((buf.readInt16BE(pos + OFF_ATTRIBUTES) & CONTROL_ATTRIBUTE) === 0) return false;
      }
      return r.nextOffset >= this.hw;
    } catch {
      return false; // a fenced range: the fetch is served, and reports it
    }
  }

  /** Removes a parked fetch (timeout or cancel); true if it was still parked. */
  unpark(id: number): boolean {
    const f = this.parked.get(id);
    if (!f) return false;
    this.parked.delete(id);
    this.timers.clearTimeout(f.timer);
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

  /**
   * ListOffsets: 'latest' is the high watermark, so no one is pointed at uncommitted data. In a group
   * of several voters only a leader that has committed an entry of its own term answers it (Kafka
   * too sends ListOffsets to the leader): a follower's high watermark lags the leader's, and a new
   * leader's commit index may lag its predecessor's until its first entry commits (Raft does not carry
   * the commit index across an election), so either could show a high watermark below one a client
   * has already seen (chaos bug A).
   */
  offsetFor(spec: 'earliest' | 'latest' | number): number {
    this.checkOpen();
    if (spec === 'earliest') return this.log.logStartOffset;
    if (spec === 'latest') {
      if (this.highWatermarkProvisional) throw new SluiceError('UNAVAILABLE', `${this.name} restarted and is re-learning its high watermark from the leader; retry shortly`);
      if (!this.isSoleVoter()) {
        if (this.raft.getRole() !== 'leader') throw this.notLeader();
        if (!this.committedInTerm()) throw new SluiceError('UNAVAILABLE', `${this.name} has a new leader that has not committed an entry of its term yet; retry shortly`);
      }
      return this.hw;
    }
    const at = this.log.offsetForTimestamp(spec);
    return at === null || at >= this.hw ? -1 : at;
  }

  updateConfig(config: LogConfig): void {
    this.log.updateConfig(config);
  }

  // --- Raft events -----------------------------------------------------------------------------

  /**
   * Leader only: hands leadership to `target`, a voter (it campaigns at once when its log is up to
   * date; Raft abandons a transfer that does not finish within an election timeout). Taken at once:
   * the core takes input at any time (asynchronous storage writes); a refusal throws.
   */
  transferLeadership(target: number): void {
    this.checkOpen();
    if (this.raft.getRole() !== 'leader') throw this.notLeader();
    this.raft.transferLeadership(target as NodeId);
    this.afterCoreEvent();
  }

  /**
   * Leader only: proposes one membership change of the group (add a learner, promote it to voter,
   * remove a member). Single-server changes, one at a time: refused (PROPOSAL_DROPPED, retriable)
   * while an earlier change is uncommitted or before this leader committed an entry of its term, and
   * INVALID_REQUEST when the change does not apply (already a member, the leader removing itself).
   * A follower answers NOT_LEADER. Taken at once when it does not throw.
   */
  proposeConfChange(change: ConfChange): void {
    this.checkOpen();
    if (this.raft.getRole() !== 'leader') throw this.notLeader();
    // The core appends the conf run after its last index; runs written ahead of it must be its own.
    this.writeThrough();
    this.raft.proposeConfChange(change);
    this.afterCoreEvent();
  }

  /**
   * The replica's view of its group's membership and, on the leader, how far each member's log
   * reaches (its match index; -1 unknown). What the cluster layer reconciles against the metadata,
   * and what the controller asks before promoting a learner.
   */
  membership(): PartitionMembership {
    const conf = this.raft.log.conf();
    const leader = this.raft.getRole() === 'leader';
    const members = [...conf.voters, ...conf.learners];
    return {
      role: this.raft.getRole(),
      leader: this.raft.getLeader(),
      term: this.raft.getTerm(),
      voters: [...conf.voters],
      learners: [...conf.learners],
      confPending: this.raft.confChangePending(),
      commit: this.raft.getCommit(),
      lastIndex: this.raft.log.lastIndex(),
      match: leader ? members.map((n) => (n === this.nodeId ? this.raft.log.lastIndex() : this.raft.matchOf(n as NodeId))) : [],
    };
  }

  /** A message from a peer replica of this partition (the cluster transport routes it here). */
  step(msg: Message): void {
    if (this.closed) return;
    this.raft.step(msg);
    this.afterCoreEvent();
  }

  /** Whether the replica's group is quiesced here (no heartbeats, no election clock; docs/raft.md). */
  get quiesced(): boolean {
    return this.raft.isQuiesced();
  }

  /**
   * The failure detector's view of `nodes` changed (suspect, dead, alive again): a quiesced replica
   * whose group has one of them as a member wakes, so a follower of a dead leader campaigns and a
   * leader heartbeats a member that came back. `down`: they turned suspect or dead (a follower whose
   * leader is among them counts half its lease as spent). Returns whether it woke.
   */
  wakeFor(nodes: readonly number[], down = false): boolean {
    if (this.closed || !this.raft.isQuiesced()) return false;
    const conf = this.raft.log.conf();
    if (!nodes.some((n) => conf.voters.includes(n as NodeId) || conf.learners.includes(n as NodeId))) return false;
    this.raft.wake(down && nodes.includes(this.raft.getLeader()));
    return true;
  }

  /** One logical tick (the shard ticks every partition on one interval): elections, heartbeats. */
  tick(): void {
    if (this.closed) return;
    // A quiesced group's core ignores ticks, and its voters all hold the whole log (in sync), so the
    // idle tick of a thousand replicas costs a check each and nothing more.
    if (this.raft.isQuiesced()) return;
    this.trackInSync();
    if (this.retryReady !== null) this.effects.needPersist(this);
    this.coreTick();
    this.afterCoreEvent();
  }

  /**
   * A brand-new group of several voters, this node one of them: Raft alone would let whichever voter
   * times out first win (two times in three not the preferred one, whom leader balancing then moves
   * leadership back to, a new term and a NOT_LEADER window later). So the preferred replica campaigns
   * at once, and the others give it one election timeout of head start.
   */
  private startFirstElection(preferred: boolean, electionTicks: number): void {
    if (this.isSoleVoter() || !this.raft.log.conf().voters.includes(this.nodeId as NodeId)) return;
    assert.ok(REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS < electionTicks, 'the pre-vote retry must fit in the head start');
    this.firstElection = { preferred, ticksLeft: electionTicks, campaignIn: 1 };
  }

  /**
   * One tick for the core, but during a brand-new group's first election (`firstElection`): the
   * preferred replica pre-votes every REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS (a pre-vote changes no
   * term, and a peer that has not opened the group yet dropped the last one), and any other voter's
   * election clock stands still. It ends with the first vote (the term leaves 0), a known leader, or
   * the head start's last tick; from then on the core ticks alone.
   */
  private coreTick(): void {
    const f = this.firstElection;
    if (f === null || f.ticksLeft <= 0 || this.raft.getTerm() > 0 || this.raft.getLeader() !== 0) {
      this.firstElection = null;
      this.raft.tick();
      return;
    }
    f.ticksLeft--;
    if (!f.preferred) return;
    if (--f.campaignIn > 0) {
      this.raft.tick();
      return;
    }
    f.campaignIn = REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS;
    this.raft.campaign();
  }

  /** After the core took input: write what it appended, and ask for a persist if it has a Ready. */
  private afterCoreEvent(): void {
    this.writeThroughQuietly();
    if (this.raft.hasReady()) this.effects.needPersist(this);
  }

  private writeThroughQuietly(): void {
    try {
      this.writeThrough();
    } catch {
      // A full disk or a fenced log: persist() writes again and reports to whoever waits.
    }
  }

  /**
   * Writes the core's unstable runs that are not in the log yet. When the core replaced runs this
   * node had written (a follower's divergent suffix), the log is cut at the first replaced one first.
   */
  private writeThrough(): void {
    const u = this.raft.log.unstable;
    const w = this.written;
    let k = 0;
    while (k < w.length && k < u.length && u[k] === w[k]) k++;
    if (k === u.length && k === w.length) return;
    w.length = k;
    const from = k < u.length ? u[k].index : this.raft.log.lastIndex() + 1;
    if (from < this.log.nextOffset) this.truncateLog(from);
    for (; k < u.length; k++) {
      this.writeRun(u[k]);
      w.push(u[k]);
    }
  }

  /** Writes one run verbatim (offsets, term and CRC as the leader made them), after its term's state. */
  private writeRun(e: Entry): void {
    // Nothing of a term reaches the disk before the HardState that holds it (a vote, a term).
    if (e.term > this.storedHs.term) {
      const s = this.raft.status();
      this.writeHs(s.term, s.vote);
    }
    if (this.epochs.lastEpoch !== e.term) this.epochs.assign(e.term, e.index);
    const buf = asBuffer(e.data);
    if (readInt64(buf, 0) !== e.index || buf.readInt32BE(OFF_LEADER_EPOCH) !== e.term) assert.fail(`${this.name}: run ${e.index}@${e.term} carries another header`);
    const r = this.log.appendReplicated(buf, e.term);
    if (r.lastOffset !== lastIndexOf(e)) assert.fail(`${this.name}: run ${e.index}+${e.count} holds other offsets`);
    if (e.kind === 'data') applyHeaders(this.producerTable, buf);
  }

  /**
   * Writes a new term or vote, with the commit shown so far (free: the file is written anyway; a
   * group of one needs none, it reopens at its log end). Only what a high watermark covered is
   * recorded: it was fsynced before it was shown.
   */
  private writeHs(term: number, vote: number): void {
    if (term === this.storedHs.term && vote === this.storedHs.vote) return;
    const hs: StoredHardState = this.isSoleVoter() ? { term, vote } : { term, vote, commit: this.hw - 1 };
    writeHardState(this.log.dir, hs, this.log.storageFs);
    this.storedHs = hs;
  }

  /**
   * At a clean close (nothing is shown after `closed` is set), records the high watermark shown last,
   * marked `clean`, before the log's own clean-shutdown marker: the replica reopens with it, settled
   * (a crash instead leaves it provisional until the leader speaks; so does a close whose write
   * failed, as the older HardState carries no mark). A group of one needs none (it reopens at its log
   * end). Best effort: a failure costs only that.
   */
  private checkpointCommit(): void {
    if (this.isSoleVoter()) return;
    try {
      const hs: StoredHardState = { term: this.storedHs.term, vote: this.storedHs.vote, commit: this.hw - 1, clean: true };
      writeHardState(this.log.dir, hs, this.log.storageFs);
      this.storedHs = hs;
    } catch {
      // The replica re-learns its commit from the leader after the reopen.
    }
  }

  /**
   * Cuts the log at `offset` (never below the high watermark: only uncommitted runs diverge). Waiting
   * acks for the cut offsets fail (another leader's runs take them), and the producer state, which
   * may hold the cut batches, is rebuilt from the log.
   */
  private truncateLog(offset: number): void {
    assert.ok(offset >= this.hw, `${this.name}: truncation at ${offset} below the high watermark ${this.hw}`);
    if (offset < this.hwBound) this.hwBound = offset;
    this.log.truncateTo(offset);
    this.epochs.truncateFrom(offset);
    this.failAcksFrom(offset, this.notLeader());
    this.producerTable = recoverProducerState(this.log).table;
  }

  private failAcksFrom(offset: number, err: SluiceError): void {
    let n = this.pendingAcks.length;
    while (n > 0 && this.pendingAcks[n - 1].ok.lastOffset >= offset) n--;
    for (const a of this.pendingAcks.splice(n)) this.effects.failed(this, a.id, err);
  }

  /**
   * Handles the core's next Ready, even while earlier ones are being made durable: a snapshot from the
   * leader, the HardState (synchronously, atomically) and the runs (already written, see writeThrough),
   * then the log's fdatasync (asynchronously, joining the log's group commit). Messages that claim
   * nothing about this replica's log (appends, heartbeats, votes asked) go at once: Raft lets a leader
   * replicate in parallel with its own write (thesis §10.2.1), and it counts itself toward a commit
   * only once its write is acknowledged. The answers (append, vote and pre-vote answers) may claim
   * what this Ready or an earlier one is still writing, so they wait for it (`completeReadies`).
   */
  persist(): void {
    if (this.closed) return;
    let rd = this.retryReady;
    if (rd === null) {
      if (this.pending.length >= PARTITION_READIES_IN_FLIGHT_MAX || !this.raft.hasReady()) return;
      rd = this.raft.ready();
    }
    const ready = rd;
    try {
      if (ready.snapshot !== null) this.installSnapshot(ready.snapshot);
      this.writeThrough();
      if (ready.hardState !== null) this.writeHs(ready.hardState.term, ready.hardState.vote);
      this.retryReady = null;
    } catch (err) {
      // Nothing of this Ready may be sent or applied; it is written again at the next tick.
      this.retryReady = ready;
      this.persistError = toSluiceError(err);
      return this.failPending(this.persistError);
    }
    const sendAll = this.bugs.has('send-before-persist');
    let after: Message[] | null = null;
    for (const m of ready.messages) {
      if (sendAll || !ANSWERS_AFTER_PERSIST.has(m.type)) this.effects.send(this, m);
      else (after ??= []).push(m);
    }
    // What the core knows to be committed and durable here needs no fdatasync of this Ready.
    this.applyDurableCommit();
    const sync = ready.ack !== null && this.log.config.flush.kind === 'always';
    const item: PendingReady = { ack: ready.ack, after, synced: !sync };
    this.pending.push(item);
    if (!sync) return this.completeReadies();
    this.persistDone = this.log.flush().then(
      () => {
        item.synced = true;
        this.completeReadies();
      },
      (err) => {
        // The log is fenced: nothing written from now on is acknowledged, so nothing completes.
        this.syncFailed = true;
        this.failPending(toSluiceError(err));
      },
    );
  }

  /**
   * Completes the oldest Readies whose writes are durable, in order: the core learns what is durable
   * (`persisted`; a leader may commit), their answers are sent, the durable commit is applied, and the
   * core's next Ready is asked for.
   */
  private completeReadies(): void {
    if (this.closed || this.syncFailed) return;
    const p = this.pending;
    let n = 0;
    while (n < p.length && p[n].synced) n++;
    if (n === 0) return;
    for (const item of p.splice(0, n)) {
      if (item.ack !== null) this.raft.persisted(item.ack);
      if (item.after !== null) for (const m of item.after) this.effects.send(this, m);
    }
    // The runs now stable left the core's unstable tail: `written` keeps matching it.
    const w = this.written;
    const stableEnd = this.raft.log.offset;
    let k = 0;
    while (k < w.length && lastIndexOf(w[k]) < stableEnd) k++;
    if (k > 0) w.splice(0, k);
    this.applyDurableCommit();
    this.afterCoreEvent();
  }

  /** Applies what the core knows to be committed and durable on this replica (never more). */
  private applyDurableCommit(): void {
    this.applyCommit(this.bugs.has('hw-from-log-end') ? this.log.nextOffset : Math.min(this.raft.getCommit(), this.raft.log.stableIndex()) + 1);
  }

  /** A snapshot from the leader replaces the whole log: metadata first, then the log restarts after it. */
  private installSnapshot(snap: Snapshot): void {
    const meta: SnapshotMeta = { index: snap.index, term: snap.term, voters: [...snap.conf.voters], learners: [...snap.conf.learners], logStartOffset: snap.index + 1 };
    writeSnapshotMeta(this.log.dir, meta, this.log.storageFs);
    this.snapMeta = meta;
    if (meta.logStartOffset < this.hwBound) this.hwBound = meta.logStartOffset;
    this.log.truncateFullyAndStartAt(meta.logStartOffset);
    this.epochs.truncateFrom(0);
    this.written.length = 0;
    this.failAcksFrom(0, this.notLeader());
    // The producers of the compacted prefix are not in the snapshot (its data is empty): a known gap.
    this.producerTable = new ProducerStateTable();
    this.snapshotProducers();
  }

  /** Moves the high watermark to `hw`: answers acks=all produces and wakes parked fetches. */
  private applyCommit(hw: number): void {
    if (hw <= this.hw) return;
    if (hw > this.log.nextOffset) assert.fail(`${this.name}: commit ${hw - 1} beyond the log end ${this.log.nextOffset}`);
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

  /** A persist failed: nothing waiting for commit can succeed now (the log may be fenced). */
  private failPending(err: SluiceError): void {
    for (const a of this.pendingAcks.splice(0)) this.effects.failed(this, a.id, err);
  }

  // --- Retention and life cycle ----------------------------------------------------------------

  /**
   * Applies retention through the Raft state: the log start moves only to an applied offset, the core
   * compacts its view there, and the snapshot metadata recording it (and the trimmed epoch checkpoint)
   * is written before any segment is deleted, so the log start comes from Raft state.
   */
  enforceRetention(nowMs: number): number {
    if (this.closed) return 0;
    this.producerTable.expire(nowMs, this.producerIdleExpiryMs);
    if (this.bytesSinceSnapshot >= PRODUCER_SNAPSHOT_INTERVAL_BYTES) this.snapshotProducers();
    // The core compacts only what it has applied (committed and durable here).
    const maxStart = Math.min(this.hw, this.raft.status().applied + 1);
    let deferred: SnapshotMeta | null = null;
    const n = this.log.enforceRetention(nowMs, maxStart, (newStart) => {
      const s = this.raft.compact(newStart - 1, EMPTY);
      const meta: SnapshotMeta = { index: s.index, term: s.term, voters: [...s.conf.voters], learners: [...s.conf.learners], logStartOffset: newStart };
      this.snapMeta = meta;
      try {
        writeSnapshotMeta(this.log.dir, meta, this.log.storageFs);
        this.epochs.truncateBefore(newStart);
      } catch (err) {
        // A full disk: the cut is what frees space, and the snapshot needs a little. Only committed
        // data goes, so the one voter deletes first and records the start right after (or at the
        // next open, which repairs a snapshot behind the log start).
        if (!isDiskFull(err)) throw err;
        deferred = meta;
      }
    });
    if (deferred !== null) {
      writeSnapshotMeta(this.log.dir, deferred, this.log.storageFs);
      this.epochs.truncateBefore((deferred as SnapshotMeta).logStartOffset);
    }
    return n;
  }

  /** Writes the producer-state snapshot as of the log end. A failure only costs a longer replay later. */
  snapshotProducers(): void {
    try {
      writeProducerSnapshot(this.log.dir, this.producerTable, this.log.nextOffset);
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

  /**
   * Flushes and closes. A one-voter group answers the acks=all produces still waiting after that
   * final flush (what its only voter persisted is committed); a member of a larger group fails them
   * (retriable): they may or may not commit without it.
   */
  async close(remove: boolean): Promise<void> {
    const wasOpen = !this.closed;
    this.closed = true;
    if (wasOpen && !remove && this.bytesSinceSnapshot > 0) this.snapshotProducers();
    if (wasOpen && !remove) this.checkpointCommit();
    try {
      await this.log.close();
      if (this.isSoleVoter() && this.retryReady === null) this.applyCommit(this.log.nextOffset);
      this.failPending(new SluiceError('UNAVAILABLE', `partition ${this.name} closed before the write committed`));
    } catch (err) {
      this.failPending(toSluiceError(err));
      throw err;
    } finally {
      if (remove) await fs.promises.rm(this.log.dir, { recursive: true, force: true });
    }
  }
}

function isSoleVoterOf(c: { voters: readonly number[]; learners: readonly number[] }, nodeId: number): boolean {
  return c.voters.length === 1 && c.voters[0] === nodeId && c.learners.length === 0;
}

/** Node ids are positive; a node is a voter or a learner, not both; a group has a voter. */
function checkMembership(nodeId: number, voters: readonly number[], learners: readonly number[]): void {
  const bad = (m: string): SluiceError => new SluiceError('INVALID_CONFIG', `partition replica: ${m}`);
  const ok = (n: number): boolean => Number.isSafeInteger(n) && n > 0;
  if (!ok(nodeId)) throw bad(`node id must be a positive integer, got ${nodeId}`);
  if (voters.length === 0 && learners.length > 0) throw bad('a group with learners needs voters');
  for (const n of [...voters, ...learners]) if (!ok(n)) throw bad(`member ids must be positive integers, got ${n}`);
  if (new Set([...voters, ...learners]).size !== voters.length + learners.length) throw bad('a node is listed twice (voters and learners are disjoint)');
}

/**
 * Cuts a produce request into its batches (one Raft run each) with their record counts, reading only
 * headers. A replicated group copies each batch once: the request bytes live in the shard's ring,
 * which is reused after this event, while the core keeps its runs until they are sent.
 */
function splitRuns(bytes: Uint8Array, copy: boolean): { runs: Uint8Array[]; counts: number[] } {
  const buf = asBuffer(bytes);
  const runs: Uint8Array[] = [];
  const counts: number[] = [];
  for (let pos = 0; pos < buf.length; ) {
    const size = buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD;
    const run = buf.subarray(pos, pos + size);
    runs.push(copy ? Buffer.from(run) : run);
    counts.push(buf.readInt32BE(pos + OFF_LAST_OFFSET_DELTA) + 1);
    pos += size;
  }
  return { runs, counts };
}

/** A replica applies the producer headers of a batch it writes (the table is a function of the log). */
function applyHeaders(table: ProducerStateTable, buf: Buffer): void {
  const producerId = buf.readBigInt64BE(OFF_PRODUCER_ID);
  if (producerId === NO_PRODUCER_ID) return;
  table.apply({
    producerId,
    producerEpoch: buf.readInt16BE(OFF_PRODUCER_EPOCH),
    baseSequence: buf.readInt32BE(OFF_BASE_SEQUENCE),
    recordCount: buf.readInt32BE(OFF_RECORD_COUNT),
    baseOffset: readInt64(buf, 0),
    maxTimestampMs: readInt64(buf, OFF_MAX_TIMESTAMP),
  });
}

/**
 * Records a new log start in the Raft snapshot metadata (index = start - 1, with its term) and trims
 * the leader-epoch checkpoint to it.
 */
function recordLogStart(dir: string, epochs: EpochCheckpoint, newStart: number, voters: readonly number[], learners: readonly number[], f = NODE_FS): SnapshotMeta {
  const index = newStart - 1;
  const meta: SnapshotMeta = { index, term: Math.max(0, epochs.epochAt(index)), voters: [...voters], learners: [...learners], logStartOffset: newStart };
  writeSnapshotMeta(dir, meta, f);
  epochs.truncateBefore(newStart);
  return meta;
}
