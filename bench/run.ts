/**
 * The benchmark harness: `npm run bench -- --scenario NAME [--json] [--duration S]`.
 *
 * For each system (Sluice, Redis Streams, NATS JetStream), in turn so they never compete for the two
 * cores: start a fresh server on free loopback ports, fork a load-generator process per scenario, and
 * collect its client-side counts. For Sluice, a real Prometheus scrapes the broker's /metrics every
 * second; the report takes throughput from PromQL rate() as well as from the client's own count and
 * flags any disagreement above 5%. Then one side-by-side table with ratios, and an HTML report with
 * SVG charts in bench/out/.
 *
 * Scenarios: produce (raw v2 batches and structured records), consume, e2e (paced producer at fixed
 * rates with a subscriber measuring produce-to-receive latency), all. `--client python` drives Sluice
 * with an independent Python grpcio client (bench/harness/py_load.py) instead of its TypeScript client. `groups` is left out until
 * consumer groups land.
 */
import { fork, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startPrometheus, waitForTargetUp, type PrometheusHandle } from './harness/prometheus.js';
import { findBinary, sleep, track } from './harness/procs.js';
import { renderHtml } from './harness/report.js';
import { startNats, startRedis, startSluice, type ServerHandle } from './harness/servers.js';
import { rateBetween, rateSeries, relativeDifference } from './harness/stats.js';
import { AGREEMENT_TOLERANCE, buildTable, formatRate, formatTable } from './harness/table.js';
import { describeLoad } from './load-probe.js';
import type { LoadJob, LoadKind, LoadMessage, LoadResult, RunRecord, ServerView, SystemName } from './harness/types.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** dist/bench/run.js -> repo root. */
const REPO_ROOT = resolve(HERE, '..', '..');
const LOAD_SCRIPT = join(HERE, 'harness', 'load.js');
const SCENARIOS = ['produce', 'consume', 'e2e', 'all'] as const;
/**
 * e2e: seconds of paced load before each measured part. A broker and a load process started moments
 * before run their first seconds in V8's interpreter and baseline tiers: a scratch per-half-second
 * breakdown (docs/metrics.md) had Sluice's p99 at 24 ms in the first 0.5 s and 9-12 ms up to 2 s, then
 * 4-6 ms; bare grpc-js had 129 ms in its first 0.5 s.
 */
const E2E_WARMUP_S_DEFAULT = 2;
type Scenario = (typeof SCENARIOS)[number];

interface Config {
  scenario: Scenario;
  json: boolean;
  durationS: number;
  /** e2e: seconds of paced load before each measured run (LoadJob.warmupS). */
  warmupS: number;
  systems: SystemName[];
  rates: number[];
  outDir: string;
  recordBytes: number;
  recordsPerRequest: number;
  sluiceInflight: number;
  sluiceConnections: number;
  /** Which client drives Sluice: 'ts' (Sluice's TypeScript client) or 'python' (grpcio from proto/, bench/harness/py_load.py). */
  client: 'ts' | 'python';
  /** Sluice topic configs for every topic of the run (default none: the broker's defaults, fsync per group commit). */
  sluiceConfigs: Record<string, string>;
}

