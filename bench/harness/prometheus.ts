/**
 * A real Prometheus (Debian's `prometheus` package) for one benchmark run: a temporary config that
 * scrapes the broker's /metrics every second, a temporary TSDB, and PromQL queries over its HTTP API.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findBinary, freePort, spawnLogged, tempDir, waitFor, type Spawned } from './procs.js';

export interface PrometheusHandle {
  url: string;
  proc: Spawned;
  /** Instant query; returns the first sample's value (NaN when the result is empty). */
  queryScalar(promql: string, atSeconds?: number): Promise<number>;
  /** Range query; returns [unixSeconds, value] points of the first series (summed queries have one). */
  queryRange(promql: string, startSeconds: number, endSeconds: number, stepSeconds: number): Promise<Array<[number, number]>>;
  /** Raw samples of a range-vector selector (`metric{...}[Ws]`) at a time: [unixSeconds, value] of the first series. */
  querySamples(selector: string, atSeconds: number): Promise<Array<[number, number]>>;
  stop(): Promise<void>;
}

interface PromResponse {
  status: string;
  error?: string;
  data: { resultType: string; result: Array<{ value?: [number, string]; values?: Array<[number, string]> }> };
}

export async function startPrometheus(targetHostPort: string, logDir: string): Promise<PrometheusHandle> {
  const binary = findBinary('prometheus');
  if (binary === undefined) throw new Error('prometheus not found: run bench/setup.sh (apt-get install -y prometheus)');
  const dir = tempDir('prometheus');
  const port = await freePort();
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 900ms',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    '  - job_name: sluice',
    '    static_configs:',
    `      - targets: ['${targetHostPort}']`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const proc = spawnLogged('prometheus', binary, [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--storage.tsdb.retention.time=1d',
    '--log.level=warn',
  ], logDir);
  const url = `http://127.0.0.1:${port}`;
  await waitFor('Prometheus to be ready', async () => (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) })).ok, 30_000, 200);

  const api = async (path: string, params: Record<string, string>): Promise<PromResponse> => {
    const res = await fetch(`${url}${path}?${new URLSearchParams(params)}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as PromResponse;
    if (body.status !== 'success') throw new Error(`PromQL ${params.query}: ${body.error ?? res.status}`);
    return body;
  };
  return {
    url,
    proc,
    async queryScalar(promql, atSeconds) {
      const params: Record<string, string> = { query: promql };
      if (atSeconds !== undefined) params.time = atSeconds.toFixed(3);
      const body = await api('/api/v1/query', params);
      const first = body.data.result[0]?.value;
      return first === undefined ? Number.NaN : Number(first[1]);
    },
    async queryRange(promql, startSeconds, endSeconds, stepSeconds) {
      const body = await api('/api/v1/query_range', {
        query: promql,
        start: startSeconds.toFixed(3),
        end: endSeconds.toFixed(3),
        step: String(stepSeconds),
      });
      return (body.data.result[0]?.values ?? []).map(([t, v]) => [Number(t), Number(v)] as [number, number]);
    },
    async querySamples(selector, atSeconds) {
      const body = await api('/api/v1/query', { query: selector, time: atSeconds.toFixed(3) });
      return (body.data.result[0]?.values ?? []).map(([t, v]) => [Number(t), Number(v)] as [number, number]);
    },
    stop: () => proc.stop(),
  };
}

/**
 * Waits until Prometheus reports the target up and has scraped it at least twice, so rate() has data
 * from the first second of load. (File- or DNS-discovered targets are applied only every 5 s; a static
 * target is known at once, but the first scrape still lands up to one interval later.)
 */
export async function waitForTargetUp(prom: PrometheusHandle, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    'the Prometheus target to be up',
    async () => (await prom.queryScalar('up{job="sluice"}')) === 1 && (await prom.queryScalar('count_over_time(up{job="sluice"}[1m])')) >= 2,
    timeoutMs,
    250,
  );
}
