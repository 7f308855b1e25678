/**
 * Helpers shared by the broker benchmark and the end-to-end tests: run `sluice serve` as a child
 * process on ephemeral ports and learn its bound addresses from its "ready" line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';
import { BROKER_NODE_FLAGS } from '../src/constants.js';

export interface BrokerProcess {
  child: ChildProcess;
  grpcAddress: string;
  httpAddress: string;
  /** The last BROKER_STDERR_KEPT_BYTES the broker wrote to stderr (logs), for failure messages. */
  stderr(): string;
}

/** How much of a broker's stderr (its log) is kept in memory for failure messages: the tail. */
export const BROKER_STDERR_KEPT_BYTES = 256 * 1024;

export interface SpawnOptions {
  /** Also append everything the broker writes to stderr (its log) to this file. */
  logFile?: string;
}

/**
 * dist/src/cli/main.js, found from this file whether it runs from bench/ (vitest) or dist/bench/.
 * `SLUICE_BENCH_BROKER_CLI` names another build's main.js, so two brokers can be compared under the
 * same load generator (A/B of a change: point it at a base commit's build).
 */
export function cliPath(): string {
  const other = process.env.SLUICE_BENCH_BROKER_CLI;
  if (other !== undefined && other !== '') return other;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'dist', 'src', 'cli', 'main.js');
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('dist/src/cli/main.js not found: run `npm run build` first');
    dir = parent;
  }
}

/**
 * Brokers spawned by this process and still running: SIGKILLed when this process exits, so a test
 * that timed out (its run abandoned mid-way, its cleanup never reached) or a bench that crashed does
 * not leave brokers running for good. A paused (SIGSTOPped) broker dies by SIGKILL too.
 */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

/**
 * `nodeArgs` are the node/V8 flags, by default the ones the broker ships with (BROKER_NODE_FLAGS), so
 * tests and benchmarks run what `npm start` and the Helm chart run; a caller that passes its own (a
 * profiler's) adds them to brokerNodeArgs(). `prefix` runs the broker through another command that
 * execs it (`ip netns exec NS`: the chaos harness's namespaces), so the child's pid is still the broker's.
 */
export function spawnBroker(dataDir: string, extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}, nodeArgs: readonly string[] = BROKER_NODE_FLAGS, prefix: readonly string[] = [], opts: SpawnOptions = {}): Promise<BrokerProcess> {
  const [command, ...args] = [...prefix, process.execPath, ...nodeArgs, cliPath(), 'serve'];
  const child = spawn(command, [...args, '--data-dir', dataDir, '--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0', '--log-level', 'warn', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  track(child);
  let err = '';
  let out = '';
  const log = opts.logFile === undefined ? null : fs.createWriteStream(opts.logFile, { flags: 'a' });
  child.stderr!.on('data', (d: Buffer) => {
    log?.write(d);
    err += d.toString();
    if (err.length > 2 * BROKER_STDERR_KEPT_BYTES) err = err.slice(-BROKER_STDERR_KEPT_BYTES);
  });
  child.once('exit', () => log?.end());
  return new Promise((resolve, reject) => {
    const onOut = (d: Buffer): void => {
      out += d.toString();
      const m = /grpc=(\S+) http=(\S+)/.exec(out);
      if (m === null) return;
      // Only the ready line is wanted; the rest of stdout is drained, not kept.
      child.stdout!.off('data', onOut);
      child.stdout!.resume();
      resolve({ child, grpcAddress: m[1], httpAddress: m[2], stderr: () => err.slice(-BROKER_STDERR_KEPT_BYTES) });
    };
    child.stdout!.on('data', onOut);
    child.once('exit', (code, signal) => reject(new Error(`broker exited (${code ?? signal}) before it was ready: ${err.trim()}`)));
  });
}

export function waitExit(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

/** Peak resident set size (VmHWM) of a process in bytes, from /proc; null where /proc is missing. */
export function peakRssBytes(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}
