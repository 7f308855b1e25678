/**
 * The single-node broker core: the topic table (main thread), N shards (one worker thread each) and
 * the routing between them. Front-ends (src/rpc, embedders) see only BrokerApi.
 *
 * The main thread never touches a partition log: it validates, picks the partition and its shard,
 * copies produce bytes into that shard's request ring, and waits for the shard's reply. Admin changes
 * are serialized through one queue so the table, the shards and the disk change in a known order:
 * create opens the partitions first and then persists the table; delete removes the partitions first
 * and then persists the table (so it works on a full disk).
 */
import crypto from 'node:crypto';
import { SluiceError, isSluiceError, toSluiceError } from '../errors.js';
import {
  BROKER_PARTITIONS_MAX,
  FETCH_BYTES_MAX_DEFAULT,
  FETCH_BYTES_MAX_LIMIT,
  FETCH_WAIT_MS_MAX,
  SHARD_WATCHDOG_MS_MIN,
  SHARDS_MAX,
  STRUCTURED_READ_BYTES_MAX,
  TOPIC_PARTITIONS_MAX,
  TOPIC_REPLICATION_FACTOR_MAX,
  TOPIC_TABLE_PARTITIONS_MAX,
} from '../constants.js';
import { encodeBatch } from '../batch/index.js';
import { logConfigToTopicConfigs, defaultLogConfig } from '../storage/index.js';
import type { LogConfig } from '../storage/types.js';
import type { RecoveryReport } from '../storage/recovery.js';
import { ShardHost, type FetchChain } from '../shard/shard-host.js';
import { GC_KINDS, ThreadStatsSampler, type ThreadStats } from '../shard/thread-stats.js';
import { type AcksCode, type PartitionKey, type PartitionSpec, type PartitionStat, type RaftEnvelope, type ShardStatsMessage } from '../shard/protocol.js';
import { NotLeaderError } from '../partition/errors.js';
import type { GroupId, RaftTransport } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { ReplicaBugs } from './test-hooks.js';
import type { ReplicaConfChange, ReplicaHost, ReplicaMembership, ReplicaSpec, ReplicaStatus } from './replicas.js';
import { DataDirLock } from './data-dir-lock.js';
import { ProducerIdTable } from './producer-ids.js';
import { OFF_PRODUCER_EPOCH, OFF_PRODUCER_ID, asBuffer } from '../batch/codec.js';
import { MAIN_THREAD_STATS_INTERVAL_MS, PRODUCER_EPOCH_MAX } from '../constants.js';
import { TopicTable, type TopicEntry } from './topic-table.js';
import { StickyPartitioner, firstRecordKey } from './partitioner.js';
import {
  INTERNAL_TOPIC_PREFIX,
  logConfigFor,
  normalizeReplicationFactor,
  refuseInternalTopic,
  validateBrokerPartitions,
  validateConfigKey,
  validateOffset,
  validatePartitionCount,
  validateTopicName,
  validateUserTopicName,
} from './validate.js';
import { NOOP_PROBE, type BrokerProbe } from './probe.js';
import { cpuBudget } from './cpu-limit.js';
import type {
  Acks,
  BrokerApi,
  ClusterMetadata,
  FetchInput,
  FetchResult,
  ListOffsetsResult,
  OffsetSpec,
  PartitionInfo,
  ProduceInput,
  ProduceResult,
  ProducerIdentity,
  TopicDescription,
  TopicSummary,
} from './types.js';

/** pino-compatible: `logger.warn({ err }, 'message')`. */
export interface BrokerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const SILENT_LOGGER: BrokerLogger = { info() {}, warn() {}, error() {} };

export interface BrokerOptions {
  dataDir: string;
  /** Shard worker threads; default max(1, CPUs - 1), CPUs capped by the cgroup quota (cpu-limit.ts). */
  shards?: number;
  nodeId?: number;
  /** Advertised in metadata. */
  grpcAddress?: string;
  httpAddress?: string;
  probe?: BrokerProbe;
  logger?: BrokerLogger;
  // Tuning, mostly for tests (defaults in src/constants.ts).
  requestRingBytes?: number;
  responseRingBytes?: number;
  ringWaitMs?: number;
  ringWaitersMax?: number;
  retentionCheckMs?: number;
  statsIntervalMs?: number;
  watchdogMs?: number;
  /** How long a partition remembers an idle idempotent producer. Default 7 days (PRODUCER_IDLE_EXPIRY_MS_DEFAULT). */
  producerIdleExpiryMs?: number;
  /** The most partitions this broker holds (default BROKER_PARTITIONS_MAX). */
  partitionsMax?: number;
  /**
   * Cluster mode (issue 11): the broker hosts only the replicas `openReplicas` gives it, carries their
   * Raft messages over `transport`, never reads or writes its own topics.json, and refuses topic admin
   * (that goes through the controller). Needs a positive `nodeId`. Absent: the single-node broker.
   */
  cluster?: BrokerClusterOptions;
}

export interface BrokerClusterOptions {
  transport: RaftTransport;
  /** Reported by `metadata()`; the cluster layer knows it (node.json). Default ''. */
  clusterId?: string;
  /**
   * Idle replicas quiesce (docs/raft.md "Quiescence"; default false). Only for a caller with a failure
   * detector that calls `peersChanged` when a member turns suspect, dead or alive again (sluice serve:
   * gossip through ClusterNode): without one, a quiesced follower of a dead leader would never campaign.
   */
  quiesce?: boolean;
  /**
   * TEST ONLY (src/broker/test-hooks.ts, `SLUICE_TEST_REPLICA_BUGS`): the simulator's bug modes, put
   * on every partition replica this broker opens. Never set in production.
   */
  replicaBugs?: ReplicaBugs | null;
}

/** A replica this broker hosts in cluster mode. */
interface HeldReplica {
  readonly spec: ReplicaSpec;
  readonly k: PartitionKey;
  /** Its transport registration (undone on close). */
  unregister: () => void;
}

export { SHARDS_MAX };

const ACKS: Record<Acks, AcksCode> = { none: 0, leader: 1, all: 2 };

/** One shard per CPU this process may use (its cgroup quota, not the host's count), less the main thread's. */
export function defaultShardCount(): number {
  return Math.max(1, cpuBudget() - 1);
}

/** Structured produce: one v2 batch. Malformed records are the caller's error, not an internal one. */
function encodeRecords(records: ProduceInput['records'] & object, producer: ProduceInput['producer']): Uint8Array {
  try {
    return encodeBatch(records, producer ?? {});
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw new SluiceError('INVALID_REQUEST', `malformed records: ${(err as Error).message}`, { cause: err });
  }
}

/** Cluster mode needs a node id (its Raft id in every group) and a transport. */
function validateCluster(o: BrokerOptions): void {
  if (o.nodeId === undefined || !Number.isInteger(o.nodeId) || o.nodeId < 1) {
    throw new SluiceError('INVALID_REQUEST', `cluster mode needs a positive integer nodeId, got ${String(o.nodeId)}`);
  }
  const t = o.cluster?.transport;
  if (t === undefined || typeof t.send !== 'function' || typeof t.register !== 'function') {
    throw new SluiceError('INVALID_REQUEST', 'cluster mode needs cluster.transport (a RaftTransport)');
  }
}

