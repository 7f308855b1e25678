/**
 * The peers' servers, started fresh for each run on free loopback ports with temporary data dirs:
 * Redis (AOF on, fsync every second: Redis's durable-ish default) and NATS with JetStream file storage.
 * Sluice's broker is started the same way, from the built CLI.
 */
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { BROKER_NODE_FLAGS } from '../../src/constants.js';
import { findBinary, freePort, httpGetText, portOpen, spawnLogged, tempDir, waitFor, type Spawned } from './procs.js';

export interface ServerHandle {
  system: 'sluice' | 'redis' | 'nats';
  /** What the load generator connects to. */
  port: number;
  /** Sluice only: the HTTP address Prometheus scrapes. */
  httpHostPort?: string;
  proc: Spawned;
  stop(): Promise<void>;
}

export async function startRedis(logDir: string): Promise<ServerHandle> {
  const binary = findBinary('redis-server');
  if (binary === undefined) throw new Error('redis-server not found: run bench/setup.sh');
  const dir = tempDir('redis');
  const port = await freePort();
  const proc = spawnLogged('redis', binary, [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', 'everysec', '--save', '',
    '--daemonize', 'no', '--protected-mode', 'yes',
  ], logDir);
  await waitFor('redis-server to listen', () => portOpen(port), 15_000);
  return { system: 'redis', port, proc, stop: () => proc.stop() };
}

export async function startNats(logDir: string): Promise<ServerHandle> {
  const binary = findBinary('nats-server');
  if (binary === undefined) throw new Error('nats-server not found: run bench/setup.sh');
  const dir = tempDir('nats');
  const port = await freePort();
  // -js with -sd: JetStream with file storage under a temp dir. No monitoring port, no cluster port.
  const proc = spawnLogged('nats', binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], logDir);
  await waitFor('nats-server to listen', () => portOpen(port), 15_000);
  return { system: 'nats', port, proc, stop: () => proc.stop() };
}

/** The built CLI: `npm run build` puts it at dist/src/cli/main.js. */
export function sluiceCliPath(repoRoot: string): string {
  return join(repoRoot, 'dist', 'src', 'cli', 'main.js');
}

/**
 * Node/V8 flags for every broker process of a bench: the ones the broker ships with (BROKER_NODE_FLAGS,
 * as `npm start` and the image run it), or SLUICE_BENCH_BROKER_NODE_ARGS when set (space-separated; set
 * and empty: none), for A/B runs.
 */
export function brokerNodeArgs(): string[] {
  const env = process.env.SLUICE_BENCH_BROKER_NODE_ARGS;
  return env === undefined ? [...BROKER_NODE_FLAGS] : env.split(' ').filter((a) => a !== '');
}

export async function startSluice(repoRoot: string, logDir: string, extraArgs: string[] = []): Promise<ServerHandle> {
  const cli = sluiceCliPath(repoRoot);
  if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build (the broker CLI is not built yet?)`);
  const dir = tempDir('sluice');
  const port = await freePort();
  const httpPort = await freePort();
  const httpHostPort = `127.0.0.1:${httpPort}`;
  // SLUICE_BENCH_PROF=1: V8 CPU profiles of the broker (main thread and shard workers) in the run's dir.
  // SLUICE_BENCH_TRACE_GC=1: every GC of the broker (`node --trace-gc`) in sluice.log, with its pause.
  const profile = [
    ...brokerNodeArgs(),
    ...(process.env.SLUICE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${logDir}`] : []),
    ...(process.env.SLUICE_BENCH_TRACE_GC ? ['--trace-gc'] : []),
  ];
  const proc = spawnLogged('sluice', process.execPath, [
    ...profile, cli, 'serve', '--data-dir', join(dir, 'data'), '--grpc-addr', `127.0.0.1:${port}`, '--http-addr', httpHostPort, ...extraArgs,
  ], logDir);
  await waitFor('the Sluice broker to be ready', async () => (await httpGetText(`http://${httpHostPort}/readyz`, 1000)).status === 200, 30_000, 200);
  return { system: 'sluice', port, httpHostPort, proc, stop: () => proc.stop(15_000) };
}
