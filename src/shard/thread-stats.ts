/**
 * What one thread (the main thread or a shard worker) reports about its own health, once per stats
 * interval: its event-loop delay (perf_hooks.monitorEventLoopDelay, so a stall is measured, not
 * guessed) and its garbage-collection pauses (PerformanceObserver 'gc'). Plain numbers only: the
 * snapshot crosses threads by structured clone and src/metrics turns it into Prometheus series.
 *
 * Never imports prom-client (only src/metrics does); runs the same on every thread.
 */
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, type IntervalHistogram } from 'node:perf_hooks';
import { THREAD_GC_SAMPLES_MAX, THREAD_LOOP_DELAY_RESOLUTION_MS } from '../constants.js';

/** GC kinds by Node's perf_hooks constant; the index is what `gcPauses` carries. */
export const GC_KINDS: readonly string[] = Object.freeze(['minor', 'major', 'incremental', 'weakcb', 'other']);

function gcKindIndex(kind: number | undefined): number {
  switch (kind) {
    case perfConstants.NODE_PERFORMANCE_GC_MINOR:
      return 0;
    case perfConstants.NODE_PERFORMANCE_GC_MAJOR:
      return 1;
    case perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL:
      return 2;
    case perfConstants.NODE_PERFORMANCE_GC_WEAKCB:
      return 3;
    default:
      return 4;
  }
}

export interface ThreadStats {
  /**
   * Event-loop delay over the window (seconds): how late the thread's sampling timer ran beyond its
   * resolution. Quantiles and max are of this window only; count and sum add up across windows.
   */
  loopDelay: { count: number; sumSeconds: number; p50: number; p99: number; p999: number; max: number };
  /** GC pauses of the window, flat pairs [kindIndex (GC_KINDS), seconds, ...], at most THREAD_GC_SAMPLES_MAX pairs. */
  gcPauses: number[];
  /** GC pauses of the window beyond THREAD_GC_SAMPLES_MAX (not timed). */
  gcPausesDropped: number;
}

export class ThreadStatsSampler {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: THREAD_LOOP_DELAY_RESOLUTION_MS });
  private readonly gc: PerformanceObserver;
  private gcPauses: number[] = [];
  private gcDropped = 0;

  constructor() {
    this.gc = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (this.gcPauses.length >= 2 * THREAD_GC_SAMPLES_MAX) {
          this.gcDropped++;
          continue;
        }
        this.gcPauses.push(gcKindIndex((e as { detail?: { kind?: number } }).detail?.kind), e.duration / 1000);
      }
    });
  }

  start(): void {
    this.delay.enable();
    this.gc.observe({ entryTypes: ['gc'] });
  }

  stop(): void {
    this.delay.disable();
    this.gc.disconnect();
  }

  /** This window's figures; starts the next window. */
  roll(): ThreadStats {
    const h = this.delay;
    // The monitor records each timer interval, resolution included: subtract it, so an idle loop reads ~0.
    const res = THREAD_LOOP_DELAY_RESOLUTION_MS * 1e6;
    const s = (ns: number): number => Math.max(0, ns - res) / 1e9;
    const count = h.count;
    const stats: ThreadStats = {
      loopDelay: count > 0
        ? { count, sumSeconds: count * s(h.mean), p50: s(h.percentile(50)), p99: s(h.percentile(99)), p999: s(h.percentile(99.9)), max: s(h.max) }
        : { count: 0, sumSeconds: 0, p50: 0, p99: 0, p999: 0, max: 0 },
      gcPauses: this.gcPauses,
      gcPausesDropped: this.gcDropped,
    };
    h.reset();
    this.gcPauses = [];
    this.gcDropped = 0;
    return stats;
  }
}
