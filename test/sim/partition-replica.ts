/**
 * The REAL partition as the simulator's replica under test: src/partition's `Partition` (its Raft
 * driver around `RaftNode`, over `PartitionLog` and the partition's state files) on a simulated node's
 * disk (`SimFs`: in memory, loses unsynced writes on a crash, fdatasyncs complete when the simulator
 * says). The simulator's events map onto the partition's own: a client produce is `produce(acks=all)`,
 * a message is `step`, a tick is `tick`, and the partition's `needPersist` is answered with `persist()`
 * in the next phase (as the shard does at the end of its turn). What the checkers see comes through the
 * partition's surface only: its high watermark, its reads (`read`, which never passes the high
 * watermark) and its acks (`produced`), plus its Raft core for the protocol checkers (election safety,
 * every acked produce in every later leader's log).
 *
 * Each batch is one v2 batch of `count` records whose first record's key is the simulator's payload id
 * (4 bytes, little endian), so a run read back names its content without the simulator keeping bytes.
 */
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import { OFF_ATTRIBUTES, OFF_LAST_OFFSET_DELTA, OFF_LEADER_EPOCH, asBuffer, batchSizeAt, decodeStoredBatch, encodeBatch, readInt64 } from '../../src/batch/codec.js';
import { Partition, type PartitionEffects, type PartitionTimers } from '../../src/partition/index.js';
import { readControl } from '../../src/partition/control-batch.js';
import type { ConfChange, Entry, Message, RaftNode } from '../../src/raft/index.js';
import { type LogConfig, defaultLogConfig } from '../../src/storage/index.js';
import { InvariantViolation, dataContentId } from './checkers.js';
import type { DriverBug, ReplicaHost, ReplicaUnderTest } from './replica.js';
import type { SimFs } from './sim-fs.js';

const CONTROL_BIT = 0x20;
/** Simulated wall clock: a fixed epoch plus 10 ms per simulator step (append times, segment.ms). */
const SIM_EPOCH_MS = 1_700_000_000_000;
const SIM_STEP_MS = 10;
/** Small segments, so rolls (which sync the sealed segment) and multi-segment reads happen. */
const SIM_SEGMENT_BYTES = 16 * 1024;
const READ_BYTES_MAX = 1 << 20;

/** The simulator never parks a fetch; a timer set anyway is a harness bug. */
const NO_TIMERS: PartitionTimers = {
  setTimeout: () => {
    throw new Error('the simulator does not park fetches');
  },
  clearTimeout: () => {},
};

/** The partition's Raft core, for the protocol checkers (read-only use). */
function coreOf(p: Partition): RaftNode {
  return (p as unknown as { raft: RaftNode }).raft;
}

/**
 * A run as the checkers key it: index, count, term, kind (a control batch is Raft's no-op or a
 * membership change, read back with its change), and a 16-byte payload naming its content.
 */
function runOf(batch: Buffer, pos: number): Entry {
  const index = readInt64(batch, pos) as Offset;
  const count = batch.readInt32BE(pos + OFF_LAST_OFFSET_DELTA) + 1;
  const term = batch.readInt32BE(pos + OFF_LEADER_EPOCH) as Term;
  const data = new Uint8Array(16);
  if ((batch.readInt16BE(pos + OFF_ATTRIBUTES) & CONTROL_BIT) !== 0) {
    const c = readControl(batch.subarray(pos, pos + batchSizeAt(batch, pos)));
    if (c.kind === 'conf') return { index, count, term, kind: 'conf', data, change: c.change };
    return { index, count, term, kind: 'noop', data, change: null };
  }
  const key = decodeStoredBatch(batch, pos).records[0].key;
  if (key !== null && key.length >= 4) data.set(key.subarray(0, 4));
  return { index, count, term, kind: 'data', data, change: null };
}

export interface PartitionReplicaOptions {
  readonly id: number;
  readonly group: number;
  /**
   * The configuration the replica is created with (its bootstrap snapshot at -1): the founding voters,
   * or, for a replica added later, the group's configuration when it was added, itself a learner (as
   * the cluster layer opens one, so it never campaigns before the group promotes it).
   */
  readonly voters: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  readonly host: ReplicaHost;
  /** The node's disk (all of a node's groups share it). */
  readonly disk: SimFs;
  readonly bugs: ReadonlySet<DriverBug>;
}