function parseConfig(): Config {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string', default: 'all' },
      json: { type: 'boolean', default: false },
      duration: { type: 'string', default: '10' },
      // e2e: paced load before the measured part, as benchmarks of Kafka and its peers warm up (the
      // OpenMessaging Benchmark's warm-up phase); the figure with it included is printed too.
      warmup: { type: 'string', default: String(E2E_WARMUP_S_DEFAULT) },
      systems: { type: 'string', default: 'sluice,redis,nats' },
      rates: { type: 'string', default: '10000,50000,100000' },
      out: { type: 'string', default: join(REPO_ROOT, 'bench', 'out') },
      'record-bytes': { type: 'string', default: '100' },
      'records-per-request': { type: 'string', default: '1000' },
      // Throughput loads: Sluice keeps 32 requests of 1,000 records outstanding over 2 connections, the
      // request-level counterpart of Redis's 1,000-command pipeline (every request is still acks=all
      // under the default flush policy). --sluice-inflight 5 --sluice-connections 1 is the old setting.
      'sluice-inflight': { type: 'string', default: '32' },
      'sluice-connections': { type: 'string', default: '2' },
      'sluice-config': { type: 'string', multiple: true, default: [] },
      client: { type: 'string', default: 'ts' },
    },
    strict: true,
  });
  const scenario = values.scenario as Scenario;
  if (!SCENARIOS.includes(scenario)) {
    throw new Error(`unknown --scenario ${values.scenario}: one of ${SCENARIOS.join(', ')} (groups lands with consumer groups)`);
  }
  const systems = values.systems.split(',').map((s) => s.trim()) as SystemName[];
  for (const s of systems) if (!['sluice', 'redis', 'nats'].includes(s)) throw new Error(`unknown system ${s}`);
  for (const k of ['sluice-inflight', 'sluice-connections'] as const) {
    const n = Number(values[k]);
    if (!(Number.isInteger(n) && n >= 1 && n <= 1024)) throw new Error(`--${k} must be an integer from 1 to 1024`);
  }
  if (values.client !== 'ts' && values.client !== 'python') throw new Error(`--client must be ts or python, got ${values.client}`);
  const durationS = Number(values.duration);
  if (!(durationS >= 2 && durationS <= 600)) throw new Error('--duration must be between 2 and 600 seconds');
  const warmupS = Number(values.warmup);
  if (!(warmupS >= 0 && warmupS <= 600)) throw new Error('--warmup must be between 0 and 600 seconds');
  return {
    scenario,
    json: values.json,
    durationS,
    warmupS,
    systems,
    rates: values.rates.split(',').map(Number),
    outDir: values.out,
    recordBytes: Number(values['record-bytes']),
    recordsPerRequest: Number(values['records-per-request']),
    sluiceInflight: Number(values['sluice-inflight']),
    sluiceConnections: Number(values['sluice-connections']),
    client: values.client,
    sluiceConfigs: Object.fromEntries(
      values['sluice-config'].map((kv) => {
        const i = kv.indexOf('=');
        if (i <= 0) throw new Error(`--sluice-config wants KEY=VALUE, got ${kv}`);
        return [kv.slice(0, i), kv.slice(i + 1)];
      }),
    ),
  };
}

const log = (config: Config, message: string): void => {
  // With --json, stdout is the JSON document; progress goes to stderr.
  (config.json ? process.stderr : process.stdout).write(`${message}\n`);
};

