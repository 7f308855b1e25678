/**
 * report.html: one self-contained page (inline SVG and CSS, no scripts, no network) so a person sees
 * what happened in a run without reading logs: faults as bands over time, acknowledged-write
 * throughput and latency (p50, p99) per time bucket, unknown outcomes, leader changes, then the
 * verdict, each fault's unavailability and the first examples of each anomaly.
 */
import fs from 'node:fs';
import type { Verdict } from './checker.js';
import type { Op } from './history.js';
import type { NetMode } from './netns.js';
import type { Schedule } from './schedule.js';

const BUCKET_MS = 250;
const WIDTH = 1000;
const LEFT = 60;
const PLOT = WIDTH - LEFT - 20;
const COLORS: Record<string, string> = { kill: '#e4572e', pause: '#f3a712', partition: '#4c6ef5', 'slow-disk': '#a29bfe', 'disk-full': '#20c997', move: '#0b7285', decommission: '#5c940d' };
/** Membership changes overlap other faults: their bands are drawn in the lower half, their labels on a second line. */
const MEMBERSHIP = new Set(['move', 'decommission']);

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

interface Bucket {
  acked: number;
  unknown: number;
  latencies: number[];
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function buckets(ops: readonly Op[], durationMs: number): Bucket[] {
  const out: Bucket[] = Array.from({ length: Math.ceil(durationMs / BUCKET_MS) + 1 }, () => ({ acked: 0, unknown: 0, latencies: [] }));
  for (const op of ops) {
    if (op.t !== 'produce') continue;
    const b = out[Math.min(out.length - 1, Math.floor(op.end / BUCKET_MS))];
    if (op.outcome === 'ok') {
      b.acked++;
      b.latencies.push(op.end - op.inv);
    } else b.unknown++;
  }
  return out;
}

/** Grey hatching from each kill's heal (restart asked) to the node being ready again: recovery time. */
function restartBands(ops: readonly Op[], x: (ms: number) => number, height: number): string {
  const kills = ops.filter((op): op is Extract<Op, { t: 'fault' }> => op.t === 'fault' && op.kind === 'kill');
  const out: string[] = [];
  for (const op of ops) {
    if (op.t !== 'node' || op.state !== 'ready') continue;
    const heal = kills.filter((k) => k.heal <= op.at && k.nodes.includes(op.node)).at(-1)?.heal;
    if (heal === undefined) continue;
    out.push(`<rect x="${x(heal)}" y="0" width="${Math.max(1, x(op.at) - x(heal))}" height="${height}" fill="url(#restart)"><title>n${op.node} restarting (recovery) ${((op.at - heal) / 1000).toFixed(2)} s</title></rect>`);
  }
  return '<defs><pattern id="restart" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="3" height="6" fill="#999" opacity="0.35"/></pattern></defs>' + out.join('');
}

function faultBands(ops: readonly Op[], x: (ms: number) => number, height: number): string {
  return restartBands(ops, x, height) + ops
    .filter((op): op is Extract<Op, { t: 'fault' }> => op.t === 'fault')
    .map((f) => {
      const m = MEMBERSHIP.has(f.kind);
      const y = m ? Math.round(height / 2) : 0;
      const label = `${f.kind} ${f.nodes.map((n) => `n${n}`).join('+')}${f.outcome === undefined ? '' : ` (${f.outcome})`}`;
      const title = `#${f.id} ${f.detail}${f.outcome === undefined ? '' : ` -> ${f.outcome}${f.reason === undefined ? '' : `: ${f.reason}`}`}`;
      return `<rect x="${x(f.start)}" y="${y}" width="${Math.max(1, x(f.heal) - x(f.start))}" height="${height - y}" fill="${COLORS[f.kind] ?? '#888'}" opacity="0.22"${m ? ' stroke="' + COLORS[f.kind] + '" stroke-dasharray="4 2"' : ''}><title>${esc(title)}</title></rect>` +
        `<text x="${x(f.start) + 2}" y="${m ? y + 11 : 11}" font-size="10" fill="${COLORS[f.kind] ?? '#888'}">${esc(label)}</text>`;
    })
    .join('');
}

function chart(title: string, ops: readonly Op[], durationMs: number, series: { name: string; color: string; ys: number[]; log?: boolean }[], height = 160): string {
  const x = (ms: number): number => LEFT + (ms / durationMs) * PLOT;
  const log = series.some((s) => s.log);
  const f = (v: number): number => (log ? Math.log10(Math.max(1, v)) : v);
  const max = Math.max(1, ...series.flatMap((s) => s.ys.map(f)));
  const y = (v: number): number => height - 20 - (f(v) / max) * (height - 40);
  const lines = series
    .map((s) => `<polyline fill="none" stroke="${s.color}" stroke-width="1.5" points="${s.ys.map((v, i) => `${x(i * BUCKET_MS).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>`)
    .join('');
  const top = log ? `${Math.round(10 ** max)}` : `${Math.round(max)}`;
  const ticks = Array.from({ length: Math.floor(durationMs / 1000) + 1 }, (_, s) => s)
    .filter((s) => s % Math.max(1, Math.round(durationMs / 20_000)) === 0)
    .map((s) => `<text x="${x(s * 1000)}" y="${height - 5}" font-size="9" text-anchor="middle">${s}s</text>`)
    .join('');
  const legend = series.map((s, i) => `<text x="${LEFT + 5 + i * 150}" y="${height - 24}" font-size="10" fill="${s.color}">${esc(s.name)}</text>`).join('');
  return `<h3>${esc(title)}</h3><svg width="${WIDTH}" height="${height}" xmlns="http://www.w3.org/2000/svg">${faultBands(ops, x, height - 20)}` +
    `<line x1="${LEFT}" y1="${height - 20}" x2="${WIDTH - 20}" y2="${height - 20}" stroke="#999"/><text x="${LEFT - 5}" y="24" font-size="9" text-anchor="end">${top}</text>` +
    `<text x="${LEFT - 5}" y="${height - 20}" font-size="9" text-anchor="end">${log ? 1 : 0}</text>${lines}${ticks}${legend}</svg>`;
}

function leaderChart(ops: readonly Op[], durationMs: number): string {
  const x = (ms: number): number => LEFT + (ms / durationMs) * PLOT;
  const changes = ops.filter((op): op is Extract<Op, { t: 'leader' }> => op.t === 'leader');
  const keys = [...new Set(changes.map((c) => c.key))].sort();
  const h = 16 * keys.length + 24;
  const rows = keys
    .map((k, i) => {
      const marks = changes.filter((c) => c.key === k).map((c) => `<g><line x1="${x(c.at)}" x2="${x(c.at)}" y1="${i * 16 + 4}" y2="${i * 16 + 16}" stroke="#333"/><text x="${x(c.at) + 2}" y="${i * 16 + 14}" font-size="9">n${c.leader}</text></g>`).join('');
      return `<text x="${LEFT - 5}" y="${i * 16 + 14}" font-size="9" text-anchor="end">${esc(k)}</text>${marks}`;
    })
    .join('');
  return `<h3>Leader changes (first sighting per partition, then each change)</h3><svg width="${WIDTH}" height="${h}" xmlns="http://www.w3.org/2000/svg">${faultBands(ops, x, h)}${rows}</svg>`;
}

/** `net`: the network mode that ran (proxy: loopback and TCP proxies; netns: a namespace per node). */
export function renderReport(schedule: Schedule, ops: readonly Op[], v: Verdict, net: NetMode = 'proxy'): string {
  const end = ops.reduce((m, op) => Math.max(m, 'end' in op ? op.end : 'at' in op ? op.at : 0), schedule.durationMs);
  const bs = buckets(ops, end);
  const perSecond = 1000 / BUCKET_MS;
  const row = (k: string, val: string | number | null, bad = false): string => `<tr${bad ? ' class="bad"' : ''}><th>${esc(k)}</th><td>${esc(String(val ?? 'never'))}</td></tr>`;
  const counts = [
    row('verdict', v.ok ? 'clean' : 'ANOMALIES FOUND', !v.ok),
    row('acknowledged writes', v.acked), row('unknown outcomes', v.unknown), row('failed (nothing written)', v.failed), row('records read', v.reads),
    row('lost', v.lost, v.lost > 0), row('inconsistent', v.inconsistent, v.inconsistent > 0), row('duplicated (idempotent)', v.duplicated, v.duplicated > 0),
    row('duplicated (no idempotence, allowed)', v.duplicatedPlain), row('phantom (failed but read)', v.phantom, v.phantom > 0),
    row('high watermark backwards', v.hwBackwards, v.hwBackwards > 0), row('committed offset backwards', v.committedBackwards, v.committedBackwards > 0),
    row('group gaps', v.groupGaps, v.groupGaps > 0), row('replica mismatches', v.replicaMismatches, v.replicaMismatches > 0),
    row('stray replica directories (not compared)', v.strayReplicas),
    row('membership not settled at the end (moves, node states)', v.unsettled === '' ? '-' : v.unsettled, v.unsettled !== ''),
    row('membership changes: completed / running at heal / refused / unanswered', `${v.membership.completed} / ${v.membership.running} / ${v.membership.refused} / ${v.membership.unanswered}`),
    row('worst unavailability (ms)', v.worstUnavailableMs === null ? null : Math.round(v.worstUnavailableMs)),
  ].join('');
  const reasons = new Map(ops.filter((op): op is Extract<Op, { t: 'fault' }> => op.t === 'fault').map((f) => [f.id, f.reason]));
  const outcome = (f: Verdict['faults'][number]): string => (f.outcome === undefined ? '' : `${f.outcome}${reasons.get(f.id) === undefined ? '' : `: ${reasons.get(f.id)}`}`);
  const faults = v.faults.map((f) => `<tr><td>${f.id}</td><td>${esc(f.detail)}</td><td>${esc(outcome(f))}</td><td>${(f.healMs / 1000).toFixed(2)} s</td><td>${f.unavailableMs === null ? 'never' : f.unavailableMs.toFixed(0) + ' ms'}</td></tr>`).join('');
  const samples = v.samples.map((s) => `<li><code>${esc(s.key)}${s.offset === undefined ? '' : ` @${s.offset}`}${s.value === undefined ? '' : ` ${s.value}`}</code> ${esc(s.why)}</li>`).join('');
  return `<!doctype html><html><head><meta charset="utf-8"><title>chaos seed ${schedule.seed}</title><style>
body{font:13px system-ui,sans-serif;margin:16px;color:#222}table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:2px 8px;text-align:left}
tr.bad td,tr.bad th{background:#ffe3e3;color:#a00}h3{margin:14px 0 2px}svg{background:#fafafa;border:1px solid #eee}
</style></head><body>
<h2>Sluice chaos run, seed ${schedule.seed}: ${v.ok ? 'clean' : 'ANOMALIES FOUND'}</h2>
<p>${schedule.nodes} node(s), ${(schedule.durationMs / 1000).toFixed(0)} s, ${schedule.faults.length} fault(s), network ${net}. Replay: <code>npm run chaos -- --seed ${schedule.seed} --schedules 1 --nodes ${schedule.nodes} --duration ${schedule.durationMs / 1000} --faults ${schedule.kinds.join(',')}${net === 'proxy' ? '' : ` --net ${net}`}</code></p>
<p>Coloured bands: faults (start to heal; hover for details). Dashed bands in the lower half: membership changes (a move, a decommission until its recommission), which run while other faults do; the label gives the outcome. Grey hatching: a killed node restarting (heal to ready, recovery included).</p>
${chart('Acknowledged writes per second (unknown outcomes in red)', ops, end, [
    { name: 'acked/s', color: '#2b8a3e', ys: bs.map((b) => b.acked * perSecond) },
    { name: 'unknown/s', color: '#e03131', ys: bs.map((b) => b.unknown * perSecond) },
  ])}
${chart('Latency of acknowledged writes, ms (log scale)', ops, end, [
    { name: 'p50', color: '#1971c2', ys: bs.map((b) => quantile(b.latencies, 0.5)), log: true },
    { name: 'p99', color: '#862e9c', ys: bs.map((b) => quantile(b.latencies, 0.99)), log: true },
  ])}
${leaderChart(ops, end)}
<h3>Verdict</h3><table>${counts}</table>
<h3>Faults</h3><table><tr><th>#</th><th>fault</th><th>outcome (membership changes)</th><th>healed at</th><th>heal → first acked write (slowest partition)</th></tr>${faults}</table>
${samples.length > 0 ? `<h3>Examples</h3><ul>${samples}</ul>` : ''}
</body></html>
`;
}

export function writeReport(file: string, schedule: Schedule, ops: readonly Op[], v: Verdict, net: NetMode = 'proxy'): void {
  fs.writeFileSync(file, renderReport(schedule, ops, v, net));
}
