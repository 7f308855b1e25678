/**
 * BrokerProbe implemented with prom-client. The broker core calls it on the main thread (shard workers
 * ship their counts with their replies), so plain prom-client counters are exact: after N records are
 * produced, `sluice_records_produced_total` says N.
 *
 * Hot-path calls (`produced`, `fetched`, `requestFinished`) go through cached label children, so a call
 * costs a Map lookup and an add, not a label-hash per call.
 */
import { Counter, Gauge, Histogram, type Metric, type Registry } from 'prom-client';
import type { BrokerProbe, ReplicaGauges, RequestKind, ThreadHealth } from '../broker/probe.js';
import type { FilledMetricsOptions } from './types.js';

interface PartitionStats {
  sizeBytes: number;
  highWatermark: number;
  logStartOffset: number;
  damagedRanges: number;
  /** Cluster mode only. */
  replica?: ReplicaGauges;
}

type CounterChild = ReturnType<Counter<'topic'>['labels']>;
type HistogramChild = ReturnType<Histogram<'rpc'>['labels']>;

/** Per-topic pair of counters (records, bytes), cached so the hot path skips label hashing. */
interface TopicCounters {
  records: CounterChild;
  bytes: CounterChild;
}

export class PromBrokerProbe implements BrokerProbe {
  private readonly recordsProduced: Counter<'topic'>;
  private readonly bytesProduced: Counter<'topic'>;
  private readonly recordsFetched: Counter<'topic'>;
  private readonly bytesFetched: Counter<'topic'>;
  private readonly requestDuration: Histogram<'rpc'>;
  private readonly streamDuration: Histogram<'rpc'>;
  private readonly requests: Counter<'rpc' | 'code'>;
  private readonly requestErrors: Counter<'rpc' | 'code'>;
  private readonly flushDuration: Histogram;
  private readonly logSize: Gauge<'topic'>;
  private readonly partitionCount: Gauge<'topic'>;
  private readonly partitionDamaged: Gauge<'topic' | 'partition'>;
  private readonly underReplicated: Gauge;
  private readonly partitionLeader: Gauge<'topic' | 'partition'>;
  private readonly partitionInSync: Gauge<'topic' | 'partition'>;
  private readonly partitionReplicas: Gauge<'topic' | 'partition'>;
  private readonly leaderChanges: Counter<'topic' | 'partition'>;
  private readonly highWatermark: Gauge<'topic' | 'partition'> | undefined;
  private readonly logStartOffset: Gauge<'topic' | 'partition'> | undefined;
  private readonly groupLag: Gauge<'group' | 'topic'>;
  private readonly shardQueueDepth: Gauge<'shard'>;
  private readonly shardLoopLag: Gauge<'shard'>;
  private readonly shardRestarts: Counter<'shard' | 'reason'>;
  private readonly clientMemoryUsed: Gauge;
  private readonly clientMemoryLimit: Gauge;
  private readonly clientMemoryRefusals: Counter<'rpc'>;
  private readonly loopDelay: WindowSummary;
  private readonly loopDelayMax: Gauge<'thread'>;
  private readonly gcPause: Histogram<'thread' | 'kind'>;

  private readonly produceChildren = new Map<string, TopicCounters>();
  private readonly fetchChildren = new Map<string, TopicCounters>();
  private readonly rpcChildren = new Map<string, HistogramChild>();
  /** `${rpc} ${code}` -> the child of sluice_requests_total, so the hot path skips label hashing. */
  private readonly requestChildren = new Map<string, CounterChild>();
  /** topic -> partition -> last reported stats; `sluice_log_size_bytes` is summed from it at scrape time. */
  private readonly partitionTable = new Map<string, Map<number, PartitionStats>>();
  /** group -> topics it has lag series for, so groupDeleted can drop them all. */
  private readonly groupTopics = new Map<string, Set<string>>();

