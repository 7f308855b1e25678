/** Turns any failure into one line on stderr that says what went wrong and what to do next. */
import { isSluiceError, type ErrorCode } from '../errors.js';
import { StartupError } from '../server/errors.js';

/**
 * What to do next, by error code. A hint may return undefined when the message already says it (the
 * client explains transport failures itself) or when the usual advice does not fit the command.
 */
const HINTS: Partial<Record<ErrorCode, (ctx: HintContext, message: string) => string | undefined>> = {
  UNAVAILABLE: (c, m) =>
    /answered, but not|cannot resolve/.test(m) ? undefined : `is a broker running at ${c.brokers}? Start one with \`sluice serve\`, or point --brokers / SLUICE_BROKERS at one`,
  SHUTTING_DOWN: () => 'the broker is stopping; retry once it is back',
  TIMEOUT: (c, m) => (m.startsWith('no answer from') ? undefined : `the broker at ${c.brokers} did not answer in time; check it is healthy (curl its /readyz), or raise --timeout`),
  UNKNOWN_TOPIC: (c) =>
    c.command === 'topic delete' || c.command === 'topic describe' || c.command === 'topic alter-config'
      ? 'list topics with `sluice topic list`'
      : 'list topics with `sluice topic list`, or create it with `sluice topic create NAME -p PARTITIONS`',
  UNKNOWN_PARTITION: () => 'see the topic\'s partitions with `sluice topic describe NAME`',
  TOPIC_ALREADY_EXISTS: () => 'inspect it with `sluice topic describe NAME`, or delete it first with `sluice topic delete NAME`',
  INVALID_TOPIC_NAME: () => 'topic names use [a-zA-Z0-9._-], 1-249 characters, and are not "." or ".."',
  INVALID_PARTITIONS: () => 'pass a positive partition count with -p',
  OFFSET_OUT_OF_RANGE: () => 'see the valid range with `sluice topic describe NAME`, or use -o start / -o end',
  RECORD_TOO_LARGE: () => 'send smaller records, or raise the topic\'s max.message.bytes with `sluice topic alter-config NAME --set max.message.bytes=N`',
  QUEUE_FULL: () => 'the broker is overloaded; retry later or slow down',
  STORAGE_ERROR: () => 'check the data dir exists and is writable, or pick another with --data-dir',
};

export interface HintContext {
  brokers: string;
  /** The command that failed, e.g. "topic delete" (some hints fit one command and not another). */
  command?: string;
}

export function describeFailure(err: unknown, ctx: HintContext): string {
  if (err instanceof StartupError) return err.message;
  if (isSluiceError(err)) {
    let message = err.message.split('\n')[0];
    // grpc-js's connection failures are long and repetitive; say it plainly.
    const refused = /ECONNREFUSED ([^\s.]+(?:\.[^\s.]+)*:\d+)/.exec(message);
    if (refused !== null) message = `cannot connect to ${refused[1]} (connection refused)`;
    const hint = HINTS[err.code]?.(ctx, message);
    return hint === undefined ? `${message} (${err.code})` : `${message} (${err.code}); ${hint}`;
  }
  return err instanceof Error ? err.message.split('\n')[0] : String(err);
}

export function fail(err: unknown, ctx: HintContext): never {
  process.stderr.write(`sluice: error: ${describeFailure(err, ctx)}\n`);
  process.exit(1);
}
