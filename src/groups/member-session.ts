/**
 * One member's stream, transport-neutral: it joins the coordinator, runs one long-poll fetch loop per
 * assigned partition, and sends records as the client's credit allows. src/rpc/groups-service.ts
 * adapts it to the gRPC Consume stream; tests may drive it directly.
 *
 * Ordering rules (what makes cooperative hand-over safe):
 * - A revoked partition's loop is stopped synchronously, before the Revoke message is sent, so no
 *   records of it follow the Revoke on the stream.
 * - Assign is sent before the loop's first chunk; its offset is the committed offset, or -1 when the
 *   group has none (the loop then starts at the reset policy's end; the chunk says where).
 * - Loops of partitions that do not move are never touched by a rebalance.
 *
 * Flow control: the client grants records and bytes (additive). A loop fetches only while both are
 * positive, so one chunk per partition may overshoot the grant. On top of that, when the transport's
 * buffer is full (`send` returns false) every loop waits for it to drain.
 */
import { SluiceError, isSluiceError } from '../errors.js';
import { FetchChain } from '../broker/index.js';
import type { BrokerApi } from '../broker/types.js';
import type { GroupCoordinator } from './coordinator.js';
import {
  AUTO_COMMIT_INTERVAL_MS_DEFAULT,
  AUTO_COMMIT_INTERVAL_MS_MIN,
  DELIVERY_CREDIT_BYTES_DEFAULT,
  DELIVERY_CAUGHT_UP_FETCH_BYTES,
  DELIVERY_CREDIT_RECORDS_DEFAULT,
  DELIVERY_FETCH_BYTES_MAX,
  DELIVERY_FETCH_WAIT_MS,
} from './constants.js';
import { tpKey } from './offsets-stm.js';
import type { AssignedPartition, CommitOffset, JoinInput, JoinResult, MemberSink, OffsetResetPolicy, TopicPartition } from './types.js';

export interface DeliveryChunk {
  topic: string;
  partition: number;
  generation: number;
  /** Whole raw v2 batches; the first may start below `firstOffset` (skip those records). */
  batches: Uint8Array;
  firstOffset: number;
  nextOffset: number;
  highWatermark: number;
}

export type SessionMessage =
  | { type: 'joined'; result: JoinResult }
  /** offset -1: nothing committed, the reset policy applies. */
  | { type: 'assign'; generation: number; partitions: (TopicPartition & { offset: number })[] }
  | { type: 'revoke'; generation: number; partitions: TopicPartition[] }
  | { type: 'records'; chunk: DeliveryChunk }
  | { type: 'commitResult'; commitId: number; error: SluiceError | null };

export interface SessionTransport {
  /** Queues one message; false when the buffer is full (then wait for `drained`). */
  send(message: SessionMessage): boolean;
  /** Resolves when the buffer drains or the transport ends. */
  drained(): Promise<void>;
  /** Ends the stream: null = cleanly, otherwise with this error. Called at most once. */
  end(err: Error | null): void;
}

export interface SessionOptions {
  autoCommit?: boolean;
  autoCommitIntervalMs?: number;
  offsetReset?: OffsetResetPolicy;
  creditRecords?: number;
  creditBytes?: number;
}

