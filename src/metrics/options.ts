/** Defaults and validation of MetricsOptions (piscina style: frozen defaults, a validate with clear messages). */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SluiceError } from '../errors.js';
import type { FilledMetricsOptions, MetricsOptions } from './types.js';

/**
 * Unary request latencies: a produce with acks=all costs an fdatasync (hundreds of µs to tens of ms);
 * long-poll fetches are not timed. The buckets cover 100 µs to 30 s (the client's default deadline).
 */
export const REQUEST_DURATION_BUCKETS_DEFAULT: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

/**
 * Stream lifetimes: a Subscribe or a group member's Consume stream lives from seconds (a script) to
 * days (a service). The buckets cover 100 ms to a day.
 */
export const STREAM_DURATION_BUCKETS_DEFAULT: readonly number[] = Object.freeze([
  0.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600,
]);

/** fdatasync times: tens of µs on a page-cache-only tmpfs, up to seconds on a sick disk. */
export const FLUSH_DURATION_BUCKETS_DEFAULT: readonly number[] = Object.freeze([
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
]);

/** GC pauses: a scavenge takes tens of µs to a few ms, a full mark-compact of a big heap up to a second. */
export const GC_PAUSE_BUCKETS_DEFAULT: readonly number[] = Object.freeze([
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
]);

/** Bounded walk up from this module to Sluice's package.json (src/metrics and dist/src/metrics differ in depth). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'sluice' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // No package.json here: keep walking up.
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

function validateBuckets(name: string, buckets: readonly number[]): void {
  const ok = buckets.length > 0 && buckets.every((b, i) => Number.isFinite(b) && b > 0 && (i === 0 || b > buckets[i - 1]!));
  if (!ok) throw new SluiceError('INVALID_CONFIG', `${name} must be a non-empty list of increasing positive numbers`);
}

export function fillMetricsOptions(options: MetricsOptions = {}): FilledMetricsOptions {
  const filled: FilledMetricsOptions = {
    partitionSeries: options.partitionSeries ?? false,
    groupSeries: options.groupSeries ?? true,
    processMetrics: options.processMetrics ?? true,
    version: options.version ?? packageVersion(),
    requestDurationBuckets: options.requestDurationBuckets ?? REQUEST_DURATION_BUCKETS_DEFAULT,
    streamDurationBuckets: options.streamDurationBuckets ?? STREAM_DURATION_BUCKETS_DEFAULT,
    flushDurationBuckets: options.flushDurationBuckets ?? FLUSH_DURATION_BUCKETS_DEFAULT,
    gcPauseBuckets: options.gcPauseBuckets ?? GC_PAUSE_BUCKETS_DEFAULT,
  };
  validateBuckets('requestDurationBuckets', filled.requestDurationBuckets);
  validateBuckets('streamDurationBuckets', filled.streamDurationBuckets);
  validateBuckets('flushDurationBuckets', filled.flushDurationBuckets);
  validateBuckets('gcPauseBuckets', filled.gcPauseBuckets);
  if (filled.version.length === 0) throw new SluiceError('INVALID_CONFIG', 'version must not be empty');
  return Object.freeze(filled);
}