/** A replica spec from the cluster layer, checked before anything is opened. */
function validateReplicaSpec(s: ReplicaSpec, nodeId: number): void {
  const bad = (m: string): SluiceError => new SluiceError('INVALID_REQUEST', `replica ${String(s?.topic)}/${String(s?.partition)} (group ${String(s?.group)}): ${m}`);
  if (typeof s !== 'object' || s === null) throw bad('a replica spec must be an object');
  validateTopicName(s.topic);
  if (typeof s.topicId !== 'string' || s.topicId.length === 0) throw bad('topicId must be a non-empty string');
  validatePartitionCount(s.partitionCount);
  if (!Number.isInteger(s.partition) || s.partition < 0 || s.partition >= s.partitionCount) throw bad(`partition must be from 0 to ${s.partitionCount - 1}`);
  if (!Number.isSafeInteger(s.group) || s.group < 1) throw bad('group must be a positive integer (0 is the controller)');
  if (!Number.isInteger(s.shard) || s.shard < 0 || s.shard >= SHARDS_MAX) throw bad(`shard must be from 0 to ${SHARDS_MAX - 1}`);
  const ok = (n: unknown): boolean => Number.isSafeInteger(n) && (n as number) > 0;
  if (!Array.isArray(s.voters) || s.voters.length === 0 || !s.voters.every(ok)) throw bad('voters must be a non-empty list of node ids');
  if (!Array.isArray(s.learners) || !s.learners.every(ok)) throw bad('learners must be a list of node ids');
  if (s.voters.length > TOPIC_REPLICATION_FACTOR_MAX) throw bad(`at most ${TOPIC_REPLICATION_FACTOR_MAX} voters`);
  if (!s.voters.includes(nodeId as NodeId) && !s.learners.includes(nodeId as NodeId)) throw bad(`this node (${nodeId}) is neither a voter nor a learner`);
  if (new Set([...s.voters, ...s.learners]).size !== s.voters.length + s.learners.length) throw bad('a node is listed twice (voters and learners are disjoint)');
  if (typeof s.configs !== 'object' || s.configs === null) throw bad('configs must be an object of strings');
  logConfigFor({ ...s.configs }); // INVALID_CONFIG naming the key, before anything is opened
}

/** Rejects tuning values that would make the shards misbehave, naming the option. */
function validateTuning(o: BrokerOptions): void {
  const check = (name: keyof BrokerOptions, min: number, max: number): void => {
    const v = o[name];
    if (v === undefined) return;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new SluiceError('INVALID_REQUEST', `${name} must be an integer from ${min} to ${max}, got ${String(v)}`);
    }
  };
  check('requestRingBytes', 64 * 1024, 2 ** 31 - 1);
  check('responseRingBytes', 64 * 1024, 2 ** 31 - 1);
  check('ringWaitMs', 0, 600_000);
  check('ringWaitersMax', 0, 1_000_000);
  check('retentionCheckMs', 10, 24 * 3600 * 1000);
  check('statsIntervalMs', 10, 3600 * 1000);
  check('watchdogMs', SHARD_WATCHDOG_MS_MIN, 24 * 3600 * 1000);
  check('nodeId', 0, 2 ** 31 - 1);
  check('producerIdleExpiryMs', 1_000, Number.MAX_SAFE_INTEGER);
  check('partitionsMax', 1, TOPIC_TABLE_PARTITIONS_MAX);
}

export class Broker implements BrokerApi, ReplicaHost {
  readonly dataDir: string;
  readonly nodeId: number;
  readonly shardCount: number;
  private readonly probe: BrokerProbe;
  private readonly logger: BrokerLogger;
  private readonly partitioner = new StickyPartitioner();
  private readonly hosts: ShardHost[] = [];
  private readonly configCache = new Map<string, LogConfig>();
  /** Topic id -> the base of its partitions' hot-path numbers (see keyOf); dropped with the topic. */
  private readonly keyBases = new Map<string, number>();
  /** Key base -> its topic's name (the reverse of keyBases, for naming a PartitionKey). */
  private readonly keyTopics = new Map<number, string>();
  private nextKeyBase = 0;
  /**
   * The newest numbers each live partition's shard reported (its periodic stats message, or an exact
   * `stat` reply), so GetMetadata answers without waiting behind a busy shard. One entry per live
   * partition: entries of a deleted topic are dropped with its keys, and keys are never reused.
   */
  private readonly lastStats = new Map<PartitionKey, PartitionStat>();
  private adminQueue: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;
  /** The main thread's own event-loop delay and GC pauses, rolled into the probe like a shard's stats. */
  private mainThread: { sampler: ThreadStatsSampler; timer: NodeJS.Timeout } | null = null;
  private internal: (BrokerApi & { createInternalTopic: Broker['createInternalTopic'] }) | null = null;
  /** Cluster mode: the replicas held here, by Raft group and by hot-path number. */
  private readonly replicas = new Map<GroupId, HeldReplica>();
  private readonly groupOfKey = new Map<PartitionKey, GroupId>();
  private readonly leaderListeners = new Set<(s: ReplicaStatus) => void>();
  /** Cluster mode: the leader/epoch/leading each replica last told the listeners. */
  private readonly leaderSeen = new Map<PartitionKey, string>();

  private constructor(
    private readonly options: BrokerOptions,
    private readonly lock: DataDirLock,
    private readonly table: TopicTable,
    private readonly producerIds: ProducerIdTable,
  ) {
    this.dataDir = lock.dataDir;
    this.nodeId = options.nodeId ?? 0;
    this.shardCount = options.shards ?? defaultShardCount();
    this.probe = options.probe ?? NOOP_PROBE;
    this.logger = options.logger ?? SILENT_LOGGER;
  }

  /** Cluster mode: replicas come from the controller (openReplicas), not from topics.json. */
  get clusterMode(): boolean {
    return this.options.cluster !== undefined;
  }

  /** Locks the data dir, loads the topic table, starts the shards and reopens every partition. */
  static async open(options: BrokerOptions): Promise<Broker> {
    if (typeof options?.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new SluiceError('INVALID_REQUEST', 'Broker.open needs a dataDir');
    }
    const shards = options.shards ?? defaultShardCount();
    if (!Number.isInteger(shards) || shards < 1 || shards > SHARDS_MAX) {
      throw new SluiceError('INVALID_REQUEST', `shards must be an integer from 1 to ${SHARDS_MAX}, got ${String(options.shards)}`);
    }
    validateTuning(options);
    if (options.cluster !== undefined) validateCluster(options);
    const lock = DataDirLock.acquire(options.dataDir);
    let broker: Broker | null = null;
    try {
      const table = options.cluster !== undefined ? TopicTable.inMemory(options.cluster.clusterId ?? '') : TopicTable.load(lock.dataDir);
      broker = new Broker(options, lock, table, ProducerIdTable.load(lock.dataDir));
      const unknown = options.cluster !== undefined ? [] : table.unknownPartitionDirs(lock.dataDir);
      if (unknown.length > 0) {
        // Leftovers of a create interrupted before its table write: the table wins, and creating the
        // same name again starts those partitions empty. Said loudly so an operator can keep them.
        broker.logger.warn({ dataDir: lock.dataDir, dirs: unknown.slice(0, 100), count: unknown.length }, 'partition directories the topic table does not name; they are ignored');
      }
      await broker.startShards();
      broker.startMainThreadStats();
      return broker;
    } catch (err) {
      if (broker) await Promise.allSettled(broker.hosts.map((h) => h.close()));
      lock.release();
      throw err;
    }
  }