  constructor(registry: Registry, private readonly options: FilledMetricsOptions) {
    const registers = [registry];
    this.recordsProduced = new Counter({ name: 'sluice_records_produced_total', help: 'Records appended by Produce requests.', labelNames: ['topic'], registers });
    this.bytesProduced = new Counter({ name: 'sluice_bytes_produced_total', help: 'Record batch bytes appended by Produce requests.', labelNames: ['topic'], registers });
    this.recordsFetched = new Counter({ name: 'sluice_records_fetched_total', help: 'Records returned by Fetch and Subscribe.', labelNames: ['topic'], registers });
    this.bytesFetched = new Counter({ name: 'sluice_bytes_fetched_total', help: 'Record batch bytes returned by Fetch and Subscribe.', labelNames: ['topic'], registers });
    this.requestDuration = new Histogram({
      name: 'sluice_request_duration_seconds',
      help: 'Time from receiving a unary RPC to sending its reply, by method (streams and long-poll fetches are not in it).',
      labelNames: ['rpc'],
      buckets: [...options.requestDurationBuckets],
      registers,
    });
    this.streamDuration = new Histogram({
      name: 'sluice_stream_duration_seconds',
      help: 'Lifetime of a streaming RPC (Subscribe, Consume), from its start to its end, by method.',
      labelNames: ['rpc'],
      buckets: [...options.streamDurationBuckets],
      registers,
    });
    this.requests = new Counter({
      name: 'sluice_requests_total',
      help: 'RPCs finished, by method and gRPC status code (CANCELLED: the client gave up).',
      labelNames: ['rpc', 'code'],
      registers,
    });
    this.requestErrors = new Counter({
      name: 'sluice_request_errors_total',
      help: 'RPCs that finished with an error, by method and gRPC status code; client cancels are not errors.',
      labelNames: ['rpc', 'code'],
      registers,
    });
    this.flushDuration = new Histogram({
      name: 'sluice_log_flush_duration_seconds',
      help: 'Duration of one fdatasync of a partition log (one group commit).',
      buckets: [...options.flushDurationBuckets],
      registers,
    });
    const table = this.partitionTable;
    this.logSize = new Gauge({
      name: 'sluice_log_size_bytes',
      help: 'Bytes on disk of every partition log of a topic.',
      labelNames: ['topic'],
      registers,
      collect() {
        for (const [topic, partitions] of table) {
          let sum = 0;
          for (const stats of partitions.values()) sum += stats.sizeBytes;
          this.set({ topic }, sum);
        }
      },
    });
    this.partitionCount = new Gauge({
      name: 'sluice_topic_partitions',
      help: 'Partitions of a topic hosted on this broker.',
      labelNames: ['topic'],
      registers,
      collect() {
        for (const [topic, partitions] of table) this.set({ topic }, partitions.size);
      },
    });
    // Always on (not behind partitionSeries): only damaged partitions get a series, so it costs
    // nothing on a healthy broker and cannot be missed on a sick one.
    this.partitionDamaged = new Gauge({
      name: 'sluice_partition_damaged',
      help: 'Ranges of a partition log fenced after corruption was found (reads of them answer LOG_CORRUPT); absent when healthy.',
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        this.reset();
        for (const [topic, partitions] of table) {
          for (const [partition, stats] of partitions) if (stats.damagedRanges > 0) this.set({ topic, partition: String(partition) }, stats.damagedRanges);
        }
      },
    });
    // Replication (cluster mode; a single-node broker reports 0 under-replicated and no per-partition
    // series). Per partition because an operator asks "which partition", and only replicas held here
    // have a series: the leader this replica knows, and on the leader the voters and in-sync voters.
    this.underReplicated = new Gauge({
      name: 'sluice_under_replicated_partitions',
      help: 'Partitions led by this node with fewer in-sync voters than voters.',
      registers,
      collect() {
        let n = 0;
        for (const partitions of table.values()) for (const st of partitions.values()) if (st.replica?.leading === true && st.replica.inSync < st.replica.voters) n++;
        this.set(n);
      },
    });
    this.partitionLeader = new Gauge({
      name: 'sluice_partition_leader',
      help: 'Node id of the leader a replica on this node knows for its partition (0: none known, an election is on).',
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        this.reset();
        for (const [topic, partitions] of table) for (const [partition, st] of partitions) if (st.replica !== undefined) this.set({ topic, partition: String(partition) }, st.replica.leader);
      },
    });
    this.partitionReplicas = new Gauge({
      name: 'sluice_partition_replicas',
      help: 'Voters of a partition led by this node (its replication factor).',
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        this.reset();
        for (const [topic, partitions] of table) for (const [partition, st] of partitions) if (st.replica?.leading === true) this.set({ topic, partition: String(partition) }, st.replica.voters);
      },
    });
    this.partitionInSync = new Gauge({
      name: 'sluice_partition_in_sync_replicas',
      help: 'In-sync voters (match index within REPLICA_ISR_LAG_OFFSETS_MAX of the log end) of a partition led by this node, itself included.',
      labelNames: ['topic', 'partition'],
      registers,
      collect() {
        this.reset();
        for (const [topic, partitions] of table) for (const [partition, st] of partitions) if (st.replica?.leading === true) this.set({ topic, partition: String(partition) }, st.replica.inSync);
      },
    });
    this.leaderChanges = new Counter({
      name: 'sluice_leader_changes_total',
      help: 'Times a replica on this node learned of a new leader or leader epoch for its partition.',
      labelNames: ['topic', 'partition'],
      registers,
    });
    if (options.partitionSeries) {
      this.highWatermark = new Gauge({ name: 'sluice_partition_high_watermark', help: 'Offset after the last committed record of a partition.', labelNames: ['topic', 'partition'], registers });
      this.logStartOffset = new Gauge({ name: 'sluice_partition_log_start_offset', help: 'First offset still held by a partition log.', labelNames: ['topic', 'partition'], registers });
    }
    this.groupLag = new Gauge({ name: 'sluice_consumer_group_lag', help: 'Records a consumer group has not committed yet, summed over the partitions of a topic.', labelNames: ['group', 'topic'], registers });
    this.shardQueueDepth = new Gauge({ name: 'sluice_shard_queue_depth', help: 'Requests queued for or running on a shard worker.', labelNames: ['shard'], registers });
    this.shardLoopLag = new Gauge({ name: 'sluice_shard_event_loop_lag_seconds', help: 'Event-loop delay of a shard worker thread (recent mean).', labelNames: ['shard'], registers });
    this.shardRestarts = new Counter({
      name: 'sluice_shard_restarts_total',
      help: 'Shard workers replaced, by reason: crash (the thread died) or watchdog (silent too long).',
      labelNames: ['shard', 'reason'],
      registers,
    });
    this.loopDelay = new WindowSummary(
      'sluice_event_loop_delay_seconds',
      'Event-loop delay of a thread (main, shard-N): how late its 10 ms sampling timer ran. Quantiles are of the last stats window (about 1 s); sum and count add up over the broker life.',
    );
    registry.registerMetric(this.loopDelay as unknown as Metric);
    this.loopDelayMax = new Gauge({ name: 'sluice_event_loop_delay_max_seconds', help: 'Worst event-loop delay of a thread (main, shard-N) in the last stats window (about 1 s).', labelNames: ['thread'], registers });
    this.gcPause = new Histogram({
      name: 'sluice_gc_pause_seconds',
      help: 'Garbage-collection pauses of a thread (main, shard-N), by kind (minor, major, incremental, weakcb).',
      labelNames: ['thread', 'kind'],
      buckets: [...options.gcPauseBuckets],
      registers,
    });
    this.clientMemoryUsed = new Gauge({ name: 'sluice_client_memory_bytes', help: 'Bytes held on behalf of clients (request bodies, fetch responses, stream buffers).', registers });
    this.clientMemoryLimit = new Gauge({ name: 'sluice_client_memory_limit_bytes', help: 'The client-memory budget (--max-client-memory).', registers });
    this.clientMemoryRefusals = new Counter({
      name: 'sluice_client_memory_refusals_total',
      help: 'Requests refused (Produce) or made to wait (Fetch, Subscribe) because the client-memory budget was spent.',
      labelNames: ['rpc'],
      registers,
    });
  }

  produced(topic: string, records: number, bytes: number): void {
    const c = topicCounters(this.produceChildren, topic, this.recordsProduced, this.bytesProduced);
    c.records.inc(records);
    c.bytes.inc(bytes);
  }

  fetched(topic: string, records: number, bytes: number): void {
    const c = topicCounters(this.fetchChildren, topic, this.recordsFetched, this.bytesFetched);
    c.records.inc(records);
    c.bytes.inc(bytes);
  }

  requestFinished(rpc: string, kind: RequestKind, seconds: number, status: string): void {
    if (kind === 'unary') {
      let child = this.rpcChildren.get(rpc);
      if (child === undefined) {
        child = this.requestDuration.labels(rpc);
        this.rpcChildren.set(rpc, child);
      }
      child.observe(seconds);
    } else if (kind === 'stream') {
      this.streamDuration.observe({ rpc }, seconds);
    }
    const key = `${rpc} ${status}`;
    let counter = this.requestChildren.get(key);
    if (counter === undefined) {
      counter = this.requests.labels(rpc, status);
      this.requestChildren.set(key, counter);
    }
    counter.inc();
    if (status !== 'OK' && status !== 'CANCELLED') this.requestErrors.inc({ rpc, code: status });
  }

  logFlushed(seconds: number): void {
    this.flushDuration.observe(seconds);
  }

  partitionStats(topic: string, partition: number, stats: PartitionStats): void {
    let partitions = this.partitionTable.get(topic);
    if (partitions === undefined) {
      partitions = new Map();
      this.partitionTable.set(topic, partitions);
    }
    partitions.set(partition, {
      sizeBytes: stats.sizeBytes,
      highWatermark: stats.highWatermark,
      logStartOffset: stats.logStartOffset,
      damagedRanges: stats.damagedRanges ?? 0,
      replica: stats.replica,
    });
    if (this.highWatermark !== undefined && this.logStartOffset !== undefined) {
      const labels = { topic, partition: String(partition) };
      this.highWatermark.set(labels, stats.highWatermark);
      this.logStartOffset.set(labels, stats.logStartOffset);
    }
  }

  leaderChanged(topic: string, partition: number, _leader: number, _epoch: number): void {
    this.leaderChanges.inc({ topic, partition: String(partition) });
  }

  partitionClosed(topic: string, partition: number): void {
    this.partitionTable.get(topic)?.delete(partition);
    this.leaderChanges.remove({ topic, partition: String(partition) });
    this.highWatermark?.remove({ topic, partition: String(partition) });
    this.logStartOffset?.remove({ topic, partition: String(partition) });
  }

  topicDeleted(topic: string): void {
    const partitions = this.partitionTable.get(topic);
    for (const partition of partitions?.keys() ?? []) this.leaderChanges.remove({ topic, partition: String(partition) });
    this.partitionTable.delete(topic);
    this.produceChildren.delete(topic);
    this.fetchChildren.delete(topic);
    for (const counter of [this.recordsProduced, this.bytesProduced, this.recordsFetched, this.bytesFetched]) counter.remove({ topic });
    this.logSize.remove({ topic });
    this.partitionCount.remove({ topic });
    if (partitions !== undefined && this.highWatermark !== undefined && this.logStartOffset !== undefined) {
      for (const partition of partitions.keys()) {
        this.highWatermark.remove({ topic, partition: String(partition) });
        this.logStartOffset.remove({ topic, partition: String(partition) });
      }
    }
    for (const [group, topics] of this.groupTopics) {
      if (topics.delete(topic)) this.groupLag.remove({ group, topic });
    }
  }

  shardStats(shard: number, stats: { queueDepth: number; eventLoopLagSeconds: number }): void {
    const labels = { shard: String(shard) };
    this.shardQueueDepth.set(labels, stats.queueDepth);
    this.shardLoopLag.set(labels, stats.eventLoopLagSeconds);
  }

  threadStats(thread: string, stats: ThreadHealth): void {
    const d = stats.loopDelay;
    this.loopDelay.roll(thread, d.count, d.sumSeconds, [d.p50, d.p99, d.p999]);
    this.loopDelayMax.set({ thread }, d.max);
    for (const [kind, seconds] of stats.gcPauses) this.gcPause.observe({ thread, kind }, seconds);
  }

  shardRestarted(shard: number, reason: 'crash' | 'watchdog'): void {
    this.shardRestarts.inc({ shard: String(shard), reason });
  }

  clientMemory(usedBytes: number, limitBytes: number): void {
    this.clientMemoryUsed.set(usedBytes);
    this.clientMemoryLimit.set(limitBytes);
  }

  clientMemoryRefused(rpc: string): void {
    this.clientMemoryRefusals.inc({ rpc });
  }

  consumerGroupLag(group: string, topic: string, lag: number): void {
    if (!this.options.groupSeries) return;
    let topics = this.groupTopics.get(group);
    if (topics === undefined) {
      topics = new Set();
      this.groupTopics.set(group, topics);
    }
    topics.add(topic);
    this.groupLag.set({ group, topic }, lag);
  }

  groupDeleted(group: string): void {
    const topics = this.groupTopics.get(group);
    this.groupTopics.delete(group);
    for (const topic of topics ?? []) this.groupLag.remove({ group, topic });
  }
}

