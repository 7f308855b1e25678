/**
 * Goal (issue 16 §1, "the Prometheus scrape itself"): /metrics renders the same bytes as prom-client's
 * `registry.metrics()`, but lets the event loop run between metrics once a slice has taken
 * METRICS_RENDER_SLICE_MS, so a scrape does not hold produce answers back for its whole length.
 * Method: a registry with counters, a labelled gauge and a histogram is rendered both ways (and with
 * Node's process metrics, whose values move: the same metrics in the same order). For the yielding,
 * two metrics whose collect busy-waits longer than a slice, and a `setImmediate` queued before the
 * render, which must run before the render finishes.
 */
import { describe, expect, it } from 'vitest';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { METRICS_RENDER_SLICE_MS, renderSliced } from '../../src/metrics/index.js';

function busy(ms: number): void {
  const until = performance.now() + ms;
  for (let i = 0; i < 1e9 && performance.now() < until; i++);
}

describe('renderSliced', () => {
  it('renders exactly what registry.metrics() renders', async () => {
    const registry = new Registry();
    new Counter({ name: 'a_total', help: 'a', labelNames: ['x'], registers: [registry] }).inc({ x: 'q"uote\\' }, 3);
    new Gauge({ name: 'b', help: 'b\nnewline', registers: [registry] }).set(-1.5);
    const h = new Histogram({ name: 'c_seconds', help: 'c', buckets: [0.001, 0.1], labelNames: ['rpc'], registers: [registry] });
    h.observe({ rpc: 'Produce' }, 0.05);
    h.observe({ rpc: 'Fetch' }, 2);
    expect(await renderSliced(registry)).toBe(await registry.metrics());
    // Process metrics move between two renders (CPU seconds, heap; and the sliced render's own
    // setImmediate is an active resource): the same metrics, in the same order.
    collectDefaultMetrics({ register: registry });
    const heads = (text: string): string[] => text.split('\n').filter((l) => l.startsWith('# '));
    expect(heads(await renderSliced(registry))).toEqual(heads(await registry.metrics()));
  });

  it('lets the event loop run between metrics once a slice is used up', async () => {
    const registry = new Registry();
    const order: string[] = [];
    for (const name of ['slow_one', 'slow_two']) {
      new Gauge({
        name,
        help: name,
        registers: [registry],
        collect() {
          order.push(name);
          busy(METRICS_RENDER_SLICE_MS * 4);
          this.set(1);
        },
      });
    }
    setImmediate(() => order.push('immediate'));
    const text = await renderSliced(registry);
    expect(order).toEqual(['slow_one', 'immediate', 'slow_two']);
    expect(text).toBe(await registry.metrics());
  });

  it('leaves out a metric removed while the render yielded', async () => {
    const registry = new Registry();
    new Gauge({ name: 'first', help: 'f', registers: [registry], collect() { busy(METRICS_RENDER_SLICE_MS * 4); } });
    new Gauge({ name: 'second', help: 's', registers: [registry] });
    setImmediate(() => registry.removeSingleMetric('second'));
    const text = await renderSliced(registry);
    expect(text).toMatch(/^# HELP first /m);
    expect(text).not.toMatch(/second/);
  });
});
