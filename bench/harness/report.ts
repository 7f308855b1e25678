/**
 * The HTML report: the side-by-side table, throughput over time (client count, and Prometheus rate()
 * for Sluice) and e2e latency percentiles, as inline SVG so the file opens anywhere with no scripts.
 */
import type { RunRecord } from './types.js';
import type { TableRow } from './table.js';
import { rateSeries } from './stats.js';

interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Array<[number, number]>;
}

const COLORS: Record<string, string> = { sluice: '#1f77b4', redis: '#d62728', nats: '#2ca02c' };
const W = 760;
const H = 300;
const PAD = { left: 70, right: 170, top: 30, bottom: 40 };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return `${+n.toFixed(2)}`;
}

export function lineChart(title: string, series: Series[], xLabel: string, yLabel: string): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xMax = niceMax(Math.max(1, ...xs));
  const yMax = niceMax(Math.max(1, ...ys));
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom;
  const x = (v: number) => PAD.left + (v / xMax) * pw;
  const y = (v: number) => PAD.top + ph - (v / yMax) * ph;
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`];
  parts.push(`<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`);
  for (let i = 0; i <= 5; i++) {
    const v = (yMax * i) / 5;
    parts.push(`<line x1="${PAD.left}" x2="${PAD.left + pw}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/>`);
    parts.push(`<text x="${PAD.left - 6}" y="${y(v) + 4}" text-anchor="end">${fmt(v)}</text>`);
    const xv = (xMax * i) / 5;
    parts.push(`<text x="${x(xv)}" y="${PAD.top + ph + 16}" text-anchor="middle">${fmt(xv)}</text>`);
  }
  parts.push(`<line x1="${PAD.left}" x2="${PAD.left}" y1="${PAD.top}" y2="${PAD.top + ph}" stroke="#888"/>`);
  parts.push(`<line x1="${PAD.left}" x2="${PAD.left + pw}" y1="${PAD.top + ph}" y2="${PAD.top + ph}" stroke="#888"/>`);
  parts.push(`<text x="${PAD.left + pw / 2}" y="${H - 6}" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(`<text transform="translate(14 ${PAD.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`);
  series.forEach((s, i) => {
    if (s.points.length > 0) {
      const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
      parts.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    }
    const ly = PAD.top + 10 + i * 16;
    parts.push(`<line x1="${W - PAD.right + 10}" x2="${W - PAD.right + 30}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    parts.push(`<text x="${W - PAD.right + 34}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

/** Grouped bars on a log scale: one group per (rate, system), bars p50 / p99 / p99.9. */
export function latencyChart(records: RunRecord[]): string {
  const runs = records.filter((r) => r.result.latency !== undefined);
  if (runs.length === 0) return '';
  const pw = W - PAD.left - PAD.right;
  const ph = H - PAD.top - PAD.bottom - 20;
  const all = runs.flatMap((r) => [r.result.latency!.p50Ms, r.result.latency!.p99Ms, r.result.latency!.p999Ms]);
  const lo = Math.min(0.1, ...all.map((v) => Math.max(v, 0.01)));
  const hi = niceMax(Math.max(...all, 10));
  const logLo = Math.floor(Math.log10(lo));
  const logHi = Math.ceil(Math.log10(hi));
  const y = (v: number) => PAD.top + ph - ((Math.log10(Math.max(v, 10 ** logLo)) - logLo) / (logHi - logLo)) * ph;
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`];
  parts.push(`<text x="${W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">Produce-to-receive latency (ms, log scale): p50 / p99 / p99.9</text>`);
  for (let e = logLo; e <= logHi; e++) {
    parts.push(`<line x1="${PAD.left}" x2="${PAD.left + pw}" y1="${y(10 ** e)}" y2="${y(10 ** e)}" stroke="#eee"/>`);
    parts.push(`<text x="${PAD.left - 6}" y="${y(10 ** e) + 4}" text-anchor="end">${fmt(10 ** e)}</text>`);
  }
  const groupW = pw / runs.length;
  const barW = Math.max(3, Math.min(18, (groupW - 8) / 3));
  const shades = [0.45, 0.75, 1];
  runs.forEach((r, g) => {
    const l = r.result.latency!;
    const gx = PAD.left + g * groupW + (groupW - 3 * barW) / 2;
    [l.p50Ms, l.p99Ms, l.p999Ms].forEach((v, k) => {
      const top = y(v);
      parts.push(`<rect x="${(gx + k * barW).toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 1).toFixed(1)}" height="${(PAD.top + ph - top).toFixed(1)}" fill="${COLORS[r.system]}" fill-opacity="${shades[k]}"><title>${esc(`${r.system} ${r.label} p${['50', '99', '99.9'][k]}: ${v.toFixed(2)} ms`)}</title></rect>`);
    });
    parts.push(`<text x="${(PAD.left + g * groupW + groupW / 2).toFixed(1)}" y="${PAD.top + ph + 14}" text-anchor="middle">${esc(r.system)}</text>`);
    parts.push(`<text x="${(PAD.left + g * groupW + groupW / 2).toFixed(1)}" y="${PAD.top + ph + 28}" text-anchor="middle">${esc(r.label.replace('e2e ', ''))}</text>`);
  });
  parts.push(`<line x1="${PAD.left}" x2="${PAD.left + pw}" y1="${y(10)}" y2="${y(10)}" stroke="#000" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="${PAD.left + pw + 6}" y="${y(10) + 4}">10 ms target (50k/s)</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}

export function renderHtml(doc: { config: unknown; startedAt: string; table: TableRow[]; runs: RunRecord[] }): string {
  const charts: string[] = [];
  const kinds = [...new Set(doc.runs.map((r) => r.label))];
  for (const label of kinds) {
    const runs = doc.runs.filter((r) => r.label === label);
    const series: Series[] = [];
    for (const r of runs) {
      series.push({ name: `${r.system} (client)`, color: COLORS[r.system] ?? '#555', points: rateSeries(r.result.timeline, r.result.startMs, r.result.endMs) });
      if (r.prometheusSeries) series.push({ name: `${r.system} (Prometheus rate)`, color: '#ff7f0e', dashed: true, points: r.prometheusSeries.filter(([t]) => t >= 0) });
    }
    charts.push(lineChart(`${label}: throughput over time`, series, 'seconds', 'records/s'));
  }
  const latency = latencyChart(doc.runs);
  const headers = ['scenario', 'Sluice', 'Redis Streams', 'NATS JetStream', 'vs Redis', 'vs NATS', 'target', 'met'];
  const keys: Array<keyof TableRow> = ['what', 'sluice', 'redis', 'nats', 'vsRedis', 'vsNats', 'target', 'met'];
  const table = `<table><tr>${headers.map((h) => `<th>${h}</th>`).join('')}</tr>${doc.table
    .map((row) => `<tr>${keys.map((k) => `<td class="${k === 'met' ? (row.met === 'yes' ? 'ok' : row.met === 'NO' ? 'bad' : '') : ''}">${esc(row[k])}</td>`).join('')}</tr>`)
    .join('')}</table>`;
  const agreements = doc.runs
    .filter((r) => r.agreement)
    .map((r) => {
      const a = r.agreement!;
      return `<tr><td>${esc(r.label)}</td><td>${esc(a.metric)}</td><td>${a.windowS} s</td><td>${fmt(a.clientRate)}</td><td>${fmt(a.prometheusRate)}</td><td class="${a.ok ? 'ok' : 'bad'}">${(a.difference * 100).toFixed(2)}%</td><td>${a.clientTotal}</td><td>${a.prometheusTotal}</td></tr>`;
    })
    .join('');
  const serverRows = doc.runs
    .filter((r) => r.server)
    .map((r) => {
      const v = r.server!;
      return `<tr><td>${esc(r.label)}</td><td>${esc(v.rpc)}</td><td>${v.requestP50Ms.toFixed(2)}</td><td>${v.requestP99Ms.toFixed(2)}</td><td>${v.flushP50Ms.toFixed(2)}</td><td>${v.flushP99Ms.toFixed(2)}</td><td>${v.flushesPerS.toFixed(0)}</td><td>${v.cpuCoresUsed.toFixed(2)}</td><td>${v.mainLoopDelayP99Ms.toFixed(1)} / ${v.mainLoopDelayMaxMs.toFixed(1)}</td><td>${v.shardLoopDelayP99Ms.toFixed(1)} / ${v.shardLoopDelayMaxMs.toFixed(1)}</td><td>${(v.mainGcShare * 100).toFixed(1)}% / ${(v.shardGcShare * 100).toFixed(1)}%</td><td>${esc(r.result.self ? `${r.result.self.cpuCores.toFixed(2)} cores, loop p99 ${r.result.self.loopDelayP99Ms.toFixed(1)} ms${r.result.self.stalled ? ' STALLED' : ''}` : '-')}</td></tr>`;
    })
    .join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>Sluice benchmark ${esc(doc.startedAt)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1000px}table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f4f4f4}.ok{background:#e6f4e6}.bad{background:#fbe3e3}svg{display:block;margin:16px 0}pre{background:#f7f7f7;padding:8px;font-size:12px}</style></head><body>
<h1>Sluice benchmark</h1><p>Started ${esc(doc.startedAt)}. Same machine, same record size and count, systems run one after another.</p>
<h2>Side by side</h2>${table}
${agreements ? `<h2>Prometheus vs client</h2><table><tr><th>run</th><th>metric</th><th>rate() window</th><th>client rec/s</th><th>Prometheus rec/s</th><th>difference</th><th>client total</th><th>counter total</th></tr>${agreements}</table>` : ''}
${serverRows ? `<h2>Sluice's own histograms (PromQL histogram_quantile over the same window)</h2><table><tr><th>run</th><th>rpc</th><th>request p50 ms</th><th>request p99 ms</th><th>flush p50 ms</th><th>flush p99 ms</th><th>flushes/s</th><th>broker CPU (cores)</th><th>main loop delay p99 / max ms</th><th>shard loop delay p99 / max ms</th><th>GC time main / shards</th><th>load process</th></tr>${serverRows}</table>` : ''}
<h2>Throughput over time</h2>${charts.join('\n')}
${latency ? `<h2>Latency</h2>${latency}` : ''}
<h2>Configuration</h2><pre>${esc(JSON.stringify(doc.config, null, 2))}</pre>
</body></html>`;
}
