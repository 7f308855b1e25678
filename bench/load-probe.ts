/**
 * What a load-generating process reports about itself, so a benchmark figure comes with evidence that
 * the load was not the bottleneck: the process's CPU (user + system, in cores over the measured span)
 * and its own event-loop delay (perf_hooks.monitorEventLoopDelay). A load process whose loop stalled
 * cannot send on time or read replies on time, so its latency figures include its own stalls; the
 * report then says so (`stalled`).
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Sampling resolution of the load process's event-loop delay histogram. */
export const LOAD_EVENT_LOOP_RESOLUTION_MS = 10;
/**
 * A load process whose event-loop delay p99 exceeds this is called stalled: with e2e targets of 5 and
 * 10 ms p99, a load loop late by this much adds its own delay to the figure it measures.
 */
export const LOAD_STALL_P99_MS = 5;
/** ... or whose worst single delay exceeds this (one long GC or a starved core). */
export const LOAD_STALL_MAX_MS = 50;

export interface LoadSelfReport {
  /** CPU of the whole load process over the measured span, in cores (1 = one core busy). */
  cpuCores: number;
  /** Event-loop delay of the load process over the measured span (ms; the sampling timer's lateness). */
  loopDelayP50Ms: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** True when the load process itself stalled (LOAD_STALL_P99_MS, LOAD_STALL_MAX_MS): its figure is suspect. */
  stalled: boolean;
}

export class LoadProbe {
  private readonly delay: IntervalHistogram = monitorEventLoopDelay({ resolution: LOAD_EVENT_LOOP_RESOLUTION_MS });
  private cpu0: NodeJS.CpuUsage = process.cpuUsage();
  private t0 = performance.now();

  /** Starts (or restarts, dropping what warm-up saw) the measured span. */
  start(): void {
    this.delay.disable();
    this.delay.reset();
    this.delay.enable();
    this.cpu0 = process.cpuUsage();
    this.t0 = performance.now();
  }

  stop(): LoadSelfReport {
    this.delay.disable();
    const cpu = process.cpuUsage(this.cpu0);
    const elapsedMs = Math.max(1, performance.now() - this.t0);
    // monitorEventLoopDelay records the timer's total delay, the resolution included; subtract it so an
    // idle loop reads about 0.
    const ms = (ns: number): number => Math.max(0, ns / 1e6 - LOAD_EVENT_LOOP_RESOLUTION_MS);
    const has = this.delay.count > 0;
    const report: LoadSelfReport = {
      cpuCores: (cpu.user + cpu.system) / 1000 / elapsedMs,
      loopDelayP50Ms: has ? ms(this.delay.percentile(50)) : 0,
      loopDelayP99Ms: has ? ms(this.delay.percentile(99)) : 0,
      loopDelayMaxMs: has ? ms(this.delay.max) : 0,
      stalled: false,
    };
    report.stalled = isStalled(report);
    return report;
  }
}

export function isStalled(r: Pick<LoadSelfReport, 'loopDelayP99Ms' | 'loopDelayMaxMs'>): boolean {
  return r.loopDelayP99Ms > LOAD_STALL_P99_MS || r.loopDelayMaxMs > LOAD_STALL_MAX_MS;
}

/** "load 0.85 cores, loop p99 1.2 ms max 8.0 ms" (+ " STALLED"), for a table cell or a log line. */
export function describeLoad(r: LoadSelfReport): string {
  return `load ${r.cpuCores.toFixed(2)} cores, loop p99 ${r.loopDelayP99Ms.toFixed(1)} ms max ${r.loopDelayMaxMs.toFixed(1)} ms${r.stalled ? ' STALLED' : ''}`;
}

/** Median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}
