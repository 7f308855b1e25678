/**
 * What the broker core reports about itself. The core calls these on the MAIN thread (shard workers send
 * their observations to the main thread with their replies or in a periodic stats message); src/metrics
 * implements them with prom-client. Only src/metrics imports prom-client.
 *
 * Counts must be exact: after N records are produced, the sum of `produced(...).records` is N.
 */
/** A thread's event-loop delay (seconds) and GC pauses over one stats window. */
export interface ThreadHealth {
  loopDelay: { count: number; sumSeconds: number; p50: number; p99: number; p999: number; max: number };
  gcPauses: Array<[kind: string, seconds: number]>;
  /** GC pauses in the window that were counted but not timed (over the per-window bound). */
  gcPausesDropped: number;
}

/** Cluster mode: what a replica knows of its group, for the replication gauges. */
export interface ReplicaGauges {
  /** The leader this replica knows (0 = none). */
  leader: number;
  /** This replica leads. */
  leading: boolean;
  /** The group's voters (replication factor). */
  voters: number;
  /** Leader only: voters in sync (itself included); 0 elsewhere. */
  inSync: number;
}

/** How an RPC is measured (see `BrokerProbe.requestFinished`). */
export type RequestKind = 'unary' | 'long-poll' | 'stream';

export interface BrokerProbe {
  /** A produce was appended (acks satisfied or not yet): its record and byte counts. */
  produced(topic: string, records: number, bytes: number): void;
  /** A fetch (or a subscribe push) returned these records and bytes. */
  fetched(topic: string, records: number, bytes: number): void;
  /**
   * One RPC finished; `rpc` is the method name, e.g. "Produce". `status` is its gRPC status name ("OK",
   * "NOT_FOUND", ...; "CANCELLED" when the client gave up, which is not an error). `kind` says how to
   * time it: unary calls and streams apart, long-polls (a Fetch that may wait for data) not at all,
   * since their time is mostly the wait the client asked for.
   */
  requestFinished(rpc: string, kind: RequestKind, seconds: number, status: string): void;
  /** One fdatasync of a partition log took this long. */
  logFlushed(seconds: number): void;
  /** Current log sizes per topic (sum over partitions), and per partition offsets for opt-in series. */
  partitionStats(
    topic: string,
    partition: number,
    stats: { sizeBytes: number; highWatermark: number; logStartOffset: number; damagedRanges?: number; replica?: ReplicaGauges },
  ): void;
  /** Cluster mode: one partition's replica was closed here (its topic may live on): drop its series. */
  partitionClosed?(topic: string, partition: number): void;
  /** A topic (or some of its partitions) disappeared: drop its series. */
  topicDeleted(topic: string): void;
  /** Per-shard gauges, sampled about once a second. */
  shardStats(shard: number, stats: { queueDepth: number; eventLoopLagSeconds: number }): void;
  /**
   * One thread's health over the last stats window (about a second): `thread` is "main" or "shard-N".
   * Loop-delay quantiles and max are of the window; count and sum add up. GC pauses are [kind, seconds].
   * Optional so probes written before it keep compiling.
   */
  threadStats?(thread: string, stats: ThreadHealth): void;
  /**
   * Cluster mode: a replica here learned of a new leader or epoch for its partition (`leader` 0: none
   * known yet, an election is on). Optional so probes written before it keep compiling.
   */
  leaderChanged?(topic: string, partition: number, leader: number, epoch: number): void;
  /** A shard worker was replaced: it died ('crash') or the watchdog stopped it as hung ('watchdog'). */
  shardRestarted(shard: number, reason: 'crash' | 'watchdog'): void;
  /** Bytes held on behalf of clients (request bodies, fetch responses, stream buffers) against the budget. */
  clientMemory(usedBytes: number, limitBytes: number): void;
  /** A request was refused or delayed because the client-memory budget was spent. */
  clientMemoryRefused(rpc: string): void;
  /** A consumer group's lag on a topic: the sum over its partitions of (high watermark - committed offset). */
  consumerGroupLag(group: string, topic: string, lag: number): void;
  /** A consumer group was deleted (or expired): drop its series. */
  groupDeleted(group: string): void;
}

/** A probe that records nothing, for embedders that do not want metrics. */
export const NOOP_PROBE: BrokerProbe = {
  produced() {},
  fetched() {},
  requestFinished() {},
  logFlushed() {},
  partitionStats() {},
  topicDeleted() {},
  shardStats() {},
  threadStats() {},
  shardRestarted() {},
  clientMemory() {},
  clientMemoryRefused() {},
  consumerGroupLag() {},
  groupDeleted() {},
};
