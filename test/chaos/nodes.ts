/**
 * The broker processes of a chaos run: `sluice serve` children on 127.0.0.<10+id> (or, with `--net
 * netns`, on their namespace's address, run through `ip netns exec`: netns.ts), each with its own
 * data dir, a fixed gRPC port (chosen at first start, kept across restarts) and the TEST-ONLY hooks of
 * src/storage/test-hooks.ts switched on: a faults file (slow disk) and a sync journal (power cuts).
 * With `tmpfs`, the data dir is a tmpfs of its own (root only) so a disk-full fault fills a real file
 * system to its last byte and ENOSPC comes from the kernel, not from a hook.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnBroker, waitExit } from '../../bench/broker-process.js';
import { BROKER_NODE_FLAGS } from '../../src/constants.js';
import { TEST_REPLICA_BUGS_ENV } from '../../src/broker/test-hooks.js';
import { TEST_ACK_BEFORE_FSYNC_ENV, TEST_FAULTS_FILE_ENV, TEST_SYNC_JOURNAL_ENV, type TestFaults } from '../../src/storage/test-hooks.js';
import { CHAOS_HOST_BASE, CHAOS_PORT_MAX, CHAOS_PORT_MIN, CHAOS_PORT_STRIDE, CHAOS_PORT_TRIES, NODE_START_MS, NODE_STOP_MS, CHAOS_TMPFS_BYTES } from './constants.js';
import { cutPower, type PowerCut } from './power.js';

export interface NodeOptions {
  id: number;
  /** Where this node keeps its data dir, journal and faults file. */
  dir: string;
  tmpfs: boolean;
  /** The deliberate bug: acknowledge acks=all before fdatasync. */
  ackBeforeFsync: boolean;
  /** Node `id` listens on 127.0.0.<hostBase + id> (default CHAOS_HOST_BASE). */
  hostBase?: number;
  /** `--net netns`: the node's address in its namespace (instead of 127.0.0.<hostBase + id>). */
  host?: string;
  /** `--net netns`: the command that runs the broker in the node's namespace (`ip netns exec NS`); it execs the broker. */
  wrap?: readonly string[];
  /** Cluster mode: the simulator's bug modes on every partition replica (TEST-ONLY SLUICE_TEST_REPLICA_BUGS); none by default. */
  replicaBugs?: readonly string[];
  /**
   * Cluster mode: this node's part of a `sluice serve` cluster. The ports are fixed before any node
   * starts (each node's --seeds must name the others), and kept across restarts.
   */
  cluster?: { grpcPort: number; httpPort: number; seeds: readonly string[]; controllerVoters: readonly number[]; env?: NodeJS.ProcessEnv };
  /** `--node-logs LEVEL`: the broker logs at this level into `<dir>/node.log` (appended across restarts); default warn, kept in memory only. */
  logLevel?: string;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

export class ChaosNode {
  readonly id: number;
  readonly host: string;
  readonly dataDir: string;
  readonly journal: string;
  readonly faultsFile: string;
  private readonly mount: string | null;
  private port = 0;
  private httpPort = 0;
  private child: ChildProcess | null = null;
  private stderr: () => string = () => '';
  state: 'down' | 'up' | 'paused' = 'down';

