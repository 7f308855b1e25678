/**
 * The load-generator process: forked by bench/run.ts with one LoadJob as JSON in argv[2], it drives one
 * system through its driver and sends back one LoadResult over IPC. It runs in its own process so the
 * broker and the load never share an event loop.
 *
 * e2e latency: each value carries its *intended* send time (start + i / rate) in its first 8 bytes, and
 * the subscriber (same process, same monotonic clock) records receive time minus intended time. Using the
 * intended time, not the actual one, keeps a stalled producer from hiding latency (coordinated omission).
 *
 * Every load also reports this process's own CPU and event-loop delay over its measured part
 * (../load-probe.ts): an e2e figure from a load process whose loop stalled includes its own stalls
 * (late sends, late reads), and the report marks it.
 */
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { createDriver, randomValues, type Driver } from './drivers.js';
import { LoadProbe } from '../load-probe.js';
import type { LatencySummary, LoadJob, LoadMessage, LoadResult } from './types.js';

const TIMELINE_INTERVAL_MS = 100;
/** e2e: how long the subscriber may take to catch up after the producer stops. */
const E2E_DRAIN_MS = 5000;
/**
 * e2e: most records sent but not yet acknowledged before the pacer waits (half a second at 100k/s). Bounds
 * memory and the peer's queue; a record held back still counts its latency from its intended send time.
 */
const E2E_OUTSTANDING_RECORDS_MAX = 50_000;
/** e2e: most records in one paced request. */
const E2E_BATCH_MAX = 5000;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function startTimeline(counter: () => number): { samples: Array<[number, number]>; stop(): void } {
  const samples: Array<[number, number]> = [[Date.now(), counter()]];
  const timer = setInterval(() => samples.push([Date.now(), counter()]), TIMELINE_INTERVAL_MS);
  return {
    samples,
    stop() {
      clearInterval(timer);
      samples.push([Date.now(), counter()]);
    },
  };
}

/** Throughput: keep `inflight` copies of one pre-built request outstanding until the duration is up. */
async function runProduce(driver: Driver, job: LoadJob, result: LoadResult): Promise<void> {
  const send = driver.staticSender();
  let acked = 0;
  const timeline = startTimeline(() => acked);
  result.startMs = Date.now();
  const deadline = result.startMs + job.durationS * 1000;
  const lane = async (): Promise<void> => {
    for (let i = 0; Date.now() < deadline && i < 100_000_000; i++) {
      await send();
      acked += job.recordsPerRequest;
    }
  };
  await Promise.all(Array.from({ length: job.inflight }, lane));
  result.endMs = Date.now();
  timeline.stop();
  result.records = acked;
  result.bytes = acked * job.recordBytes;
  result.timeline = timeline.samples;
}

async function runConsume(driver: Driver, job: LoadJob, result: LoadResult): Promise<void> {
  let seen = 0;
  const timeline = startTimeline(() => seen);
  result.startMs = Date.now();
  await driver.consumeAll(job.totalRecords ?? 0, result.startMs + job.durationS * 3000, (n) => (seen += n));
  result.endMs = Date.now();
  timeline.stop();
  result.records = seen;
  result.bytes = seen * job.recordBytes;
  result.timeline = timeline.samples;
}

