/**
 * Log configuration: defaults, Kafka-style topic config keys, and validation. Topic configs are
 * strings (as the admin API carries them); unknown keys are ignored here because topics carry keys
 * that belong to other subsystems (cleanup.policy, replication settings, ...).
 */
import { SluiceError } from '../errors.js';
import {
  BATCH_BYTES_MAX_DEFAULT,
  BATCH_BYTES_MAX_LIMIT,
  FLUSH_INTERVAL_MS_DEFAULT,
  MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT,
  MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
  RETENTION_BYTES_DEFAULT,
  RETENTION_MS_DEFAULT,
  SEGMENT_BYTES_DEFAULT,
  SEGMENT_BYTES_MAX,
  SEGMENT_BYTES_MIN,
  SEGMENT_MS_DEFAULT,
} from '../constants.js';
import type { FlushPolicy, LogConfig } from './types.js';

/** Smallest batch: a bare 61-byte header. A max.message.bytes below it would reject everything. */
const BATCH_BYTES_FLOOR = 61;
/** Topic config keys this module understands. */
export const LOG_CONFIG_KEYS = [
  'segment.bytes',
  'segment.ms',
  'retention.ms',
  'retention.bytes',
  'max.message.bytes',
  'flush.policy',
  'flush.interval.ms',
  'message.timestamp.type',
  'message.timestamp.before.max.ms',
  'message.timestamp.after.max.ms',
] as const;

export function defaultLogConfig(): LogConfig {
  return {
    segmentBytes: SEGMENT_BYTES_DEFAULT,
    segmentMs: SEGMENT_MS_DEFAULT,
    retentionMs: RETENTION_MS_DEFAULT,
    retentionBytes: RETENTION_BYTES_DEFAULT,
    maxBatchBytes: BATCH_BYTES_MAX_DEFAULT,
    flush: { kind: 'always' },
    timestampType: 'CreateTime',
    timestampBeforeMaxMs: MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
    timestampAfterMaxMs: MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT,
  };
}

function invalid(message: string): SluiceError {
  return new SluiceError('INVALID_CONFIG', message);
}

function parseInteger(key: string, raw: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const text = raw.trim();
  if (!/^-?\d+$/.test(text)) throw invalid(`${key} must be an integer, got '${raw}'`);
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(`${key} must be between ${min} and ${max}, got ${raw}`);
  }
  return n;
}

/**
 * Parses Kafka-style topic configs over `base` (defaults when omitted). Throws INVALID_CONFIG naming
 * the key and the accepted range for any bad value.
 */