  private async startShards(): Promise<void> {
    const started = await Promise.allSettled(
      Array.from({ length: this.shardCount }, (_, shard) =>
        ShardHost.start({
          shard,
          dataDir: this.dataDir,
          requestRingBytes: this.options.requestRingBytes,
          responseRingBytes: this.options.responseRingBytes,
          ringWaitMs: this.options.ringWaitMs,
          ringWaitersMax: this.options.ringWaitersMax,
          retentionCheckMs: this.options.retentionCheckMs,
          statsIntervalMs: this.options.statsIntervalMs,
          watchdogMs: this.options.watchdogMs,
          producerIdleExpiryMs: this.options.producerIdleExpiryMs,
          partitionsOf: (s) => this.partitionsOf(s),
          onStats: (s, stats) => this.onShardStats(s, stats),
          onRaft: (_s, msgs) => this.sendRaft(msgs),
          onLeaders: (_s, stats) => this.onLeaders(stats),
          onCrash: (s, err) => this.logger.error({ shard: s, err }, `shard ${s} worker died; restarting it and reopening its partitions`),
          onRestart: (s, reason) => {
            this.probe.shardRestarted(s, reason);
            this.forgetShardStats(s);
          },
          onMainThreadPause: (s, gapMs) =>
            this.logger.warn({ shard: s, gapMs }, `main thread did not run for ${gapMs} ms (process paused or starved); shard ${s} watchdog re-armed`),
          onPartitionOffline: (s, key, err) => {
            const name = this.nameOfKey(key);
            this.logger.error({ shard: s, partition: name, err }, `partition ${name} could not be opened and is offline`);
          },
          onPartitionRecovered: (s, key, report) => this.logRecovery(s, this.nameOfKey(key), report),
        }),
      ),
    );
    for (const r of started) if (r.status === 'fulfilled') this.hosts[r.value.shard] = r.value;
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  // --- Placement -----------------------------------------------------------------------------

  /** The shard of a partition. A table written with more shards than now folds onto the ones there are. */
  /**
   * The partition's number on the hot path (see PartitionKey): a base per topic id, assigned the first
   * time this broker sees the id, so a re-created topic never shares numbers with the deleted one.
   */
  private keyOf(entry: TopicEntry, partition: number): PartitionKey {
    let base = this.keyBases.get(entry.topicId);
    if (base === undefined) {
      base = this.nextKeyBase;
      this.nextKeyBase += TOPIC_PARTITIONS_MAX;
      this.keyBases.set(entry.topicId, base);
      this.keyTopics.set(base, entry.name);
    }
    return base + partition;
  }

  /** Forgets a deleted topic's numbers (a re-created topic gets new ones). */
  private forgetKeys(entry: TopicEntry): void {
    const base = this.keyBases.get(entry.topicId);
    if (base !== undefined) {
      this.keyTopics.delete(base);
      for (let p = 0; p < entry.placement.length; p++) this.lastStats.delete(base + p);
    }
    this.keyBases.delete(entry.topicId);
  }

  /** `topic/partition` for a hot-path number (for logs and /readyz); `#n` for one no topic owns now. */
  private nameOfKey(k: PartitionKey): string {
    const base = k - (k % TOPIC_PARTITIONS_MAX);
    const topic = this.keyTopics.get(base);
    return topic === undefined ? `#${k}` : `${topic}/${k - base}`;
  }

  private shardOf(entry: TopicEntry, partition: number): number {
    return entry.placement[partition] % this.shardCount;
  }

  /** Test and tooling hook: which shard owns a partition. */
  shardFor(topic: string, partition: number): number {
    return this.shardOf(this.topic(topic), partition);
  }

  private configOf(entry: TopicEntry): LogConfig {
    let c = this.configCache.get(entry.name);
    if (!c) {
      try {
        c = logConfigFor(entry.configs);
      } catch (err) {
        // A config persisted by another version that this one rejects: run on defaults, loudly.
        this.logger.warn({ topic: entry.name, err }, 'persisted topic config is invalid here; using defaults');
        c = defaultLogConfig();
      }
      this.configCache.set(entry.name, c);
    }
    return c;
  }

  private partitionsOf(shard: number): PartitionSpec[] {
    // Cluster mode: the replicas held here, reopened (never fresh) with their group and members.
    if (this.clusterMode) return [...this.replicas.values()].filter((r) => r.spec.shard % this.shardCount === shard).map((r) => this.replicaPartitionSpec(r, false));
    const out: PartitionSpec[] = [];
    for (const entry of this.table.all()) {
      const config = this.configOf(entry);
      for (let p = 0; p < entry.placement.length; p++) {
        if (this.shardOf(entry, p) === shard) out.push({ k: this.keyOf(entry, p), topic: entry.name, topicId: entry.topicId, partition: p, config, fresh: false });
      }
    }
    return out;
  }

  /** Shards for `count` new partitions: each goes to the least loaded shard at that moment. */
  private place(count: number): number[] {
    const load = this.table.load(this.shardCount);
    const out: number[] = [];
    for (let i = 0; i < count; i++) {
      let best = 0;
      for (let s = 1; s < load.length; s++) if (load[s] < load[best]) best = s;
      load[best]++;
      out.push(best);
    }
    return out;
  }

  // --- Helpers -------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closing) throw new SluiceError('SHUTTING_DOWN', 'the broker is shutting down');
  }

  private topic(name: string): TopicEntry {
    const entry = typeof name === 'string' ? this.table.get(name) : undefined;
    if (!entry) throw new SluiceError('UNKNOWN_TOPIC', `topic '${String(name)}' does not exist`);
    return entry;
  }

  private checkPartition(entry: TopicEntry, partition: number): void {
    if (!Number.isInteger(partition) || partition < 0 || partition >= entry.placement.length) {
      throw new SluiceError('UNKNOWN_PARTITION', `topic '${entry.name}' has partitions 0..${entry.placement.length - 1}; there is no partition ${String(partition)}`);
    }
    this.checkHeld(entry, partition);
  }

  /** Cluster mode: a partition of a known topic that has no replica here is NOT_LEADER, leader unknown. */
  private checkHeld(entry: TopicEntry, partition: number): void {
    if (entry.placement[partition] < 0) throw new NotLeaderError(`${entry.name}/${partition}`, this.nodeId, 0);
  }

  /** Cluster mode refuses topic admin: the controller owns topics and their replicas. */
  private refuseInCluster(what: string): void {
    if (this.clusterMode) throw new SluiceError('INVALID_REQUEST', `${what}: in cluster mode topics are changed through the controller, not a node's broker`);
  }

  /** Runs admin changes one at a time. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.adminQueue.then(() => {
      this.checkOpen();
      return fn();
    });
    this.adminQueue = run.catch(() => {});
    return run;
  }

  private byShard<T>(entry: TopicEntry, partitions: Iterable<number>, make: (p: number) => T): Map<number, T[]> {
    const groups = new Map<number, T[]>();
    for (const p of partitions) {
      if (entry.placement[p] < 0) continue; // cluster mode: not held here
      const s = this.shardOf(entry, p);
      let g = groups.get(s);
      if (!g) groups.set(s, (g = []));
      g.push(make(p));
    }
    return groups;
  }

  private range(from: number, to: number): number[] {
    return Array.from({ length: to - from }, (_, i) => from + i);
  }

  /** Opens new partitions on their shards; on failure removes whatever was opened. */
  private async openPartitions(entry: TopicEntry, partitions: number[], config: LogConfig): Promise<void> {
    const groups = this.byShard(entry, partitions, (p): PartitionSpec => ({ k: this.keyOf(entry, p), topic: entry.name, topicId: entry.topicId, partition: p, config, fresh: true }));
    const results = await Promise.allSettled([...groups].map(([s, parts]) => this.hosts[s].send({ t: 'open', parts })));
    let failure: unknown = null;
    for (const r of results) {
      if (r.status === 'rejected') failure ??= r.reason;
      else if ('t' in r.value && r.value.t === 'opened' && r.value.failed.length > 0) failure ??= SluiceError.fromWire(r.value.failed[0].err);
    }
    if (failure !== null) {
      await this.dropPartitions(entry, partitions, true).catch(() => {});
      throw failure;
    }
  }

