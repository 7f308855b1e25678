/** Shared shapes between the orchestrator (bench/run.ts) and the load-generator process (load.ts). */
import type { LoadSelfReport } from '../load-probe.js';

export type SystemName = 'sluice' | 'redis' | 'nats';

/** produce-raw: pre-encoded Kafka v2 batches; produce-structured: protobuf Records (Sluice only differs). */
export type LoadKind = 'produce-raw' | 'produce-structured' | 'consume' | 'e2e';

export interface LoadJob {
  system: SystemName;
  port: number;
  kind: LoadKind;
  /** Topic (Sluice), stream key (Redis) or stream/subject (NATS). */
  topic: string;
  /** Create the topic before loading (false for consume, which reads what a produce run left). */
  create: boolean;
  durationS: number;
  recordBytes: number;
  recordsPerRequest: number;
  /** Requests (Sluice), pipelines (Redis) or publish windows (NATS) outstanding at once. */
  inflight: number;
  /** Sluice produce loads: TCP connections the requests in flight are spread over (default 1). */
  connections?: number;
  /** e2e only: records per second, paced. */
  ratePerS?: number;
  /**
   * e2e only: seconds of paced load before the measured `durationS` (same rate, records delivered and
   * counted, latencies kept apart in `coldLatency`), so the percentiles describe a running system rather
   * than JIT compilation and first-use allocation in a process started a moment before. 0: none.
   */
  warmupS?: number;
  /** consume only: stop after this many records. */
  totalRecords?: number;
  /** Sluice only: topic configs at creation, e.g. { 'flush.policy': 'interval' }. */
  topicConfigs?: Record<string, string>;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

export interface LoadResult {
  job: LoadJob;
  /** Records acknowledged (produce, e2e) or received (consume). */
  records: number;
  bytes: number;
  startMs: number;
  endMs: number;
  /** [epoch ms, cumulative records] about every 100 ms. */
  timeline: Array<[number, number]>;
  /** e2e: latency of the records due after the warm-up (`job.warmupS`). */
  latency?: LatencySummary;
  /** e2e: latency of every record, the warm-up's included (what `latency` was before there was one). */
  coldLatency?: LatencySummary;
  /** e2e: records sent (acknowledged or not) and the send rate reached (below the target when the system could not keep up). */
  sent?: number;
  achievedRatePerS?: number;
  /** e2e: records sent but not received within the drain time. */
  missing?: number;
  /**
   * e2e, where the latency goes, per request, from the intended send time of its first record: `send`
   * until the request left the load process (pacing and the load's own delays), `ack` until its
   * acknowledgement arrived. The rest of `latency` is delivery to the subscriber.
   */
  stages?: { send: LatencySummary; ack: LatencySummary };
  /** The load process's own CPU and event-loop delay over the measured part; `stalled` marks a suspect figure. */
  self?: LoadSelfReport;
  errors: string[];
}

export type LoadMessage = { type: 'result'; result: LoadResult } | { type: 'error'; message: string };

export interface Agreement {
  metric: string;
  topic: string;
  windowS: number;
  clientRate: number;
  prometheusRate: number;
  difference: number;
  clientTotal: number;
  prometheusTotal: number;
  ok: boolean;
}

export interface RunRecord {
  system: SystemName;
  label: string;
  result: LoadResult;
  /** Set when the load generator failed or timed out; the row says so. */
  failed?: string;
  /** Client-side records/s over the whole run (e2e: the send rate reached). */
  ratePerS: number;
  agreement?: Agreement;
  /** Sluice only: Prometheus rate() over time, [seconds since start, records/s]. */
  prometheusSeries?: Array<[number, number]>;
  /** Sluice only: what the broker's own histograms said over the same window. */
  server?: ServerView;
}

export interface ServerView {
  rpc: string;
  requestP50Ms: number;
  requestP99Ms: number;
  flushP50Ms: number;
  flushP99Ms: number;
  flushesPerS: number;
  /** Broker process CPU (all threads), in cores. */
  cpuCoresUsed: number;
  /** Worst per-second event-loop delay p99 and max of the main thread and of any shard over the run (ms). */
  mainLoopDelayP99Ms: number;
  mainLoopDelayMaxMs: number;
  shardLoopDelayP99Ms: number;
  shardLoopDelayMaxMs: number;
  /** Share of wall time the main thread / the shards (summed) spent paused in GC. */
  mainGcShare: number;
  shardGcShare: number;
}
