/**
 * Options and the public shape of the metrics subsystem. Only src/metrics imports prom-client; the rest
 * of Sluice sees a `BrokerProbe` (src/broker/probe.ts) and, at the HTTP edge, `render()` or `handler`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BrokerProbe } from '../broker/probe.js';
import type { MembershipProbe } from '../cluster/membership/types.js';

export interface MetricsOptions {
  /**
   * Per-partition series (`sluice_partition_high_watermark`, `sluice_partition_log_start_offset`).
   * Off by default: a topic with 1,000 partitions would add 2,000 series per broker.
   */
  partitionSeries?: boolean;
  /**
   * Per-group lag series (`sluice_consumer_group_lag{group,topic}`, already summed over partitions).
   * On by default because lag is the first thing an operator looks at; turn off with many short-lived
   * groups.
   */
  groupSeries?: boolean;
  /** Node's default process metrics (CPU, heap, GC, event-loop lag). Main thread only. Default true. */
  processMetrics?: boolean;
  /** The `version` label of `sluice_build_info`. Default: the version in Sluice's package.json. */
  version?: string;
  /** Buckets (seconds) of `sluice_request_duration_seconds` (unary calls). */
  requestDurationBuckets?: readonly number[];
  /** Buckets (seconds) of `sluice_stream_duration_seconds` (Subscribe, Consume). */
  streamDurationBuckets?: readonly number[];
  /** Buckets (seconds) of `sluice_log_flush_duration_seconds`. */
  flushDurationBuckets?: readonly number[];
  /** Buckets (seconds) of `sluice_gc_pause_seconds`. */
  gcPauseBuckets?: readonly number[];
}

export interface FilledMetricsOptions {
  readonly partitionSeries: boolean;
  readonly groupSeries: boolean;
  readonly processMetrics: boolean;
  readonly version: string;
  readonly requestDurationBuckets: readonly number[];
  readonly streamDurationBuckets: readonly number[];
  readonly flushDurationBuckets: readonly number[];
  readonly gcPauseBuckets: readonly number[];
}

/** What `createMetrics()` returns. */
export interface SluiceMetrics {
  /** The probe to hand to `Broker.open({ probe })`. Call it on the main thread only. */
  readonly probe: MetricsProbe;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  /** The Content-Type of `render()`'s output (text format 0.0.4). */
  readonly contentType: string;
  /** A node:http handler for `GET /metrics` (also answers HEAD; 405 for other methods). */
  handler(req: IncomingMessage, res: ServerResponse): void;
  /** The underlying prom-client registry, for embedders that add their own metrics. Opaque on purpose. */
  readonly registry: unknown;
  /** Stops the process-metrics collectors and clears the registry. */
  close(): void;
  /** Cluster membership's probe (`sluice_cluster_members{state}`), for `startBroker({ cluster })`. */
  readonly membershipProbe: MembershipProbe;
}

/**
 * The probe src/metrics implements: BrokerProbe (whatever the core reports) plus nothing else the core
 * must know about. Kept as a separate name so src/metrics can grow helpers without touching the core.
 */
export type MetricsProbe = BrokerProbe;