interface Cursor {
  tp: TopicPartition;
  /** Next offset to fetch; null until the reset policy is resolved. */
  position: number | null;
  /** End of the records sent so far (what auto-commit commits). -1 before the first chunk. */
  delivered: number;
  autoCommitted: number;
  active: boolean;
  abort: AbortController;
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export class MemberSession implements MemberSink {
  groupId = '';
  memberId = '';
  generation = 0;
  private readonly cursors = new Map<string, Cursor>();
  private creditRecords: number;
  private creditBytes: number;
  private creditWaiters: (() => void)[] = [];
  private writable: Promise<void> | null = null;
  private autoCommitTimer: NodeJS.Timeout | null = null;
  private ended = false;
  private readonly autoCommit: boolean;
  private readonly offsetReset: OffsetResetPolicy;

  constructor(
    private readonly coordinator: GroupCoordinator,
    private readonly api: BrokerApi,
    private readonly transport: SessionTransport,
    options: SessionOptions = {},
  ) {
    this.autoCommit = options.autoCommit ?? false;
    this.offsetReset = options.offsetReset ?? 'earliest';
    this.creditRecords = options.creditRecords && options.creditRecords > 0 ? options.creditRecords : DELIVERY_CREDIT_RECORDS_DEFAULT;
    this.creditBytes = options.creditBytes && options.creditBytes > 0 ? options.creditBytes : DELIVERY_CREDIT_BYTES_DEFAULT;
    if (this.autoCommit) {
      const interval = Math.max(AUTO_COMMIT_INTERVAL_MS_MIN, options.autoCommitIntervalMs || AUTO_COMMIT_INTERVAL_MS_DEFAULT);
      this.autoCommitTimer = setInterval(() => void this.autoCommitNow([...this.cursors.values()]).catch(() => {}), interval);
      this.autoCommitTimer.unref();
    }
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Joins the group; `joined` and the first assignment are sent from inside. */
  async start(join: JoinInput): Promise<JoinResult> {
    this.groupId = join.groupId;
    return this.coordinator.join(join, this);
  }

  // --- MemberSink (called by the coordinator) --------------------------------------------------

  joined(result: JoinResult): void {
    this.memberId = result.memberId;
    this.generation = result.generation;
    this.send({ type: 'joined', result });
  }

  assign(generation: number, partitions: AssignedPartition[]): void {
    if (this.ended) return;
    this.generation = generation;
    this.send({ type: 'assign', generation, partitions: partitions.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.committed ?? -1 })) });
    for (const p of partitions) {
      const k = tpKey(p.topic, p.partition);
      this.cursors.get(k)?.abort.abort(); // a stale loop (static rejoin): replace it
      const cursor: Cursor = {
        tp: { topic: p.topic, partition: p.partition },
        position: p.committed,
        delivered: p.committed ?? -1,
        autoCommitted: p.committed ?? -1,
        active: true,
        abort: new AbortController(),
      };
      this.cursors.set(k, cursor);
      void this.loop(cursor);
    }
  }

  revoke(generation: number, partitions: TopicPartition[]): void {
    if (this.ended) return;
    this.generation = generation;
    const stopped: Cursor[] = [];
    for (const tp of partitions) {
      const k = tpKey(tp.topic, tp.partition);
      const c = this.cursors.get(k);
      if (!c) continue;
      c.active = false;
      c.abort.abort();
      this.cursors.delete(k);
      stopped.push(c);
    }
    this.send({ type: 'revoke', generation, partitions });
    if (this.autoCommit) {
      // Auto-commit members acknowledge by themselves, after committing what was delivered.
      void this.autoCommitNow(stopped)
        .catch(() => {})
        .then(() => {
          if (!this.ended) this.coordinator.ackRevoke(this.groupId, this.memberId, generation, partitions);
        })
        .catch(() => {});
    }
  }

  fenced(reason: Error): void {
    this.stop();
    if (!this.ended) {
      this.ended = true;
      this.transport.end(reason);
    }
  }

  // --- Client requests (called by the transport adapter, in stream order) -----------------------

  grant(records: number, bytes: number): void {
    this.touch();
    if (Number.isFinite(records) && records > 0) this.creditRecords += records;
    if (Number.isFinite(bytes) && bytes > 0) this.creditBytes += bytes;
    if (this.creditRecords > 0 && this.creditBytes > 0) this.wakeCredit();
  }

  /** Commits; the result goes back on the stream (the group and the stream stay healthy on failure). */
  async commit(commitId: number, generation: number, offsets: CommitOffset[]): Promise<void> {
    let error: SluiceError | null = null;
    try {
      await this.coordinator.commit(this.groupId, this.memberId, generation, offsets);
    } catch (err) {
      error = isSluiceError(err) ? err : new SluiceError('INTERNAL', (err as Error).message, { cause: err });
    }
    this.send({ type: 'commitResult', commitId, error });
  }

  ackRevoke(generation: number, partitions: TopicPartition[]): void {
    this.coordinator.ackRevoke(this.groupId, this.memberId, generation, partitions);
  }

  touch(): void {
    if (this.memberId !== '') this.coordinator.touch(this.groupId, this.memberId);
  }

  /** The client leaves: partitions move at once, and the stream ends cleanly. */
  leave(): void {
    this.stop();
    if (this.memberId !== '') this.coordinator.disconnect(this.groupId, this.memberId, this, true);
    if (!this.ended) {
      this.ended = true;
      this.transport.end(null);
    }
  }

  /** The stream broke or ended: a dynamic member leaves, a static one waits for its session timeout. */
  closed(): void {
    if (this.ended && this.memberId === '') return;
    this.stop();
    this.ended = true;
    if (this.memberId !== '') this.coordinator.disconnect(this.groupId, this.memberId, this, false);
  }

  // --- Delivery --------------------------------------------------------------------------------

  private send(message: SessionMessage): void {
    if (this.ended) return;
    if (!this.transport.send(message) && this.writable === null) {
      this.writable = this.transport.drained().then(() => {
        this.writable = null;
      });
    }
  }

  private stop(): void {
    if (this.autoCommitTimer !== null) clearInterval(this.autoCommitTimer);
    this.autoCommitTimer = null;
    for (const c of this.cursors.values()) {
      c.active = false;
      c.abort.abort();
    }
    this.cursors.clear();
    this.wakeCredit();
  }

  private wakeCredit(): void {
    const waiters = this.creditWaiters;
    this.creditWaiters = [];
    for (const w of waiters) w();
  }

  private async waitForCredit(c: Cursor): Promise<void> {
    while (c.active && (this.creditRecords <= 0 || this.creditBytes <= 0)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          c.abort.signal.removeEventListener('abort', done);
          resolve();
        };
        this.creditWaiters.push(done);
        c.abort.signal.addEventListener('abort', done, { once: true });
      });
    }
    while (c.active && this.writable !== null) await this.writable;
  }

  private async resetPosition(c: Cursor): Promise<number> {
    const r = await this.api.listOffsets(c.tp.topic, c.tp.partition, { kind: this.offsetReset });
    return r.offset;
  }

  private async loop(c: Cursor): Promise<void> {
    const { topic, partition } = c.tp;
    let failures = 0;
    // While caught up, the long-polls are one chained fetch, renewed by the shard after each answer
    // (as Subscribe's): small reads, at most two answers waiting here. A backlog is read in plain,
    // bigger fetches.
    const chain = new FetchChain();
    let caughtUp = false;
    try {
      while (c.active) {
        try {
          if (c.position === null) {
            c.position = await this.resetPosition(c);
            if (c.delivered < 0) c.delivered = c.position;
            continue;
          }
          await this.waitForCredit(c);
          if (!c.active) return;
          const offset = c.position;
          const maxBytes = Math.max(1, Math.min(caughtUp ? DELIVERY_CAUGHT_UP_FETCH_BYTES : DELIVERY_FETCH_BYTES_MAX, this.creditBytes));
          if (!caughtUp) chain.close();
          const r = await this.api.fetch({ topic, partition, offset, maxBytes, maxWaitMs: DELIVERY_FETCH_WAIT_MS }, c.abort.signal, caughtUp ? chain : undefined);
          failures = 0;
          if (!c.active) return;
          this.coordinator.noteHighWatermark(topic, partition, r.highWatermark);
          caughtUp = r.nextOffset >= r.highWatermark;
          if (r.batches.length === 0 || r.nextOffset <= offset) continue;
          const chunk: DeliveryChunk = {
            topic,
            partition,
            generation: this.generation,
            batches: r.batches,
            firstOffset: offset,
            nextOffset: r.nextOffset,
            highWatermark: r.highWatermark,
          };
          c.position = r.nextOffset;
          c.delivered = r.nextOffset;
          this.creditRecords -= r.nextOffset - offset;
          this.creditBytes -= r.batches.length;
          this.send({ type: 'records', chunk });
        } catch (err) {
          caughtUp = false;
          if (!c.active) return;
          if (isSluiceError(err, 'OFFSET_OUT_OF_RANGE')) {
            // The committed offset fell out of the log (retention): start over at the reset policy's end.
            c.position = null;
            continue;
          }
          // Retriable (a shard restarting) or the topic is being changed: back off and retry, bounded
          // by the session's life. A partition of a deleted topic is revoked by the next metadata refresh.
          failures++;
          await sleep(Math.min(2_000, 20 * 2 ** Math.min(failures, 7)), c.abort.signal);
        }
      }
    } finally {
      chain.close();
    }
  }

  /** Commits what was delivered on the given cursors (auto-commit mode). */
  private async autoCommitNow(cursors: Cursor[]): Promise<void> {
    const offsets: CommitOffset[] = [];
    const done: [Cursor, number][] = [];
    for (const c of cursors) {
      if (c.delivered >= 0 && c.delivered > c.autoCommitted) {
        offsets.push({ topic: c.tp.topic, partition: c.tp.partition, offset: c.delivered });
        done.push([c, c.delivered]);
      }
    }
    if (offsets.length === 0 || this.memberId === '') return;
    await this.coordinator.commit(this.groupId, this.memberId, this.generation, offsets);
    for (const [c, at] of done) c.autoCommitted = Math.max(c.autoCommitted, at);
  }
}