  private async dropPartitions(entry: TopicEntry, partitions: number[], remove: boolean): Promise<void> {
    const groups = this.byShard(entry, partitions, (p) => ({ k: this.keyOf(entry, p), topic: entry.name, partition: p }));
    for (const [s, parts] of groups) for (const { k } of parts) this.hosts[s].offline.delete(k);
    const results = await Promise.allSettled([...groups].map(([s, parts]) => this.hosts[s].send({ t: 'drop', parts, remove })));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  // --- Admin ---------------------------------------------------------------------------------

  async createTopic(name: string, partitions: number, replicationFactor: number, configs: Record<string, string>): Promise<TopicDescription> {
    this.checkOpen();
    validateUserTopicName(name);
    return this.createAnyTopic(name, partitions, replicationFactor, configs);
  }

  /**
   * Creates an internal topic (a name with the reserved "__" prefix, e.g. `__consumer_offsets` for
   * src/groups), which createTopic refuses. For the broker's own subsystems; not exposed over gRPC.
   */
  async createInternalTopic(name: string, partitions: number, configs: Record<string, string>): Promise<TopicDescription> {
    this.checkOpen();
    validateTopicName(name);
    if (!name.startsWith(INTERNAL_TOPIC_PREFIX)) {
      throw new SluiceError('INVALID_TOPIC_NAME', `internal topic names start with '${INTERNAL_TOPIC_PREFIX}', got '${name}'`);
    }
    return this.createAnyTopic(name, partitions, 1, configs);
  }

  private async createAnyTopic(name: string, partitions: number, replicationFactor: number, configs: Record<string, string>): Promise<TopicDescription> {
    this.refuseInCluster(`create topic '${String(name)}'`);
    validatePartitionCount(partitions);
    const rf = normalizeReplicationFactor(replicationFactor);
    const explicit = { ...(configs ?? {}) };
    const config = logConfigFor(explicit);
    await this.exclusive(async () => {
      if (this.table.get(name)) throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic '${name}' already exists`);
      validateBrokerPartitions(this.table.partitionCount(), partitions, this.options.partitionsMax ?? BROKER_PARTITIONS_MAX);
      const entry: TopicEntry = { name, topicId: crypto.randomUUID(), replicationFactor: rf, configs: explicit, placement: this.place(partitions), createdMs: Date.now() };
      await this.openPartitions(entry, this.range(0, partitions), config);
      try {
        this.table.update(name, entry);
      } catch (err) {
        await this.dropPartitions(entry, this.range(0, partitions), true).catch(() => {});
        throw err;
      }
      this.configCache.set(name, config);
      this.logger.info({ topic: name, partitions }, 'topic created');
    });
    return this.describeTopic(name);
  }

  async deleteTopic(name: string): Promise<void> {
    this.checkOpen();
    validateTopicName(name);
    refuseInternalTopic(name, 'delete');
    return this.deleteAnyTopic(name);
  }

  private async deleteAnyTopic(name: string): Promise<void> {
    this.checkOpen();
    this.refuseInCluster(`delete topic '${String(name)}'`);
    validateTopicName(name);
    await this.exclusive(async () => {
      const entry = this.topic(name);
      // Remove the partitions first, then persist the smaller table: on a full disk the table's
      // atomic rewrite (temp file + rename) needs space that only the removal frees, so an operator
      // can always free space this way. A crash in between leaves the topic in the table with its
      // directories gone; it reopens empty and a repeated delete finishes the job. If the table write
      // still fails, the topic stays listed (its partitions closed) and the error says to retry.
      this.partitioner.forget(name);
      try {
        await this.dropPartitions(entry, this.range(0, entry.placement.length), true);
      } catch (err) {
        this.logger.warn({ topic: name, err }, 'deleting a topic: some partitions did not close cleanly or their directories could not be removed');
      }
      this.table.update(name, null);
      this.configCache.delete(name);
      this.forgetKeys(entry);
      this.probe.topicDeleted(name);
      this.logger.info({ topic: name }, 'topic deleted');
    });
  }

  async listTopics(): Promise<TopicSummary[]> {
    this.checkOpen();
    return this.table.all().map((t) => ({ name: t.name, partitionCount: t.placement.length, replicationFactor: t.replicationFactor }));
  }

  /** Exact: asks each shard holding a partition of the topic (waits behind that shard's queued work). */
  async describeTopic(name: string): Promise<TopicDescription> {
    this.checkOpen();
    validateTopicName(name);
    const entry = this.topic(name);
    const groups = this.byShard(entry, this.range(0, entry.placement.length), (p) => this.keyOf(entry, p));
    const stats = new Map<PartitionKey, PartitionStat>();
    await Promise.all(
      [...groups].map(async ([s, keys]) => {
        const r = await this.hosts[s].send({ t: 'stat', keys });
        if (!('t' in r) || r.t !== 'stat') return;
        // Remembered in this continuation, before the shard's next message can bring newer numbers.
        for (const st of r.stats) {
          stats.set(st.k, st);
          this.rememberStat(st);
        }
      }),
    );
    return this.describeFrom(entry, stats);
  }

  /** A topic's description from the given per-partition numbers (0 for a partition with none yet). */
  private describeFrom(entry: TopicEntry, stats: ReadonlyMap<PartitionKey, PartitionStat>): TopicDescription {
    const partitions: PartitionInfo[] = entry.placement.map((_, p) => {
      const k = this.keyOf(entry, p);
      const st = stats.get(k);
      // Cluster mode: the leader this replica knows and the group's voters; nothing for one not held here.
      const held = this.clusterMode ? this.replicas.get(this.groupOfKey.get(k) ?? -1) : undefined;
      return {
        partition: p,
        logStartOffset: st?.logStartOffset ?? 0,
        highWatermark: st?.highWatermark ?? 0,
        leader: this.clusterMode ? (st?.leader ?? 0) : this.nodeId,
        replicas: this.clusterMode ? [...(held?.spec.voters ?? [])] : [this.nodeId],
        sizeBytes: st?.sizeBytes ?? 0,
        damagedRanges: st?.damagedRanges ?? 0,
      };
    });
    return { name: entry.name, partitions, replicationFactor: entry.replicationFactor, configs: logConfigToTopicConfigs(this.configOf(entry)) };
  }

  /** Keeps a shard's numbers for a partition, unless its topic is gone (a stats message can trail a delete). */
  private rememberStat(st: PartitionStat): void {
    if (!this.keyTopics.has(st.k - (st.k % TOPIC_PARTITIONS_MAX))) return;
    this.lastStats.set(st.k, st);
    if (this.clusterMode) this.noteLeader(st);
  }

  async alterTopicConfig(name: string, set: Record<string, string>, remove: string[]): Promise<Record<string, string>> {
    this.checkOpen();
    validateTopicName(name);
    refuseInternalTopic(name, 're-configure');
    return this.alterAnyTopicConfig(name, set, remove);
  }

  private async alterAnyTopicConfig(name: string, set: Record<string, string>, remove: string[]): Promise<Record<string, string>> {
    this.refuseInCluster(`alter the configs of topic '${String(name)}'`);
    return this.exclusive(async () => {
      const entry = this.topic(name);
      const merged: Record<string, string> = { ...entry.configs, ...(set ?? {}) };
      for (const k of remove ?? []) delete merged[k];
      for (const k of remove ?? []) validateConfigKey(k);
      const config = logConfigFor(merged);
      this.table.update(name, { ...entry, configs: merged });
      this.configCache.set(name, config);
      const groups = this.byShard(entry, this.range(0, entry.placement.length), (p) => this.keyOf(entry, p));
      await Promise.all([...groups].map(([s, keys]) => this.hosts[s].send({ t: 'config', keys, config })));
      return logConfigToTopicConfigs(config);
    });
  }

  async createPartitions(name: string, totalPartitions: number): Promise<TopicDescription> {
    this.checkOpen();
    validateTopicName(name);
    refuseInternalTopic(name, 'add partitions to');
    return this.createAnyPartitions(name, totalPartitions);
  }

  private async createAnyPartitions(name: string, totalPartitions: number): Promise<TopicDescription> {
    this.refuseInCluster(`add partitions to topic '${String(name)}'`);
    validatePartitionCount(totalPartitions);
    await this.exclusive(async () => {
      const entry = this.topic(name);
      const current = entry.placement.length;
      if (totalPartitions <= current) {
        throw new SluiceError('INVALID_PARTITIONS', `topic '${name}' has ${current} partitions; partitions can only grow (asked for ${totalPartitions})`);
      }
      validateBrokerPartitions(this.table.partitionCount(), totalPartitions - current, this.options.partitionsMax ?? BROKER_PARTITIONS_MAX);
      const grown: TopicEntry = { ...entry, placement: [...entry.placement, ...this.place(totalPartitions - current)] };
      const added = this.range(current, totalPartitions);
      await this.openPartitions(grown, added, this.configOf(entry));
      try {
        this.table.update(name, grown);
      } catch (err) {
        await this.dropPartitions(grown, added, true).catch(() => {});
        throw err;
      }
    });
    return this.describeTopic(name);
  }

  // --- Data ----------------------------------------------------------------------------------

  async produce(input: ProduceInput): Promise<ProduceResult> {
    this.checkOpen();
    const entry = this.topic(input?.topic);
    refuseInternalTopic(entry.name, 'produce to');
    return this.produceAny(entry, input);
  }

  private async produceAny(entry: TopicEntry, input: ProduceInput): Promise<ProduceResult> {
    const acks = ACKS[input.acks];
    if (acks === undefined) throw new SluiceError('INVALID_REQUEST', `acks must be none, leader or all, got ${String(input.acks)}`);
    const hasBatches = input.batches !== undefined && input.batches !== null;
    const hasRecords = input.records !== undefined && input.records !== null;
    if (hasBatches === hasRecords) throw new SluiceError('INVALID_REQUEST', 'a produce carries exactly one of batches or records');
    let data: Uint8Array;
    if (hasBatches) {
      data = input.batches!;
      if (!(data instanceof Uint8Array)) throw new SluiceError('INVALID_REQUEST', 'batches must be bytes');
      if (data.length === 0) throw new SluiceError('CORRUPT_BATCH', 'no batches: the record batch is empty');
    } else {
      if (input.records!.length === 0) throw new SluiceError('INVALID_REQUEST', 'a produce needs at least one record');
      data = encodeRecords(input.records!, this.checkProducer(input.producer));
    }
    if (hasBatches && input.producer !== undefined) {
      throw new SluiceError('INVALID_REQUEST', 'raw record batches carry producer id, epoch and sequence in their v2 headers, not in the request');
    }
    this.checkFenced(data);
    let partition = input.partition;
    if (partition === undefined || partition === null) {
      const key = hasRecords ? input.records![0].key : firstRecordKey(data);
      partition = this.partitioner.pick(entry.name, entry.placement.length, key ?? null);
    } else {
      this.checkPartition(entry, partition);
    }
    this.checkHeld(entry, partition);
    const host = this.hosts[this.shardOf(entry, partition)];
    const key = this.keyOf(entry, partition);
    const bytes = data.length;
    const topic = entry.name;
    const counted = (r: { baseOffset: number; lastOffset: number }): void => this.probe.produced(topic, r.lastOffset - r.baseOffset + 1, bytes);
    if (acks === 0) {
      await new Promise<void>((resolve, reject) => {
        host.produce(key, data, acks, resolve).then(counted, (err: unknown) => {
          reject(err); // no-op once enqueued: acks=none does not wait for the append
          this.logger.warn({ topic, partition, err }, 'acks=none produce failed after it was accepted');
        });
      });
      return { partition, baseOffset: -1, lastOffset: -1, appendTimeMs: -1, logStartOffset: -1 };
    }
    const r = await host.produce(key, data, acks);
    counted(r);
    return { partition, baseOffset: r.baseOffset, lastOffset: r.lastOffset, appendTimeMs: r.appendTimeMs, logStartOffset: r.logStartOffset };
  }

  /** Range checks of the structured-produce idempotence fields (the header has int16 epoch, int32 sequence). */
  private checkProducer(p: ProduceInput['producer']): ProduceInput['producer'] {
    if (p === undefined || p === null) return undefined;
    if (typeof p.producerId !== 'bigint' || p.producerId < 0n) throw new SluiceError('INVALID_REQUEST', `producer_id must be >= 0 (got ${String(p.producerId)})`);
    if (!Number.isInteger(p.producerEpoch) || p.producerEpoch < 0 || p.producerEpoch > PRODUCER_EPOCH_MAX) {
      throw new SluiceError('INVALID_REQUEST', `producer_epoch must be from 0 to ${PRODUCER_EPOCH_MAX} (got ${String(p.producerEpoch)})`);
    }
    if (!Number.isInteger(p.baseSequence) || p.baseSequence < 0) throw new SluiceError('INVALID_REQUEST', `base_sequence must be >= 0 (got ${String(p.baseSequence)})`);
    return p;
  }

  /**
   * Fencing at the edge: a named producer's older epoch is refused here even on a partition its newer
   * epoch has not written to yet (the partitions' own tables only know epochs they have seen).
   */
  private checkFenced(data: Uint8Array): void {
    if (data.length < OFF_PRODUCER_EPOCH + 2) return;
    const buf = asBuffer(data);
    const producerId = buf.readBigInt64BE(OFF_PRODUCER_ID);
    if (producerId < 0n) return;
    const current = this.producerIds.currentEpoch(producerId);
    const epoch = buf.readInt16BE(OFF_PRODUCER_EPOCH);
    if (current !== undefined && epoch < current) {
      throw new SluiceError('PRODUCER_FENCED', `producer ${producerId} epoch ${epoch} is fenced: InitProducer gave its name epoch ${current}`);
    }
  }

  async initProducer(name?: string): Promise<ProducerIdentity> {
    this.checkOpen();
    if (name !== undefined && typeof name !== 'string') throw new SluiceError('INVALID_REQUEST', 'producer_name must be a string');
    return this.producerIds.init(name);
  }

  async fetch(input: FetchInput, signal?: AbortSignal, chain?: FetchChain): Promise<FetchResult> {
    this.checkOpen();
    const entry = this.topic(input.topic);
    this.checkPartition(entry, input.partition);
    validateOffset(input.offset);
    const pb = input.format === 'pb-records';
    const limit = pb ? STRUCTURED_READ_BYTES_MAX : FETCH_BYTES_MAX_LIMIT;
    const maxBytes = !Number.isFinite(input.maxBytes) || input.maxBytes <= 0 ? FETCH_BYTES_MAX_DEFAULT : Math.min(Math.floor(input.maxBytes), limit);
    const maxWaitMs = !Number.isFinite(input.maxWaitMs) || input.maxWaitMs <= 0 ? 0 : Math.min(Math.floor(input.maxWaitMs), FETCH_WAIT_MS_MAX);
    const host = this.hosts[this.shardOf(entry, input.partition)];
    const r = await host.fetch(this.keyOf(entry, input.partition), input.offset, maxBytes, maxWaitMs, signal, pb, chain);
    if (r.records > 0) this.probe.fetched(entry.name, r.records, r.data.length);
    const common = { highWatermark: r.highWatermark, logStartOffset: r.logStartOffset, nextOffset: r.nextOffset };
    if (!pb) return { batches: r.data, ...common };
    return r.needBytes === undefined ? { batches: new Uint8Array(0), pbRecords: r.data, ...common } : { batches: new Uint8Array(0), pbRecords: r.data, needBytes: r.needBytes, ...common };
  }

  async listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<ListOffsetsResult> {
    this.checkOpen();
    const entry = this.topic(topic);
    this.checkPartition(entry, partition);
    let s: 'earliest' | 'latest' | number;
    if (spec?.kind === 'earliest' || spec?.kind === 'latest') s = spec.kind;
    else if (spec?.kind === 'timestamp' && Number.isFinite(spec.timestampMs)) s = spec.timestampMs;
    else throw new SluiceError('INVALID_REQUEST', 'offset spec must be earliest, latest or a timestamp');
    const r = await this.hosts[this.shardOf(entry, partition)].send({ t: 'offsets', k: this.keyOf(entry, partition), spec: s });
    return { partition, offset: 'offset' in r ? r.offset : -1 };
  }

  /**
   * Routing information, answered from the main thread's own state: the topic table plus the numbers
   * the shards last pushed (every statsIntervalMs). It never waits on a shard, so a shard busy with a
   * large produce or a gzip bomb does not delay it; its offsets may lag by up to one stats interval
   * (describeTopic and listOffsets are exact).
   */
  async metadata(topics?: string[]): Promise<ClusterMetadata> {
    this.checkOpen();
    const names = topics && topics.length > 0 ? topics : this.table.all().map((t) => t.name);
    const described = names.map((n) => {
      validateTopicName(n);
      return this.describeFrom(this.topic(n), this.lastStats);
    });
    return {
      clusterId: this.table.clusterId,
      controllerId: this.nodeId,
      brokers: [{ nodeId: this.nodeId, grpcAddress: this.options.grpcAddress ?? '', httpAddress: this.options.httpAddress ?? '' }],
      topics: described,
    };
  }

  /**
   * The broker's own subsystems' view (consumer groups write `__consumer_offsets` through it): the
   * same calls, minus the INTERNAL_TOPIC guard. Built once; never handed to a client.
   */
  internalView(): BrokerApi & { createInternalTopic: Broker['createInternalTopic'] } {
    this.internal ??= {
      createTopic: (n, p, rf, c) => this.createTopic(n, p, rf, c),
      createInternalTopic: (n, p, c) => this.createInternalTopic(n, p, c),
      deleteTopic: (n) => this.deleteAnyTopic(n),
      listTopics: () => this.listTopics(),
      describeTopic: (n) => this.describeTopic(n),
      alterTopicConfig: (n, set, remove) => {
        this.checkOpen();
        validateTopicName(n);
        return this.alterAnyTopicConfig(n, set, remove);
      },
      createPartitions: (n, total) => {
        this.checkOpen();
        validateTopicName(n);
        return this.createAnyPartitions(n, total);
      },
      produce: async (input) => {
        this.checkOpen();
        return this.produceAny(this.topic(input?.topic), input);
      },
      fetch: (input, signal) => this.fetch(input, signal),
      listOffsets: (t, p, spec) => this.listOffsets(t, p, spec),
      metadata: (topics) => this.metadata(topics),
      initProducer: (name) => this.initProducer(name),
      close: () => this.close(),
    };
    return this.internal;
  }

  // --- Cluster mode (ReplicaHost) ------------------------------------------------------------

  private requireCluster(what: string): RaftTransport {
    const c = this.options.cluster;
    if (c === undefined) throw new SluiceError('INVALID_REQUEST', `${what} needs a broker in cluster mode (BrokerOptions.cluster)`);
    return c.transport;
  }

  private replicaPartitionSpec(r: HeldReplica, fresh: boolean): PartitionSpec {
    const s = r.spec;
    return {
      k: r.k,
      topic: s.topic,
      topicId: s.topicId,
      partition: s.partition,
      config: this.configOf(this.topic(s.topic)),
      fresh,
      replica: { group: s.group, nodeId: this.nodeId, voters: [...s.voters], learners: [...s.learners], quiesce: this.options.cluster?.quiesce === true, bugs: this.options.cluster?.replicaBugs ?? undefined },
    };
  }

  /**
   * Opens the replicas the controller placed here (idempotent per group). The topic entry (id,
   * partition count, configs) is taken from the specs; each group is registered with the transport once
   * its partition is open. Replicas that fail to open are closed again (their directories removed
   * only when they were to start fresh) and the first error is thrown.
   */
  async openReplicas(specs: readonly ReplicaSpec[]): Promise<void> {
    this.checkOpen();
    const transport = this.requireCluster('openReplicas');
    for (const s of specs) validateReplicaSpec(s, this.nodeId);
    await this.exclusive(async () => {
      this.checkReplicaConflicts(specs);
      const added: HeldReplica[] = [];
      const seen = new Set<GroupId>();
      for (const spec of specs) {
        if (this.replicas.has(spec.group) || seen.has(spec.group)) continue;
        seen.add(spec.group);
        const entry = this.clusterTopic(spec);
        if (entry.placement[spec.partition] >= 0) {
          throw new SluiceError('INVALID_REQUEST', `partition ${spec.topic}/${spec.partition} is already held here by another group; close it first`);
        }
        const placement = [...entry.placement];
        placement[spec.partition] = spec.shard;
        const next: TopicEntry = { ...entry, placement };
        this.table.update(spec.topic, next);
        const r: HeldReplica = { spec, k: this.keyOf(next, spec.partition), unregister: () => {} };
        this.replicas.set(spec.group, r);
        this.groupOfKey.set(r.k, spec.group);
        added.push(r);
      }
      if (added.length === 0) return;
      const byShard = new Map<number, HeldReplica[]>();
      for (const r of added) {
        const s = r.spec.shard % this.shardCount;
        let list = byShard.get(s);
        if (list === undefined) byShard.set(s, (list = []));
        list.push(r);
      }
      const results = await Promise.allSettled([...byShard].map(([s, rs]) => this.hosts[s].send({ t: 'open', parts: rs.map((r) => this.replicaPartitionSpec(r, r.spec.fresh)) })));
      let failure: unknown = null;
      const failedKeys = new Set<PartitionKey>();
      [...byShard.values()].forEach((rs, i) => {
        const res = results[i];
        if (res.status === 'rejected') {
          failure ??= res.reason;
          for (const r of rs) failedKeys.add(r.k);
        } else if ('t' in res.value && res.value.t === 'opened') {
          for (const f of res.value.failed) {
            failure ??= SluiceError.fromWire(f.err);
            failedKeys.add(f.k);
          }
        }
      });
      const failed = added.filter((r) => failedKeys.has(r.k));
      if (failed.length > 0) await this.forgetReplicas(failed, false, true).catch(() => {});
      for (const r of added) if (!failedKeys.has(r.k)) r.unregister = transport.register(r.spec.group, (msg) => this.hosts[r.spec.shard % this.shardCount]?.stepRaft(r.k, msg));
      this.logger.info({ opened: added.length - failed.length, failed: failed.length }, 'replicas opened');
      if (failure !== null) throw failure;
    });
  }

  /**
   * Refuses, before anything changes, specs that contradict what is held here: a topic of the same name
   * with another id (a deleted topic's replicas not closed yet), or a partition held by another group,
   * here or twice in the request.
   */
  private checkReplicaConflicts(specs: readonly ReplicaSpec[]): void {
    const ids = new Map<string, string>();
    const slots = new Map<string, GroupId>();
    const fresh = new Set(specs.filter((s) => !this.replicas.has(s.group)).map((s) => s.group));
    validateBrokerPartitions(this.replicas.size, fresh.size, this.options.partitionsMax ?? BROKER_PARTITIONS_MAX);
    for (const spec of specs) {
      if (this.replicas.has(spec.group)) continue;
      const id = ids.get(spec.topic) ?? this.table.get(spec.topic)?.topicId ?? spec.topicId;
      if (id !== spec.topicId) {
        throw new SluiceError('INVALID_REQUEST', `topic '${spec.topic}' is held here (or asked for) with topic id ${id}, not ${spec.topicId}; close its replicas first`);
      }
      ids.set(spec.topic, id);
      const slot = `${spec.topic}/${spec.partition}`;
      const entry = this.table.get(spec.topic);
      const other = slots.get(slot) ?? (entry !== undefined && (entry.placement[spec.partition] ?? -1) >= 0 ? this.groupOfKey.get(this.keyOf(entry, spec.partition)) : undefined);
      if (other !== undefined && other !== spec.group) {
        throw new SluiceError('INVALID_REQUEST', `partition ${slot} is held here (or asked for) by group ${other}, not ${spec.group}; close it first`);
      }
      slots.set(slot, spec.group);
    }
  }

  /** The topic entry for a replica spec: created, or grown to the spec's partition count and configs. */
  private clusterTopic(spec: ReplicaSpec): TopicEntry {
    const have = this.table.get(spec.topic);
    if (have !== undefined && have.topicId !== spec.topicId) {
      throw new SluiceError('INVALID_REQUEST', `topic '${spec.topic}' is held here with topic id ${have.topicId}, not ${spec.topicId}; close its replicas first`);
    }
    const count = Math.max(spec.partitionCount, have?.placement.length ?? 0);
    const placement = [...(have?.placement ?? []), ...new Array<number>(count - (have?.placement.length ?? 0)).fill(-1)];
    const configs = { ...spec.configs };
    const entry: TopicEntry = { name: spec.topic, topicId: spec.topicId, replicationFactor: spec.voters.length, configs, placement, createdMs: have?.createdMs ?? Date.now() };
    this.configCache.set(spec.topic, logConfigFor(configs));
    this.table.update(spec.topic, entry);
    return entry;
  }

  async closeReplicas(groups: readonly GroupId[], remove: boolean): Promise<void> {
    this.checkOpen();
    this.requireCluster('closeReplicas');
    await this.exclusive(async () => {
      const held = groups.map((g) => this.replicas.get(g)).filter((r): r is HeldReplica => r !== undefined);
      await this.forgetReplicas(held, remove, false);
    });
  }

  /**
   * Stops routing to the replicas, closes them on their shards (removing their data with `remove`, or
   * when `onlyFresh`, only those that were to start fresh) and forgets a topic with no replica left.
   */
  private async forgetReplicas(held: readonly HeldReplica[], remove: boolean, onlyFresh: boolean): Promise<void> {
    const byShard = new Map<number, Array<{ k: PartitionKey; topic: string; partition: number; fresh: boolean }>>();
    for (const r of held) {
      r.unregister();
      this.replicas.delete(r.spec.group);
      this.groupOfKey.delete(r.k);
      this.lastStats.delete(r.k);
      this.leaderSeen.delete(r.k);
      const s = r.spec.shard % this.shardCount;
      this.hosts[s].offline.delete(r.k);
      let list = byShard.get(s);
      if (list === undefined) byShard.set(s, (list = []));
      list.push({ k: r.k, topic: r.spec.topic, partition: r.spec.partition, fresh: r.spec.fresh });
      const entry = this.table.get(r.spec.topic);
      if (entry === undefined) continue;
      const placement = [...entry.placement];
      placement[r.spec.partition] = -1;
      if (placement.every((x) => x < 0)) {
        this.table.update(entry.name, null);
        this.configCache.delete(entry.name);
        this.forgetKeys(entry);
        this.partitioner.forget(entry.name);
        this.probe.topicDeleted(entry.name);
      } else {
        this.table.update(entry.name, { ...entry, placement });
        this.probe.partitionClosed?.(entry.name, r.spec.partition);
      }
    }
    const drops: Array<Promise<unknown>> = [];
    for (const [s, parts] of byShard) {
      const rm = onlyFresh ? parts.filter((p) => p.fresh) : remove ? parts : [];
      const keep = parts.filter((p) => !rm.includes(p));
      const strip = (ps: typeof parts): Array<{ k: PartitionKey; topic: string; partition: number }> => ps.map(({ k, topic, partition }) => ({ k, topic, partition }));
      if (rm.length > 0) drops.push(this.hosts[s].send({ t: 'drop', parts: strip(rm), remove: true }));
      if (keep.length > 0) drops.push(this.hosts[s].send({ t: 'drop', parts: strip(keep), remove: false }));
    }
    const results = await Promise.allSettled(drops);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  async setReplicaConfigs(topic: string, configs: Readonly<Record<string, string>>): Promise<void> {
    this.checkOpen();
    this.requireCluster('setReplicaConfigs');
    const merged = { ...configs };
    const config = logConfigFor(merged);
    await this.exclusive(async () => {
      const entry = this.table.get(topic);
      if (entry === undefined) return;
      this.table.update(topic, { ...entry, configs: merged });
      this.configCache.set(topic, config);
      const groups = this.byShard(entry, this.range(0, entry.placement.length), (p) => this.keyOf(entry, p));
      await Promise.all([...groups].map(([s, keys]) => this.hosts[s].send({ t: 'config', keys, config })));
    });
  }

  setPartitionCount(topic: string, partitionCount: number): void {
    this.requireCluster('setPartitionCount');
    validatePartitionCount(partitionCount);
    const entry = this.table.get(topic);
    if (entry === undefined || partitionCount <= entry.placement.length) return;
    const placement = [...entry.placement, ...new Array<number>(partitionCount - entry.placement.length).fill(-1)];
    this.table.update(topic, { ...entry, placement });
  }

  replicaStatus(): ReplicaStatus[] {
    const out: ReplicaStatus[] = [];
    for (const r of this.replicas.values()) out.push(this.statusOf(r));
    return out;
  }

  onLeaderChange(listener: (s: ReplicaStatus) => void): () => void {
    this.leaderListeners.add(listener);
    return () => this.leaderListeners.delete(listener);
  }

  peersChanged(nodes: readonly NodeId[], down = false): void {
    if (this.closing) return;
    for (const h of this.hosts) h?.wake(nodes, down);
  }

  async transferLeadership(group: GroupId, to: NodeId): Promise<void> {
    this.checkOpen();
    this.requireCluster('transferLeadership');
    if (!Number.isSafeInteger(to) || to < 1) throw new SluiceError('INVALID_REQUEST', `a leadership transfer needs a positive node id, got ${String(to)}`);
    const r = this.replicas.get(group);
    if (r === undefined) throw new SluiceError('UNKNOWN_PARTITION', `no replica of group ${String(group)} is held here`);
    await this.hosts[r.spec.shard % this.shardCount].send({ t: 'transfer', k: r.k, to });
  }

  async proposeConfChange(group: GroupId, change: ReplicaConfChange): Promise<void> {
    this.checkOpen();
    this.requireCluster('proposeConfChange');
    const types = ['addVoter', 'addLearner', 'remove'];
    if (typeof change !== 'object' || change === null || !types.includes(change.type)) throw new SluiceError('INVALID_REQUEST', `a membership change is one of ${types.join(', ')}`);
    if (!Number.isSafeInteger(change.node) || change.node < 1) throw new SluiceError('INVALID_REQUEST', `a membership change needs a positive node id, got ${String(change.node)}`);
    const r = this.replicas.get(group);
    if (r === undefined) throw new SluiceError('UNKNOWN_PARTITION', `no replica of group ${String(group)} is held here`);
    await this.hosts[r.spec.shard % this.shardCount].send({ t: 'conf', k: r.k, change: { type: change.type, node: change.node } });
  }

  async replicaMembership(groups: readonly GroupId[]): Promise<ReplicaMembership[]> {
    this.checkOpen();
    this.requireCluster('replicaMembership');
    const byShard = new Map<number, PartitionKey[]>();
    for (const g of groups) {
      const r = this.replicas.get(g);
      if (r === undefined) continue;
      const s = r.spec.shard % this.shardCount;
      let list = byShard.get(s);
      if (list === undefined) byShard.set(s, (list = []));
      list.push(r.k);
    }
    const replies = await Promise.all([...byShard].map(([s, keys]) => this.hosts[s].send({ t: 'members', keys })));
    const out: ReplicaMembership[] = [];
    for (const reply of replies) {
      if (!('t' in reply) || reply.t !== 'members') continue;
      for (const m of reply.members) {
        const group = this.groupOfKey.get(m.k);
        if (group === undefined) continue;
        const members = [...m.voters, ...m.learners];
        out.push({
          group,
          role: m.learners.includes(this.nodeId) ? 'learner' : m.role === 'preCandidate' ? 'precandidate' : m.role,
          leader: m.leader as NodeId,
          epoch: m.term,
          voters: m.voters as NodeId[],
          learners: m.learners as NodeId[],
          confPending: m.confPending,
          commit: m.commit,
          lastIndex: m.lastIndex,
          match: new Map(m.match.map((x, i) => [members[i] as NodeId, x])),
        });
      }
    }
    return out;
  }

  /** Test and tooling hook: the replica of `group` held here, or undefined. */
  replicaOf(group: GroupId): ReplicaStatus | undefined {
    const r = this.replicas.get(group);
    return r === undefined ? undefined : this.statusOf(r);
  }

  private statusOf(r: HeldReplica): ReplicaStatus {
    const st = this.lastStats.get(r.k);
    const offline = st === undefined || this.hosts[r.spec.shard % this.shardCount]?.offline.has(r.k) === true;
    return {
      group: r.spec.group,
      topic: r.spec.topic,
      partition: r.spec.partition,
      role: offline ? 'offline' : st.role,
      leader: (st?.leader ?? 0) as NodeId,
      epoch: st?.epoch ?? 0,
      highWatermark: st?.highWatermark ?? 0,
      logStartOffset: st?.logStartOffset ?? 0,
      logEndOffset: st?.logEndOffset ?? 0,
      inSync: (st?.inSync ?? []) as NodeId[],
      quiesced: st?.quiesced === true,
    };
  }

  /**
   * A shard's worker died: what its replicas last reported (a role, a leader) is no longer true, so
   * they show as offline until the new worker reports (routing must not send writes to a dead leader).
   */
  private forgetShardStats(shard: number): void {
    for (const r of this.replicas.values()) if (r.spec.shard % this.shardCount === shard) this.lastStats.delete(r.k);
  }

  /** A worker turn's outgoing Raft messages, to the transport by group (the transport never blocks). */
  private sendRaft(msgs: readonly RaftEnvelope[]): void {
    const transport = this.options.cluster?.transport;
    if (transport === undefined) return;
    for (const { k, msg } of msgs) {
      const g = this.groupOfKey.get(k);
      if (g !== undefined) transport.send(g, msg);
    }
  }

  /** Replicas whose role, leader or term changed (reported within a tick by their shard). */
  private onLeaders(stats: readonly PartitionStat[]): void {
    for (const st of stats) this.rememberStat(st);
  }

  /**
   * Cluster mode, for every number a shard reports (leader reports, stats, describe): a replica that
   * learned of a new leader or epoch, or became or stopped being leader, is counted and told to the
   * listeners once. Role-only changes (follower -> precandidate ...) are not news to routing.
   */
  private noteLeader(st: PartitionStat): void {
    const g = this.groupOfKey.get(st.k);
    const r = g === undefined ? undefined : this.replicas.get(g);
    if (r === undefined) return;
    const seen = `${st.leader}/${st.epoch}/${st.role === 'leader'}`;
    const prev = this.leaderSeen.get(st.k);
    if (prev === seen) return;
    this.leaderSeen.set(st.k, seen);
    const status = this.statusOf(r);
    try {
      if (prev === undefined || !prev.startsWith(`${st.leader}/${st.epoch}/`)) this.probe.leaderChanged?.(st.topic, st.partition, st.leader, st.epoch);
    } catch (err) {
      if (!isSluiceError(err)) this.logger.warn({ err }, 'probe failed');
    }
    for (const l of this.leaderListeners) {
      try {
        l(status);
      } catch (err) {
        this.logger.warn({ err, group: g }, 'a leader-change listener threw');
      }
    }
  }

  // --- Life cycle ----------------------------------------------------------------------------

  close(): Promise<void> {
    if (!this.closing) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    // Admin changes already queued finish first; new ones see SHUTTING_DOWN.
    await this.adminQueue.catch(() => {});
    // Peers' messages stop arriving before the replicas close (the transport belongs to the caller).
    for (const r of this.replicas.values()) r.unregister();
    if (this.mainThread !== null) {
      clearInterval(this.mainThread.timer);
      this.mainThread.sampler.stop();
      this.mainThread = null;
    }
    const results = await Promise.allSettled(this.hosts.map((h) => h.close()));
    this.lock.release();
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw toSluiceError((failed as PromiseRejectedResult).reason);
    this.logger.info({ dataDir: this.dataDir }, 'broker closed');
  }

  /** Test hook: makes a shard's worker thread exit abruptly (as a crash would). */
  debugCrashShard(shard: number): void {
    this.hosts[shard].crashForTest();
  }

  /** Test hook: blocks a shard's worker thread for `ms` (a stuck disk), to exercise backpressure. */
  debugStallShard(shard: number, ms: number): void {
    this.hosts[shard].stallForTest(ms);
  }

  /**
   * Partitions that could not be opened (e.g. a full disk at start; they are retried with backoff and
   * come back on their own), as `topic/partition`. /readyz is not ready while any is listed.
   */
  offlinePartitions(): string[] {
    const out: string[] = [];
    for (const h of this.hosts) if (h) for (const k of h.offline) out.push(this.nameOfKey(k));
    return out.sort();
  }

  /** How many times each shard's worker was restarted after dying. */
  shardRestarts(): number[] {
    return this.hosts.map((h) => h.restarts);
  }

  // --- Stats ---------------------------------------------------------------------------------

  /**
   * One info line per opened partition (what recovery checked, truncated and rebuilt), and one error
   * line per fenced range, naming file, position, length and the offsets lost.
   */
  private logRecovery(shard: number, partition: string, r: RecoveryReport): void {
    this.logger.info(
      {
        shard,
        partition,
        cleanShutdown: r.cleanShutdown,
        segments: r.segmentCount,
        scannedSegments: r.scannedSegments,
        scannedBytes: r.scannedBytes,
        truncatedBytes: r.truncatedBytes,
        truncationReason: r.truncationReason,
        rebuiltIndexes: r.rebuiltIndexes.length,
        damagedRanges: r.damaged.length,
        durationMs: Math.round(r.durationMs * 10) / 10,
      },
      r.truncatedBytes > 0 ? `partition ${partition} recovered: torn tail of ${r.truncatedBytes} bytes truncated` : `partition ${partition} recovered`,
    );
    for (const d of r.damaged) {
      this.logger.error(
        { shard, partition, file: d.file, position: d.pos, bytes: d.bytes, fromOffset: d.fromOffset, toOffset: d.toOffset, reason: d.reason },
        `partition ${partition} damaged: offsets [${d.fromOffset}, ${d.toOffset}) fenced, ${d.bytes} bytes at position ${d.pos} of ${d.file} (${d.reason}); reads of them answer LOG_CORRUPT`,
      );
    }
  }

  /** Only with a probe that wants thread health (the no-op probe does not): it costs a 10 ms timer and a GC observer. */
  private startMainThreadStats(): void {
    if (this.probe.threadStats === undefined || this.probe === NOOP_PROBE) return;
    const sampler = new ThreadStatsSampler();
    sampler.start();
    const timer = setInterval(() => this.reportThread('main', sampler.roll()), MAIN_THREAD_STATS_INTERVAL_MS);
    timer.unref();
    this.mainThread = { sampler, timer };
  }

  private reportThread(thread: string, t: ThreadStats): void {
    try {
      const gcPauses: Array<[string, number]> = [];
      for (let i = 0; i + 1 < t.gcPauses.length; i += 2) gcPauses.push([GC_KINDS[t.gcPauses[i]!] ?? 'other', t.gcPauses[i + 1]!]);
      this.probe.threadStats?.(thread, { loopDelay: t.loopDelay, gcPauses, gcPausesDropped: t.gcPausesDropped });
    } catch (err) {
      if (!isSluiceError(err)) this.logger.warn({ err }, 'probe failed');
    }
  }

  private onShardStats(shard: number, stats: ShardStatsMessage): void {
    if (stats.thread !== undefined) this.reportThread(`shard-${shard}`, stats.thread);
    try {
      this.probe.shardStats(shard, { queueDepth: stats.queueDepth, eventLoopLagSeconds: stats.eventLoopLagSeconds });
      for (const s of stats.flushSeconds) this.probe.logFlushed(s);
      for (const p of stats.partitions) {
        this.rememberStat(p);
        const stats = { sizeBytes: p.sizeBytes, highWatermark: p.highWatermark, logStartOffset: p.logStartOffset, damagedRanges: p.damagedRanges };
        if (!this.clusterMode) this.probe.partitionStats(p.topic, p.partition, stats);
        else if (this.groupOfKey.has(p.k)) {
          const replica = { leader: p.leader, leading: p.role === 'leader', voters: p.voters, inSync: p.inSync.length };
          this.probe.partitionStats(p.topic, p.partition, { ...stats, replica });
        }
      }
    } catch (err) {
      if (!isSluiceError(err)) this.logger.warn({ err }, 'probe failed');
    }
  }
}