function topicCounters(cache: Map<string, TopicCounters>, topic: string, records: Counter<'topic'>, bytes: Counter<'topic'>): TopicCounters {
  let c = cache.get(topic);
  if (c === undefined) {
    c = { records: records.labels(topic), bytes: bytes.labels(topic) };
    cache.set(topic, c);
  }
  return c;
}

/** Quantiles a WindowSummary exposes, in the order `roll` takes them. */
const WINDOW_QUANTILES = [0.5, 0.99, 0.999] as const;

/**
 * A Prometheus summary whose quantiles are computed elsewhere (by the thread's own hdr histogram,
 * perf_hooks.monitorEventLoopDelay) over one stats window, with `_sum` and `_count` that add up over
 * time. prom-client's Summary computes quantiles from individual observations, which a delay monitor
 * does not hand out, so this registers as a plain collectable (name, help, type, get) in the registry.
 */
class WindowSummary {
  readonly type = 'summary';
  readonly aggregator = 'sum';
  readonly labelNames = ['thread'];
  private readonly threads = new Map<string, { count: number; sum: number; quantiles: number[] }>();

  constructor(readonly name: string, readonly help: string) {}

  roll(thread: string, count: number, sumSeconds: number, quantiles: number[]): void {
    const t = this.threads.get(thread);
    if (t === undefined) this.threads.set(thread, { count, sum: sumSeconds, quantiles });
    else {
      t.count += count;
      t.sum += sumSeconds;
      t.quantiles = quantiles;
    }
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }> } {
    const values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }> = [];
    for (const [thread, t] of this.threads) {
      WINDOW_QUANTILES.forEach((q, i) => values.push({ labels: { thread, quantile: q }, value: t.quantiles[i] ?? 0 }));
      values.push({ metricName: `${this.name}_sum`, labels: { thread }, value: t.sum });
      values.push({ metricName: `${this.name}_count`, labels: { thread }, value: t.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.threads.clear();
  }
}