export class PartitionReplica implements ReplicaUnderTest {
  readonly id: number;
  partition: Partition | null = null;
  removed = false;
  readonly crashAt = 0;
  /** One past the last offset reported visible to the checkers (kept across restarts). */
  private shown = 0;
  /** Bumped by a crash: effects of a dead incarnation are ignored. */
  private incarnation = 0;
  private persistWanted = false;
  /** Restarted, and no settled high watermark checked against the one before the restart yet. */
  private restartUnchecked = false;
  /** The highest commit index this replica's core reported while leading (any incarnation). */
  private leaderCommitSeen = -1;
  /** acks=all produces in flight: request id -> payload. */
  private readonly acks = new Map<number, { id: number; count: number }>();
  private nextRequest = 1;
  private readonly host: ReplicaHost;

  constructor(private readonly o: PartitionReplicaOptions) {
    this.id = o.id;
    this.host = o.host;
  }

  get raft(): RaftNode | null {
    return this.partition === null ? null : coreOf(this.partition);
  }

  /** Its disk is the node's SimFs under a real log, not a MemoryStorage (see ReplicaUnderTest.disk). */
  readonly disk = null;

  /** The partition queues its own input while a Ready is in flight, so the simulator need not. */
  busy(): boolean {
    return false;
  }

  private config(): LogConfig {
    return { ...defaultLogConfig(), segmentBytes: SIM_SEGMENT_BYTES };
  }

  private effects(incarnation: number): PartitionEffects {
    const live = (): boolean => incarnation === this.incarnation;
    return {
      produced: (_p, req, ok) => {
        if (live()) this.answered(req, ok.baseOffset);
      },
      failed: (_p, req) => {
        if (live()) this.acks.delete(req);
      },
      serveFetch: () => {
        throw new Error('the simulator does not fetch through the shard path');
      },
      needPersist: () => {
        if (live()) this.persistWanted = true;
      },
      send: (_p, m: Message) => {
        if (live()) this.host.send(m);
      },
    };
  }

  async start(): Promise<void> {
    const { id, group, voters, host, disk } = this.o;
    const incarnation = this.incarnation;
    const { id: _ignored, ...raft } = host.raftOptions(id);
    const p = await Partition.open(
      `/node-${id}`,
      { topic: `g${group}`, topicId: '', partition: 0 },
      this.config(),
      false,
      { fs: disk, nowMs: () => SIM_EPOCH_MS + host.now() * SIM_STEP_MS },
      this.effects(incarnation),
      undefined,
      { nodeId: id, voters, learners: this.o.learners ?? [], raft, timers: NO_TIMERS, driverBugs: [...this.o.bugs] },
    );
    if (incarnation !== this.incarnation) return; // crashed while opening
    this.checkEpochs(p);
    this.partition = p;
    this.persistWanted = true;
    // The partition restarts its high watermark from the commit its HardState recorded (at a term
    // change or a clean close; a crash loses what it learned since) and re-learns the rest from the
    // leader; until it is back at least where it was, it says so (`highWatermarkProvisional`) and its
    // clients see no high watermark. Strict mode (the default) holds the first settled one to "never
    // back, across restarts too", as the reference driver is; lenient mode counts restarts that came
    // back lower, provisional or not.
    this.restartUnchecked = true;
    if (!host.strictHwRestart) {
      this.restartUnchecked = false;
      if (host.checkers.onHighWatermarkRestartLenient(id, p.highWatermark)) host.hwRestartedLower(this);
    }
    this.observe();
  }

  crash(): void {
    this.incarnation++;
    this.partition = null;
    this.persistWanted = false;
    this.acks.clear(); // the clients see their connection drop: no answer
    this.host.crashed(this);
    this.host.note(`crash ${this.id}`, 1, this.id, 0);
  }

  stop(): void {
    this.removed = true;
    this.incarnation++;
    this.partition = null;
    this.acks.clear();
  }

  tick(): void {
    this.partition!.tick();
    this.observe();
  }

  step(m: Message): void {
    this.partition!.step(m);
    this.observe();
  }

  processReady(): void {
    const p = this.partition;
    if (p === null || !this.persistWanted) return;
    this.persistWanted = false;
    p.persist();
    this.observe();
  }

  /** The node's disk completes fdatasyncs for all its groups (sim.ts); nothing per replica. */
  fsyncDone(): void {}

  produce(payload: Uint8Array, count: number): number {
    const p = this.partition!;
    const key = payload.subarray(0, 4);
    const records = Array.from({ length: count }, (_, i) => ({ key: i === 0 ? key : null, value: payload.subarray(4, 8), timestampMs: SIM_EPOCH_MS + this.host.now() * SIM_STEP_MS }));
    const req = this.nextRequest++;
    this.acks.set(req, { id: dataContentId(payload), count });
    try {
      p.produce(req, encodeBatch(records), 2);
    } catch (err) {
      this.acks.delete(req);
      throw err;
    }
    const at = p.logEndOffset - count;
    this.observe();
    return at;
  }

