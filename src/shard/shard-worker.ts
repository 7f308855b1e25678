/**
 * Shard worker entry (runs in a piscina worker thread; must be JS at run time, so the host loads the
 * compiled file). piscina owns the thread's life; the main thread starts one long-running `serve` task
 * per worker life, which hands over a MessagePort and the two rings. The task resolves on `close` and
 * rejects if the thread dies, which is how the host notices a crash.
 *
 * The worker owns its partitions' actors. Every op is handled synchronously in arrival order except
 * open/drop/close, so request-ring slots are released in allocation order (the ring's FIFO rule) and
 * the ops of one partition never interleave.
 */
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { MessagePort } from 'node:worker_threads';
import { SluiceError, isSluiceError, toSluiceError, type SluiceErrorWire } from '../errors.js';
import { SHARD_STATS_FULL_INTERVALS, REPLICA_ELECTION_TICKS, REPLICA_HEARTBEAT_TICKS, REPLICA_ISR_LAG_OFFSETS_MAX, SHARD_FETCH_CHAINS_MAX, SHARD_FLUSH_SAMPLES_MAX, SHARD_OFFLINE_RETRY_MS_MAX, SHARD_OFFLINE_RETRY_MS_MIN, SHARD_TICK_MS } from '../constants.js';
import { BATCH_LOG_OVERHEAD_BYTES, OFF_ATTRIBUTES, OFF_LENGTH, OFF_RECORD_COUNT } from '../batch/codec.js';
import { NotLeaderError, Partition, partitionDir, type PartitionEffects, type PartitionMembership, type PeerMessage, type ProduceOk } from '../partition/index.js';
import type { NodeId } from '../model/index.js';
import { isDiskFull, storageError, type LogOpenOptions } from '../storage/index.js';
import type { RecoveryReport } from '../storage/recovery.js';
import { ChainCounters } from './fetch-chain.js';
import { RingReader, RingWriter, type RingSlot } from './ring.js';
import { encodeStructuredRead } from './structured-read.js';
import { ThreadStatsSampler } from './thread-stats.js';
import { portableEnvelopes } from './raft-envelope.js';
import type { Op, PartitionKey, PartitionSpec, PartitionStat, RaftEnvelope, Reply, ServeTask, ToMain, ToWorker } from './protocol.js';

/** Attributes bit 5: Raft's own entries, which are not records a consumer reads (not counted). */
const CONTROL_BIT = 0x20;

let current: ShardServer | null = null;

/** piscina task entry. */
export default async function shardWorker(task: ServeTask): Promise<string> {
  if (task.kind !== 'serve') throw new Error(`unknown shard task ${String((task as { kind?: unknown }).kind)}`);
  // A new serve on a thread that outlived its previous one: drop the old state first.
  current?.abandon();
  const server = new ShardServer(task);
  current = server;
  return server.run();
}

/** Sum of recordCount over whole non-control batches in `buf` (header walk only). */
function countRecords(buf: Buffer): number {
  let records = 0;
  for (let pos = 0; pos + 61 <= buf.length; ) {
    if ((buf.readInt16BE(pos + OFF_ATTRIBUTES) & CONTROL_BIT) === 0) records += buf.readInt32BE(pos + OFF_RECORD_COUNT);
    pos += buf.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES;
  }
  return records;
}

/**
 * Raft timing of partition replicas in cluster mode (why: src/constants.ts), with real randomness for
 * the randomized election timeout: the core's default source is a constant (deterministic for tests
 * and the simulator), which would give every replica the same timeout, so the survivors of a dead
 * leader would campaign in the same tick and split their votes, again and again.
 */
const REPLICA_RAFT = Object.freeze({ electionTicks: REPLICA_ELECTION_TICKS, heartbeatTicks: REPLICA_HEARTBEAT_TICKS, random: Math.random });
/** The same, quiescing when idle (the host has a failure detector that wakes it: PartitionSpec.replica.quiesce). */
const REPLICA_RAFT_QUIESCE = Object.freeze({ ...REPLICA_RAFT, quiesce: true });

