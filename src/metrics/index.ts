/**
 * Public surface of src/metrics: Prometheus metrics for a broker, with no exporter.
 *
 *     const metrics = createMetrics({ partitionSeries: false });
 *     const broker = await Broker.open({ ..., probe: metrics.probe });
 *     http.createServer((req, res) => req.url === '/metrics' ? metrics.handler(req, res) : ...);
 *
 * This is the only folder that imports prom-client. It never imports src/broker's implementation, only
 * the BrokerProbe contract (src/broker/probe.ts).
 */
import { performance } from 'node:perf_hooks';
import { isMainThread } from 'node:worker_threads';
import type { IncomingMessage, ServerResponse } from 'node:http';
import assert from 'node:assert/strict';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { PromBrokerProbe } from './broker-probe.js';
import { PromRaftTransportProbe } from './raft-transport-probe.js';
import { fillMetricsOptions } from './options.js';
import type { MetricsOptions, SluiceMetrics } from './types.js';
import type { MembershipProbe } from '../cluster/membership/types.js';

export type { MetricsOptions, FilledMetricsOptions, SluiceMetrics, MetricsProbe } from './types.js';
export { fillMetricsOptions, REQUEST_DURATION_BUCKETS_DEFAULT, STREAM_DURATION_BUCKETS_DEFAULT, FLUSH_DURATION_BUCKETS_DEFAULT, GC_PAUSE_BUCKETS_DEFAULT } from './options.js';
export { PromBrokerProbe } from './broker-probe.js';

/** Default Node metrics that are gauges with a counter's `_total` suffix; left out of the endpoint. */
export const DEFAULT_GAUGES_NAMED_TOTAL: readonly string[] = Object.freeze(['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']);

export function createMetrics(options: MetricsOptions = {}): SluiceMetrics {
  const filled = fillMetricsOptions(options);
  const registry = new Registry();
  const probe = new PromBrokerProbe(registry, filled);

  const buildInfo = new Gauge({
    name: 'sluice_build_info',
    help: 'Always 1; the labels say which Sluice and which Node.js this broker runs.',
    labelNames: ['version', 'node_version'],
    registers: [registry],
  });
  buildInfo.set({ version: filled.version, node_version: process.versions.node }, 1);

  if (filled.processMetrics) {
    // Process metrics describe the whole process, so a worker thread registering them would double-count
    // (and a worker's event-loop lag is already sluice_shard_event_loop_lag_seconds).
    assert.ok(isMainThread, 'createMetrics({ processMetrics: true }) must run on the main thread');
    collectDefaultMetrics({ register: registry });
    // prom-client exports these three totals as gauges named `_total`, which Prometheus reserves for
    // counters (promtool check metrics fails the whole endpoint). Their per-type gauges
    // (`nodejs_active_handles{type}`, ...) stay; `sum(nodejs_active_handles)` is the total.
    for (const name of DEFAULT_GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
  }

  // Cluster membership: member counts by gossip state, set by gossip after every change.
  const clusterMembers = new Gauge({
    name: 'sluice_cluster_members',
    help: 'Cluster members this node knows, by gossip state (alive, suspect, dead); this node included.',
    labelNames: ['state'],
    registers: [registry],
  });
  const membershipProbe: MembershipProbe = {
    membersChanged(counts) {
      for (const state of ['alive', 'suspect', 'dead'] as const) clusterMembers.set({ state }, counts[state]);
    },
  };

  const render = (): Promise<string> => renderSliced(registry);

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    render().then(
      (body) => {
        res.writeHead(200, { 'Content-Type': registry.contentType, 'Content-Length': Buffer.byteLength(body) });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`metrics collection failed: ${String(err)}\n`);
      },
    );
  };

  return {
    probe,
    render,
    contentType: registry.contentType,
    handler,
    registry,
    membershipProbe,
    close() {
      registry.clear();
    },
  };
}

/**
 * Longest the main thread renders /metrics before it lets the event loop run (produce answers, fetch
 * chains, the shards' replies). prom-client's `registry.metrics()` collects and formats every metric
 * in one turn: 1.5 ms of CPU and a 2.4-3.3 ms stall on this machine, once per scrape, which at 10k
 * records/s holds 24-33 records back (docs/metrics.md "The scrape, sliced").
 */
export const METRICS_RENDER_SLICE_MS = 0.5;

/**
 * `registry.metrics()` (text format 0.0.4, the same bytes), one metric at a time, yielding to the event
 * loop (`setImmediate`) whenever a slice has run METRICS_RENDER_SLICE_MS. A metric's own collect and
 * formatting are never split, so each series is as consistent as prom-client makes it; series of
 * different metrics may be read a slice apart, which a scrape never promised.
 */
export async function renderSliced(registry: Registry): Promise<string> {
  if (registry.contentType !== Registry.PROMETHEUS_CONTENT_TYPE) return registry.metrics();
  const parts: string[] = [];
  let sliceStart = performance.now();
  for (const metric of registry.getMetricsAsArray()) {
    // A metric removed while an earlier slice yielded is left out, as a scrape a moment later would.
    if (registry.getSingleMetric(metric.name) === undefined) continue;
    parts.push(await registry.getSingleMetricAsString(metric.name));
    if (performance.now() - sliceStart >= METRICS_RENDER_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
  return `${parts.join('\n\n')}\n`;
}

// --- Raft transport (src/cluster/transport) ------------------------------------------------------
export { PromRaftTransportProbe } from './raft-transport-probe.js';

/** A RaftTransportProbe whose series live in `metrics`' registry (served by its `/metrics`). */
export function createRaftTransportProbe(metrics: SluiceMetrics): import('../cluster/transport/probe.js').RaftTransportProbe {
  return new PromRaftTransportProbe(metrics.registry as Registry);
}