  constructor(private readonly o: NodeOptions) {
    this.id = o.id;
    this.host = o.host ?? `127.0.0.${(o.hostBase ?? CHAOS_HOST_BASE) + o.id}`;
    fs.mkdirSync(o.dir, { recursive: true });
    this.mount = o.tmpfs ? path.join(o.dir, 'disk') : null;
    if (this.mount !== null) {
      fs.mkdirSync(this.mount, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${CHAOS_TMPFS_BYTES},mode=0700`, 'tmpfs', this.mount], { stdio: 'pipe' });
    }
    this.dataDir = path.join(this.mount ?? o.dir, 'data');
    this.journal = path.join(o.dir, 'sync-journal');
    this.faultsFile = path.join(o.dir, 'faults.json');
    this.setFaults({});
    if (o.cluster !== undefined) {
      this.port = o.cluster.grpcPort;
      this.httpPort = o.cluster.httpPort;
    }
  }

  /** The node's HTTP address (/readyz, /metrics). */
  get httpAddress(): string {
    return `${this.host}:${this.httpPort}`;
  }

  /** Why /readyz last said "not ready" (its body), for the run's notes. */
  lastNotReady = '';

  /** In cluster mode: /readyz answers 200 (joined, the controller has a leader, every replica here caught up). */
  async ready(): Promise<boolean> {
    if (this.state !== 'up') return false;
    try {
      const res = await fetch(`http://${this.httpAddress}/readyz`, { signal: AbortSignal.timeout(1_000) });
      if (res.status === 200) return true;
      this.lastNotReady = (await res.text()).trim();
      return false;
    } catch (err) {
      this.lastNotReady = `no answer: ${(err as Error).message}`;
      return false;
    }
  }

  /** The broker's own gRPC address (the harness's final read goes here, past the proxies). */
  get grpcAddress(): string {
    return `${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const env: NodeJS.ProcessEnv = { ...this.o.cluster?.env, [TEST_FAULTS_FILE_ENV]: this.faultsFile, [TEST_SYNC_JOURNAL_ENV]: this.journal };
    if (this.o.ackBeforeFsync) env[TEST_ACK_BEFORE_FSYNC_ENV] = '1';
    if (this.o.replicaBugs !== undefined && this.o.replicaBugs.length > 0) env[TEST_REPLICA_BUGS_ENV] = this.o.replicaBugs.join(',');
    const args = ['--grpc-addr', `${this.host}:${this.port}`, '--http-addr', `${this.host}:${this.httpPort}`, '--shards', '1'];
    const c = this.o.cluster;
    if (c !== undefined) args.push('--node-id', String(this.id), '--seeds', c.seeds.join(','), '--controller-voters', c.controllerVoters.join(','));
    if (this.o.logLevel !== undefined) args.push('--log-level', this.o.logLevel);
    const logFile = this.o.logLevel === undefined ? undefined : path.join(this.o.dir, 'node.log');
    const spawning = spawnBroker(this.dataDir, args, env, BROKER_NODE_FLAGS, this.o.wrap ?? [], { logFile });
    // A start past its bound must not leave the broker behind: it is killed when (if) it comes up.
    const b = await withTimeout(spawning, NODE_START_MS, `node ${this.id} start`).catch((err: unknown) => {
      spawning.then((late) => late.child.kill('SIGKILL')).catch(() => {});
      throw err;
    });
    this.child = b.child;
    this.stderr = b.stderr;
    this.port = Number(b.grpcAddress.slice(b.grpcAddress.lastIndexOf(':') + 1));
    this.httpPort = Number(b.httpAddress.slice(b.httpAddress.lastIndexOf(':') + 1));
    this.state = 'up';
  }

  /** kill -9, then (by default) a power cut: unsynced bytes of the segments vanish. */
  async kill9(powerCut = true): Promise<PowerCut | null> {
    const child = this.child;
    if (child === null) return null;
    if (this.state === 'paused') child.kill('SIGCONT');
    child.kill('SIGKILL');
    await withTimeout(waitExit(child), NODE_STOP_MS, `node ${this.id} kill`);
    this.child = null;
    this.state = 'down';
    return powerCut ? cutPower(this.dataDir, this.journal) : null;
  }

  pause(): void {
    this.child?.kill('SIGSTOP');
    this.state = 'paused';
  }

  resume(): void {
    this.child?.kill('SIGCONT');
    this.state = 'up';
  }

  /** Rewrites the faults file atomically (the broker reads it on every fdatasync). */
  setFaults(faults: TestFaults): void {
    const tmp = `${this.faultsFile}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(faults));
    fs.renameSync(tmp, this.faultsFile);
  }

