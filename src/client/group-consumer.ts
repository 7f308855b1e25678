/**
 * GroupConsumer: a consumer-group member over one sluice.v1.Groups/Consume stream. The broker assigns
 * partitions (cooperatively), streams raw batches within the credit this client grants, and stores
 * commits; the client only decodes, calls the handler, commits and acknowledges revokes.
 *
 *   const c = new GroupConsumer({ groupId: 'billing', brokers }).subscribe(['orders']);
 *   await c.run(async (batch) => { for (const r of batch.records) ... });   // commits after each batch
 *
 * Processing is serial and in stream order. A Revoke is queued behind the batches that came before it,
 * so the final commit covers everything this member processed, and only then is the revoke
 * acknowledged (and the partition handed to its new owner). Credit is granted back as batches finish,
 * so at most `creditRecords` records (or `creditBytes`) wait in this process.
 *
 * Following the coordinator (cluster mode): when the stream ends with a retriable error — the node
 * stopped coordinating the group (NOT_COORDINATOR, naming the new coordinator when it knows it), the
 * node went away (UNAVAILABLE, SHUTTING_DOWN) — the consumer joins again, at the named coordinator or
 * the next broker of its list, with backoff, for up to `rejoinTimeoutMs`. What it processed but had
 * not committed is delivered again (at-least-once); batches still queued from the old stream are
 * dropped, and partitions start from the group's committed offsets.
 */
import * as grpc from '@grpc/grpc-js';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { SluiceError } from '../errors.js';
import {
  CLIENT_GROUP_REJOIN_BACKOFF_MS_MAX,
  CLIENT_GROUP_REJOIN_BACKOFF_MS_MIN,
  CLIENT_GROUP_REJOIN_TIMEOUT_MS_DEFAULT,
  CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
  GRPC_RECEIVE_BYTES_MAX,
} from '../constants.js';
import { fromServiceError, readErrorInfo } from '../rpc/errors.js';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import {
  ConsumeResponse as ConsumeResponseCodec,
  GroupsClient,
  GroupsService,
  OffsetReset,
  ResetTo,
  type ConsumeRequest,
  type ConsumeResponse,
  type RecordsChunk,
} from '../rpc/gen/sluice/v1/groups.js';
import { Record as PbRecord } from '../rpc/gen/sluice/v1/records.js';
import { decodeFetched } from './decode.js';
import { brokerList, explainTransportError, type ClientOptions } from './connection.js';
import { checkOffset, checkPartition, checkTimestampMs } from './validate.js';
import type { ConsumedRecord } from './types.js';

export interface GroupConsumerOptions extends ClientOptions {
  groupId: string;
  /** Static membership: rejoining within the session timeout keeps the partitions, with no rebalance. */
  instanceId?: string;
  /** Default 10,000 ms. Heartbeats go every third of it. */
  sessionTimeoutMs?: number;
  /** Where to start where the group has no committed offset. Default 'earliest'. */
  offsetReset?: 'earliest' | 'latest';
  /** Commit after each batch's handler returns (default true). False: call commit() yourself. */
  autoCommit?: boolean;
  /** Records and bytes the broker may send ahead of processing. Defaults 20,000 and 16 MiB. */
  creditRecords?: number;
  creditBytes?: number;
  /**
   * Called (in stream order) when partitions are assigned or revoked. onRevoke is also called for the
   * partitions a member loses when its stream ends and it rejoins (its coordinator moved): nothing can
   * be committed for them then, and the rejoin assigns partitions afresh.
   */
  onAssign?: (partitions: TopicPartitionRef[]) => void | Promise<void>;
  onRevoke?: (partitions: TopicPartitionRef[]) => void | Promise<void>;
  /**
   * How long to keep rejoining after the stream ends with a retriable error (the coordinator moved or
   * its node died) before run() rejects. Default 60 s; 0 never rejoins.
   */
  rejoinTimeoutMs?: number;
}

