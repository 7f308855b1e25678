/**
 * Goal: after N records are produced through the real server (gRPC front-end, shard workers, logs), the
 * broker's /metrics, scraped over HTTP, says exactly N, and the request histogram counted every call.
 * Method: start a whole broker in-process with startBroker on free loopback ports (port 0), wired to
 * createMetrics() exactly as `sluice serve` does; produce with Sluice's own client (raw batches and
 * structured records); fetch everything back; scrape /metrics with fetch().
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { Admin, Producer } from '../../src/client/index.js';
import { createMetrics, type SluiceMetrics } from '../../src/metrics/index.js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import * as grpc from '@grpc/grpc-js';
import { BrokerClient } from '../../src/rpc/index.js';
import { sampleValue } from './exposition.js';

describe('metrics of a running broker', () => {
  let dir: string;
  let metrics: SluiceMetrics;
  let running: RunningBroker;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-metrics-'));
    metrics = createMetrics();
    running = await startBroker({
      dataDir: dir,
      grpcAddress: '127.0.0.1:0',
      httpAddress: '127.0.0.1:0',
      shards: 1,
      probe: metrics.probe,
      metricsHandler: (req, res) => metrics.handler(req, res),
    });
  });

  afterAll(async () => {
    await running?.close();
    metrics?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const scrape = async (): Promise<string> => {
    const res = await fetch(`http://${running.httpAddress}/metrics`, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(metrics.contentType);
    return res.text();
  };

  it('counts exactly the records produced through gRPC, raw and structured', async () => {
    const admin = new Admin({ brokers: running.grpcAddress });
    const raw = new Producer({ brokers: running.grpcAddress, acks: 'all' });
    const structured = new Producer({ brokers: running.grpcAddress, acks: 'all', format: 'records' });
    try {
      await admin.createTopic('metrics-raw', { partitions: 2 });
      await admin.createTopic('metrics-structured', { partitions: 1 });
      const value = Buffer.alloc(100, 7);
      const requests = 37;
      const perRequest = 250;
      let rawBytes = 0;
      for (let i = 0; i < requests; i++) {
        const batch = encodeBatch(Array.from({ length: perRequest }, () => ({ key: null, value })));
        rawBytes += batch.length;
        await raw.produceRaw('metrics-raw', i % 2, batch);
      }
      const structuredCount = 1013;
      for (let i = 0; i < structuredCount; i += 100) {
        const n = Math.min(100, structuredCount - i);
        await structured.produceBatch('metrics-structured', Array.from({ length: n }, () => ({ value })), { partition: 0 });
      }

      const text = await scrape();
      expect(sampleValue(text, 'sluice_records_produced_total', { topic: 'metrics-raw' })).toBe(requests * perRequest);
      expect(sampleValue(text, 'sluice_bytes_produced_total', { topic: 'metrics-raw' })).toBe(rawBytes);
      expect(sampleValue(text, 'sluice_records_produced_total', { topic: 'metrics-structured' })).toBe(structuredCount);
      expect(sampleValue(text, 'sluice_request_duration_seconds_count', { rpc: 'Produce' })).toBeGreaterThanOrEqual(requests + 11);
      expect(sampleValue(text, 'sluice_build_info')).toBe(1);
      expect(text).toMatch(/^process_cpu_seconds_total /m);

      // Fetch the structured topic back to its end: the fetched counter must equal what came back.
      let offset = 0;
      let returned = 0;
      // The records follow the first term's no-op at 0, so the end is structuredCount + 1.
      for (let i = 0; offset < structuredCount + 1 && i < 1000; i++) {
        const r = await running.broker.fetch({ topic: 'metrics-structured', partition: 0, offset, maxBytes: 1 << 20, maxWaitMs: 0 });
        for (const batch of decodeBatches(r.batches)) if (!batch.header.isControl) returned += batch.records.length;
        offset = r.nextOffset;
      }
      expect(offset).toBe(structuredCount + 1);
      expect(returned).toBeGreaterThanOrEqual(structuredCount);
      expect(sampleValue(await scrape(), 'sluice_records_fetched_total', { topic: 'metrics-structured' })).toBe(returned);

      // Shard and partition gauges arrive with the periodic stats message (about once a second).
      let last = '';
      for (let i = 0; i < 50; i++) {
        last = await scrape();
        if ((sampleValue(last, 'sluice_log_size_bytes', { topic: 'metrics-raw' }) ?? 0) > rawBytes - 1) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expect(sampleValue(last, 'sluice_log_size_bytes', { topic: 'metrics-raw' })).toBeGreaterThanOrEqual(rawBytes);
      expect(sampleValue(last, 'sluice_shard_queue_depth', { shard: '0' })).toBeDefined();
      expect(sampleValue(last, 'sluice_log_flush_duration_seconds_count')).toBeGreaterThan(0);

      // The live exposition passes promtool's lint for every sluice_* metric (skip loudly without it).
      const check = spawnSync('promtool', ['check', 'metrics'], { input: last, encoding: 'utf8', timeout: 30_000 });
      if (check.error !== undefined) {
        if (process.env.CI) throw new Error('promtool is missing in CI: .ci/run must apt-get install prometheus');
        console.warn('\n*** SKIPPED live promtool check: promtool not found (apt-get install -y prometheus) ***\n');
      } else {
        // The whole endpoint, Node's default process metrics included, lints clean (exit 0).
        expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
        expect(check.status).toBe(0);
      }
    } finally {
      await raw.close();
      await structured.close();
      admin.close();
    }
  });

  it('tells client cancels from errors, and keeps long-polls and streams out of the unary histogram', async () => {
    const admin = new Admin({ brokers: running.grpcAddress });
    const producer = new Producer({ brokers: running.grpcAddress });
    const client = new BrokerClient(running.grpcAddress, grpc.credentials.createInsecure());
    try {
      await admin.createTopic('metrics-cancel', { partitions: 1 });
      await producer.send('metrics-cancel', { value: 'x', partition: 0 });
      const before = await scrape();
      const fetchHistogram = sampleValue(before, 'sluice_request_duration_seconds_count', { rpc: 'Fetch' }) ?? 0;
      const fetchErrors = sampleValue(before, 'sluice_request_errors_total', { rpc: 'Fetch', code: 'NOT_FOUND' }) ?? 0;

      // A long-poll the client gives up on (its deadline passes while the broker waits for data).
      const gaveUp = await new Promise<grpc.ServiceError | null>((resolve) =>
        // 'x' is at 1 (0 is the first term's no-op): wait at 2.
        client.fetch({ topic: 'metrics-cancel', partition: 0, offset: 2n, maxBytes: 0, maxWaitMs: 20_000, raw: true }, new grpc.Metadata(), { deadline: Date.now() + 500 }, (err) => resolve(err)),
      );
      expect(gaveUp?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      // A Subscribe the client cancels after its first message (Ctrl-C on `consume -o end`).
      const stream = client.subscribe({ topic: 'metrics-cancel', partition: 0, offset: 0n, maxBytes: 0, raw: true });
      await new Promise<void>((resolve, reject) => {
        stream.once('data', () => resolve());
        stream.once('error', reject);
      });
      stream.on('error', () => {}); // the cancel surfaces here as CANCELLED on the client side
      stream.cancel();
      // An error: a fetch of a topic that does not exist.
      const missing = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.fetch({ topic: 'metrics-nope', partition: 0, offset: 0n, maxBytes: 0, maxWaitMs: 0, raw: true }, (err) => resolve(err)),
      );
      expect(missing?.code).toBe(grpc.status.NOT_FOUND);

      // The broker reports a cancel when its handler ends; wait for it (bounded), not for a fixed time.
      let text = '';
      for (let i = 0; i < 100; i++) {
        text = await scrape();
        const fetchCancels = sampleValue(text, 'sluice_requests_total', { rpc: 'Fetch', code: 'CANCELLED' }) ?? 0;
        const subscribeCancels = sampleValue(text, 'sluice_requests_total', { rpc: 'Subscribe', code: 'CANCELLED' }) ?? 0;
        if (fetchCancels >= 1 && subscribeCancels >= 1) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(sampleValue(text, 'sluice_requests_total', { rpc: 'Fetch', code: 'CANCELLED' })).toBe(1);
      expect(sampleValue(text, 'sluice_requests_total', { rpc: 'Subscribe', code: 'CANCELLED' })).toBe(1);
      expect(sampleValue(text, 'sluice_request_errors_total', { rpc: 'Fetch', code: 'CANCELLED' })).toBeUndefined();
      expect(sampleValue(text, 'sluice_request_errors_total', { rpc: 'Fetch', code: 'UNAVAILABLE' })).toBeUndefined();
      expect(sampleValue(text, 'sluice_request_errors_total', { rpc: 'Subscribe' })).toBeUndefined();
      expect(sampleValue(text, 'sluice_request_errors_total', { rpc: 'Fetch', code: 'NOT_FOUND' })).toBe(fetchErrors + 1);
      // The NOT_FOUND fetch (max_wait_ms 0) is timed; the long-poll and the stream are not.
      expect(sampleValue(text, 'sluice_request_duration_seconds_count', { rpc: 'Fetch' })).toBe(fetchHistogram + 1);
      expect(sampleValue(text, 'sluice_request_duration_seconds_count', { rpc: 'Subscribe' })).toBeUndefined();
      expect(sampleValue(text, 'sluice_stream_duration_seconds_count', { rpc: 'Subscribe' })).toBe(1);
    } finally {
      client.close();
      await producer.close();
      admin.close();
    }
  });
});