/** Whether two stats of one partition carry the same numbers. */
function sameStat(a: PartitionStat, b: PartitionStat): boolean {
  if (a.inSync.length !== b.inSync.length) return false;
  for (let i = 0; i < a.inSync.length; i++) if (a.inSync[i] !== b.inSync[i]) return false;
  return (
    a.highWatermark === b.highWatermark &&
    a.logStartOffset === b.logStartOffset &&
    a.logEndOffset === b.logEndOffset &&
    a.sizeBytes === b.sizeBytes &&
    a.damagedRanges === b.damagedRanges &&
    a.role === b.role &&
    a.leader === b.leader &&
    a.epoch === b.epoch &&
    a.voters === b.voters &&
    a.quiesced === b.quiesced &&
    a.topic === b.topic &&
    a.partition === b.partition
  );
}

function roleOf(p: Partition): PartitionStat['role'] {
  const r = p.role;
  if (r === 'leader') return 'leader';
  if (p.isLearner) return 'learner';
  return r === 'preCandidate' ? 'precandidate' : r;
}

/** A chained fetch on the shard (./fetch-chain.ts). */
interface Chain {
  id: number;
  /** Its slot of the claim counters. */
  slot: number;
  k: PartitionKey;
  /** Its partition (null: not open here; the first answer is then an error, which ends the chain). */
  p: Partition | null;
  /** Where the next read starts: the last answer's nextOffset. */
  offset: number;
  maxBytes: number;
  maxWaitMs: number;
  pb: boolean;
  /** Answers sent. */
  answered: number;
  /** Waiting for its reader: the main thread sends `resume`. */
  stalled: boolean;
}

/** What a leader-change report compares: role, leader and term. */
interface LeaderSeen {
  role: Partition['role'];
  leader: number;
  term: number;
}

/**
 * The shard: a router. Ring descriptors in, partition events out; partition effects (replies, Ready to
 * persist, peer messages) back out. It never reads or writes a partition's log itself.
 */
class ShardServer implements PartitionEffects {
  private readonly actors = new Map<PartitionKey, Partition>();
  /** Partitions with a Ready this turn: persisted together at the end of it (group commit). */
  private readonly readyToPersist = new Set<Partition>();
  private persistScheduled = false;
  /** Closes in progress, so a re-create of the same partition waits for the old files to go. */
  private readonly closing = new Map<string, Promise<void>>();
  /** Fetches that asked for structured records (op `pb`), by id, until answered. */
  private readonly structured = new Set<number>();
  /** Parked fetch id -> its partition (for cancel). */
  private readonly parkedOwner = new Map<number, Partition>();
  /** Chained fetches by id (./fetch-chain.ts): what to read next, and whether the chain waits for its reader. */
  private readonly chains = new Map<number, Chain>();
  private readonly chainCounters: ChainCounters;
  /** Partitions whose log failed to open, with the reason and what to reopen them with. */
  private readonly offline = new Map<PartitionKey, { err: SluiceErrorWire; spec: PartitionSpec }>();
  private offlineRetry: NodeJS.Timeout | null = null;
  private offlineRetryMs = SHARD_OFFLINE_RETRY_MS_MIN;
  private readonly port: MessagePort;
  private readonly requests: RingReader;
  private readonly responses: RingWriter;
  private readonly logOptions: LogOpenOptions;
  /** This thread's event-loop delay and GC pauses, shipped with every stats message. */
  private readonly threadStats = new ThreadStatsSampler();
  private readonly timers: NodeJS.Timeout[] = [];
  private outbox: Reply[] = [];
  /** Raft messages to peers sent this turn (after their Ready was persisted), in order. */
  private raftOut: RaftEnvelope[] = [];
  private outboxScheduled = false;
  /** Each open partition's number (the Partition does not know it). */
  private readonly keys = new WeakMap<Partition, PartitionKey>();
  /** The numbers each replica last sent in a stats message: unchanged ones are not sent again (see sendStats). */
  private readonly statSent = new WeakMap<Partition, PartitionStat>();
  private statsSent = 0;
  /** The role/leader/term each replica last reported, to report changes within a tick (no allocation per tick). */
  private readonly reportedLeader = new WeakMap<Partition, LeaderSeen>();
  private flushSeconds: number[] = [];
  /** Ops received and not yet answered (the shard's queue depth). */
  private inflight = 0;
  private finish: (v: string) => void = () => {};
  private stopped = false;

