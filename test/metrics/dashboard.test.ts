/**
 * Goal: the Grafana dashboard (k8s/grafana/sluice-dashboard.json) only queries metrics that Sluice
 * exports, and every query is valid PromQL.
 * Method: collect the metric names in each panel's expression and look them up in a rendered
 * exposition; write the expressions (Grafana variables replaced) as recording rules and run
 * `promtool check rules` on them.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMetrics } from '../../src/metrics/index.js';

interface Panel {
  title: string;
  targets?: Array<{ expr: string }>;
}

const dashboard = JSON.parse(readFileSync(new URL('../../k8s/grafana/sluice-dashboard.json', import.meta.url), 'utf8')) as { panels: Panel[] };
const expressions = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
const concrete = (expr: string): string => expr.replaceAll('$__rate_interval', '1m').replaceAll('$instance', '.*').replaceAll('$topic', '.*');

describe('Grafana dashboard', () => {
  it('ships the same JSON in the Helm chart (k8s/charts/sluice/dashboards)', () => {
    const inChart = readFileSync(new URL('../../k8s/charts/sluice/dashboards/sluice-dashboard.json', import.meta.url), 'utf8');
    const source = readFileSync(new URL('../../k8s/grafana/sluice-dashboard.json', import.meta.url), 'utf8');
    expect(inChart, 'copy k8s/grafana/sluice-dashboard.json into the chart').toBe(source);
  });

  it('has the panels an operator needs', () => {
    const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const word of ['produced', 'fetched', 'latency', 'flush', 'lag', 'queue depth', 'event-loop delay', 'gc pause']) expect(titles).toContain(word);
  });

  it('queries only metrics that Sluice exports', async () => {
    const m = createMetrics({ partitionSeries: true });
    m.probe.produced('t', 1, 1);
    m.probe.fetched('t', 1, 1);
    m.probe.requestFinished('Produce', 'unary', 0.001, 'UNAVAILABLE');
    m.probe.requestFinished('Subscribe', 'stream', 1, 'OK');
    m.probe.logFlushed(0.001);
    m.probe.partitionStats('t', 0, { sizeBytes: 1, highWatermark: 1, logStartOffset: 0 });
    m.probe.consumerGroupLag('g', 't', 1);
    m.probe.shardStats(0, { queueDepth: 1, eventLoopLagSeconds: 0 });
    m.probe.threadStats!('main', { loopDelay: { count: 1, sumSeconds: 0, p50: 0, p99: 0, p999: 0, max: 0 }, gcPauses: [['minor', 0.001]], gcPausesDropped: 0 });
    const exported = new Set((await m.render()).split('\n').filter((l) => l.length > 0 && !l.startsWith('#')).map((l) => l.split(/[{ ]/)[0]));
    m.close();
    expect(expressions.length).toBeGreaterThan(10);
    for (const { title, expr } of expressions) {
      const names = [...expr.matchAll(/\b((?:sluice|process|nodejs)_[a-z0-9_]+)/g)].map((x) => x[1]!);
      expect(names.length, `${title}: ${expr}`).toBeGreaterThan(0);
      for (const name of names) expect(exported.has(name), `${title}: ${name} is not exported`).toBe(true);
    }
  });

  it('is valid PromQL (promtool check rules)', () => {
    if (spawnSync('promtool', ['--version']).error !== undefined) {
      if (process.env.CI) throw new Error('promtool is missing in CI: .ci/run must apt-get install prometheus');
      console.warn('\n*** SKIPPED dashboard PromQL check: promtool not found (apt-get install -y prometheus) ***\n');
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'sluice-dash-'));
    try {
      const rules = ['groups:', '  - name: dashboard', '    rules:'];
      expressions.forEach(({ expr }, i) => rules.push(`      - record: dashboard:expr${i}`, `        expr: ${JSON.stringify(concrete(expr))}`));
      writeFileSync(join(dir, 'rules.yml'), `${rules.join('\n')}\n`);
      const check = spawnSync('promtool', ['check', 'rules', join(dir, 'rules.yml')], { encoding: 'utf8', timeout: 30_000 });
      expect(check.status, `${check.stdout}\n${check.stderr}`).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
