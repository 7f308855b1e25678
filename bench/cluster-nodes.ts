/**
 * A three-process `sluice serve` cluster for benchmarks (bench/cluster.ts): node N on 127.0.0.N with
 * ports chosen before any node starts (every node's --seeds names all of them, as in a StatefulSet) and
 * kept across restarts, its own data dir, the default flush policy (fsync on every node), no test hooks.
 * Also what the bench reads of a broker from outside: /readyz, /metrics, and CPU and RSS from /proc.
 *
 * Every child process the bench starts is tracked here, so `killTracked` (on exit, Ctrl-C or an
 * error) leaves none behind.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BROKER_NODE_FLAGS } from '../src/constants.js';
import { spawnBroker, waitExit, type BrokerProcess } from './broker-process.js';
import { freePort } from '../test/chaos/nodes.js';

/** How long one node may take to print its ready line after spawn. */
export const NODE_SPAWN_MS = 30_000;
/** How long a SIGTERMed node may take to exit before it is killed (closing 1,000 replicas and writing a CPU profile on a loaded machine takes a while). */
export const NODE_STOP_MS = 60_000;
/** Deadline of one HTTP probe (/readyz, /metrics). */
export const HTTP_PROBE_MS = 2_000;

const tracked = new Set<ChildProcess>();

/** Remembers a child so `killTracked` ends it; forgotten once it exits. */
export function track(child: ChildProcess): void {
  tracked.add(child);
  child.once('exit', () => tracked.delete(child));
}

/** SIGKILLs every tracked child still running (synchronous: safe in an 'exit' handler). */
export function killTracked(): void {
  for (const c of tracked) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        c.kill('SIGCONT');
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

let clockTicksPerSecond: number | null = null;
/** The kernel's USER_HZ (the unit of /proc/PID/stat CPU times), from getconf; 100 if that fails. */
function clockTicks(): number {
  if (clockTicksPerSecond === null) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** CPU seconds (user + system, all threads) a process has used, from /proc/PID/stat; null if gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at state (field 3); utime, stime are 14, 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clockTicks();
  } catch {
    return null;
  }
}

/** Resident set size now (VmRSS), in bytes; null if gone. */
export function rssBytes(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}

export interface BenchNodeOptions {
  id: number;
  root: string;
  grpcPort: number;
  httpPort: number;
  seeds: readonly string[];
  /** Extra `sluice serve` flags (e.g. --shards). */
  serveArgs: readonly string[];
  /** Node flags for this node (e.g. --cpu-prof). */
  nodeArgs: readonly string[];
}

export class BenchNode {
  readonly id: number;
  readonly host: string;
  readonly dataDir: string;
  private proc: BrokerProcess | null = null;

  constructor(private readonly o: BenchNodeOptions) {
    this.id = o.id;
    this.host = `127.0.0.${o.id}`;
    this.dataDir = path.join(o.root, `n${o.id}`);
  }

  get grpcAddress(): string {
    return `${this.host}:${this.o.grpcPort}`;
  }

  get httpAddress(): string {
    return `${this.host}:${this.o.httpPort}`;
  }

  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  get up(): boolean {
    return this.proc !== null;
  }

  stderr(): string {
    return this.proc?.stderr() ?? '';
  }

  async start(): Promise<void> {
    const args = [
      '--grpc-addr', this.grpcAddress, '--http-addr', this.httpAddress, '--node-id', String(this.id),
      '--seeds', this.o.seeds.join(','), '--controller-voters', '1,2,3', ...this.o.serveArgs,
    ];
    const p = spawnBroker(this.dataDir, args, {}, [...this.o.nodeArgs]);
    // A node that never prints its ready line is killed by the tracker, so it is tracked at once.
    p.then((b) => track(b.child), () => {});
    this.proc = await withTimeout(p, NODE_SPAWN_MS, `node ${this.id} start`);
  }

  /** kill -9 (the data dir stays: a restart recovers from it). */
  async kill9(): Promise<void> {
    const p = this.proc;
    if (p === null) return;
    p.child.kill('SIGKILL');
    await withTimeout(waitExit(p.child), NODE_STOP_MS, `node ${this.id} kill`);
    this.proc = null;
  }

  /** SIGTERM and wait (a CPU profile is written on a clean exit); SIGKILL if it does not exit in time. */
  async stop(): Promise<void> {
    const p = this.proc;
    if (p === null) return;
    p.child.kill('SIGTERM');
    try {
      await withTimeout(waitExit(p.child), NODE_STOP_MS, `node ${this.id} stop`);
    } catch {
      p.child.kill('SIGKILL');
      await waitExit(p.child);
    }
    this.proc = null;
  }

  async ready(): Promise<boolean> {
    if (this.proc === null) return false;
    try {
      return (await fetch(`http://${this.httpAddress}/readyz`, { signal: AbortSignal.timeout(HTTP_PROBE_MS) })).status === 200;
    } catch {
      return false;
    }
  }

  /** Sum of a Prometheus counter over all its series (see `sumMetric`); null if the node does not answer. */
  async metricSum(name: string, labelMatch = ''): Promise<number | null> {
    if (this.proc === null) return null;
    try {
      return sumMetric(await (await fetch(`http://${this.httpAddress}/metrics`, { signal: AbortSignal.timeout(HTTP_PROBE_MS) })).text(), name, labelMatch);
    } catch {
      return null;
    }
  }
}

/**
 * Sum of metric `name` over its series in a Prometheus text exposition: lines of exactly that name
 * (not a longer one that starts with it), optionally only those whose labels contain `labelMatch`.
 */
export function sumMetric(text: string, name: string, labelMatch = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== '{' && line[name.length] !== ' ')) continue;
    if (labelMatch !== '' && !line.includes(labelMatch)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

export interface BenchClusterOptions {
  root: string;
  serveArgs?: readonly string[];
  /** Node flags per node id (e.g. a CPU profile of one broker). */
  nodeArgs?: (id: number) => readonly string[];
}

/** Three nodes, started together; `waitReady` until every /readyz answers 200. */
export class BenchCluster {
  readonly nodes: BenchNode[] = [];

  static async start(o: BenchClusterOptions, readyMs: number): Promise<BenchCluster> {
    const c = new BenchCluster();
    const ports = [];
    for (const id of [1, 2, 3]) ports.push({ grpc: await freePort(`127.0.0.${id}`), http: await freePort(`127.0.0.${id}`) });
    const seeds = ports.map((p, i) => `127.0.0.${i + 1}:${p.grpc}`);
    for (const id of [1, 2, 3]) {
      c.nodes.push(new BenchNode({ id, root: o.root, grpcPort: ports[id - 1]!.grpc, httpPort: ports[id - 1]!.http, seeds, serveArgs: o.serveArgs ?? [], nodeArgs: o.nodeArgs?.(id) ?? BROKER_NODE_FLAGS }));
    }
    await Promise.all(c.nodes.map((n) => n.start()));
    await c.waitReady(readyMs);
    return c;
  }

  get addresses(): string[] {
    return this.nodes.map((n) => n.grpcAddress);
  }

  node(id: number): BenchNode {
    const n = this.nodes[id - 1];
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** Polls every up node's /readyz until all answer 200 or `ms` passes (then throws with their logs). */
  async waitReady(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    for (let i = 0; Date.now() < deadline && i < 100_000; i++) {
      const ready = await Promise.all(this.nodes.map((n) => n.ready()));
      if (ready.every((r) => r)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the cluster was not ready in ${ms} ms; stderr tails:\n${this.nodes.map((n) => `node ${n.id}: ${n.stderr().trim().slice(-1000)}`).join('\n')}`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