  constructor(private readonly task: ServeTask) {
    this.port = task.port;
    this.requests = new RingReader(task.requestRing);
    this.responses = new RingWriter(task.responseRing);
    this.chainCounters = new ChainCounters(task.chainCounters);
    this.logOptions = { fdatasync: (fd, cb) => this.timedFdatasync(fd, cb) };
  }

  run(): Promise<string> {
    this.port.on('message', (msg: ToWorker) => this.onMessage(msg));
    this.threadStats.start();
    this.timers.push(setInterval(() => this.enforceRetention(), this.task.retentionCheckMs));
    this.timers.push(setInterval(() => this.sendStats(), this.task.statsIntervalMs));
    this.timers.push(setInterval(() => this.tickAll(), SHARD_TICK_MS));
    return new Promise((resolve) => {
      this.finish = resolve;
    });
  }

  /**
   * Drops a previous life's state on a reused thread. Its logs are not closed: closing writes (a flush,
   * the clean-shutdown marker) and would race the new life's recovery of the same directories. In
   * practice a serve task only ends by `close` or by the thread dying, so this is a safety net.
   */
  abandon(): void {
    this.stopped = true;
    this.stopTimers();
    this.port.removeAllListeners('message');
    this.actors.clear();
  }

  private timedFdatasync(fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void {
    const t0 = performance.now();
    fs.fdatasync(fd, (err) => {
      if (this.flushSeconds.length < SHARD_FLUSH_SAMPLES_MAX) this.flushSeconds.push((performance.now() - t0) / 1000);
      cb(err);
    });
  }

  private onMessage(msg: ToWorker): void {
    for (const op of msg.ops) {
      if (op.t !== 'cancel' && op.t !== 'resume' && op.t !== 'crash' && op.t !== 'stall' && op.t !== 'raft' && op.t !== 'wake') this.inflight++;
      this.handle(op);
    }
  }

  private handle(op: Op): void {
    switch (op.t) {
      case 'p':
        return this.produce(op);
      case 'f':
        return this.fetch(op);
      case 'cancel':
        return this.cancel(op.id);
      case 'resume':
        return this.resumeChain(op.id);
      case 'raft':
        return this.stepAll(op.msgs);
      case 'wake':
        for (const p of this.actors.values()) p.wakeFor(op.nodes, op.down);
        return;
      case 'transfer':
        return this.transfer(op);
      case 'conf':
        return this.confChange(op);
      case 'members':
        return this.reply({ id: op.id, t: 'members', members: this.members(op.keys) });
      case 'open':
        return void this.open(op);
      case 'drop':
        return void this.drop(op);
      case 'config':
        return this.config(op);
      case 'stat':
        return this.reply({ id: op.id, t: 'stat', stats: this.stats(op.keys) });
      case 'offsets':
        return this.offsets(op);
      case 'close':
        return void this.close(op.id);
      case 'crash':
        process.exit(1);
      case 'stall': {
        const until = Date.now() + op.ms;
        while (Date.now() < until) {
          // Busy-wait on purpose: the test wants a thread that cannot run its event loop.
        }
        return;
      }
    }
  }

  // --- Replies -------------------------------------------------------------------------------

  private reply(r: Reply): void {
    this.inflight--;
    const chain = this.chains.get(r.id);
    if (chain !== undefined) return this.chainAnswered(chain, r);
    this.outbox.push(r);
    this.scheduleOutbox();
  }

  private scheduleOutbox(): void {
    if (!this.outboxScheduled) {
      this.outboxScheduled = true;
      setImmediate(() => this.flushOutbox());
    }
  }

  private fail(id: number, err: unknown): void {
    this.structured.delete(id);
    // NOT_LEADER names the leader in structured form too, so the host can route without parsing.
    if (err instanceof NotLeaderError) return this.reply({ id, err: err.toWire(), leader: err.leaderId, epoch: err.epoch });
    this.reply({ id, err: toSluiceError(err).toWire() });
  }

  private flushOutbox(): void {
    this.outboxScheduled = false;
    if (this.outbox.length === 0 && this.raftOut.length === 0) return;
    const replies = this.outbox;
    this.outbox = [];
    const transfer: ArrayBuffer[] = [];
    for (const r of replies) if ('data' in r && r.data) transfer.push(r.data.buffer as ArrayBuffer);
    const msg: ToMain = replies.length > 0 ? { replies } : {};
    if (this.raftOut.length > 0) {
      msg.raft = portableEnvelopes(this.raftOut, transfer);
      this.raftOut = [];
    }
    this.port.postMessage(msg, transfer);
  }

  // --- Produce -------------------------------------------------------------------------------

  private produce(op: Extract<Op, { t: 'p' }>): void {
    const p = this.actors.get(op.k);
    try {
      if (!p) throw this.missing(op.k);
      p.produce(op.id, this.requests.view(op.off, op.len), op.acks);
    } catch (err) {
      return this.fail(op.id, err);
    } finally {
      // The bytes are in the OS now (or rejected): the slot can go back, in allocation order.
      this.requests.release(op.charge);
    }
  }

  // --- Partition effects -------------------------------------------------------------------------

  produced(_p: Partition, id: number, ok: ProduceOk): void {
    this.reply({ id, t: 'p', ...ok });
  }

  failed(_p: Partition, id: number, err: SluiceError): void {
    this.parkedOwner.delete(id);
    this.fail(id, err);
  }

  serveFetch(p: Partition, id: number, offset: number, maxBytes: number): void {
    this.parkedOwner.delete(id);
    this.serveFetchNow(p, id, offset, maxBytes);
  }

  needPersist(p: Partition): void {
    this.readyToPersist.add(p);
    if (!this.persistScheduled) {
      this.persistScheduled = true;
      // After every op of this turn's message (and its microtasks): one round of fdatasyncs for all.
      setImmediate(() => this.persistAll());
    }
  }

  /**
   * A peer message, handed out by the partition only after the Ready that made it is persisted (the
   * partition enforces persist-then-send); it leaves with everything else of this turn.
   */
  send(p: Partition, msg: PeerMessage): void {
    const k = this.keys.get(p);
    if (k === undefined || this.stopped) return;
    this.raftOut.push({ k, msg });
    this.scheduleOutbox();
  }

  /** A leadership transfer, handed to the partition's core (which takes input at any time). */
  private transfer(op: Extract<Op, { t: 'transfer' }>): void {
    const p = this.actors.get(op.k);
    try {
      if (!p) throw this.missing(op.k);
      p.transferLeadership(op.to);
      this.reply({ id: op.id, t: 'done' });
    } catch (err) {
      this.fail(op.id, err);
    }
  }

  /** A membership change, handed to the partition's core (which takes input at any time). */
  private confChange(op: Extract<Op, { t: 'conf' }>): void {
    const p = this.actors.get(op.k);
    try {
      if (!p) throw this.missing(op.k);
      p.proposeConfChange({ type: op.change.type, node: op.change.node as NodeId });
      this.reply({ id: op.id, t: 'done' });
    } catch (err) {
      this.fail(op.id, err);
    }
  }

  private members(keys: readonly PartitionKey[]): Array<{ k: PartitionKey } & PartitionMembership> {
    const out: Array<{ k: PartitionKey } & PartitionMembership> = [];
    for (const k of keys) {
      const p = this.actors.get(k);
      if (p !== undefined) out.push({ k, ...p.membership() });
    }
    return out;
  }

  /** Peer messages for this shard's partitions; one for a partition not open here is dropped (Raft resends). */
  private stepAll(msgs: RaftEnvelope[]): void {
    for (const { k, msg } of msgs) this.actors.get(k)?.step(msg);
  }

  /** Group commit across partitions: every Ready collected this turn has its fdatasync issued now. */
  private persistAll(): void {
    this.persistScheduled = false;
    const ready = [...this.readyToPersist];
    this.readyToPersist.clear();
    for (const p of ready) p.persist();
  }

  private tickAll(): void {
    let changed: PartitionStat[] | null = null;
    for (const [k, p] of this.actors) {
      p.tick();
      const seen = this.reportedLeader.get(p);
      if (seen !== undefined && (seen.role !== p.role || seen.leader !== p.leaderId || seen.term !== p.term)) {
        seen.role = p.role;
        seen.leader = p.leaderId;
        seen.term = p.term;
        (changed ??= []).push(this.statOf(k, p));
      }
    }
    // A leader change reaches the main thread within a tick, not a stats interval (routing, failover).
    if (changed !== null) this.port.postMessage({ leaders: changed } satisfies ToMain);
  }

  // --- Fetch ---------------------------------------------------------------------------------

  private fetch(op: Extract<Op, { t: 'f' }>): void {
    const p = this.actors.get(op.k);
    if (op.chain !== undefined && op.chain >= 0 && op.chain < SHARD_FETCH_CHAINS_MAX) {
      this.chainCounters.start(op.chain);
      this.chains.set(op.id, { id: op.id, slot: op.chain, k: op.k, p: p ?? null, offset: op.offset, maxBytes: op.maxBytes, maxWaitMs: op.maxWaitMs, pb: op.pb === true, answered: 0, stalled: false });
    }
    if (!p) return this.fail(op.id, this.missing(op.k));
    this.readOrPark(p, op.id, op.offset, op.maxBytes, op.maxWaitMs, op.pb === true);
  }

  /** A read of `p` under `id`: answered now, or parked (a long-poll) until commit or timeout. */
  private readOrPark(p: Partition, id: number, offset: number, maxBytes: number, maxWaitMs: number, pb: boolean): void {
    if (pb) this.structured.add(id);
    try {
      const mayPark = this.parkedOwner.size < this.task.fetchWaitersMax;
      if (p.fetch(id, offset, maxBytes, maxWaitMs, mayPark)) this.parkedOwner.set(id, p);
    } catch (err) {
      this.fail(id, err);
    }
  }

  private cancel(id: number): void {
    // A chain ends here; the answer to its parked read (if any) is then a plain one.
    this.chains.delete(id);
    const actor = this.parkedOwner.get(id);
    if (!actor) return;
    this.parkedOwner.delete(id);
    if (actor.unpark(id)) this.fail(id, new SluiceError('TIMEOUT', 'fetch cancelled by its caller'));
  }

  /**
   * An answer of a chained fetch: sent with `more` when the chain goes on (no error, the reader is
   * caught up, no bigger read needed), then the next read is parked unless the chain must wait for
   * its reader (see ./fetch-chain.ts).
   */
  private chainAnswered(chain: Chain, r: Reply): void {
    const more = 't' in r && r.t === 'f' && r.need === undefined && r.nextOffset >= r.highWatermark;
    if (more) r.more = true;
    else this.chains.delete(chain.id);
    this.outbox.push(r);
    this.scheduleOutbox();
    if (!more) return;
    chain.answered++;
    chain.offset = r.nextOffset;
    if (this.chainCounters.mayContinue(chain.slot, chain.answered)) this.parkChain(chain);
    else chain.stalled = true;
  }

  private resumeChain(id: number): void {
    const chain = this.chains.get(id);
    if (chain !== undefined && chain.stalled) this.parkChain(chain);
  }

  /** The chain's next read: parked (or answered at once), under the chain's id, as a new fetch op would be. */
  private parkChain(chain: Chain): void {
    chain.stalled = false;
    this.inflight++;
    const p = chain.p;
    if (p === null || this.actors.get(chain.k) !== p) {
      // Dropped (or re-created) since: answered as a new fetch op for it would be.
      this.chains.delete(chain.id);
      return this.fail(chain.id, this.missing(chain.k));
    }
    this.readOrPark(p, chain.id, chain.offset, chain.maxBytes, chain.maxWaitMs, chain.pb);
  }

  /**
   * Reads straight into a response-ring slot when one is free; otherwise (ring full, or a single batch
   * larger than the request allows) reads into a private buffer that is transferred, not copied.
   */
  private serveFetchNow(p: Partition, id: number, offset: number, maxBytes: number): void {
    if (this.structured.delete(id)) return this.serveStructured(p, id, offset, maxBytes);
    try {
      let slot: RingSlot | null = maxBytes <= this.responses.capacity / 2 ? this.responses.alloc(maxBytes) : null;
      let data: Uint8Array | undefined;
      let bytes = 0;
      let nextOffset = offset;
      if (slot) {
        try {
          ({ bytes, nextOffset } = p.readInto(offset, maxBytes, this.responses.view(slot)));
        } catch (err) {
          this.responses.cancelLast(slot);
          slot = null;
          if (!isSluiceError(err, 'INVALID_REQUEST')) throw err;
        }
      }
      if (slot && bytes === 0) {
        this.responses.cancelLast(slot);
      } else if (slot) {
        slot = this.responses.shrinkLast(slot, bytes);
      } else {
        const r = p.read(offset, maxBytes);
        bytes = r.data.length;
        nextOffset = r.nextOffset;
        // Transferred, not copied, when the read buffer owns its memory (Buffer pools only small ones).
        if (bytes >= 4096) data = new Uint8Array(r.data.buffer, r.data.byteOffset, bytes);
        else if (bytes > 0) data = new Uint8Array(r.data);
      }
      const view = data ? Buffer.from(data.buffer, data.byteOffset, bytes) : slot && bytes > 0 ? this.responses.view(slot) : Buffer.alloc(0);
      this.reply({
        id,
        t: 'f',
        off: slot && bytes > 0 ? slot.offset : 0,
        len: bytes,
        charge: slot && bytes > 0 ? slot.charge : 0,
        data,
        records: countRecords(view),
        highWatermark: p.highWatermark,
        logStartOffset: p.logStartOffset,
        nextOffset,
      });
    } catch (err) {
      this.fail(id, err);
    }
  }

  /**
   * A structured read: decoded (and decompressed, bounded per batch) here rather than on the main
   * thread, into protobuf `records` bytes of at most about `maxBytes`; transferred, not copied.
   */
  private serveStructured(p: Partition, id: number, offset: number, maxBytes: number): void {
    try {
      // Committed batches only (the read stops at the high watermark); control batches are skipped.
      const read = p.read(offset, maxBytes);
      const raw = Buffer.from(read.data.buffer, read.data.byteOffset, read.data.length);
      const s = raw.length > 0 ? encodeStructuredRead(raw, offset, maxBytes) : { data: Buffer.alloc(0), records: 0, nextOffset: read.nextOffset };
      // Small Buffers share Node's pool, whose ArrayBuffer must not be transferred: copy those.
      const data = s.data.length >= 4096 ? new Uint8Array(s.data.buffer, s.data.byteOffset, s.data.length) : new Uint8Array(s.data);
      this.reply({
        id,
        t: 'f',
        off: 0,
        len: data.length,
        charge: 0,
        data,
        records: s.records,
        highWatermark: p.highWatermark,
        logStartOffset: p.logStartOffset,
        nextOffset: s.records > 0 || s.needBytes !== undefined ? s.nextOffset : Math.max(offset, read.nextOffset),
        need: s.needBytes,
      });
    } catch (err) {
      this.fail(id, err);
    }
  }

  // --- Admin ---------------------------------------------------------------------------------

  private async open(op: Extract<Op, { t: 'open' }>): Promise<void> {
    const failed: Array<{ k: PartitionKey; err: SluiceErrorWire }> = [];
    const recovered: Array<{ k: PartitionKey; report: RecoveryReport }> = [];
    await Promise.all(
      op.parts.map(async (p) => {
        const k = p.k;
        // Keyed by directory, not by number: a re-created topic's partition has a new number but the
        // same directory, and must not start before the deleted one's files are gone.
        await this.closing.get(partitionDir(this.task.dataDir, p.topic, p.partition));
        if (this.actors.has(k)) return;
        const res = await this.openOne(k, p);
        if ('err' in res) failed.push({ k, err: res.err });
        else if (res.report !== null) recovered.push({ k, report: res.report });
      }),
    );
    this.reply({ id: op.id, t: 'opened', failed, recovered });
    if (failed.length > 0) this.scheduleOfflineRetry(true);
  }

  /**
   * Opens one partition and returns its recovery report; on failure keeps it offline (its requests get
   * the error) and returns the error.
   */
  private async openOne(k: PartitionKey, p: PartitionSpec): Promise<{ err: SluiceErrorWire } | { report: RecoveryReport | null }> {
    try {
      const id = { topic: p.topic, topicId: p.topicId, partition: p.partition };
      const r = p.replica;
      const raft = r?.quiesce === true ? REPLICA_RAFT_QUIESCE : REPLICA_RAFT;
      // TEST ONLY (src/broker/test-hooks.ts): the simulator's bug modes, when the node was started with them.
      const bugs = r?.bugs === undefined ? {} : { raft: { ...raft, bugs: r.bugs.raft }, driverBugs: r.bugs.driver };
      const replica = r === undefined ? {} : { nodeId: r.nodeId, voters: r.voters, learners: r.learners, raft, preferredLeaderFirst: true, ...bugs };
      const actor = await Partition.open(this.task.dataDir, id, p.config, p.fresh, this.logOptions, this, this.task.producerIdleExpiryMs, replica);
      if (this.stopped) {
        void actor.close(false).catch(() => {});
        return { report: null };
      }
      this.offline.delete(k);
      this.actors.set(k, actor);
      this.keys.set(actor, k);
      this.reportedLeader.set(actor, { role: actor.role, leader: actor.leaderId, term: actor.term });
      return { report: actor.recovery };
    } catch (err) {
      const e = isDiskFull(err) && !isSluiceError(err, 'DISK_FULL') ? storageError(`cannot open partition ${p.topic}/${p.partition}`, err) : toSluiceError(err);
      const wire = e.toWire();
      // A retry reopens what is on disk: it must never start the partition afresh.
      this.offline.set(k, { err: wire, spec: { ...p, fresh: false } });
      return { err: wire };
    }
  }

  /**
   * Retries offline partitions whose failure may pass (a full disk: DISK_FULL is retriable), with
   * doubling backoff, so they come back on their own when space returns. Corruption is not retried.
   */
  private scheduleOfflineRetry(reset: boolean): void {
    if (reset) this.offlineRetryMs = SHARD_OFFLINE_RETRY_MS_MIN;
    if (this.offlineRetry !== null || this.stopped) return;
    if (![...this.offline.values()].some((o) => o.err.retriable)) return;
    this.offlineRetry = setTimeout(() => void this.retryOffline(), this.offlineRetryMs);
  }

  private async retryOffline(): Promise<void> {
    this.offlineRetry = null;
    const retry = [...this.offline].filter(([, o]) => o.err.retriable);
    let reopened = 0;
    for (const [k, o] of retry) {
      if (this.stopped || this.offline.get(k) !== o || this.actors.has(k)) continue;
      if (!('err' in (await this.openOne(k, o.spec)))) reopened++;
    }
    if (reopened > 0 && !this.stopped) this.sendStats();
    this.offlineRetryMs = Math.min(this.offlineRetryMs * 2, SHARD_OFFLINE_RETRY_MS_MAX);
    this.scheduleOfflineRetry(false);
  }

  /** The error for a partition that is not open here. */
  private missing(k: PartitionKey): SluiceError {
    const o = this.offline.get(k);
    if (o) return new SluiceError(o.err.code, `partition ${o.spec.topic}/${o.spec.partition} is offline: ${o.err.message}`, { retriable: o.err.retriable });
    return new SluiceError('UNKNOWN_PARTITION', `partition ${k} is not on this shard`);
  }

  private async drop(op: Extract<Op, { t: 'drop' }>): Promise<void> {
    const closes = op.parts.map(({ k, topic, partition }) => {
      const dir = partitionDir(this.task.dataDir, topic, partition);
      const actor = this.actors.get(k);
      this.actors.delete(k);
      this.offline.delete(k);
      let p: Promise<void>;
      if (actor) {
        this.answerParked(actor, new SluiceError('UNKNOWN_PARTITION', `partition ${topic}/${partition} was deleted`));
        p = actor.close(op.remove);
      } else if (op.remove) {
        p = fs.promises.rm(dir, { recursive: true, force: true });
      } else {
        p = Promise.resolve();
      }
      const settled = p.finally(() => {
        if (this.closing.get(dir) === settled) this.closing.delete(dir);
      });
      this.closing.set(dir, settled);
      return settled;
    });
    const results = await Promise.allSettled(closes);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) return this.fail(op.id, (failed as PromiseRejectedResult).reason);
    this.reply({ id: op.id, t: 'done' });
  }