  highWatermark(): number {
    return this.partition?.highWatermark ?? this.shown;
  }

  proposeConfChange(cc: ConfChange): void {
    this.partition!.proposeConfChange(cc);
    this.observe();
  }

  /** Compaction is the partition's retention (time and size driven), which the simulator does not drive. */
  compact(): number {
    return 0;
  }

  /**
   * Reports what moved since the last look: the high watermark (monotonic), and every run below it
   * read back through the partition (claimed offset by offset: one record per offset, forever).
   */
  observe(): void {
    const p = this.partition;
    if (p === null) return;
    const hw = p.highWatermark;
    const checkers = this.host.checkers;
    // A leader's commit, with the term it commits in: the checkers hold only later-term leaders to
    // an acked or committed run (a leader of an older term, whose election completes late, need not
    // have it; seed 10942: node 3 won term 4 after term 5 had committed and acked a run).
    const raft = coreOf(p);
    if (raft.getRole() === 'leader' && raft.getCommit() > this.leaderCommitSeen) {
      checkers.onLeaderCommit(raft, Math.max(this.leaderCommitSeen, raft.log.firstIndex() - 1), raft.getCommit());
      this.leaderCommitSeen = raft.getCommit();
    }
    if (hw > p.logEndOffset) throw new InvariantViolation('high watermark within the log', `node ${this.id} g${this.o.group}: high watermark ${hw} above its log end ${p.logEndOffset}`);
    if (!this.host.strictHwRestart || !p.highWatermarkProvisional) {
      checkers.onHighWatermark(this.id, hw, this.restartUnchecked);
      this.restartUnchecked = false;
    }
    let at = Math.max(this.shown, p.logStartOffset);
    for (let reads = 0; at < hw; reads++) {
      if (reads > 10_000) throw new Error(`node ${this.id}: reading ${at}..${hw} does not progress`);
      const r = p.read(at, READ_BYTES_MAX);
      const buf = asBuffer(r.data);
      if (buf.length === 0) throw new InvariantViolation('no committed entry lost or changed', `node ${this.id} g${this.o.group}: offset ${at} below its high watermark ${hw} reads nothing`);
      for (let pos = 0; pos < buf.length; pos += batchSizeAt(buf, pos)) {
        const e = runOf(buf, pos);
        checkers.onVisible(this.id, e);
        this.host.applied(this, e);
      }
      at = r.nextOffset;
    }
    if (hw > this.shown) this.shown = hw;
  }

  /**
   * After recovery the leader-epoch checkpoint (what the core's `term(i)` answers from) must agree with
   * the batches it describes: each epoch starts at a run of that term. A checkpoint ahead of its log
   * (a truncation the crash undid, an epoch written after it) gives the core terms its log does not
   * hold: an inflated last term wins elections it should lose, and appends carry runs whose header
   * term is not the term the leader claims for them.
   */
  private checkEpochs(p: Partition): void {
    const st = p.raftStorage();
    for (const ep of p.epochCheckpoint.list) {
      if (ep.startOffset < p.logStartOffset || ep.startOffset >= p.logEndOffset) continue;
      const run = st.entries(ep.startOffset, ep.startOffset, 1, 1)[0];
      if (run === undefined || run.index !== ep.startOffset || run.term !== ep.epoch) {
        const found = run === undefined ? 'nothing' : `run ${run.index}+${run.count}@${run.term}`;
        throw new InvariantViolation('log matching', `node ${this.id} g${this.o.group} restarted with epoch ${ep.epoch} starting at ${ep.startOffset} in its checkpoint, but its log holds ${found} there`);
      }
    }
  }

  /** Every run of the partition's log up to its high watermark, read back (the final check). */
  readAll(): Entry[] {
    const p = this.partition!;
    const out: Entry[] = [];
    for (let at = p.logStartOffset, reads = 0; at < p.highWatermark; reads++) {
      if (reads > 100_000) throw new Error(`node ${this.id}: the final read does not progress`);
      const r = p.read(at, READ_BYTES_MAX);
      const buf = asBuffer(r.data);
      if (buf.length === 0) break;
      for (let pos = 0; pos < buf.length; pos += batchSizeAt(buf, pos)) out.push(runOf(buf, pos));
      at = r.nextOffset;
    }
    return out;
  }

  /** An acks=all produce was answered: it must be the committed run this replica shows there. */
  private answered(req: number, baseOffset: number): void {
    const a = this.acks.get(req);
    if (a === undefined) return;
    this.acks.delete(req);
    this.observe();
    this.host.checkers.onAckedShown(this.id, baseOffset, a.count, a.id);
  }
}
