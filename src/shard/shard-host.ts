/**
 * The main-thread side of one shard: a piscina pool of exactly one thread, the two rings, the request
 * table, and crash recovery.
 *
 * Why piscina plus a MessagePort: piscina owns the thread's lifecycle (start, restart after a crash,
 * shutdown); the hot path skips its per-task cost (about 50k tasks/s here) and runs over a MessagePort
 * carrying batches of small descriptors (millions of descriptors/s), with batch bytes in a
 * SharedArrayBuffer ring. One long-running `serve` task per worker life hands the port over; when the
 * thread dies that task rejects, every request in flight fails with UNAVAILABLE, and a new life starts
 * with fresh rings and reopens the shard's partitions from disk.
 *
 * Backpressure: a produce that finds the request ring full waits (FIFO, bounded in count and time) for
 * the worker to release space, then fails with QUEUE_FULL; requests in flight are bounded too.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { SluiceError } from '../errors.js';
import {
  SHARD_FETCH_CHAINS_MAX,
  SHARD_FETCH_WAITERS_MAX, PRODUCER_IDLE_EXPIRY_MS_DEFAULT,
  SHARD_INFLIGHT_MAX,
  SHARD_RAFT_INBOX_MESSAGES_MAX,
  SHARD_REQUEST_RING_BYTES,
  SHARD_RESPONSE_RING_BYTES,
  SHARD_RETENTION_CHECK_MS,
  SHARD_RING_WAITERS_MAX,
  SHARD_RING_WAIT_MS_MAX,
  SHARD_STATS_INTERVAL_MS,
  SHARD_WATCHDOG_MS,
  SHARD_WATCHDOG_PAUSE_MS,
} from '../constants.js';
import { createRingBuffers, RingReader, RingWriter, type RingSlot } from './ring.js';
import { withEnvelopeRoom } from '../batch/envelope-room.js';
import type { RecoveryReport } from '../storage/recovery.js';
import { NotLeaderError } from '../partition/errors.js';
import type { Message } from '../raft/index.js';
import { portableEnvelopes } from './raft-envelope.js';
import { ChainCounters, createChainCounters } from './fetch-chain.js';
import type { AcksCode, Op, PartitionKey, PartitionSpec, PartitionStat, RaftEnvelope, Reply, ServeTask, ShardStatsMessage, ToMain, ToWorker } from './protocol.js';

export interface ShardHostOptions {
  shard: number;
  dataDir: string;
  requestRingBytes?: number;
  responseRingBytes?: number;
  ringWaitMs?: number;
  ringWaitersMax?: number;
  inflightMax?: number;
  fetchWaitersMax?: number;
  retentionCheckMs?: number;
  producerIdleExpiryMs?: number;
  statsIntervalMs?: number;
  /** A worker silent this long while ready is taken as hung and replaced. */
  watchdogMs?: number;
  /** Partitions the shard must hold now (asked after a restart, to reopen them). */
  partitionsOf: (shard: number) => PartitionSpec[];
  onStats?: (shard: number, stats: ShardStatsMessage) => void;
  /** Raft messages the worker's partitions send to peers (cluster mode), one call per worker turn. */
  onRaft?: (shard: number, msgs: RaftEnvelope[]) => void;
  /** Partitions whose role, leader or term changed (reported within a tick of the change). */
  onLeaders?: (shard: number, stats: PartitionStat[]) => void;
  onCrash?: (shard: number, err: unknown) => void;
  /** The worker died (or the watchdog stopped it) and a new life starts; `reason` says which. */
  onRestart?: (shard: number, reason: 'crash' | 'watchdog') => void;
  /** The main thread itself did not run for `gapMs` (SIGSTOP, a VM pause, a starved loop): the watchdog re-armed. */
  onMainThreadPause?: (shard: number, gapMs: number) => void;
  /** A partition's log could not be (re)opened; it stays offline and answers with this error. */
  onPartitionOffline?: (shard: number, key: PartitionKey, err: SluiceError) => void;
  /** A partition's log opened; what its recovery checked, truncated, rebuilt and fenced. */
  onPartitionRecovered?: (shard: number, key: PartitionKey, report: RecoveryReport) => void;
}

export type ProduceReply = Extract<Reply, { t: 'p' }>;
export interface FetchReply {
  data: Buffer;
  /** Structured read only: nothing returned; ask again with at least this many bytes. */
  needBytes?: number;
  records: number;
  highWatermark: number;
  logStartOffset: number;
  nextOffset: number;
}