/** Forks one load generator and waits for its result (bounded by the run's own length plus slack). */
function runLoad(job: LoadJob, profileDir?: string): Promise<LoadResult> {
  const timeoutMs = (job.durationS + (job.warmupS ?? 0)) * (job.kind === 'consume' ? 3000 : 1000) + 60_000;
  return new Promise((resolvePromise, reject) => {
    const execArgv = profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
    // SLUICE_BENCH_TRACE_GC=1: the load process's GCs on stderr too (its pauses are in its e2e figure).
    if (process.env.SLUICE_BENCH_TRACE_GC) execArgv.push('--trace-gc');
    // The child's stdout goes to our stderr: V8 prints GC traces to stdout, and with --json our stdout
    // is the JSON document alone. The load process reports through IPC.
    const child = fork(LOAD_SCRIPT, [JSON.stringify(job)], { stdio: ['ignore', 2, 'inherit', 'ipc'], execArgv });
    track(child);
    let settled = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish(new Error(`load generator ${job.system}/${job.kind} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (err: Error | null, result?: LoadResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolvePromise(result!);
    };
    child.on('message', (message: LoadMessage) => {
      if (message.type === 'result') finish(null, message.result);
      else finish(new Error(`load generator ${job.system}/${job.kind} failed: ${message.message}`));
    });
    child.on('exit', (code, signal) => finish(new Error(`load generator ${job.system}/${job.kind} exited (${code ?? signal}) without a result`)));
  });
}

/** Debian's interpreter: it sees python3-grpcio (an earlier python3 on PATH may not). */
const PYTHON = '/usr/bin/python3';
const PY_LOAD_SCRIPT = join(REPO_ROOT, 'bench', 'harness', 'py_load.py');

/** Runs one Sluice load through the independent Python grpcio client; its LoadResult is its last stdout line. */
function runPythonLoad(job: LoadJob, logDir: string): Promise<LoadResult> {
  const timeoutMs = (job.durationS + (job.warmupS ?? 0)) * (job.kind === 'consume' ? 3000 : 1000) + 60_000;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(PYTHON, [PY_LOAD_SCRIPT, join(REPO_ROOT, 'dist', 'descriptors.binpb'), JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (err.length > 0) writeFileSync(join(logDir, `py-load-${job.kind}-${job.topic}.log`), err);
      const last = out.trim().split('\n').pop() ?? '';
      try {
        if (code !== 0) throw new Error(`exited (${code ?? signal})`);
        resolvePromise(JSON.parse(last) as LoadResult);
      } catch (e) {
        reject(new Error(`python load ${job.kind} failed: ${String(e)}: ${err.trim().split('\n').slice(-3).join(' | ')}`));
      }
    });
  });
}

const METRIC_BY_KIND: Record<LoadKind, string> = {
  'produce-raw': 'sluice_records_produced_total',
  'produce-structured': 'sluice_records_produced_total',
  consume: 'sluice_records_fetched_total',
  e2e: 'sluice_records_produced_total',
};

/**
 * Prometheus vs client over the run's steady part. PromQL `rate(m[Ws])` at time T is the slope between
 * the first and last samples Prometheus scraped inside (T-W, T] (extrapolated to the window's edges,
 * which keeps the slope). So the client's own count is taken over exactly those two scrape times:
 * the same interval, two independent counters. The window starts 1 s into the load and ends 0.5 s
 * before it stops, so ramp-up and tail are outside it. Also compares the counter's final value with the
 * client's total, which must be exact.
 */
async function checkAgreement(prom: PrometheusHandle, record: RunRecord): Promise<void> {
  const { result } = record;
  const metric = METRIC_BY_KIND[result.job.kind];
  const selector = `${metric}{topic="${result.job.topic}"}`;
  const fromS = result.startMs / 1000 + 1;
  const windowS = Math.floor(result.endMs / 1000 - 0.5 - fromS);
  // Two scrapes after the load ends, so the final counter value is in the TSDB.
  await sleep(Math.max(0, result.endMs + 2500 - Date.now()));
  const prometheusTotal = await prom.queryScalar(`sum(${selector})`);
  const clientTotal = result.records;
  let clientRate = Number.NaN;
  let prometheusRate = Number.NaN;
  if (windowS >= 2) {
    const atS = fromS + windowS;
    prometheusRate = await prom.queryScalar(`sum(rate(${selector}[${windowS}s]))`, atS);
    const samples = await prom.querySamples(`${selector}[${windowS}s]`, atS);
    const first = samples[0];
    const last = samples[samples.length - 1];
    if (first !== undefined && last !== undefined && last[0] > first[0]) clientRate = rateBetween(result.timeline, first[0] * 1000, last[0] * 1000);
  }
  const haveRates = Number.isFinite(clientRate) && Number.isFinite(prometheusRate);
  const difference = haveRates ? relativeDifference(clientRate, prometheusRate) : relativeDifference(clientTotal, prometheusTotal);
  record.agreement = {
    metric,
    topic: result.job.topic,
    windowS: haveRates ? windowS : 0,
    clientRate,
    prometheusRate,
    difference,
    clientTotal,
    prometheusTotal,
    ok: difference <= AGREEMENT_TOLERANCE,
  };
  const startS = result.startMs / 1000;
  const series = await prom.queryRange(`sum(rate(${selector}[2s]))`, startS, result.endMs / 1000 + 1, 1);
  // Clipped to the load: a rate() window still holding load samples would draw a tail after the end.
  const lengthS = (result.endMs - result.startMs) / 1000;
  record.prometheusSeries = series.map(([t, v]) => [t - startS, v] as [number, number]).filter(([t]) => t <= lengthS + 0.5);
  record.server = await serverView(prom, result, windowS);
}

/** Server-side percentiles from the broker's own histograms over the run, beside the client's view. */
async function serverView(prom: PrometheusHandle, result: LoadResult, windowS: number): Promise<ServerView | undefined> {
  if (windowS < 2) return undefined;
  const atS = result.startMs / 1000 + 1 + windowS;
  const q = (expr: string) => prom.queryScalar(expr, atS).catch(() => Number.NaN);
  const rpc = result.job.kind === 'consume' ? 'Fetch' : 'Produce';
  return {
    rpc,
    requestP50Ms: 1000 * (await q(`histogram_quantile(0.5, sum by (le) (rate(sluice_request_duration_seconds_bucket{rpc="${rpc}"}[${windowS}s])))`)),
    requestP99Ms: 1000 * (await q(`histogram_quantile(0.99, sum by (le) (rate(sluice_request_duration_seconds_bucket{rpc="${rpc}"}[${windowS}s])))`)),
    flushP50Ms: 1000 * (await q(`histogram_quantile(0.5, sum by (le) (rate(sluice_log_flush_duration_seconds_bucket[${windowS}s])))`)),
    flushP99Ms: 1000 * (await q(`histogram_quantile(0.99, sum by (le) (rate(sluice_log_flush_duration_seconds_bucket[${windowS}s])))`)),
    flushesPerS: await q(`sum(rate(sluice_log_flush_duration_seconds_count[${windowS}s]))`),
    cpuCoresUsed: await q(`sum(rate(process_cpu_seconds_total[${windowS}s]))`),
    // Where a tail comes from: each thread's worst 1-second event-loop delay p99 and max over the run,
    // and the share of time its GC paused it.
    mainLoopDelayP99Ms: 1000 * (await q(`max_over_time(sluice_event_loop_delay_seconds{thread="main",quantile="0.99"}[${windowS}s])`)),
    mainLoopDelayMaxMs: 1000 * (await q(`max_over_time(sluice_event_loop_delay_max_seconds{thread="main"}[${windowS}s])`)),
    shardLoopDelayP99Ms: 1000 * (await q(`max(max_over_time(sluice_event_loop_delay_seconds{thread=~"shard-.*",quantile="0.99"}[${windowS}s]))`)),
    shardLoopDelayMaxMs: 1000 * (await q(`max(max_over_time(sluice_event_loop_delay_max_seconds{thread=~"shard-.*"}[${windowS}s]))`)),
    mainGcShare: await q(`sum(rate(sluice_gc_pause_seconds_sum{thread="main"}[${windowS}s]))`),
    shardGcShare: await q(`sum(rate(sluice_gc_pause_seconds_sum{thread=~"shard-.*"}[${windowS}s]))`),
  };
}

async function startServer(system: SystemName, logDir: string): Promise<ServerHandle> {
  if (system === 'sluice') return startSluice(REPO_ROOT, logDir);
  if (system === 'redis') return startRedis(logDir);
  return startNats(logDir);
}

interface PlannedLoad {
  label: string;
  kind: LoadKind;
  topic: string;
  create: boolean;
  ratePerS?: number;
}

function plan(config: Config, system: SystemName): PlannedLoad[] {
  const loads: PlannedLoad[] = [];
  const wantProduce = config.scenario === 'produce' || config.scenario === 'all';
  const wantConsume = config.scenario === 'consume' || config.scenario === 'all';
  // Consume reads what the raw produce wrote, so a consume-only run still produces first (unreported).
  if (wantProduce || wantConsume) loads.push({ label: wantProduce ? 'produce raw' : 'fill', kind: 'produce-raw', topic: 'bench-raw', create: true });
  // Redis and NATS have one record path: "structured" would repeat "raw", so it runs for Sluice only.
  if (wantProduce && system === 'sluice') loads.push({ label: 'produce structured', kind: 'produce-structured', topic: 'bench-structured', create: true });
  if (wantConsume) loads.push({ label: 'consume', kind: 'consume', topic: 'bench-raw', create: false });
  if (config.scenario === 'e2e' || config.scenario === 'all') {
    // A rate given twice (a cold and a warm broker at the same rate) gets a topic of its own.
    config.rates.forEach((rate, i) => {
      const again = config.rates.slice(0, i).filter((r) => r === rate).length;
      loads.push({ label: `e2e ${rate / 1000}k/s`, kind: 'e2e', topic: `bench-e2e-${rate}${again > 0 ? `-${again + 1}` : ''}`, create: true, ratePerS: rate });
    });
  }
  return loads;
}

async function benchSystem(config: Config, system: SystemName, logDir: string): Promise<RunRecord[]> {
  const records: RunRecord[] = [];
  const server = await startServer(system, logDir);
  let prom: PrometheusHandle | undefined;
  try {
    if (system === 'sluice') {
      prom = await startPrometheus(server.httpHostPort!, logDir);
      log(config, `  prometheus ${prom.url} scraping ${server.httpHostPort} every 1 s; waiting for the target to be up`);
      await waitForTargetUp(prom);
    }
    let produced = 0;
    for (const load of plan(config, system)) {
      const job: LoadJob = {
        system,
        port: server.port,
        kind: load.kind,
        topic: load.topic,
        create: load.create,
        durationS: config.durationS,
        recordBytes: config.recordBytes,
        recordsPerRequest: config.recordsPerRequest,
        inflight: system === 'sluice' ? config.sluiceInflight : 1,
        connections: system === 'sluice' ? config.sluiceConnections : 1,
        ratePerS: load.ratePerS,
        warmupS: load.kind === 'e2e' ? config.warmupS : undefined,
        totalRecords: load.kind === 'consume' ? produced : undefined,
        topicConfigs: system === 'sluice' ? config.sluiceConfigs : undefined,
      };
      let result: LoadResult;
      try {
        result = system === 'sluice' && config.client === 'python' ? await runPythonLoad(job, logDir) : await runLoad(job, process.env.SLUICE_BENCH_PROF ? logDir : undefined);
      } catch (err) {
        // One failed load (a peer that cannot keep up, a crash) is a row marked failed, not a lost run.
        const message = err instanceof Error ? err.message : String(err);
        log(config, `  ${system.padEnd(6)} ${load.label.padEnd(18)} FAILED: ${message}`);
        records.push({ system, label: load.label, ratePerS: Number.NaN, failed: message, result: { job, records: 0, bytes: 0, startMs: 0, endMs: 0, timeline: [], errors: [message] } });
        continue;
      }
      if (load.kind === 'produce-raw') produced = result.records;
      const seconds = (result.endMs - result.startMs) / 1000;
      const ratePerS = result.achievedRatePerS ?? (seconds > 0 ? result.records / seconds : 0);
      const record: RunRecord = { system, label: load.label, result, ratePerS };
      if (prom !== undefined) await checkAgreement(prom, record).catch((err: unknown) => log(config, `  agreement check failed: ${String(err)}`));
      log(config, `  ${system.padEnd(6)} ${load.label.padEnd(18)} ${formatRate(record.ratePerS).padStart(12)} rec/s${describeExtra(record)}`);
      if (load.label !== 'fill') records.push(record);
    }
  } finally {
    await prom?.stop();
    await server.stop();
  }
  return records;
}

function describeExtra(record: RunRecord): string {
  const parts: string[] = [];
  const lat = record.result.latency;
  if (lat) parts.push(`p50 ${lat.p50Ms.toFixed(2)} ms, p99 ${lat.p99Ms.toFixed(2)} ms, p99.9 ${lat.p999Ms.toFixed(2)} ms, missing ${record.result.missing}`);
  const cold = record.result.coldLatency;
  if (cold && (record.result.job.warmupS ?? 0) > 0) parts.push(`with the ${record.result.job.warmupS} s warm-up: p99 ${cold.p99Ms.toFixed(2)} ms, p99.9 ${cold.p999Ms.toFixed(2)} ms`);
  const st = record.result.stages;
  if (st) parts.push(`of which sent p50/p99 ${st.send.p50Ms.toFixed(2)}/${st.send.p99Ms.toFixed(2)} ms, acked ${st.ack.p50Ms.toFixed(2)}/${st.ack.p99Ms.toFixed(2)} ms (per request)`);
  const a = record.agreement;
  if (a) parts.push(`prometheus ${formatRate(a.prometheusRate)}/s vs client ${formatRate(a.clientRate)}/s (${(a.difference * 100).toFixed(1)}%${a.ok ? '' : ' DISAGREE'}), total ${a.prometheusTotal} vs ${a.clientTotal}`);
  if (record.result.self) parts.push(describeLoad(record.result.self));
  const v = record.server;
  if (v) parts.push(`server ${v.rpc} p50 ${v.requestP50Ms.toFixed(2)} ms p99 ${v.requestP99Ms.toFixed(2)} ms, flush p50 ${v.flushP50Ms.toFixed(2)} p99 ${v.flushP99Ms.toFixed(2)} ms at ${v.flushesPerS.toFixed(0)}/s, broker CPU ${v.cpuCoresUsed.toFixed(2)} cores, loop delay p99/max main ${v.mainLoopDelayP99Ms.toFixed(1)}/${v.mainLoopDelayMaxMs.toFixed(1)} ms shard ${v.shardLoopDelayP99Ms.toFixed(1)}/${v.shardLoopDelayMaxMs.toFixed(1)} ms, GC main ${(v.mainGcShare * 100).toFixed(1)}% shard ${(v.shardGcShare * 100).toFixed(1)}%`);
  if (record.result.errors.length > 0) parts.push(`errors: ${record.result.errors.slice(0, 3).join('; ')}`);
  return parts.length > 0 ? `  ${parts.join('  |  ')}` : '';
}

async function main(): Promise<void> {
  const config = parseConfig();
  const missing = (['prometheus', 'redis-server', 'nats-server'] as const).filter((b) => findBinary(b) === undefined);
  const needed = missing.filter((b) => (b === 'prometheus' && config.systems.includes('sluice')) || (b === 'redis-server' && config.systems.includes('redis')) || (b === 'nats-server' && config.systems.includes('nats')));
  if (needed.length > 0) throw new Error(`missing ${needed.join(', ')}: run bash bench/setup.sh`);

  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const runDir = join(config.outDir, `run-${stamp}`);
  mkdirSync(runDir, { recursive: true });
  log(config, `sluice bench: scenario ${config.scenario}, ${config.durationS} s per load${config.scenario === 'e2e' || config.scenario === 'all' ? ` (e2e after a ${config.warmupS} s warm-up)` : ''}, ${config.recordBytes}-byte records, ${config.recordsPerRequest} per request, Sluice ${config.sluiceInflight} in flight over ${config.sluiceConnections} connection(s) through the ${config.client === 'python' ? 'Python grpcio' : 'TypeScript'} client; machine load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; logs in ${runDir}`);
  const records: RunRecord[] = [];
  for (const system of config.systems) {
    log(config, `${system}:`);
    records.push(...(await benchSystem(config, system, runDir)));
  }
  const rows = buildTable(records);
  const document = { config, startedAt: stamp, table: rows, runs: records };
  writeFileSync(join(runDir, 'results.json'), JSON.stringify(document, null, 2));
  const html = renderHtml(document);
  writeFileSync(join(runDir, 'report.html'), html);
  writeFileSync(join(config.outDir, 'report.html'), html);
  if (config.json) process.stdout.write(`${JSON.stringify(document)}\n`);
  else log(config, `\n${formatTable(rows)}\n\nreport: ${join(runDir, 'report.html')}`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