export interface TopicPartitionRef {
  topic: string;
  partition: number;
}

export interface GroupBatch {
  topic: string;
  partition: number;
  /** Decoded on first access (a handler that only forwards `rawBatches` pays no decoding). */
  readonly records: ConsumedRecord[];
  /** Records in this batch (nextOffset - firstOffset). */
  recordCount: number;
  /** The raw Kafka v2 batches; the first may start below `firstOffset` (skip those records). */
  rawBatches: Uint8Array;
  firstOffset: number;
  /** The offset to commit once this batch is processed. */
  nextOffset: number;
  highWatermark: number;
  generation: number;
}

export interface CommitSpec extends TopicPartitionRef {
  offset: number;
}

/** Every item carries the stream it came from: items of an ended stream are dropped. */
type Item = { stream: number } & (
  | { kind: 'batch'; batch: GroupBatch; bytes: number; records: number }
  | { kind: 'assign'; partitions: TopicPartitionRef[] }
  | { kind: 'revoke'; generation: number; partitions: TopicPartitionRef[] }
  | { kind: 'lost'; partitions: TopicPartitionRef[] }
);

/** Codes after which a member joins again (elsewhere): the group is fine, this stream's node is not. */
const REJOIN_CODES: ReadonlySet<string> = new Set(['NOT_COORDINATOR', 'UNAVAILABLE', 'SHUTTING_DOWN', 'TIMEOUT', 'LOG_CLOSED']);

const EMPTY = Buffer.alloc(0);

/**
 * Decodes a ConsumeResponse. A message that is one `records` chunk (the hot path) is read by hand so
 * that `record_batches` stays a view into the received buffer (ts-proto copies every bytes field;
 * grpc-js gives each deserializer a fresh buffer that nothing reuses). Anything else: ts-proto.
 */
export function decodeConsumeResponse(input: Uint8Array): ConsumeResponse {
  if (input.length > 0 && input[0] === 34 /* field 4 (records), length-delimited */) {
    const reader = new BinaryReader(input);
    reader.uint32();
    const len = reader.uint32();
    if (reader.pos + len === reader.len) {
      const c: RecordsChunk = { topic: '', partition: 0, records: [], recordBatches: EMPTY, firstOffset: 0n, nextOffset: 0n, highWatermark: 0n, generation: 0n };
      while (reader.pos < reader.len) {
        const tag = reader.uint32();
        if (tag === 10) c.topic = reader.string();
        else if (tag === 16) c.partition = reader.int32();
        else if (tag === 26) c.records.push(PbRecord.decode(reader, reader.uint32()));
        else if (tag === 34) {
          const b = reader.bytes();
          c.recordBatches = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
        } else if (tag === 40) c.firstOffset = reader.int64() as bigint;
        else if (tag === 48) c.nextOffset = reader.int64() as bigint;
        else if (tag === 56) c.highWatermark = reader.int64() as bigint;
        else if (tag === 64) c.generation = reader.int64() as bigint;
        else if ((tag & 7) === 4 || tag === 0) break;
        else reader.skip(tag & 7);
      }
      return { response: { $case: 'records', value: c } };
    }
  }
  return ConsumeResponseCodec.decode(input);
}

const FastGroupsClient = makeGenericClientConstructor(
  { ...GroupsService, consume: { ...GroupsService.consume, responseDeserialize: (value: Buffer): ConsumeResponse => decodeConsumeResponse(value) } },
  'sluice.v1.Groups',
) as unknown as typeof GroupsClient;

/** HTTP/2 stream and connection window of a GroupConsumer's channel. */
const GROUP_STREAM_WINDOW_BYTES = 16 * 1024 * 1024;

const key = (topic: string, partition: number): string => `${topic}\u0000${partition}`;


