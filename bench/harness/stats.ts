/** Pure helpers over load-generator timelines: rates over windows and per-interval series for charts. */

/** Cumulative count at time `t` (ms), interpolated linearly between timeline samples. */
export function countAt(timeline: Array<[number, number]>, t: number): number {
  if (timeline.length === 0) return 0;
  if (t <= timeline[0]![0]) return timeline[0]![1];
  for (let i = 1; i < timeline.length; i++) {
    const [t1, c1] = timeline[i]!;
    if (t <= t1) {
      const [t0, c0] = timeline[i - 1]!;
      return t1 === t0 ? c1 : c0 + ((c1 - c0) * (t - t0)) / (t1 - t0);
    }
  }
  return timeline[timeline.length - 1]![1];
}

/** Records per second between `fromMs` and `toMs`, from the client's own timeline. */
export function rateBetween(timeline: Array<[number, number]>, fromMs: number, toMs: number): number {
  return toMs > fromMs ? ((countAt(timeline, toMs) - countAt(timeline, fromMs)) * 1000) / (toMs - fromMs) : 0;
}

/** [seconds since start, records/s] every `stepMs`, for a throughput-over-time chart. */
export function rateSeries(timeline: Array<[number, number]>, startMs: number, endMs: number, stepMs = 500): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let t = startMs + stepMs, i = 0; t <= endMs + 1 && i < 100_000; t += stepMs, i++) {
    out.push([(t - startMs) / 1000, rateBetween(timeline, t - stepMs, t)]);
  }
  return out;
}

/** |a - b| relative to the larger, as a fraction (0 when both are 0). */
export function relativeDifference(a: number, b: number): number {
  const scale = Math.max(Math.abs(a), Math.abs(b));
  return scale === 0 ? 0 : Math.abs(a - b) / scale;
}