  private answerParked(p: Partition, err: SluiceError | null): void {
    p.releaseParked(err);
  }

  private config(op: Extract<Op, { t: 'config' }>): void {
    try {
      for (const k of op.keys) this.actors.get(k)?.updateConfig(op.config);
      this.reply({ id: op.id, t: 'done' });
    } catch (err) {
      this.fail(op.id, err);
    }
  }

  private stats(keys: PartitionKey[] | null): PartitionStat[] {
    const out: PartitionStat[] = [];
    const pick = keys ?? [...this.actors.keys()];
    for (const k of pick) {
      const a = this.actors.get(k);
      if (a) out.push(this.statOf(k, a));
    }
    return out;
  }

  private statOf(k: PartitionKey, a: Partition): PartitionStat {
    return {
      k,
      topic: a.id.topic,
      partition: a.id.partition,
      logStartOffset: a.logStartOffset,
      highWatermark: a.highWatermark,
      sizeBytes: a.sizeBytes,
      damagedRanges: a.damagedRangeCount,
      role: roleOf(a),
      leader: a.leaderId,
      epoch: a.term,
      logEndOffset: a.logEndOffset,
      inSync: a.inSyncVoters(REPLICA_ISR_LAG_OFFSETS_MAX),
      voters: a.voters.length,
      quiesced: a.quiesced,
    };
  }