export class GroupConsumer {
  private readonly options: GroupConsumerOptions;
  private readonly brokers: string[];
  /** One client per broker address used so far (the coordinator may move to any of them). */
  private readonly clients = new Map<string, GroupsClient>();
  /** Where the current stream goes. */
  private address: string;
  /** Counts streams: items and commits of an ended stream are dropped. */
  private stream = 0;
  /** When the current run of failed (re)joins began, or null while joined. */
  private failingSinceMs: number | null = null;
  private backoffMs = CLIENT_GROUP_REJOIN_BACKOFF_MS_MIN;
  private rejoinTimer: NodeJS.Timeout | null = null;
  /** Rejoins so far (for tests and tools). */
  rejoins = 0;
  /** Whether any join was answered: before that, an address that does not answer is tried once only. */
  private everJoined = false;
  private readonly unreachableBeforeJoin = new Set<string>();
  private topics: string[] | null = null;
  private pattern: string | null = null;
  private call: grpc.ClientDuplexStream<ConsumeRequest, ConsumeResponse> | null = null;
  private readonly queue: Item[] = [];
  private wake: (() => void) | null = null;
  private failure: SluiceError | null = null;
  private finished = false;
  private stopping = false;
  private nextCommitId = 1;
  private readonly pendingCommits = new Map<number, { resolve: () => void; reject: (err: unknown) => void }>();
  /** Processed (not yet committed) positions, and what was last committed. */
  private readonly processed = new Map<string, CommitSpec>();
  private readonly committedAt = new Map<string, number>();
  private readonly owned = new Map<string, TopicPartitionRef>();
  private commitInFlight: Promise<void> | null = null;
  private commitAgain = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private lastSentMs = 0;
  private joinedResolve: (() => void) | null = null;

  memberId = '';
  generation = 0;

  constructor(options: GroupConsumerOptions) {
    if (typeof options?.groupId !== 'string' || options.groupId.length === 0) throw new SluiceError('INVALID_REQUEST', 'GroupConsumer needs a groupId');
    this.options = options;
    this.brokers = brokerList(options.brokers);
    this.address = this.brokers[0];
  }

  private clientFor(address: string): GroupsClient {
    let c = this.clients.get(address);
    if (c === undefined) {
      c = new FastGroupsClient(address, grpc.credentials.createInsecure(), {
        ...this.options.channelOptions,
        'grpc.max_receive_message_length': GRPC_RECEIVE_BYTES_MAX,
        'grpc.max_send_message_length': GRPC_RECEIVE_BYTES_MAX,
        'grpc.keepalive_time_ms': 30_000,
        // The broker streams ~1 MiB chunks; HTTP/2's default 64 KiB window would stall each one for
        // round trips of WINDOW_UPDATEs. Credit, not the transport window, is the flow control here.
        'grpc-node.flow_control_window': GROUP_STREAM_WINDOW_BYTES,
      });
      this.clients.set(address, c);
    }
    return c;
  }

  /** Topics to consume (a list, one name, or a RegExp matched against every topic). */
  subscribe(topics: string | string[] | RegExp): this {
    if (topics instanceof RegExp) {
      this.pattern = topics.source;
      this.topics = null;
    } else {
      this.topics = Array.isArray(topics) ? [...topics] : [topics];
      this.pattern = null;
    }
    return this;
  }

  /** Partitions this member owns now. */
  assignment(): TopicPartitionRef[] {
    return [...this.owned.values()];
  }

  /**
   * Joins and processes batches until stop() (resolves) or a failure (rejects with a SluiceError:
   * UNKNOWN_TOPIC on join, UNKNOWN_MEMBER when fenced, UNAVAILABLE when the broker goes away).
   */
  async run(handler: (batch: GroupBatch) => Promise<void> | void): Promise<void> {
    if (this.topics === null && this.pattern === null) throw new SluiceError('INVALID_REQUEST', 'call subscribe(topics) before run()');
    if (this.call !== null) throw new SluiceError('INVALID_REQUEST', 'run() was already called');
    this.open();
    try {
      for (;;) {
        const item = this.queue.shift();
        if (item === undefined) {
          if (this.failure !== null) throw this.failure;
          if (this.finished) return;
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = null;
          continue;
        }
        if (this.stopping && item.kind === 'batch') continue;
        // From a stream that ended: its partitions restart from commits. (A 'lost' item is about that
        // stream, so it is always delivered.)
        if (item.kind !== 'lost' && item.stream !== this.stream) continue;
        await this.process(item, handler);
      }
    } finally {
      this.cleanup();
    }
  }