  /** Fills the node's tmpfs to its last byte (bounded by the tmpfs size). */
  fillDisk(): void {
    if (this.mount === null) throw new Error(`node ${this.id} has no tmpfs: disk-full faults need one (run as root)`);
    const fd = fs.openSync(path.join(this.mount, 'filler'), 'a');
    try {
      for (const chunk of [1 << 20, 4096, 1]) {
        const buf = Buffer.alloc(chunk, 0xaa);
        for (let i = 0; i <= CHAOS_TMPFS_BYTES / chunk; i++) {
          try {
            fs.writeSync(fd, buf);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw err;
          }
        }
      }
    } finally {
      fs.closeSync(fd);
    }
  }

  freeDisk(): void {
    if (this.mount !== null) fs.rmSync(path.join(this.mount, 'filler'), { force: true });
  }

  /** SIGTERM and wait for a clean exit; returns the exit code (0 = clean) and the broker's stderr. */
  async stop(): Promise<{ code: number | null; signal: string | null; stderr: string }> {
    const child = this.child;
    if (child === null) return { code: 0, signal: null, stderr: '' };
    if (this.state === 'paused') child.kill('SIGCONT');
    child.kill('SIGTERM');
    let exit: { code: number | null; signal: NodeJS.Signals | null };
    try {
      exit = await withTimeout(waitExit(child), NODE_STOP_MS, `node ${this.id} stop`);
    } catch {
      child.kill('SIGKILL');
      exit = await waitExit(child);
    }
    this.child = null;
    this.state = 'down';
    return { ...exit, stderr: this.stderr() };
  }

  /** Last resort (a failed run): kill the process and unmount, never throwing. */
  destroy(): void {
    try {
      this.child?.kill('SIGKILL');
    } catch {
      // already gone
    }
    if (this.mount !== null) {
      try {
        execFileSync('umount', ['-l', this.mount], { stdio: 'pipe' });
      } catch {
        // not mounted
      }
    }
  }

  /** Unmounts the tmpfs (after stop), leaving the node's dir to its owner. */
  unmount(): void {
    if (this.mount === null) return;
    try {
      execFileSync('umount', [this.mount], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', this.mount], { stdio: 'pipe' });
    }
  }
}

/**
 * A TCP port free on `host` now, which the node binds later (and again after every restart). Picked
 * below the kernel's ephemeral range (CHAOS_PORT_MIN..CHAOS_PORT_MAX), never with listen(0): a port
 * from the ephemeral range can be taken in the window by any process's `listen(0)` on 0.0.0.0 or by
 * an outgoing connection, which made a node fail to bind (seed 2004, docs/chaos.md). The first
 * candidate is random, so runs side by side start apart; each is tried by binding it. A port this
 * process handed out before is never handed out again (the gRPC and HTTP picks for one node come
 * before either is bound); other processes stay apart by address block (CHAOS_TEST_HOST_BASES).
 */
const handedOut = new Set<string>();
export async function freePort(host: string): Promise<number> {
  const span = CHAOS_PORT_MAX - CHAOS_PORT_MIN;
  const first = Math.floor(Math.random() * span);
  for (let i = 0; i < CHAOS_PORT_TRIES; i++) {
    const port = CHAOS_PORT_MIN + ((first + i * CHAOS_PORT_STRIDE) % span);
    if (handedOut.has(`${host}:${port}`)) continue;
    const srv = net.createServer();
    const ok = await new Promise<boolean>((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen({ port, host, exclusive: true }, () => resolve(true));
    });
    if (ok) {
      await new Promise<void>((resolve) => srv.close(() => resolve()));
      handedOut.add(`${host}:${port}`);
      return port;
    }
  }
  throw new Error(`no free port on ${host} in ${CHAOS_PORT_TRIES} tries between ${CHAOS_PORT_MIN} and ${CHAOS_PORT_MAX}`);
}

/** Whether this process can mount a tmpfs (root on Linux): disk-full faults need it. */
export function canMountTmpfs(): boolean {
  return process.platform === 'linux' && process.getuid?.() === 0;
}