  private offsets(op: Extract<Op, { t: 'offsets' }>): void {
    const actor = this.actors.get(op.k);
    if (!actor) return this.fail(op.id, this.missing(op.k));
    try {
      const offset = actor.offsetFor(op.spec);
      this.reply({ id: op.id, t: 'offsets', offset });
    } catch (err) {
      this.fail(op.id, err);
    }
  }

  // --- Periodic work and shutdown --------------------------------------------------------------

  private enforceRetention(): void {
    const now = Date.now();
    for (const a of this.actors.values()) {
      try {
        a.enforceRetention(now);
      } catch {
        // A fenced or failing log reports its error to the next produce; retention just skips it.
      }
    }
  }

  /**
   * The stats of partitions whose numbers changed since they were last sent, and of all of them every
   * SHARD_STATS_FULL_INTERVALS messages: the main thread keeps the last numbers it got (a new worker
   * life starts with an empty memory, so it sends everything first). An idle shard of a thousand
   * replicas used to clone a thousand objects a second to say nothing had changed.
   */
  private changedStats(): PartitionStat[] {
    const full = this.statsSent++ % SHARD_STATS_FULL_INTERVALS === 0;
    const out: PartitionStat[] = [];
    for (const [k, a] of this.actors) {
      const st = this.statOf(k, a);
      const was = this.statSent.get(a);
      if (!full && was !== undefined && sameStat(was, st)) continue;
      this.statSent.set(a, st);
      out.push(st);
    }
    return out;
  }