export function logConfigFromTopicConfigs(configs: Record<string, string>, base: LogConfig = defaultLogConfig()): LogConfig {
  const out: LogConfig = { ...base, flush: { ...base.flush } };
  const get = (k: string): string | undefined => (Object.prototype.hasOwnProperty.call(configs, k) ? configs[k] : undefined);
  let v: string | undefined;
  if ((v = get('segment.bytes')) !== undefined) out.segmentBytes = parseInteger('segment.bytes', v, SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
  if ((v = get('segment.ms')) !== undefined) out.segmentMs = parseInteger('segment.ms', v, 1);
  if ((v = get('retention.ms')) !== undefined) out.retentionMs = parseInteger('retention.ms', v, -1);
  if ((v = get('retention.bytes')) !== undefined) out.retentionBytes = parseInteger('retention.bytes', v, -1);
  if ((v = get('max.message.bytes')) !== undefined) {
    out.maxBatchBytes = parseInteger('max.message.bytes', v, BATCH_BYTES_FLOOR, BATCH_BYTES_MAX_LIMIT);
  }
  if ((v = get('message.timestamp.type')) !== undefined) {
    const t = v.trim();
    if (t !== 'CreateTime' && t !== 'LogAppendTime') throw invalid(`message.timestamp.type must be CreateTime or LogAppendTime, got '${v}'`);
    out.timestampType = t;
  }
  if ((v = get('message.timestamp.before.max.ms')) !== undefined) out.timestampBeforeMaxMs = parseInteger('message.timestamp.before.max.ms', v, 0);
  if ((v = get('message.timestamp.after.max.ms')) !== undefined) out.timestampAfterMaxMs = parseInteger('message.timestamp.after.max.ms', v, 0);
  const intervalRaw = get('flush.interval.ms');
  const intervalMs = intervalRaw === undefined ? undefined : parseInteger('flush.interval.ms', intervalRaw, 1, 24 * 3600 * 1000);
  const policy = get('flush.policy');
  if (policy !== undefined) {
    out.flush = parseFlushPolicy(policy, intervalMs);
  } else if (intervalMs !== undefined && out.flush.kind === 'interval') {
    out.flush = { kind: 'interval', intervalMs };
  }
  validateLogConfig(out, { topicBounds: true });
  return out;
}

function parseFlushPolicy(raw: string, intervalMs: number | undefined): FlushPolicy {
  switch (raw.trim()) {
    case 'always':
      return { kind: 'always' };
    case 'none':
      return { kind: 'none' };
    case 'interval':
      return { kind: 'interval', intervalMs: intervalMs ?? FLUSH_INTERVAL_MS_DEFAULT };
    default:
      throw invalid(`flush.policy must be one of always, interval, none; got '${raw}'`);
  }
}

/** The effective config as Kafka-style strings (for DescribeTopic). */
export function logConfigToTopicConfigs(config: LogConfig): Record<string, string> {
  const out: Record<string, string> = {
    'segment.bytes': String(config.segmentBytes),
    'segment.ms': String(config.segmentMs),
    'retention.ms': String(config.retentionMs),
    'retention.bytes': String(config.retentionBytes),
    'max.message.bytes': String(config.maxBatchBytes),
    'flush.policy': config.flush.kind,
    'message.timestamp.type': config.timestampType,
    'message.timestamp.before.max.ms': String(config.timestampBeforeMaxMs),
    'message.timestamp.after.max.ms': String(config.timestampAfterMaxMs),
  };
  if (config.flush.kind === 'interval') out['flush.interval.ms'] = String(config.flush.intervalMs);
  return out;
}

/**
 * Rejects inconsistent configs. `topicBounds` applies the user-facing floors (segment.bytes >= 1 MiB);
 * without it, tests and embedders may use tiny segments to exercise rolling.
 */
export function validateLogConfig(c: LogConfig, opts: { topicBounds?: boolean } = {}): void {
  const int = (name: string, n: number, min: number, max = Number.MAX_SAFE_INTEGER): void => {
    if (!Number.isSafeInteger(n) || n < min || n > max) throw invalid(`${name} must be an integer in [${min}, ${max}], got ${n}`);
  };
  int('segmentBytes', c.segmentBytes, opts.topicBounds ? SEGMENT_BYTES_MIN : BATCH_BYTES_FLOOR, SEGMENT_BYTES_MAX);
  int('segmentMs', c.segmentMs, 1);
  int('retentionMs', c.retentionMs, -1);
  int('retentionBytes', c.retentionBytes, -1);
  int('maxBatchBytes', c.maxBatchBytes, BATCH_BYTES_FLOOR, BATCH_BYTES_MAX_LIMIT);
  const f = c.flush as FlushPolicy | undefined;
  if (!f || (f.kind !== 'always' && f.kind !== 'none' && f.kind !== 'interval')) throw invalid('flush policy must be always, interval or none');
  if (f.kind === 'interval') int('flush.interval.ms', f.intervalMs, 1);
  if (c.timestampType !== 'CreateTime' && c.timestampType !== 'LogAppendTime') throw invalid('message.timestamp.type must be CreateTime or LogAppendTime');
  int('message.timestamp.before.max.ms', c.timestampBeforeMaxMs, 0);
  int('message.timestamp.after.max.ms', c.timestampAfterMaxMs, 0);
}
