/** Parsers for CLI arguments: offsets, key=value pairs, counts, kcat-style record formats. */
import { validateControllerVoters } from '../controller/controller.js';
import { InvalidArgumentError } from 'commander';
import { brokerList } from '../client/connection.js';
import type { StartOffset, ConsumedRecord } from '../client/types.js';

export class UsageError extends InvalidArgumentError {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** An integer option in [min, max]; the message names the range, so `-p 99999999999` says what fits. */
export function parseIntArg(what: string, min = 0, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new UsageError(`${what} must be an integer from ${min} to ${max} (got "${value}")`);
    }
    return n;
  };
}

/** `-b`: one address or a comma-separated list; a host alone gets the default port (7070). */
export function parseBrokers(value: string): string {
  try {
    return brokerList(value).join(',');
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

/** `--seeds`: HOST:PORT,HOST:PORT,... (empty entries ignored; each must name a port). */
export function parseSeedList(value: string): string[] {
  const seeds = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  for (const s of seeds) {
    const m = /^(?:\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(s);
    if (m === null || Number(m[1]) < 1 || Number(m[1]) > 65535) throw new UsageError(`--seeds takes HOST:PORT,HOST:PORT,... (got "${s}")`);
  }
  return seeds;
}

/**
 * `--controller-voters`: 1, 3 or 5 distinct node ids, comma-separated (e.g. 1,2,3). Each may carry the
 * voter's address as `ID@HOST:PORT` (the Helm chart writes that form); the address is informational,
 * since gossip tells where each node is.
 */
export function parseControllerVoters(value: string): number[] {
  const ids = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  const voters = ids.map((s) => {
    const m = /^(\d{1,10})(?:@\S+)?$/.exec(s);
    return m === null ? NaN : Number(m[1]);
  });
  try {
    validateControllerVoters(voters);
  } catch (err) {
    throw new UsageError(`--controller-voters: ${(err as Error).message} (e.g. 1,2,3)`);
  }
  return voters;
}

/** A duration: `500ms`, `10s`, `2m`, or a bare number of milliseconds; at least 1 ms. */
export function parseDurationMs(what: string): (value: string) => number {
  const units: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000 };
  return (value: string) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value.trim());
    const ms = m === null ? NaN : Math.round(Number(m[1]) * units[m[2] ?? '']!);
    if (!Number.isSafeInteger(ms) || ms < 1 || ms > DURATION_MS_MAX) {
      throw new UsageError(`${what} must be a duration such as 500ms, 10s or 2m, at most 24h (got "${value}")`);
    }
    return ms;
  };
}

/** A day: longer waits are a typo, and they overflow Node's timers (2^31-1 ms). */
const DURATION_MS_MAX = 24 * 3600 * 1000;

/** An offset or timestamp given on the command line: a non-negative integer that the client can carry. */
function safeOffset(digits: string, value: string, what: string): number {
  const n = Number(digits);
  if (!Number.isSafeInteger(n)) throw new UsageError(`invalid offset "${value}": ${what} must be at most ${Number.MAX_SAFE_INTEGER}`);
  return n;
}

const BYTE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** A byte count: `268435456`, `256MiB`, `512mb`, `1GiB` (decimal kB/MB/GB, binary KiB/MiB/GiB). */
export function parseBytesArg(what: string, min = 0): (value: string) => number {
  return (value: string) => {
    const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(value);
    const unit = m === null ? undefined : BYTE_UNITS[m[2].toLowerCase()];
    const n = m === null || unit === undefined ? NaN : Number(m[1]) * unit;
    if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${what} must be a byte count >= ${min}, e.g. 256MiB (got "${value}")`);
    return n;
  };
}

/** Collects repeated `-c key=value` / `-H key=value` options into a list of pairs. */
export function collectKeyValue(value: string, previous: [string, string][] = []): [string, string][] {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new UsageError(`expected key=value (got "${value}")`);
  return [...previous, [value.slice(0, eq), value.slice(eq + 1)]];
}

/** kcat's -o: beginning|start|earliest, end|latest, N, -N (N before the end), @timestampMs. */
export function parseStartOffset(value: string): StartOffset {
  const v = value.trim();
  if (v === 'start' || v === 'beginning' || v === 'earliest') return 'earliest';
  if (v === 'end' || v === 'latest') return 'latest';
  if (/^@\d+$/.test(v)) return { timestampMs: safeOffset(v.slice(1), value, 'a timestamp') };
  if (/^-\d+$/.test(v)) return { fromEnd: safeOffset(v.slice(1), value, 'a count from the end') };
  if (/^\d+$/.test(v)) return safeOffset(v, value, 'an offset');
  throw new UsageError(`invalid offset "${value}": use start, end, N, -N (N before the end) or @TIMESTAMP_MS`);
}

const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '0': '\0' };

/**
 * Compiles a kcat-style format: %t topic, %p partition, %o offset, %k key, %s value, %T timestamp (ms),
 * %h headers (k=v,k=v), %K key length, %S value length (-1 for null), %% a percent; \n \t \r \\ escapes.
 */
export function compileFormat(format: string): (r: ConsumedRecord) => string {
  const parts: ((r: ConsumedRecord) => string)[] = [];
  let literal = '';
  const flush = (): void => {
    if (literal.length > 0) {
      const text = literal;
      parts.push(() => text);
      literal = '';
    }
  };
  for (let i = 0; i < format.length; i++) {
    const c = format[i];
    if (c === '\\' && i + 1 < format.length && ESCAPES[format[i + 1]] !== undefined) {
      literal += ESCAPES[format[++i]];
      continue;
    }
    if (c !== '%' || i + 1 >= format.length) {
      literal += c;
      continue;
    }
    const f = format[++i];
    if (f === '%') {
      literal += '%';
      continue;
    }
    flush();
    switch (f) {
      case 't': parts.push((r) => r.topic); break;
      case 'p': parts.push((r) => String(r.partition)); break;
      case 'o': parts.push((r) => String(r.offset)); break;
      case 'k': parts.push((r) => r.key?.toString('utf8') ?? ''); break;
      case 's': parts.push((r) => r.value?.toString('utf8') ?? ''); break;
      case 'T': parts.push((r) => String(r.timestampMs)); break;
      case 'K': parts.push((r) => String(r.key?.length ?? -1)); break;
      case 'S': parts.push((r) => String(r.value?.length ?? -1)); break;
      case 'h': parts.push((r) => r.headers.map((h) => `${h.key}=${h.value === null ? '' : Buffer.from(h.value).toString('utf8')}`).join(',')); break;
      default: throw new UsageError(`unknown format token %${f}: use %t %p %o %k %s %T %h %K %S`);
    }
  }
  flush();
  return (r) => parts.map((p) => p(r)).join('');
}

/** A record as one JSON line (`--format json`); bytes as UTF-8 text, null stays null. */
export function recordJson(r: ConsumedRecord): string {
  return JSON.stringify({
    topic: r.topic,
    partition: r.partition,
    offset: r.offset,
    timestamp: r.timestampMs,
    key: r.key === null ? null : r.key.toString('utf8'),
    value: r.value === null ? null : r.value.toString('utf8'),
    headers: Object.fromEntries(r.headers.map((h) => [h.key, h.value === null ? null : Buffer.from(h.value).toString('utf8')])),
  });
}