async function runE2e(driver: Driver, job: LoadJob, result: LoadResult): Promise<void> {
  const rate = job.ratePerS ?? 10_000;
  const newHistogram = (): hdr.Histogram => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
  const histogram = newHistogram();
  const coldHistogram = newHistogram();
  const sendStage = newHistogram();
  const ackStage = newHistogram();
  const recordUs = (h: hdr.Histogram, ms: number): void => h.recordValue(Math.max(1, Math.round(ms * 1000)));
  let received = 0;
  // Records due before this are the warm-up's: counted in coldHistogram only (set once the pacing starts).
  let measuredFrom = Infinity;
  const subscription = await driver.subscribe((bytes, start) => {
    if (bytes.length - start < 8) return;
    const sentAt = bytes.readDoubleLE(start);
    const us = Math.max(1, Math.round((performance.now() - sentAt) * 1000));
    coldHistogram.recordValue(us);
    if (sentAt >= measuredFrom) histogram.recordValue(us);
    received++;
  });
  await sleep(200); // Let the subscription reach the server before the first record.

  const pool = randomValues(1024, job.recordBytes);
  let sent = 0;
  let acked = 0;
  let failed = 0;
  let inflight = 0;
  // The timeline counts acknowledged records: that is what the broker's produced counter can agree with.
  const timeline = startTimeline(() => acked);
  const start = performance.now();
  const warmupS = job.warmupS ?? 0;
  measuredFrom = start + warmupS * 1000;
  result.startMs = Date.now();
  const total = Math.floor(rate * (warmupS + job.durationS));
  // A system that cannot keep up must not stretch the run without bound: stop sending at the deadline
  // (plus a little slack) and report the rate it actually reached.
  const sendDeadline = start + (warmupS + job.durationS) * 1000 + 1000;
  const failures: string[] = [];
  for (let tick = 0; sent < total && performance.now() < sendDeadline && tick < 10_000_000; tick++) {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000));
    if (due > sent && sent - acked - failed < E2E_OUTSTANDING_RECORDS_MAX) {
      const n = Math.min(due - sent, E2E_BATCH_MAX);
      const values: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        const value = Buffer.from(pool[(sent + i) % pool.length]!);
        value.writeDoubleLE(start + ((sent + i) * 1000) / rate, 0);
        values.push(value);
      }
      const intended = start + (sent * 1000) / rate;
      const measured = intended >= measuredFrom;
      sent += n;
      inflight++;
      if (measured) recordUs(sendStage, performance.now() - intended);
      driver.sendValues(values).then(
        () => {
          if (measured) recordUs(ackStage, performance.now() - intended);
          inflight--;
          acked += n;
        },
        (err: unknown) => {
          inflight--;
          failed += n;
          if (failures.length < 10) failures.push(String(err));
        },
      );
    }
    await sleep(1);
  }
  const sentEndMs = Date.now();
  const drainDeadline = Date.now() + E2E_DRAIN_MS;
  for (let i = 0; (received < sent || inflight > 0) && Date.now() < drainDeadline && i < 100_000; i++) await sleep(10);
  result.endMs = Date.now();
  timeline.stop();
  await subscription.stop();
  result.records = acked;
  result.sent = sent;
  result.achievedRatePerS = (sent * 1000) / Math.max(1, sentEndMs - result.startMs);
  result.bytes = acked * job.recordBytes;
  result.timeline = timeline.samples;
  result.missing = sent - received;
  result.errors.push(...failures);
  result.latency = summarize(histogram);
  result.coldLatency = summarize(coldHistogram);
  result.stages = { send: summarize(sendStage), ack: summarize(ackStage) };
}

function summarize(h: hdr.Histogram): LatencySummary {
  const ms = (us: number): number => us / 1000;
  return {
    count: h.totalCount,
    p50Ms: ms(h.getValueAtPercentile(50)),
    p99Ms: ms(h.getValueAtPercentile(99)),
    p999Ms: ms(h.getValueAtPercentile(99.9)),
    maxMs: ms(h.maxValue),
  };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
  const result: LoadResult = { job, records: 0, bytes: 0, startMs: 0, endMs: 0, timeline: [], errors: [] };
  // A promise that never settles with no handle left would let the process exit silently with no
  // result; this timer keeps it alive so the orchestrator's timeout reports it instead.
  const keepAlive = setInterval(() => undefined, 60_000);
  const driver = await createDriver(job);
  const probe = new LoadProbe();
  try {
    if (job.create) await driver.setup();
    probe.start();
    if (job.kind === 'consume') await runConsume(driver, job, result);
    else if (job.kind === 'e2e') await runE2e(driver, job, result);
    else await runProduce(driver, job, result);
    result.self = probe.stop();
  } finally {
    await driver.close();
    clearInterval(keepAlive);
  }
  send({ type: 'result', result });
}

function send(message: LoadMessage): void {
  if (process.send === undefined) {
    console.log(JSON.stringify(message));
    process.exit(0);
  }
  process.send(message, () => process.exit(0));
}

main().catch((err: unknown) => {
  send({ type: 'error', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
});