  /** Resolves once the broker has answered the join (for tests and tools). */
  joined(): Promise<void> {
    if (this.memberId !== '') return Promise.resolve();
    return new Promise((resolve) => (this.joinedResolve = resolve));
  }

  /**
   * Commits (durably) the given offsets, or everything processed so far. With autoCommit the consumer
   * already commits after each batch; this waits for it.
   */
  async commit(offsets?: CommitSpec[]): Promise<void> {
    if (offsets !== undefined) return this.sendCommit(offsets);
    await this.flushCommits();
  }

  /** Commits what was processed, leaves the group (partitions move at once) and ends run(). */
  async stop(): Promise<void> {
    if (this.finished || this.call === null) {
      this.finished = true;
      this.wake?.();
      return;
    }
    this.stopping = true;
    try {
      if (this.options.autoCommit !== false) await this.flushCommits();
    } catch {
      // Leaving anyway: the next owner resumes from the last successful commit.
    }
    this.send({ request: { $case: 'leave', value: {} } });
    this.call.end();
    await new Promise<void>((resolve) => {
      if (this.finished) return resolve();
      const t = setTimeout(resolve, 5_000);
      this.call!.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.finished = true;
    this.wake?.();
  }

  // --- Stream ----------------------------------------------------------------------------------

  private open(): void {
    const call = this.clientFor(this.address).consume();
    this.call = call;
    const stream = ++this.stream;
    const o = this.options;
    const session = o.sessionTimeoutMs ?? 10_000;
    this.send({
      request: {
        $case: 'join',
        value: {
          groupId: o.groupId,
          topics: this.topics ?? [],
          topicPattern: this.pattern ?? '',
          instanceId: o.instanceId,
          sessionTimeoutMs: session,
          autoCommit: false,
          autoCommitIntervalMs: 0,
          offsetReset: o.offsetReset === 'latest' ? OffsetReset.OFFSET_RESET_LATEST : OffsetReset.OFFSET_RESET_EARLIEST,
          raw: true,
          creditRecords: o.creditRecords ?? 20_000,
          creditBytes: BigInt(o.creditBytes ?? 16 * 1024 * 1024),
        },
      },
    });
    this.heartbeat ??= setInterval(() => {
      if (Date.now() - this.lastSentMs >= session / 3) this.send({ request: { $case: 'heartbeat', value: {} } });
    }, Math.max(10, Math.floor(session / 6)));
    call.on('data', (res: ConsumeResponse) => {
      if (stream === this.stream) this.onMessage(res);
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (stream !== this.stream) return;
      if (this.stopping && (err.code === grpc.status.CANCELLED || err.code === grpc.status.OK)) return this.end(null);
      const address = this.address;
      const e = readErrorInfo(err.metadata) !== null ? fromServiceError(err) : explainTransportError(fromServiceError(err), address, this.options.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS_DEFAULT);
      const transport = readErrorInfo(err.metadata) === null;
      if (!this.stopping && REJOIN_CODES.has(e.code) && this.mayRejoin(transport) && this.rejoin(e)) return;
      this.end(e);
    });
    call.on('end', () => {
      if (stream === this.stream) this.end(null);
    });
  }

  /**
   * Before any join was answered, a transport failure (nothing listening, not a gRPC server, a
   * wrong address) moves on to the next address only while some address is still untried: a
   * misconfigured consumer fails at once instead of retrying for rejoinTimeoutMs.
   */
  private mayRejoin(transport: boolean): boolean {
    if (this.everJoined || !transport) return true;
    this.unreachableBeforeJoin.add(this.address);
    return this.brokers.some((b) => !this.unreachableBeforeJoin.has(b));
  }

  /**
   * The stream ended with a retriable error: forget this stream's partitions (their next owner, maybe
   * this member again, starts from the committed offsets) and join again after a backoff, at the
   * coordinator `err` names or the next broker. False when the rejoin budget is spent.
   */
  private rejoin(err: SluiceError): boolean {
    const budget = this.options.rejoinTimeoutMs ?? CLIENT_GROUP_REJOIN_TIMEOUT_MS_DEFAULT;
    const now = Date.now();
    this.failingSinceMs ??= now;
    if (budget <= 0 || now - this.failingSinceMs > budget) return false;
    this.stream++; // whatever the old call still delivers is ignored
    this.call = null;
    this.memberId = '';
    if (this.owned.size > 0) this.push({ stream: this.stream, kind: 'lost', partitions: [...this.owned.values()] });
    this.owned.clear();
    this.processed.clear();
    this.committedAt.clear();
    for (const p of this.pendingCommits.values()) p.reject(err);
    this.pendingCommits.clear();
    const named = err.code === 'NOT_COORDINATOR' ? (err.info?.coordinator_address ?? '') : '';
    if (named !== '' && named !== this.address) this.address = named;
    else if (named === '' && err.code !== 'NOT_COORDINATOR') this.address = this.brokers[(this.brokers.indexOf(this.address) + 1) % this.brokers.length] ?? this.brokers[0];
    const wait = this.backoffMs;
    this.backoffMs = Math.min(CLIENT_GROUP_REJOIN_BACKOFF_MS_MAX, this.backoffMs * 2);
    this.rejoinTimer = setTimeout(() => {
      this.rejoinTimer = null;
      if (this.finished || this.stopping) return;
      this.rejoins++;
      this.open();
    }, wait);
    return true;
  }

  private end(err: SluiceError | null): void {
    if (err !== null && this.failure === null && !this.finished) this.failure = err;
    this.finished = true;
    if (this.rejoinTimer !== null) clearTimeout(this.rejoinTimer);
    this.rejoinTimer = null;
    for (const p of this.pendingCommits.values()) p.reject(err ?? new SluiceError('UNAVAILABLE', 'the Consume stream ended before the commit was answered'));
    this.pendingCommits.clear();
    this.wake?.();
  }

  private cleanup(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
    if (this.rejoinTimer !== null) clearTimeout(this.rejoinTimer);
    this.rejoinTimer = null;
    this.call?.cancel();
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private send(req: ConsumeRequest): void {
    if (this.call === null || this.finished) return;
    this.lastSentMs = Date.now();
    this.call.write(req);
  }

  private push(item: Item): void {
    // The queue is bounded by the credit this member grants (batches) plus the few assign/revoke items.
    this.queue.push(item);
    this.wake?.();
  }

  private onMessage(res: ConsumeResponse): void {
    const r = res.response;
    if (r === undefined) return;
    switch (r.$case) {
      case 'joined':
        this.memberId = r.value.memberId;
        this.generation = Number(r.value.generation);
        this.failingSinceMs = null;
        this.backoffMs = CLIENT_GROUP_REJOIN_BACKOFF_MS_MIN;
        this.everJoined = true;
        this.joinedResolve?.();
        return;
      case 'assign': {
        this.generation = Number(r.value.generation);
        const parts = r.value.partitions.map((p) => ({ topic: p.topic, partition: p.partition }));
        for (const p of r.value.partitions) {
          this.owned.set(key(p.topic, p.partition), { topic: p.topic, partition: p.partition });
          const k = key(p.topic, p.partition);
          this.processed.delete(k);
          if (p.offset >= 0n) this.committedAt.set(k, Number(p.offset));
          else this.committedAt.delete(k);
        }
        this.push({ stream: this.stream, kind: 'assign', partitions: parts });
        return;
      }
      case 'revoke': {
        this.generation = Number(r.value.generation);
        this.push({ stream: this.stream, kind: 'revoke', generation: Number(r.value.generation), partitions: r.value.partitions.map((p) => ({ topic: p.topic, partition: p.partition })) });
        return;
      }
      case 'records': {
        const v = r.value;
        const first = Number(v.firstOffset);
        let records: ConsumedRecord[] | null = null;
        const batch: GroupBatch = {
          topic: v.topic,
          partition: v.partition,
          get records(): ConsumedRecord[] {
            return (records ??= decodeFetched(v.topic, v.partition, v.recordBatches, first, false));
          },
          recordCount: Number(v.nextOffset) - first,
          rawBatches: v.recordBatches,
          firstOffset: first,
          nextOffset: Number(v.nextOffset),
          highWatermark: Number(v.highWatermark),
          generation: Number(v.generation),
        };
        this.push({ stream: this.stream, kind: 'batch', batch, bytes: v.recordBatches.length, records: Number(v.nextOffset) - first });
        return;
      }
      case 'commitResult': {
        const id = Number(r.value.commitId);
        const p = this.pendingCommits.get(id);
        if (!p) return;
        this.pendingCommits.delete(id);
        if (r.value.errorCode === '') p.resolve();
        else p.reject(new SluiceError(r.value.errorCode as SluiceError['code'], r.value.errorMessage));
        return;
      }
      case 'heartbeat':
        return;
    }
  }

  // --- Processing ------------------------------------------------------------------------------

  private async process(item: Item, handler: (batch: GroupBatch) => Promise<void> | void): Promise<void> {
    if (item.kind === 'assign') {
      await this.options.onAssign?.(item.partitions);
      return;
    }
    if (item.kind === 'lost') {
      await this.options.onRevoke?.(item.partitions);
      return;
    }
    if (item.kind === 'revoke') {
      // Everything before the revoke is processed. Commit the revoked partitions' positions and hand
      // them over; the broker applies the commit before the ack. Nothing here waits for the commit,
      // so batches of the partitions this member keeps go on being processed.
      await this.options.onRevoke?.(item.partitions);
      const final: CommitSpec[] = [];
      for (const p of item.partitions) {
        const k = key(p.topic, p.partition);
        const done = this.processed.get(k);
        if (this.options.autoCommit !== false && done !== undefined && (this.committedAt.get(k) ?? -1) < done.offset) final.push(done);
        this.owned.delete(k);
        this.processed.delete(k);
        this.committedAt.delete(k);
      }
      if (final.length > 0) this.sendCommit(final).catch(() => {});
      this.send({ request: { $case: 'revokeAck', value: { generation: BigInt(item.generation), partitions: item.partitions } } });
      return;
    }
    const b = item.batch;
    const k = key(b.topic, b.partition);
    if (!this.owned.has(k)) return; // revoked meanwhile (cannot happen in stream order; a guard)
    if (b.recordCount > 0) await handler(b);
    // stop() called from inside the handler: the batch may be partly done, so its end is not committed.
    if (this.stopping) return;
    // The stream ended while the handler ran: the batch goes to whoever owns the partition next.
    if (item.stream !== this.stream) return;
    this.processed.set(k, { topic: b.topic, partition: b.partition, offset: b.nextOffset });
    this.send({ request: { $case: 'credit', value: { records: Math.max(1, item.records), bytes: BigInt(Math.max(1, item.bytes)) } } });
    if (this.options.autoCommit !== false) this.scheduleCommit();
  }

  /** At most one commit in flight; batches finishing meanwhile go in the next one. */
  private scheduleCommit(): void {
    if (this.commitInFlight !== null) {
      this.commitAgain = true;
      return;
    }
    const offsets = this.dirtyOffsets();
    if (offsets.length === 0) return;
    this.commitInFlight = this.sendCommit(offsets)
      .catch(() => {
        // A failed commit (say, a partition revoked by force) is retried with the next batch's commit.
        for (const o of offsets) if (this.committedAt.get(key(o.topic, o.partition)) === o.offset) this.committedAt.delete(key(o.topic, o.partition));
      })
      .finally(() => {
        this.commitInFlight = null;
        if (this.commitAgain) {
          this.commitAgain = false;
          this.scheduleCommit();
        }
      });
  }

  private dirtyOffsets(): CommitSpec[] {
    const out: CommitSpec[] = [];
    for (const [k, p] of this.processed) {
      // Never commit backwards (a manual commit may be ahead of the processed batches).
      if ((this.committedAt.get(k) ?? -1) >= p.offset) continue;
      out.push(p);
    }
    return out;
  }

  /** Waits for the commit in flight, then commits whatever is still uncommitted. */
  private async flushCommits(): Promise<void> {
    while (this.commitInFlight !== null) await this.commitInFlight;
    const offsets = this.dirtyOffsets();
    if (offsets.length > 0) await this.sendCommit(offsets);
  }

  private sendCommit(offsets: CommitSpec[]): Promise<void> {
    if (this.finished || this.call === null) return Promise.reject(new SluiceError('UNAVAILABLE', 'the consumer is not running'));
    const commitId = this.nextCommitId++;
    for (const o of offsets) this.committedAt.set(key(o.topic, o.partition), o.offset);
    const done = new Promise<void>((resolve, reject) => this.pendingCommits.set(commitId, { resolve, reject }));
    this.send({
      request: {
        $case: 'commit',
        value: {
          commitId: BigInt(commitId),
          generation: BigInt(this.generation),
          offsets: offsets.map((o) => ({ topic: o.topic, partition: checkPartition(o.partition), offset: BigInt(checkOffset(o.offset)), metadata: '' })),
        },
      },
    });
    return done;
  }
}

// --- Admin ---------------------------------------------------------------------------------------

export interface GroupPartitionLag extends TopicPartitionRef {
  /** -1 when nothing is committed. */
  committedOffset: number;
  highWatermark: number;
  lag: number;
  owner: string | null;
}

export interface GroupMember {
  memberId: string;
  instanceId: string | null;
  generation: number;
  assigned: TopicPartitionRef[];
  revoking: TopicPartitionRef[];
  connected: boolean;
  topics: string[];
}

export interface GroupDescription {
  groupId: string;
  state: string;
  generation: number;
  coordinatorPartition: number;
  members: GroupMember[];
  partitions: GroupPartitionLag[];
}

export type ResetTarget = 'earliest' | 'latest' | { offset: number } | { timestampMs: number };

export interface ResetPlanRow extends TopicPartitionRef {
  currentOffset: number;
  newOffset: number;
}

type UnaryFn<Req, Res> = (req: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/**
 * The unary group RPCs (what `sluice group ...` uses). Failures are SluiceErrors. Any node of a cluster
 * answers (it forwards to the group's coordinator); a node that does not answer at all is skipped for
 * the next address of the list.
 */
export class GroupAdmin {
  private readonly addresses: string[];
  private readonly clients: GroupsClient[];
  /** The address that answered last: tried first. */
  private current = 0;
  private readonly timeoutMs: number;

  constructor(options: ClientOptions = {}) {
    this.addresses = brokerList(options.brokers);
    this.clients = this.addresses.map((a) => new GroupsClient(a, grpc.credentials.createInsecure(), { ...options.channelOptions }));
    this.timeoutMs = options.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS_DEFAULT;
  }

  private async call<Req, Res>(pick: (c: GroupsClient) => UnaryFn<Req, Res>, req: Req): Promise<Res> {
    let last: SluiceError | null = null;
    for (let i = 0; i < this.addresses.length; i++) {
      const at = (this.current + i) % this.addresses.length;
      const client = this.clients[at];
      const outcome = await new Promise<{ res: Res } | { err: SluiceError; transport: boolean }>((resolve) => {
        pick(client).call(client, req, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) => {
          if (err === null) resolve({ res: res as Res });
          else if (readErrorInfo(err.metadata) !== null) resolve({ err: fromServiceError(err), transport: false });
          else resolve({ err: explainTransportError(fromServiceError(err), this.addresses[at], this.timeoutMs), transport: true });
        });
      });
      if ('res' in outcome) {
        this.current = at;
        return outcome.res;
      }
      // Only a node that did not answer (no ErrorInfo: down, unreachable) is skipped; its answer is final.
      if (!outcome.transport || outcome.err.code !== 'UNAVAILABLE') throw outcome.err;
      last = outcome.err;
    }
    throw last!;
  }

  async listGroups(): Promise<{ groupId: string; state: string; members: number }[]> {
    return (await this.call((c) => c.listGroups, {})).groups;
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    const d = await this.call((c) => c.describeGroup, { groupId });
    const tps = (l: TopicPartitionRef[]): TopicPartitionRef[] => l.map((p) => ({ topic: p.topic, partition: p.partition }));
    return {
      groupId: d.groupId,
      state: d.state,
      generation: Number(d.generation),
      coordinatorPartition: d.coordinatorPartition,
      members: d.members.map((m) => ({
        memberId: m.memberId,
        instanceId: m.instanceId === '' ? null : m.instanceId,
        generation: Number(m.generation),
        assigned: tps(m.assigned),
        revoking: tps(m.revoking),
        connected: m.connected,
        topics: m.topics,
      })),
      partitions: d.partitions.map((p) => ({
        topic: p.topic,
        partition: p.partition,
        committedOffset: Number(p.committedOffset),
        highWatermark: Number(p.highWatermark),
        lag: Number(p.lag),
        owner: p.owner === '' ? null : p.owner,
      })),
    };
  }

  async deleteGroup(groupId: string): Promise<void> {
    await this.call((c) => c.deleteGroup, { groupId });
  }

  async fetchOffsets(groupId: string, topics: string[] = []): Promise<(CommitSpec & { metadata: string; commitTimeMs: number })[]> {
    const r = await this.call((c) => c.fetchOffsets, { groupId, topics });
    return r.offsets.map((o) => ({ topic: o.topic, partition: o.partition, offset: Number(o.offset), metadata: o.metadata, commitTimeMs: Number(o.commitTimeMs) }));
  }

  /** A standalone commit (the group must have no members), for users of the low-level Consumer. */
  async commitOffsets(groupId: string, offsets: CommitSpec[]): Promise<void> {
    await this.call((c) => c.commitOffsets, {
      groupId,
      memberId: '',
      generation: 0n,
      offsets: offsets.map((o) => ({ topic: o.topic, partition: checkPartition(o.partition), offset: BigInt(checkOffset(o.offset)), metadata: '' })),
    });
  }

  /** Plans a reset; with `execute` applies it (only while the group has no members). */
  async resetOffsets(groupId: string, topics: string[], to: ResetTarget, execute: boolean): Promise<ResetPlanRow[]> {
    let spec: { to: ResetTo; offset: bigint; timestampMs: bigint };
    if (to === 'earliest') spec = { to: ResetTo.RESET_TO_EARLIEST, offset: 0n, timestampMs: 0n };
    else if (to === 'latest') spec = { to: ResetTo.RESET_TO_LATEST, offset: 0n, timestampMs: 0n };
    else if ('offset' in to) spec = { to: ResetTo.RESET_TO_OFFSET, offset: BigInt(checkOffset(to.offset)), timestampMs: 0n };
    else spec = { to: ResetTo.RESET_TO_TIMESTAMP, offset: 0n, timestampMs: BigInt(checkTimestampMs(to.timestampMs)) };
    const r = await this.call((c) => c.resetOffsets, { groupId, topics, execute, ...spec });
    return r.plan.map((p) => ({ topic: p.topic, partition: p.partition, currentOffset: Number(p.currentOffset), newOffset: Number(p.newOffset) }));
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
