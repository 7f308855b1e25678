/**
 * Goal: the benchmark harness's own arithmetic is right, so its table can be trusted: the RESP parser
 * (pipelined and split replies), timeline rates, the agreement metric, and the targets in the table.
 * Method: pure functions on hand-made inputs; the RESP client against a fake server on a free port.
 * (Lives in test/metrics because the harness belongs to the observability work of issue 6.)
 */
import { describe, expect, it } from 'vitest';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { encodeCommand, RespClient } from '../../bench/harness/resp.js';
import { countAt, rateBetween, rateSeries, relativeDifference } from '../../bench/harness/stats.js';
import { buildTable } from '../../bench/harness/table.js';
import type { LoadJob, RunRecord, SystemName } from '../../bench/harness/types.js';
import { isStalled, LoadProbe, LOAD_STALL_MAX_MS, LOAD_STALL_P99_MS, median } from '../../bench/load-probe.js';

describe('RESP client', () => {
  it('encodes commands as arrays of bulk strings', () => {
    expect(encodeCommand(['XADD', 's', '*', 'v', Buffer.from('ab')]).toString()).toBe('*5\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n*\r\n$1\r\nv\r\n$2\r\nab\r\n');
  });

  it('matches pipelined replies split across arbitrary chunks, nested arrays and errors included', async () => {
    const replies = '$3\r\n1-1\r\n$3\r\n1-2\r\n*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nv\r\n$2\r\nhi\r\n-ERR nope\r\n:5\r\n';
    const server = createServer((socket: Socket) => {
      socket.once('data', () => {
        // Dribble the replies out a few bytes at a time, so every parse boundary gets exercised.
        let i = 0;
        const timer = setInterval(() => {
          socket.write(replies.slice(i, i + 3));
          i += 3;
          if (i >= replies.length) clearInterval(timer);
        }, 1);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = await RespClient.connect((server.address() as AddressInfo).port);
    try {
      const added = client.send(Buffer.concat([encodeCommand(['XADD']), encodeCommand(['XADD'])]), 2, true);
      const read = client.send(encodeCommand(['XREAD']), 1, true);
      const failed = client.send(encodeCommand(['BAD']), 1, true);
      const counted = client.send(encodeCommand(['XLEN']), 1, true);
      expect((await added).map(String)).toEqual(['1-1', '1-2']);
      const [xread] = await read;
      expect(JSON.stringify(xread, (_k, v) => (v?.type === 'Buffer' ? Buffer.from(v.data).toString() : v))).toBe('[["s",[["1-1",["v","hi"]]]]]');
      await expect(failed).rejects.toThrow('ERR nope');
      expect(await counted).toEqual([5]);
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('timeline arithmetic', () => {
  const timeline: Array<[number, number]> = [[1000, 0], [2000, 100], [3000, 300], [4000, 300]];

  it('interpolates counts and rates between samples', () => {
    expect(countAt(timeline, 500)).toBe(0);
    expect(countAt(timeline, 2500)).toBe(200);
    expect(countAt(timeline, 9000)).toBe(300);
    expect(rateBetween(timeline, 2000, 3000)).toBe(200);
    expect(rateBetween(timeline, 1000, 4000)).toBe(100);
    expect(rateSeries(timeline, 1000, 3000, 1000)).toEqual([[1, 100], [2, 200]]);
  });

  it('measures disagreement relative to the larger figure', () => {
    expect(relativeDifference(100, 95)).toBeCloseTo(0.05, 9);
    expect(relativeDifference(0, 0)).toBe(0);
  });
});

describe('side-by-side table', () => {
  const job = (system: SystemName, kind: LoadJob['kind'], ratePerS?: number): LoadJob => ({
    system, port: 1, kind, topic: 't', create: true, durationS: 10, recordBytes: 100, recordsPerRequest: 1000, inflight: 1, ratePerS,
  });
  const run = (system: SystemName, label: string, kind: LoadJob['kind'], rate: number, extra: Partial<RunRecord> = {}): RunRecord => ({
    system, label, ratePerS: rate, result: { job: job(system, kind, kind === 'e2e' ? 50_000 : undefined), records: 0, bytes: 0, startMs: 0, endMs: 0, timeline: [], errors: [] }, ...extra,
  });

  it('puts each target beside its figure and says whether it is met', () => {
    const rows = buildTable([
      run('sluice', 'produce raw', 'produce-raw', 1_300_000, { agreement: { metric: 'm', topic: 't', windowS: 8, clientRate: 100, prometheusRate: 97, difference: 0.03, clientTotal: 1, prometheusTotal: 1, ok: true } }),
      run('sluice', 'produce structured', 'produce-structured', 300_000),
      run('redis', 'produce raw', 'produce-raw', 400_000),
      run('nats', 'produce raw', 'produce-raw', 20_000),
    ]);
    const raw = rows.find((r) => r.what.startsWith('produce raw'))!;
    expect(raw.vsRedis).toBe('3.25x');
    expect(raw.vsNats).toBe('65.00x');
    expect(raw.met).toBe('yes');
    expect(rows.find((r) => r.what.startsWith('produce structured'))!.met).toBe('NO');
    expect(rows.find((r) => r.what.startsWith('Prometheus'))!.met).toBe('yes');
  });

  it('marks a failed load as failed instead of dropping the row', () => {
    const rows = buildTable([run('sluice', 'produce raw', 'produce-raw', 1_300_000), { ...run('redis', 'produce raw', 'produce-raw', Number.NaN), failed: 'timed out' }]);
    const raw = rows.find((r) => r.what.startsWith('produce raw'))!;
    expect(raw.redis).toBe('failed');
    expect(raw.met).toBe('?');
  });

  it('fails the e2e target on p99 above 10 ms or on lost records', () => {
    const e2e = (p99: number, missing: number) =>
      buildTable([{ ...run('sluice', 'e2e 50k/s', 'e2e', 50_000), result: { ...run('sluice', 'e2e 50k/s', 'e2e', 50_000).result, missing, latency: { count: 1, p50Ms: 1, p99Ms: p99, p999Ms: p99, maxMs: p99 } } }]).find((r) => r.what.startsWith('e2e'))!.met;
    expect(e2e(9.9, 0)).toBe('yes');
    expect(e2e(10.1, 0)).toBe('NO');
    expect(e2e(2, 5)).toBe('NO');
  });

  it('holds 10k/s to p99 <= 5 ms and both rates to p99.9 <= 20 ms', () => {
    const met = (rate: number, p99: number, p999: number) => {
      const base = run('sluice', `e2e ${rate / 1000}k/s`, 'e2e', rate);
      const job = { ...base.result.job, ratePerS: rate };
      return buildTable([{ ...base, result: { ...base.result, job, missing: 0, latency: { count: 1, p50Ms: 1, p99Ms: p99, p999Ms: p999, maxMs: p999 } } }]).find((r) => r.what.startsWith('e2e'))!.met;
    };
    expect(met(10_000, 4.9, 19)).toBe('yes');
    expect(met(10_000, 5.1, 19)).toBe('NO');
    expect(met(50_000, 9, 21)).toBe('NO');
  });

  it('says when the load process itself stalled, beside the figure', () => {
    const self = { cpuCores: 0.9, loopDelayP50Ms: 1, loopDelayP99Ms: 30, loopDelayMaxMs: 80, stalled: true };
    const base = run('sluice', 'e2e 50k/s', 'e2e', 50_000);
    const rows = buildTable([
      { ...base, result: { ...base.result, self, missing: 0, latency: { count: 1, p50Ms: 1, p99Ms: 2, p999Ms: 3, maxMs: 3 } } },
      { ...run('sluice', 'produce raw', 'produce-raw', 1_000_000), result: { ...run('sluice', 'produce raw', 'produce-raw', 1).result, self } },
    ]);
    expect(rows.find((r) => r.what.startsWith('e2e'))!.sluice).toContain('load stalled');
    expect(rows.find((r) => r.what.startsWith('produce raw'))!.sluice).toContain('(load stalled)');
  });
});

describe('load probe', () => {
  it('calls a load stalled by its loop delay p99 or its worst delay, and takes true medians', () => {
    expect(isStalled({ loopDelayP99Ms: 1, loopDelayMaxMs: 10 })).toBe(false);
    expect(isStalled({ loopDelayP99Ms: LOAD_STALL_P99_MS + 0.1, loopDelayMaxMs: 10 })).toBe(true);
    expect(isStalled({ loopDelayP99Ms: 1, loopDelayMaxMs: LOAD_STALL_MAX_MS + 1 })).toBe(true);
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('sees a blocked event loop in the process it runs in', async () => {
    const probe = new LoadProbe();
    probe.start();
    const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
    // The delay monitor measures between its own samples, so let it take a few before the block.
    await tick(50);
    const until = performance.now() + LOAD_STALL_MAX_MS * 2;
    while (performance.now() < until) {
      // Block the loop on purpose: the probe must report it.
    }
    await tick(50);
    const r = probe.stop();
    expect(r.loopDelayMaxMs).toBeGreaterThan(LOAD_STALL_MAX_MS);
    expect(r.stalled).toBe(true);
    expect(r.cpuCores).toBeGreaterThan(0);
  });
});
