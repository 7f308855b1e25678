/** The side-by-side table of a run: one row per scenario, ratios against the peers, targets beside figures. */
import type { RunRecord, SystemName } from './types.js';

/** Prometheus and client throughput may differ by at most this fraction (issue 6). */
export const AGREEMENT_TOLERANCE = 0.05;

export function formatRate(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(0);
}

export interface TableRow {
  what: string;
  sluice: string;
  redis: string;
  nats: string;
  vsRedis: string;
  vsNats: string;
  target: string;
  met: string;
}

/** Issue 16's end-to-end targets by rate (records/s), acks=all, fsync on. */
export const E2E_TARGETS: Readonly<Record<number, { p99Ms: number; p999Ms: number }>> = Object.freeze({
  10_000: { p99Ms: 5, p999Ms: 20 },
  50_000: { p99Ms: 10, p999Ms: 20 },
});

/** ' (load stalled)' when the load process's own event loop stalled during the run (bench/load-probe.ts). */
function stalledNote(r: RunRecord): string {
  return r.result.self?.stalled ? ' (load stalled)' : '';
}

/** The side-by-side table: one row per scenario, ratios against the peers, each target beside its figure. */
export function buildTable(records: RunRecord[]): TableRow[] {
  const find = (system: SystemName, label: string) => records.find((r) => r.system === system && r.label === label);
  /** A figure, or 'failed' for a load that failed, or '-' for one not run. */
  const cell = (r: RunRecord | undefined, text: (r: RunRecord) => string): string => (r === undefined ? '-' : r.failed !== undefined ? 'failed' : `${text(r)}${stalledNote(r)}`);
  const rate = (r: RunRecord | undefined): number | undefined => (r === undefined || r.failed !== undefined ? undefined : r.ratePerS);
  const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  const fmtRatio = (x?: number) => (x === undefined ? '-' : `${x.toFixed(2)}x`);
  const rows: TableRow[] = [];
  const peerProduce = { redis: rate(find('redis', 'produce raw')), nats: rate(find('nats', 'produce raw')) };
  for (const [label, redisTarget, natsTarget] of [['produce raw', 3, 20], ['produce structured', 1.2, 20]] as const) {
    const s = rate(find('sluice', label));
    if (find('sluice', label) === undefined && find('redis', 'produce raw') === undefined) continue;
    const vr = ratio(s, peerProduce.redis);
    const vn = ratio(s, peerProduce.nats);
    rows.push({
      what: `${label} (rec/s)`,
      sluice: cell(find('sluice', label), (r) => formatRate(r.ratePerS)),
      redis: cell(find('redis', 'produce raw'), (r) => formatRate(r.ratePerS)),
      nats: cell(find('nats', 'produce raw'), (r) => formatRate(r.ratePerS)),
      vsRedis: fmtRatio(vr),
      vsNats: fmtRatio(vn),
      target: `>=${redisTarget}x Redis, >=${natsTarget}x NATS`,
      met: vr === undefined || vn === undefined ? '?' : vr >= redisTarget && vn >= natsTarget ? 'yes' : 'NO',
    });
  }
  const consume = { sluice: rate(find('sluice', 'consume')), redis: rate(find('redis', 'consume')), nats: rate(find('nats', 'consume')) };
  if ((['sluice', 'redis', 'nats'] as const).some((sys) => find(sys, 'consume') !== undefined)) {
    rows.push({
      what: 'consume (rec/s)',
      sluice: cell(find('sluice', 'consume'), (r) => formatRate(r.ratePerS)),
      redis: cell(find('redis', 'consume'), (r) => formatRate(r.ratePerS)),
      nats: cell(find('nats', 'consume'), (r) => formatRate(r.ratePerS)),
      vsRedis: fmtRatio(ratio(consume.sluice, consume.redis)),
      vsNats: fmtRatio(ratio(consume.sluice, consume.nats)),
      target: '-',
      met: '-',
    });
  }
  const e2eLabels = [...new Set(records.filter((r) => r.result.job.kind === 'e2e').map((r) => r.label))];
  for (const label of e2eLabels) {
    const lat = (system: SystemName) => {
      const r = find(system, label);
      const l = r?.result.latency;
      if (r?.failed !== undefined) return { text: 'failed', p99: undefined };
      if (!r || !l) return { text: '-', p99: undefined };
      const lost = `${r.result.missing ? `, ${r.result.missing} lost` : ''}${r.result.self?.stalled ? ', load stalled' : ''}`;
      const target = r.result.job.ratePerS ?? 0;
      const slow = r.ratePerS < 0.95 * target ? `, reached only ${formatRate(r.ratePerS)}/s` : '';
      const notes = lost || slow ? ` (${`${slow}${lost}`.slice(2)})` : '';
      return { text: `${l.p50Ms.toFixed(1)}/${l.p99Ms.toFixed(1)}/${l.p999Ms.toFixed(1)}${notes}`, p99: l.p99Ms, p999: l.p999Ms, missing: r.result.missing ?? 0, slow: slow !== '' };
    };
    const s = lat('sluice');
    const target = E2E_TARGETS[find('sluice', label)?.result.job.ratePerS ?? 0];
    rows.push({
      what: `${label} p50/p99/p99.9 ms`,
      sluice: s.text,
      redis: lat('redis').text,
      nats: lat('nats').text,
      // Latency ratios are Sluice's p99 over the peer's: below 1 is better.
      vsRedis: `p99 ${fmtRatio(ratio(s.p99, lat('redis').p99))}`,
      vsNats: `p99 ${fmtRatio(ratio(s.p99, lat('nats').p99))}`,
      target: target === undefined ? '-' : `Sluice p99 <= ${target.p99Ms} ms, p99.9 <= ${target.p999Ms} ms`,
      met: target === undefined ? '-' : s.p99 === undefined ? '?' : s.p99 <= target.p99Ms && s.p999! <= target.p999Ms && s.missing === 0 && !s.slow ? 'yes' : 'NO',
    });
  }
  const agreements = records.filter((r) => r.agreement !== undefined);
  if (agreements.length > 0) {
    const worst = Math.max(...agreements.map((r) => r.agreement!.difference));
    rows.push({
      what: 'Prometheus vs client rate',
      sluice: `worst ${(worst * 100).toFixed(1)}% over ${agreements.length} runs`,
      redis: '-',
      nats: '-',
      vsRedis: '-',
      vsNats: '-',
      target: '<= 5%',
      met: worst <= AGREEMENT_TOLERANCE ? 'yes' : 'NO',
    });
  }
  return rows;
}

export function formatTable(rows: TableRow[]): string {
  const header: TableRow = { what: 'scenario', sluice: 'Sluice', redis: 'Redis Streams', nats: 'NATS JetStream', vsRedis: 'vs Redis', vsNats: 'vs NATS', target: 'target', met: 'met' };
  const keys = Object.keys(header) as Array<keyof TableRow>;
  const widths = keys.map((k) => Math.max(...[header, ...rows].map((r) => r[k].length)));
  const line = (r: TableRow) => `| ${keys.map((k, i) => r[k].padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