/**
 * One reader's chained fetch (./fetch-chain.ts), carried from one `fetch` call to the next: give the
 * same one to every long-poll of one caught-up reader, and `close()` it when the reader stops. A call
 * that asks for another read than the chain repeats (offset, size, wait, format, partition) ends it
 * and starts a new one.
 */
export class FetchChain {
  /** The chain running on a shard, if any. */
  run: ChainRun | null = null;

  close(): void {
    const run = this.run;
    this.run = null;
    if (run !== null) run.host.endChain(run);
  }
}

type ChainAnswer = { ok: FetchReply } | { err: SluiceError };

interface ChainRun {
  readonly host: ShardHost;
  readonly life: number;
  readonly id: number;
  readonly slot: number;
  readonly key: PartitionKey;
  /** The offset the next answer starts at (the last taken answer's nextOffset). */
  offset: number;
  readonly maxBytes: number;
  readonly maxWaitMs: number;
  readonly pb: boolean;
  /** Answers received and not yet taken: at most two (see ./fetch-chain.ts). */
  readonly answers: ChainAnswer[];
  taken: number;
  waiter: { resolve: (r: FetchReply) => void; reject: (err: SluiceError) => void } | null;
  /** No more answers will come: the shard's last one had no `more`, or this side ended the chain. */
  ended: boolean;
}

type OpWithoutId = Op extends infer O ? (O extends { id: number } ? Omit<O, 'id'> : never) : never;

interface Pending {
  resolve: (r: Reply) => void;
  reject: (err: SluiceError) => void;
}

interface RingWaiter {
  length: number;
  grant: (slot: RingSlot) => void;
  fail: (err: SluiceError) => void;
  timer: NodeJS.Timeout;
}

type State = 'starting' | 'ready' | 'restarting' | 'closing' | 'closed';

/** The compiled worker file; when running from TS sources (vitest), its twin under dist/. */
export function shardWorkerFile(): string {
  const here = fileURLToPath(new URL('./shard-worker.js', import.meta.url));
  if (fs.existsSync(here)) return here;
  const sep = path.sep;
  const twin = here.replace(`${sep}src${sep}shard${sep}`, `${sep}dist${sep}src${sep}shard${sep}`);
  if (fs.existsSync(twin)) return twin;
  throw new Error(`shard worker not found at ${here} or ${twin}: run \`npm run build\` first`);
}