  private sendStats(): void {
    const msg: ToMain = {
      stats: {
        queueDepth: this.inflight,
        offline: [...this.offline.keys()],
        eventLoopLagSeconds: 0,
        partitions: this.changedStats(),
        flushSeconds: this.flushSeconds,
        thread: this.threadStats.roll(),
      },
    };
    const loop = msg.stats!.thread!.loopDelay;
    msg.stats!.eventLoopLagSeconds = loop.count > 0 ? loop.sumSeconds / loop.count : 0;
    this.flushSeconds = [];
    this.port.postMessage(msg);
  }

  private stopTimers(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    if (this.offlineRetry !== null) clearTimeout(this.offlineRetry);
    this.offlineRetry = null;
    this.threadStats.stop();
  }

  private async close(id: number): Promise<void> {
    this.stopped = true;
    this.stopTimers();
    const actors = [...this.actors.values()];
    this.actors.clear();
    for (const a of actors) this.answerParked(a, null);
    const results = await Promise.allSettled([...actors.map((a) => a.close(false)), ...this.closing.values()]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) this.fail(id, (failed as PromiseRejectedResult).reason);
    else this.reply({ id, t: 'done' });
    this.flushOutbox();
    this.sendStats();
    this.port.removeAllListeners('message');
    this.port.close();
    current = null;
    this.finish('closed');
  }
}
