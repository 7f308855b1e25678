/**
 * Goal: what bench:cluster reads of a broker from outside is read right. The /proc readers are checked
 * against this process (CPU seconds rise with busy work, RSS is plausible, a gone pid is null) and the
 * /metrics summing against a hand-written exposition with the traps it must avoid (a longer metric
 * name with the same prefix, HELP/TYPE lines, label filtering).
 */
import { describe, expect, it } from 'vitest';
import { cpuSeconds, rssBytes, sumMetric } from '../../bench/cluster-nodes.js';

describe('bench/cluster-nodes', () => {
  it('sums a counter over its series, and only that counter', () => {
    const text = [
      '# HELP sluice_leader_changes_total Times a replica learned of a new leader.',
      '# TYPE sluice_leader_changes_total counter',
      'sluice_leader_changes_total{topic="a",partition="0"} 2',
      'sluice_leader_changes_total{topic="b",partition="1"} 3',
      'sluice_leader_changes_total_other{topic="a"} 100',
      'sluice_leader_changes 7',
      'plain_counter 5',
    ].join('\n');
    expect(sumMetric(text, 'sluice_leader_changes_total')).toBe(5);
    expect(sumMetric(text, 'sluice_leader_changes_total', 'topic="b"')).toBe(3);
    expect(sumMetric(text, 'plain_counter')).toBe(5);
    expect(sumMetric(text, 'missing_total')).toBe(0);
  });

  it('reads CPU seconds and RSS of a live process from /proc, and null for a gone one', () => {
    if (process.platform !== 'linux') return;
    const before = cpuSeconds(process.pid)!;
    const t0 = performance.now();
    let x = 0;
    for (let i = 0; performance.now() - t0 < 300 && i < 1e9; i++) x += Math.sqrt(i);
    expect(x).toBeGreaterThan(0);
    const after = cpuSeconds(process.pid)!;
    // 300 ms of spinning: at least a few clock ticks, even when the machine is busy (tick = 10 ms).
    expect(after - before).toBeGreaterThan(0.02);
    const rss = rssBytes(process.pid)!;
    expect(rss).toBeGreaterThan(10 * 2 ** 20);
    expect(rss).toBeLessThan(process.memoryUsage().rss * 2);
    expect(cpuSeconds(2 ** 22 + 12345)).toBeNull();
    expect(rssBytes(2 ** 22 + 12345)).toBeNull();
  });
});