export class ShardHost {
  readonly shard: number;
  private readonly opts: ShardHostOptions;
  private readonly pool: Piscina;
  private state: State = 'starting';
  private port: MessagePort | null = null;
  private requests!: RingWriter;
  private responses!: RingReader;
  private readonly pending = new Map<number, Pending>();
  /** Chained fetches by id, and the claim counters they share with the worker (./fetch-chain.ts). */
  private readonly chainRuns = new Map<number, ChainRun>();
  private readonly chainBuffer = createChainCounters();
  private readonly chainCounters = new ChainCounters(this.chainBuffer);
  private freeChainSlots = allChainSlots();
  private ringWaiters: RingWaiter[] = [];
  private outbox: Op[] = [];
  /** Raft messages from peers this turn; they travel as one `raft` op at its end. */
  private raftIn: RaftEnvelope[] = [];
  private outboxScheduled = false;
  /** Peer messages dropped because the shard was restarting or its per-turn bound was reached. */
  raftDropped = 0;
  private nextId = 1;
  private life = 0;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: SluiceError) => void }> = [];
  private serveDone: Promise<unknown> = Promise.resolve();
  private restartScheduled = false;
  /** Monotonic clock (performance.now) of the last message from the worker. */
  private lastHeardMs = performance.now();
  /** Monotonic clock of the watchdog's previous tick: a long gap means this thread did not run. */
  private lastTickMs = performance.now();
  /** Set while the watchdog is replacing a silent worker, so the restart is reported as its doing. */
  private stoppedByWatchdog = false;
  private readonly watchdog: NodeJS.Timeout;
  /** Times this shard's worker was restarted after dying. */
  restarts = 0;
  /** Partitions of this shard that could not be opened (from the open reply, then from each stats message). */
  readonly offline = new Set<PartitionKey>();

  private constructor(opts: ShardHostOptions) {
    this.opts = opts;
    this.shard = opts.shard;
    this.pool = new Piscina({
      filename: shardWorkerFile(),
      name: 'default',
      minThreads: 1,
      maxThreads: 1,
      // 'sync' would park the worker between tasks, and the actors need their timers and port.
      atomics: 'disabled',
      concurrentTasksPerWorker: 4,
      idleTimeout: 2 ** 31 - 1,
    });
    // A crash surfaces as the serve task's rejection; the pool's own error event must not go unhandled.
    this.pool.on('error', () => {});
    const watchdogMs = opts.watchdogMs ?? SHARD_WATCHDOG_MS;
    const tickMs = Math.max(10, Math.min(1000, watchdogMs / 4));
    this.watchdog = setInterval(() => this.checkAlive(watchdogMs, tickMs), tickMs);
    this.watchdog.unref();
  }

  /**
   * Replaces a worker that stopped answering (stats arrive every second from a live one). The silence
   * is measured by this thread, so it only means something if this thread itself ran all along: when
   * its own ticks are late by more than SHARD_WATCHDOG_PAUSE_MS (the whole process was SIGSTOPped, the
   * VM was paused, or the main loop was starved), the worker's replies may be sitting unread in the
   * port, so the watchdog re-arms instead of replacing a worker that may be healthy.
   */
  private checkAlive(watchdogMs: number, tickMs: number): void {
    const now = performance.now();
    const gapMs = now - this.lastTickMs;
    this.lastTickMs = now;
    if (this.state !== 'ready') return;
    // Half the watchdog at most, so any pause as long as the watchdog is seen as one (tick = watchdog / 4).
    if (gapMs > tickMs + Math.min(SHARD_WATCHDOG_PAUSE_MS, watchdogMs / 2)) {
      this.lastHeardMs = now;
      this.opts.onMainThreadPause?.(this.shard, Math.round(gapMs));
      return;
    }
    if (now - this.lastHeardMs < watchdogMs) return;
    this.opts.onCrash?.(this.shard, new Error(`shard ${this.shard} worker silent for ${Math.round(now - this.lastHeardMs)} ms; replacing it`));
    this.lastHeardMs = now;
    this.stoppedByWatchdog = true;
    for (const t of this.pool.threads) void t.terminate();
  }

  static async start(opts: ShardHostOptions): Promise<ShardHost> {
    const host = new ShardHost(opts);
    try {
      await host.startLife();
    } catch (err) {
      await host.close().catch(() => {});
      throw err;
    }
    return host;
  }

  /** Fetch chains running on this shard now (tests: a caught-up reader is served by one). */
  get chainsRunning(): number {
    return this.chainRuns.size;
  }

  get inflight(): number {
    return this.pending.size;
  }

  get isReady(): boolean {
    return this.state === 'ready';
  }

  // --- Life cycle ----------------------------------------------------------------------------

  private async startLife(): Promise<void> {
    const life = ++this.life;
    const reqBuffers = createRingBuffers(this.opts.requestRingBytes ?? SHARD_REQUEST_RING_BYTES);
    const respBuffers = createRingBuffers(this.opts.responseRingBytes ?? SHARD_RESPONSE_RING_BYTES);
    this.requests = new RingWriter(reqBuffers);
    this.responses = new RingReader(respBuffers);
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.port.on('message', (msg: ToMain) => this.onMessage(msg));
    const task: ServeTask = {
      kind: 'serve',
      shard: this.shard,
      dataDir: this.opts.dataDir,
      port: channel.port2,
      requestRing: reqBuffers,
      responseRing: respBuffers,
      retentionCheckMs: this.opts.retentionCheckMs ?? SHARD_RETENTION_CHECK_MS,
      statsIntervalMs: this.opts.statsIntervalMs ?? SHARD_STATS_INTERVAL_MS,
      fetchWaitersMax: this.opts.fetchWaitersMax ?? SHARD_FETCH_WAITERS_MAX,
      chainCounters: this.chainBuffer,
      producerIdleExpiryMs: this.opts.producerIdleExpiryMs ?? PRODUCER_IDLE_EXPIRY_MS_DEFAULT,
    };
    this.serveDone = this.pool.run(task, { transferList: [channel.port2] }).then(
      () => {},
      (err) => this.onServeFailed(life, err),
    );
    // Reopen (or, at first start, open) the shard's partitions before taking requests.
    const parts = this.opts.partitionsOf(this.shard);
    if (parts.length > 0) {
      const r = await this.send({ t: 'open', parts }, true);
      if ('t' in r && r.t === 'opened') this.reportOpened(r);
    }
    if (life !== this.life) return;
    this.state = 'ready';
    this.lastHeardMs = performance.now();
    for (const w of this.readyWaiters.splice(0)) w.resolve();
  }

  private reportOpened(r: Extract<Reply, { t: 'opened' }>): void {
    for (const f of r.failed) {
      this.offline.add(f.k);
      this.opts.onPartitionOffline?.(this.shard, f.k, SluiceError.fromWire(f.err));
    }
    for (const p of r.recovered) this.opts.onPartitionRecovered?.(this.shard, p.k, p.report);
  }

  private onServeFailed(life: number, err: unknown): void {
    if (life !== this.life) return;
    if (this.state === 'closing' || this.state === 'closed') {
      // Died while closing: nothing restarts it, and nothing may wait for it forever.
      this.failEverything(new SluiceError('UNAVAILABLE', `shard ${this.shard} worker died while closing`));
      return;
    }
    this.opts.onCrash?.(this.shard, err);
    this.opts.onRestart?.(this.shard, this.stoppedByWatchdog ? 'watchdog' : 'crash');
    this.stoppedByWatchdog = false;
    const wasStarting = this.state === 'starting' && this.restarts === 0;
    this.state = 'restarting';
    this.restarts++;
    this.port?.removeAllListeners('message');
    this.port?.close();
    this.port = null;
    const why = new SluiceError('UNAVAILABLE', `shard ${this.shard} worker died (${err instanceof Error ? err.message : String(err)}); retry`);
    this.failEverything(why);
    if (wasStarting) return; // the first start fails instead; Broker.open reports it
    this.restartLater(0);
  }

  private restartLater(delayMs: number): void {
    if (this.restartScheduled) return;
    this.restartScheduled = true;
    setTimeout(() => {
      this.restartScheduled = false;
      if (this.state !== 'restarting') return;
      this.startLife().catch((err) => {
        this.opts.onCrash?.(this.shard, err);
        this.restartLater(Math.min(1000, delayMs * 2 + 50));
      });
    }, delayMs);
  }

  private failEverything(err: SluiceError): void {
    // The worker's chains are gone with it; a reader's next fetch starts a new one.
    const runs = [...this.chainRuns.values()];
    this.chainRuns.clear();
    this.freeChainSlots = allChainSlots();
    for (const run of runs) {
      run.ended = true;
      const w = run.waiter;
      run.waiter = null;
      w?.reject(err);
    }
    this.outbox = [];
    this.raftIn = [];
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
    const waiters = this.ringWaiters;
    this.ringWaiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.fail(err);
    }
  }

  private whenReady(): Promise<void> {
    if (this.state === 'ready') return Promise.resolve();
    if (this.state === 'closing' || this.state === 'closed') {
      return Promise.reject(new SluiceError('SHUTTING_DOWN', `shard ${this.shard} is shutting down`));
    }
    return new Promise((resolve, reject) => {
      const entry = { resolve, reject };
      this.readyWaiters.push(entry);
      const timer = setTimeout(() => {
        const i = this.readyWaiters.indexOf(entry);
        if (i >= 0) this.readyWaiters.splice(i, 1);
        reject(new SluiceError('UNAVAILABLE', `shard ${this.shard} is restarting; retry`));
      }, this.opts.ringWaitMs ?? SHARD_RING_WAIT_MS_MAX);
      entry.resolve = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Flushes and closes every partition, then stops the thread. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closing';
    clearInterval(this.watchdog);
    for (const w of this.readyWaiters.splice(0)) w.reject(new SluiceError('SHUTTING_DOWN', 'broker is shutting down'));
    // A log that could not flush or close (a full disk, an I/O error) is reported to the caller, so a
    // shutdown that lost data does not look clean; the worker still stops.
    let failure: SluiceError | null = null;
    if (wasReady && this.port) {
      try {
        await this.send({ t: 'close' }, true);
      } catch (err) {
        failure = err instanceof SluiceError ? err : new SluiceError('STORAGE_ERROR', String(err));
      }
      await this.serveDone;
    }
    this.failEverything(new SluiceError('SHUTTING_DOWN', 'broker is shutting down'));
    this.port?.close();
    this.port = null;
    this.state = 'closed';
    await this.pool.destroy();
    if (failure) throw failure;
  }

  /** Test hook: makes the worker thread exit abruptly. */
  crashForTest(): void {
    this.outbox.push({ t: 'crash' });
    this.flushOutbox();
  }

  /** Test hook: blocks the worker thread for `ms`. */
  stallForTest(ms: number): void {
    this.outbox.push({ t: 'stall', ms });
    this.flushOutbox();
  }

  // --- Requests ------------------------------------------------------------------------------

  /** Sends an op and resolves with its reply. `force` sends while the shard is still starting. */
  send(op: OpWithoutId, force = false): Promise<Reply> {
    if (!force && this.state !== 'ready') return this.whenReady().then(() => this.send(op));
    if (this.pending.size >= (this.opts.inflightMax ?? SHARD_INFLIGHT_MAX)) {
      return Promise.reject(new SluiceError('QUEUE_FULL', `shard ${this.shard} has ${this.pending.size} requests in flight; retry later`));
    }
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.push({ ...op, id } as Op);
    });
  }

  /** Copies `data` into the request ring (the one copy) and sends its descriptor. */
  produce(key: PartitionKey, data: Uint8Array, acks: AcksCode, onEnqueued?: () => void): Promise<ProduceReply> {
    if (this.state !== 'ready') return this.whenReady().then(() => this.produce(key, data, acks, onEnqueued));
    if (data.length > this.requests.capacity / 2) {
      return Promise.reject(
        new SluiceError('RECORD_TOO_LARGE', `produce of ${data.length} bytes exceeds the shard's request limit of ${this.requests.capacity / 2} bytes`),
      );
    }
    if (this.pending.size >= (this.opts.inflightMax ?? SHARD_INFLIGHT_MAX)) {
      return Promise.reject(new SluiceError('QUEUE_FULL', `shard ${this.shard} has ${this.pending.size} requests in flight; retry later`));
    }
    return new Promise<Reply>((resolve, reject) => {
      const grant = (slot: RingSlot): void => {
        this.requests.bytes.set(data, slot.offset);
        const id = this.nextId++;
        this.pending.set(id, { resolve, reject });
        this.push({ t: 'p', id, k: key, off: slot.offset, len: slot.length, charge: slot.charge, acks });
        onEnqueued?.();
      };
      const slot = this.ringWaiters.length === 0 ? this.requests.alloc(data.length) : null;
      if (slot) grant(slot);
      else this.waitForRing(data.length, grant, reject);
    }) as Promise<ProduceReply>;
  }

  private waitForRing(length: number, grant: (slot: RingSlot) => void, fail: (err: SluiceError) => void): void {
    if (this.ringWaiters.length >= (this.opts.ringWaitersMax ?? SHARD_RING_WAITERS_MAX)) {
      return fail(new SluiceError('QUEUE_FULL', `shard ${this.shard}: request ring full and ${this.ringWaiters.length} produces waiting; retry later`));
    }
    const waitMs = this.opts.ringWaitMs ?? SHARD_RING_WAIT_MS_MAX;
    const waiter: RingWaiter = {
      length,
      grant,
      fail,
      timer: setTimeout(() => {
        const i = this.ringWaiters.indexOf(waiter);
        if (i >= 0) this.ringWaiters.splice(i, 1);
        fail(new SluiceError('QUEUE_FULL', `shard ${this.shard}: request ring stayed full for ${waitMs} ms; retry later`));
        this.grantWaiters();
      }, waitMs),
    };
    this.ringWaiters.push(waiter);
  }

  private grantWaiters(): void {
    while (this.ringWaiters.length > 0) {
      const slot = this.requests.alloc(this.ringWaiters[0].length);
      if (!slot) return;
      const w = this.ringWaiters.shift()!;
      clearTimeout(w.timer);
      w.grant(slot);
    }
  }

  /**
   * With `pb`, the reply's data is protobuf `records` built on the shard (./structured-read.ts). With
   * `chain`, a long-poll (`maxWaitMs` > 0) is a chained fetch: the shard parks the next one itself.
   */
  fetch(key: PartitionKey, offset: number, maxBytes: number, maxWaitMs: number, signal?: AbortSignal, pb = false, chain?: FetchChain): Promise<FetchReply> {
    if (this.state !== 'ready') return this.whenReady().then(() => this.fetch(key, offset, maxBytes, maxWaitMs, signal, pb, chain));
    if (signal?.aborted) return Promise.reject(abortError());
    if (this.pending.size >= (this.opts.inflightMax ?? SHARD_INFLIGHT_MAX)) {
      return Promise.reject(new SluiceError('QUEUE_FULL', `shard ${this.shard} has ${this.pending.size} requests in flight; retry later`));
    }
    if (chain !== undefined) {
      const run = chain.run;
      const same = run !== null && run.host === this && run.life === this.life && run.key === key && run.offset === offset && run.maxBytes === maxBytes && run.maxWaitMs === maxWaitMs && run.pb === pb;
      if (same && (!run.ended || run.answers.length > 0)) return this.takeAnswer(run, signal);
      chain.close();
      if (maxWaitMs > 0 && this.freeChainSlots.length > 0) {
        const started = this.startChain(key, offset, maxBytes, maxWaitMs, pb);
        chain.run = started;
        return this.takeAnswer(started, signal);
      }
    }
    return new Promise<Reply>((resolve, reject) => {
      const id = this.nextId++;
      let onAbort: (() => void) | undefined;
      const done = (): void => {
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      };
      this.pending.set(id, {
        resolve: (r) => {
          done();
          resolve(r);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      if (signal) {
        onAbort = () => {
          // The reply (if any) still arrives and releases its ring slot; the caller just stops waiting.
          const p = this.pending.get(id);
          if (!p) return;
          this.pending.set(id, { resolve: () => {}, reject: () => {} });
          this.push({ t: 'cancel', id });
          done();
          reject(abortError());
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.push(pb ? { t: 'f', id, k: key, offset, maxBytes, maxWaitMs, pb } : { t: 'f', id, k: key, offset, maxBytes, maxWaitMs });
    }).then((r) => r as unknown as FetchReply);
  }

  private startChain(key: PartitionKey, offset: number, maxBytes: number, maxWaitMs: number, pb: boolean): ChainRun {
    const id = this.nextId++;
    const slot = this.freeChainSlots.pop()!;
    const run: ChainRun = { host: this, life: this.life, id, slot, key, offset, maxBytes, maxWaitMs, pb, answers: [], taken: 0, waiter: null, ended: false };
    this.chainRuns.set(id, run);
    this.push(pb ? { t: 'f', id, k: key, offset, maxBytes, maxWaitMs, pb, chain: slot } : { t: 'f', id, k: key, offset, maxBytes, maxWaitMs, chain: slot });
    return run;
  }

  /** The chain's next answer: one already here, or the next to arrive. An abort ends the chain. */
  private takeAnswer(run: ChainRun, signal?: AbortSignal): Promise<FetchReply> {
    const a = run.answers.shift();
    if (a !== undefined) {
      this.taken(run, a);
      return 'err' in a ? Promise.reject(a.err) : Promise.resolve(a.ok);
    }
    return new Promise<FetchReply>((resolve, reject) => {
      const onAbort = (): void => {
        run.waiter = null;
        this.endChain(run);
        reject(abortError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      run.waiter = {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
    });
  }

  /** The reader took an answer: the claim count moves, and a chain that waited for it is resumed. */
  private taken(run: ChainRun, a: ChainAnswer): void {
    run.taken++;
    if ('ok' in a) run.offset = a.ok.nextOffset;
    if (!run.ended && this.chainCounters.claimed(run.slot, run.taken)) this.push({ t: 'resume', id: run.id });
  }

  private chainAnswered(run: ChainRun, more: boolean, a: ChainAnswer): void {
    if (!more && !run.ended) {
      run.ended = true;
      this.chainRuns.delete(run.id);
      this.freeChainSlots.push(run.slot);
    }
    const w = run.waiter;
    if (w === null) {
      run.answers.push(a);
      return;
    }
    run.waiter = null;
    this.taken(run, a);
    if ('err' in a) w.reject(a.err);
    else w.resolve(a.ok);
  }

  /** Ends a chain from this side (see FetchChain.close): the worker is told, its slot is free again. */
  endChain(run: ChainRun): void {
    run.answers.length = 0;
    const w = run.waiter;
    run.waiter = null;
    w?.reject(abortError());
    if (run.ended) return;
    run.ended = true;
    this.chainRuns.delete(run.id);
    if (run.life !== this.life) return;
    this.freeChainSlots.push(run.slot);
    this.push({ t: 'cancel', id: run.id });
  }

  private push(op: Op): void {
    this.outbox.push(op);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (!this.outboxScheduled) {
      this.outboxScheduled = true;
      // Everything bound for this shard in one event-loop turn travels in one message.
      setImmediate(() => this.flushOutbox());
    }
  }

  /**
   * A Raft message from a peer for partition `key`. Dropped (Raft resends) while the worker is not
   * ready (a restart reopens the partitions first) or beyond SHARD_RAFT_INBOX_MESSAGES_MAX this turn.
   */
  stepRaft(key: PartitionKey, msg: Message): void {
    if (this.state !== 'ready' || this.raftIn.length >= SHARD_RAFT_INBOX_MESSAGES_MAX) {
      this.raftDropped++;
      return;
    }
    this.raftIn.push({ k: key, msg });
    this.scheduleFlush();
  }

  /**
   * Gossip's view of `nodes` changed (`down`: to suspect or dead): the worker wakes quiesced replicas of their groups. Nothing is
   * sent while the worker is not ready: a restarted worker reopens its replicas awake.
   */
  wake(nodes: readonly number[], down: boolean): void {
    if (this.state === 'ready') this.push({ t: 'wake', nodes: [...nodes], down });
  }

  private flushOutbox(): void {
    this.outboxScheduled = false;
    if ((this.outbox.length === 0 && this.raftIn.length === 0) || !this.port) return;
    const transfer: ArrayBuffer[] = [];
    if (this.raftIn.length > 0) {
      const msgs = portableEnvelopes(this.raftIn, transfer);
      this.raftIn = [];
      this.outbox.push({ t: 'raft', msgs });
    }
    const msg: ToWorker = { ops: this.outbox };
    this.outbox = [];
    this.port.postMessage(msg, transfer);
  }

  // --- Replies -------------------------------------------------------------------------------

  private onMessage(msg: ToMain): void {
    this.lastHeardMs = performance.now();
    if (msg.replies) {
      for (const r of msg.replies) this.onReply(r);
      this.grantWaiters();
    }
    if (msg.stats) {
      this.offline.clear();
      for (const k of msg.stats.offline) this.offline.add(k);
      this.opts.onStats?.(this.shard, msg.stats);
    }
    if (msg.leaders) this.opts.onLeaders?.(this.shard, msg.leaders);
    if (msg.raft) this.opts.onRaft?.(this.shard, msg.raft);
  }

  private onReply(r: Reply): void {
    let value: Reply | FetchReply = r;
    if ('t' in r && r.t === 'f') {
      let data: Buffer;
      if (r.data) {
        data = Buffer.from(r.data.buffer, r.data.byteOffset, r.len);
      } else if (r.len > 0) {
        // Copy out of the ring and release the slot at once, in allocation order. The copy keeps room
        // around the bytes so the response encoder frames them in place (no second copy).
        data = withEnvelopeRoom(r.len);
        this.responses.bytes.copy(data, 0, r.off, r.off + r.len);
      } else {
        data = Buffer.alloc(0);
      }
      this.responses.release(r.charge);
      value = { data, records: r.records, highWatermark: r.highWatermark, logStartOffset: r.logStartOffset, nextOffset: r.nextOffset, needBytes: r.need };
    }
    const run = this.chainRuns.get(r.id);
    if (run !== undefined) return this.chainAnswered(run, 't' in r && r.t === 'f' && r.more === true, 'err' in r ? { err: replyError(r) } : { ok: value as FetchReply });
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if ('err' in r) p.reject(replyError(r));
    else p.resolve(value as Reply);
  }
}

function replyError(r: Extract<Reply, { err: unknown }>): SluiceError {
  return r.leader !== undefined ? NotLeaderError.fromShard(r.err, r.leader, r.epoch ?? 0) : SluiceError.fromWire(r.err);
}

function allChainSlots(): number[] {
  return Array.from({ length: SHARD_FETCH_CHAINS_MAX }, (_, i) => SHARD_FETCH_CHAINS_MAX - 1 - i);
}

function abortError(): SluiceError {
  return new SluiceError('TIMEOUT', 'the request was cancelled by its caller', { retriable: false });
}
