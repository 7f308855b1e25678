/**
 * One chaos run: start the nodes and their proxies, create the topic(s), run the workload while the
 * schedule's faults come and go, heal, drain, read everything back past the proxies, stop the nodes
 * cleanly, check the history and write chaos/out/<seed>/ (history.jsonl, verdict.json, report.html).
 *
 * Two shapes. `nodes` = 1: a single-node broker reached through a client-to-broker proxy (so client
 * partitions can be injected). `nodes` >= 3: a real cluster (`sluice serve --node-id --seeds
 * --controller-voters`, ports fixed before the first start), one topic of replication factor 3, the
 * workload's clients given every node's address (they route to leaders; one producer writes through
 * each node in turn, so non-leaders forward), kills and pauses aimed at a partition leader, a follower
 * or the controller leader as the cluster names them when the fault starts; membership changes
 * (membership.ts) run in the background while the next faults run. After healing, moves settle
 * (bounded), every replica of each partition's final replica set must reach the leader's high
 * watermark, and their files are compared byte for byte below it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Admin } from '../../src/client/index.js';
import { isSluiceError } from '../../src/errors.js';
import { startLinkProxy, type LinkProxy } from '../idempotence/tcp-proxy.js';
import { checkHistory, isClean, type Verdict } from './checker.js';
import * as C from './constants.js';
import { History } from './history.js';
import { aliveSeenBy, clusterView, localHighWatermark, resolveTarget } from './cluster.js';
import { ChaosNode, freePort } from './nodes.js';
import { LinkTable, linkSettings } from './links.js';
import { NetnsHosts, type NetMode } from './netns.js';
import { MembershipDriver } from './membership.js';
import { compareReplicas } from './replicas.js';
import { writeReport } from './report.js';
import { isMembership, makeSchedule, type FaultKind, type FaultPlan, type Schedule } from './schedule.js';
import { finalRead, latestOffsets, Workload, type Target } from './workload.js';

export interface RunOptions {
  seed: number;
  nodes: number;
  durationMs: number;
  kinds: readonly FaultKind[];
  /** chaos/out: this run writes <outRoot>/<seed>/. */
  outRoot: string;
  /** Start brokers with the deliberate ack-before-fsync bug (the checker must then find losses). */
  ackBeforeFsync?: boolean;
  /** Cluster runs: the simulator's bug modes on every node's partition replicas (SLUICE_TEST_REPLICA_BUGS; the checker must then find anomalies). */
  replicaBugs?: readonly string[];
  /** Cluster runs: make the retrying producers idempotent (off by default there; see Target.idempotent). */
  idempotent?: boolean;
  /** Use this schedule instead of the seed's (tests that need one exact fault). */
  schedule?: Schedule;
  /** Keep the nodes' data dirs (in the output dir) instead of deleting them. */
  keepData?: boolean;
  /** With keepData: each broker logs at this level into its node dir's node.log (default: warn, not kept). */
  nodeLogLevel?: string;
  /** Node i listens on 127.0.0.<hostBase + i> (default CHAOS_HOST_BASE): two runs side by side use disjoint blocks. */
  hostBase?: number;
  /**
   * How a cluster's nodes are wired (default `proxy`): `proxy` = loopback addresses and the harness's
   * TCP proxies on the node-to-node links (links.ts); `netns` = a network namespace per node, reached
   * over a bridge, partitions cut in the kernel (netns.ts; root on Linux, clusters only).
   */
  net?: NetMode;
  log?: (line: string) => void;
}

export interface RunResult {
  seed: number;
  schedule: Schedule;
  verdict: Verdict;
  outDir: string;
  /** Exit of each node's final clean stop (0 expected). */
  stops: { node: number; code: number | null; signal: string | null }[];
  /** The network mode that ran. */
  net: NetMode;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until `ready()` or `ms` pass, checking every few ms (a bounded wait on a condition); `probe`,
 * if given, runs before each check (an async look at the processes that `ready` then reads).
 */
async function until(ready: () => boolean, ms: number, probe?: () => Promise<void>): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (probe !== undefined) await probe();
    if (ready()) return true;
    if (Date.now() > deadline) return false;
    await sleep(probe === undefined ? 20 : 100);
  }
}

/**
 * Waits for every promise, then throws the first failure: a node start that failed must not leave the
 * others starting unseen (they would come up after the run's cleanup and outlive it).
 */
async function settleAll(ps: readonly Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(ps)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

class Run {
  readonly history: History;
  readonly nodes: ChaosNode[] = [];
  readonly proxies = new Map<number, LinkProxy>();
  /** A cluster run with partition faults: the node-to-node links (links.ts). */
  links: LinkTable | null = null;
  /** `--net netns`: the nodes' namespaces and the bridge (netns.ts); partitions are cut there. */
  netns: NetnsHosts | null = null;
  /** Packets the namespaces' sinks had dropped at the last heal. */
  private netnsDropped = 0;
  /** A cluster run: carries out the membership changes (membership.ts). */
  membership: MembershipDriver | null = null;
  /** Time 0 of the schedule and the history: when the workload starts (the nodes are up). */
  private t0 = performance.now();
  readonly now = (): number => Math.round((performance.now() - this.t0) * 10) / 10;
  private get hostBase(): number {
    return this.o.hostBase ?? C.CHAOS_HOST_BASE;
  }

  constructor(
    readonly o: RunOptions,
    readonly schedule: Schedule,
    readonly outDir: string,
    readonly workDir: string,
  ) {
    this.history = new History(path.join(outDir, 'history.jsonl'));
  }

  startClock(): void {
    this.t0 = performance.now();
  }

  note(text: string): void {
    this.history.add({ t: 'note', at: this.now(), text });
    this.o.log?.(`  [${(this.now() / 1000).toFixed(1)}s] ${text}`);
  }

  get clustered(): boolean {
    return this.o.nodes >= 3;
  }

  /** Addresses of the nodes whose process runs and is not stopped. */
  upAddresses(): string[] {
    return this.nodes.filter((n) => n.state === 'up').map((n) => n.grpcAddress);
  }

  async startNodes(): Promise<Target[]> {
    return this.clustered ? this.startCluster() : this.startSingles();
  }

  /**
   * A cluster: ports chosen first (every node's --seeds names all of them, StatefulSet style), all
   * nodes started at once, then (bounded) every node ready, the topic created with replication factor
   * 3 through one node, and every partition led.
   */
  private async startCluster(): Promise<Target[]> {
    const tmpfs = this.o.kinds.includes('disk-full');
    const ids = Array.from({ length: this.o.nodes }, (_, i) => i + 1);
    // netns: every node is alone in its namespace, so it gets the same fixed ports; no peer map (nodes dial each other's real addresses).
    const netns = this.o.net === 'netns' ? (this.netns = NetnsHosts.create(this.hostBase, this.o.nodes)) : null;
    const hosts = ids.map((id) => netns?.address(id) ?? `127.0.0.${this.hostBase + id}`);
    const ports = netns !== null ? hosts.map(() => ({ grpc: C.NETNS_GRPC_PORT, http: C.NETNS_HTTP_PORT })) : await Promise.all(hosts.map(async (h) => ({ grpc: await freePort(h), http: await freePort(h) })));
    const seeds = hosts.map((h, i) => `${h}:${ports[i].grpc}`);
    // The controller group has an odd number of voters (1, 3 or 5: 3 of 4 nodes); the others follow it as learners.
    const voters = Math.min(this.o.nodes, C.CLUSTER_CONTROLLER_VOTERS_MAX);
    const controllerVoters = Array.from({ length: voters % 2 === 0 ? voters - 1 : voters }, (_, i) => i + 1);
    if (netns === null && this.o.kinds.includes('partition')) this.links = await LinkTable.create(hosts, seeds);
    for (const id of ids) {
      const cluster = { grpcPort: ports[id - 1].grpc, httpPort: ports[id - 1].http, seeds, controllerVoters, env: this.links?.envFor(id) };
      this.nodes.push(new ChaosNode({ id, dir: path.join(this.workDir, `n${id}`), tmpfs, ackBeforeFsync: this.o.ackBeforeFsync === true, replicaBugs: this.o.replicaBugs, hostBase: this.hostBase, host: hosts[id - 1], wrap: netns?.wrap(id), cluster, logLevel: this.o.nodeLogLevel }));
    }
    await settleAll(this.nodes.map((n) => n.start()));
    if (!(await until(() => this.readyCount === this.nodes.length, C.CLUSTER_READY_MS, () => this.probeReady()))) throw new Error(`the cluster did not become ready in ${C.CLUSTER_READY_MS} ms`);
    const topic = 'chaos';
    const addresses = this.nodes.map((n) => n.grpcAddress);
    // Ready is not yet alive to placement: gossip spreads membership in rounds, so wait until every node
    // sees all of them alive (placement counts the live nodes the controller leader sees).
    let alive = 0;
    const countAlive = async (): Promise<void> => {
      const views = await Promise.all(addresses.map((a) => aliveSeenBy(a)));
      alive = Math.min(...views);
    };
    if (!(await until(() => alive === this.nodes.length, C.CLUSTER_READY_MS, countAlive))) throw new Error(`the nodes did not all see each other alive in ${C.CLUSTER_READY_MS} ms`);
    const admin = new Admin({ brokers: addresses, requestTimeoutMs: C.CLUSTER_READY_MS });
    try {
      // On a loaded machine gossip may suspect a node for a moment: the controller leader then counts
      // fewer live nodes than the replication factor. That refusal wrote nothing; ask again (bounded).
      const createDeadline = Date.now() + C.CLUSTER_READY_MS;
      for (;;) {
        try {
          await admin.createTopic(topic, { partitions: C.WORKLOAD_PARTITIONS, replicationFactor: Math.min(C.CLUSTER_REPLICATION_FACTOR, this.o.nodes) });
          break;
        } catch (err) {
          if (!isSluiceError(err, 'REPLICATION_FACTOR_TOO_LARGE') || Date.now() > createDeadline) throw err;
          await sleep(200);
        }
      }
    } finally {
      admin.close();
    }
    let led = false;
    const deadline = Date.now() + C.CLUSTER_READY_MS;
    while (!led && Date.now() < deadline) {
      const v = await clusterView(addresses, topic);
      led = v !== null && v.partitions.length === C.WORKLOAD_PARTITIONS && v.partitions.every((p) => p.leader > 0);
      if (!led) await sleep(100);
    }
    if (!led) throw new Error(`not every partition of ${topic} had a leader after ${C.CLUSTER_READY_MS} ms`);
    this.membership = new MembershipDriver(() => this.upAddresses(), this.o.nodes, topic);
    return [{ name: 'c', topic, address: addresses.join(','), nodes: addresses, idempotent: this.o.idempotent === true }];
  }

  private readyCount = 0;
  private async probeReady(nodes: readonly ChaosNode[] = this.nodes): Promise<void> {
    this.readyCount = (await Promise.all(nodes.map((n) => n.ready()))).filter(Boolean).length;
  }

  private async startSingles(): Promise<Target[]> {
    const tmpfs = this.o.kinds.includes('disk-full');
    for (let id = 1; id <= this.o.nodes; id++) {
      const node = new ChaosNode({ id, dir: path.join(this.workDir, `n${id}`), tmpfs, ackBeforeFsync: this.o.ackBeforeFsync === true, hostBase: this.hostBase, logLevel: this.o.nodeLogLevel });
      this.nodes.push(node);
      await node.start();
      this.proxies.set(id, await startLinkProxy(node.grpcAddress, { listenHost: node.host }));
    }
    const targets = this.nodes.map((n) => ({ name: `n${n.id}`, topic: `chaos-n${n.id}`, address: this.proxies.get(n.id)!.address }));
    for (const t of targets) {
      const admin = new Admin({ brokers: t.address });
      await admin.createTopic(t.topic, { partitions: C.WORKLOAD_PARTITIONS });
      admin.close();
    }
    return targets;
  }

  /**
   * Applies one fault at `atMs`, waits its duration, heals it; returns when it started and healed.
   * A healed kill waits for its restart (recovery included) before returning.
   */
  async fault(f: FaultPlan, atMs: number): Promise<{ start: number; heal: number; nodes: number[] }> {
    await sleep(Math.max(0, this.t0 + atMs - performance.now()));
    const nodes = (await this.aim(f)).map((id) => this.nodes[id - 1]);
    const ids = nodes.map((n) => n.id);
    const start = this.now();
    this.note(`fault ${f.id}: ${f.detail}${f.target !== undefined ? ` (n${ids.join('+n')})` : ''}`);
    const waitOut = (): Promise<void> => sleep(Math.max(0, this.t0 + start + f.durationMs - performance.now()));
    switch (f.kind) {
      case 'kill': {
        // All at once: a majority killed together is one event, not a rolling restart.
        await Promise.all(
          nodes.map(async (n) => {
            const cut = await n.kill9(true);
            this.history.add({ t: 'node', node: n.id, state: 'killed', at: this.now() });
            this.note(`n${n.id} killed; power cut dropped ${cut?.droppedBytes ?? 0} unsynced bytes in ${cut?.files ?? 0} segment(s)`);
          }),
        );
        await waitOut();
        const heal = this.now();
        await settleAll(
          nodes.map(async (n) => {
            await n.start();
            // A cluster node is ready once it has joined, its metadata caught up and every replica here is in its leader's in-sync set (bounded).
            let isReady = false;
            const probe = async (): Promise<void> => void (isReady = await n.ready());
            const t0 = this.now();
            if (this.clustered && !(await until(() => isReady, C.CLUSTER_READY_MS, probe))) this.note(`n${n.id} not ready ${C.CLUSTER_READY_MS} ms after its restart: ${n.lastNotReady}`);
            else if (this.clustered && this.now() - t0 > C.SLOW_READY_NOTE_MS) this.note(`n${n.id} ready ${Math.round(this.now() - t0)} ms after its restart; the last reason it was not: ${n.lastNotReady}`);
            this.history.add({ t: 'node', node: n.id, state: 'ready', at: this.now() });
          }),
        );
        this.note(`n${ids.join('+n')} restarted`);
        return { start, heal, nodes: ids };
      }
      case 'pause':
        for (const n of nodes) {
          n.pause();
          this.history.add({ t: 'node', node: n.id, state: 'paused', at: this.now() });
        }
        await waitOut();
        for (const n of nodes) {
          n.resume();
          this.history.add({ t: 'node', node: n.id, state: 'resumed', at: this.now() });
        }
        break;
      case 'partition':
        if (this.netns !== null) {
          await this.netns.apply(linkSettings(f.shape ?? 'minority', ids, this.nodes.length, f.bridge));
          await waitOut();
          await this.netns.healAll();
          // Healed once the routes are gone; the sinks drop nothing outside a cut, so the count since the last heal is this fault's.
          const heal = this.now();
          const dropped = await this.netns.droppedPackets();
          this.note(`fault ${f.id} healed: the kernel dropped ${dropped - this.netnsDropped} packets`);
          this.netnsDropped = dropped;
          return { start, heal, nodes: ids };
        }
        if (this.links !== null) {
          const before = this.links.droppedBytes;
          this.links.apply(linkSettings(f.shape ?? 'minority', ids, this.nodes.length, f.bridge));
          await waitOut();
          this.links.healAll();
          this.note(`fault ${f.id} healed: the links dropped ${this.links.droppedBytes - before} bytes`);
          break;
        }
        for (const n of nodes) this.proxies.get(n.id)!.setMode(f.linkMode ?? 'drop');
        await waitOut();
        for (const n of nodes) this.proxies.get(n.id)!.setMode('pass');
        break;
      case 'slow-disk':
        for (const n of nodes) n.setFaults({ fsyncDelayMs: f.fsyncDelayMs });
        await waitOut();
        for (const n of nodes) n.setFaults({});
        break;
      case 'disk-full':
        for (const n of nodes) n.fillDisk();
        await waitOut();
        for (const n of nodes) n.freeDisk();
        break;
    }
    return { start, heal: this.now(), nodes: ids };
  }

  /** The nodes a fault hits: its planned ones, or the node its target names now (a cluster). */
  private async aim(f: FaultPlan): Promise<number[]> {
    if (f.target === undefined || !this.clustered) return f.nodes;
    const up = this.nodes.filter((n) => n.state === 'up').map((n) => n.id);
    const view = await clusterView(this.upAddresses(), 'chaos');
    const id = view === null ? null : resolveTarget(view, f.target, f.id, up);
    if (id !== null) return [id];
    this.note(`fault ${f.id}: no ${f.target} found among the nodes up; hitting the planned n${f.nodes.join('+n')}`);
    return f.nodes;
  }

  /**
   * Runs the schedule's faults in order. A restart takes as long as it takes (recovery), so when a
   * fault ends later than planned, every later fault and the end of the run move by that lag: the
   * quiet gaps of the schedule are kept, and the faults never pile onto a node still starting.
   * A membership change runs in the background while the next faults run; the next membership change
   * waits for it (the schedule leaves room for that, lag aside), and so does the end of the run.
   */
  async runFaults(): Promise<void> {
    let lagMs = 0;
    let change: Promise<void> = Promise.resolve();
    for (const f of this.schedule.faults) {
      if (isMembership(f.kind)) {
        await change;
        change = this.membershipChange(f, f.startMs + lagMs);
        // Awaited before the next change and at the end; meanwhile its failure must not go unhandled.
        change.catch(() => {});
        continue;
      }
      const { start, heal, nodes } = await this.fault(f, f.startMs + lagMs);
      this.history.add({ t: 'fault', id: f.id, kind: f.kind, nodes, start, heal, detail: f.target === undefined ? f.detail : `${f.detail} (n${nodes.join('+n')})` });
      lagMs = Math.max(lagMs, this.now() - (f.startMs + f.durationMs));
    }
    await change;
    await sleep(Math.max(0, this.t0 + this.schedule.durationMs + lagMs - performance.now()));
  }

  /** One membership change at `atMs` (membership.ts), followed for at most its duration; its outcome goes into the history. */
  private async membershipChange(f: FaultPlan, atMs: number): Promise<void> {
    assert.ok(this.membership !== null, 'membership changes run on a cluster only');
    await sleep(Math.max(0, this.t0 + atMs - performance.now()));
    const start = this.now();
    this.note(`fault ${f.id}: ${f.detail}`);
    const untilMs = this.t0 + start + f.durationMs;
    const r = f.kind === 'move' ? await this.membership.move(f, untilMs) : await this.membership.decommission(f, untilMs);
    const heal = this.now();
    this.note(`fault ${f.id} ${r.outcome}: ${r.detail}${r.reason === undefined ? '' : ` (${r.reason})`}`);
    this.history.add({ t: 'fault', id: f.id, kind: f.kind, nodes: r.nodes, start, heal, detail: `${f.detail}: ${r.detail}`, outcome: r.outcome, reason: r.reason });
  }

  destroy(): void {
    for (const p of this.proxies.values()) void p.close();
    void this.links?.close();
    for (const n of this.nodes) n.destroy();
    // After the brokers: the namespaces' processes are killed there too, but a broker's own exit is cleaner.
    this.netns?.close();
  }

  /** What the run's note says of its network (the report and the history name the mode). */
  describeNet(): string {
    if (this.netns !== null) {
      const n = this.netns;
      return `network netns: namespaces ${n.namespace(1)}..${n.namespace(this.nodes.length)} on a bridge, harness at ${n.harnessAddress}; partitions are routes to a sink in the kernel`;
    }
    return `network proxy: nodes on 127.0.0.${this.hostBase + 1}..${this.hostBase + this.nodes.length}${this.links !== null ? '; partitions through the harness\'s node-to-node TCP proxies' : ''}`;
  }
}

/** Per partition key, the nodes whose replicas are compared: a cluster's final replica sets (voters), or null (every node's). */
type ReplicaSets = Map<string, number[]> | null;

/**
 * After the nodes stopped: every partition held by two or more nodes (`<data-dir>/<topic>-<p>/`) must
 * have byte-identical replicas below its final high watermark. On a cluster only the partition's
 * replica set at the end is compared: a node a move took the partition off is not a replica any more,
 * and its directory, if one is left, is counted as a stray (the broker deletes it once the metadata
 * moves past the removal), not compared.
 */
function compareAllReplicas(run: Run, targets: readonly Target[], sets: ReplicaSets): { compared: number; mismatches: number; strays: number; notes: string[]; mismatchNotes: string[] } {
  const out = { compared: 0, mismatches: 0, strays: 0, notes: [] as string[], mismatchNotes: [] as string[] };
  const finalHw = new Map<string, number>();
  for (const op of run.history.ops) if (op.t === 'final-hw') finalHw.set(op.key, op.hw);
  for (const t of targets) {
    for (let p = 0; p < C.WORKLOAD_PARTITIONS; p++) {
      const key = `${t.topic}/${p}`;
      const holders = run.nodes.filter((n) => fs.existsSync(path.join(n.dataDir, `${t.topic}-${p}`)));
      const set = sets?.get(key);
      const strays = set === undefined ? [] : holders.filter((n) => !set.includes(n.id));
      if (strays.length > 0) {
        out.strays += strays.length;
        out.notes.push(`${key}: n${strays.map((n) => n.id).join('+n')} still hold(s) a directory though not a replica any more (replicas ${set!.join(',')}); not compared`);
      }
      const missing = set === undefined ? [] : set.filter((id) => !holders.some((n) => n.id === id));
      if (missing.length > 0) out.notes.push(`${key}: replica(s) on n${missing.join('+n')} hold no directory (replicas ${set!.join(',')})`);
      const dirs = holders.filter((n) => set === undefined || set.includes(n.id)).map((n) => path.join(n.dataDir, `${t.topic}-${p}`));
      if (dirs.length < 2) continue;
      out.compared++;
      const c = compareReplicas(dirs, finalHw.get(key) ?? 0);
      if (c.from > 0) out.notes.push(`${key}: compared from offset ${c.from} (the latest log start among the replicas)`);
      if (c.firstDifference !== null) {
        out.mismatches++;
        out.mismatchNotes.push(`${key} offset ${c.firstDifference.offset}: ${c.firstDifference.replica} ${c.firstDifference.why}`);
      }
    }
  }
  return out;
}

/** A cluster after the final read: each workload partition's replica set (voters) as the metadata names it, recorded in the history; null if no node answered. */
async function finalReplicaSets(run: Run, targets: readonly Target[]): Promise<ReplicaSets> {
  const sets = new Map<string, number[]>();
  for (const t of targets) {
    const view = await clusterView(run.upAddresses(), t.topic);
    if (view === null) {
      run.note(`no node gave ${t.topic}'s replica sets: every node's replica is compared`);
      return null;
    }
    for (const p of view.partitions) {
      const key = `${t.topic}/${p.partition}`;
      sets.set(key, p.replicas);
      run.history.add({ t: 'replicas', key, replicas: p.replicas });
    }
  }
  return sets;
}

/**
 * A cluster after the final read: waits (bounded) until every replica of every partition (the nodes
 * of its final replica set) has the final high watermark, so the byte comparison after the stop
 * compares whole committed logs. A replica that never gets there is noted, and the comparison then
 * reports what it lacks.
 */
async function convergeReplicas(run: Run, targets: readonly Target[], sets: ReplicaSets): Promise<void> {
  const finalHw = new Map<string, number>();
  for (const op of run.history.ops) if (op.t === 'final-hw') finalHw.set(op.key, op.hw);
  const behind = new Set<string>();
  const probe = async (): Promise<void> => {
    behind.clear();
    for (const t of targets) {
      for (let p = 0; p < C.WORKLOAD_PARTITIONS; p++) {
        const key = `${t.topic}/${p}`;
        const want = finalHw.get(key) ?? 0;
        const replicas = run.nodes.filter((n) => sets?.get(key)?.includes(n.id) ?? true);
        if (want > 0) for (const n of replicas) if (((await localHighWatermark(n.grpcAddress, t.topic, p)) ?? -1) < want) behind.add(`n${n.id}:${key}`);
      }
    }
  };
  const t0 = performance.now();
  const ok = await until(() => behind.size === 0, C.CLUSTER_CONVERGE_MS, probe);
  run.note(ok ? `every replica reached the final high watermark (${Math.round(performance.now() - t0)} ms)` : `replicas still behind after ${C.CLUSTER_CONVERGE_MS} ms: ${[...behind].join(' ')}`);
}

export async function runSchedule(o: RunOptions): Promise<RunResult> {
  const schedule = o.schedule ?? makeSchedule({ seed: o.seed, nodes: o.nodes, durationMs: o.durationMs, kinds: o.kinds });
  const net = o.net ?? 'proxy';
  assert.ok(net === 'proxy' || o.nodes >= 3, '--net netns runs a cluster (3 nodes or more)');
  const outDir = path.join(o.outRoot, String(o.seed));
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  const workDir = o.keepData ? path.join(outDir, 'nodes') : fs.mkdtempSync(path.join(os.tmpdir(), `sluice-chaos-${o.seed}-`));
  const run = new Run(o, schedule, outDir, workDir);
  const stops: RunResult['stops'] = [];
  let replicas: ReturnType<typeof compareAllReplicas> = { compared: 0, mismatches: 0, strays: 0, notes: [], mismatchNotes: [] };
  let unsettled = '';
  try {
    const startedAt = performance.now();
    const targets = await run.startNodes();
    const startMs = Math.round(performance.now() - startedAt);
    run.startClock();
    run.note(`started ${o.nodes} node(s) in ${startMs} ms: ${run.nodes.map((n) => `n${n.id}=${n.grpcAddress}`).join(' ')}`);
    run.note(run.describeNet());
    const workload = new Workload(targets, run.history, run.now);
    workload.start();
    await run.runFaults();
    if (run.membership !== null && schedule.faults.some((f) => isMembership(f.kind))) {
      // Moves still under way (or started by a call that got no answer) finish before the final read.
      const t0 = performance.now();
      const left = await run.membership.settle(C.CLUSTER_MOVES_SETTLE_MS);
      unsettled = left;
      run.note(left === '' ? `no move in progress, every node active (${Math.round(performance.now() - t0)} ms)` : `still moving after ${C.CLUSTER_MOVES_SETTLE_MS} ms: ${left}`);
    }
    run.note('all faults healed; stopping writes');
    await workload.stopWriting();
    // Convergence: every reader reaches its partition's high watermark (bounded).
    const hws = new Map<string, number>();
    for (const t of targets) {
      const admin = new Admin({ brokers: t.address });
      const latest = await latestOffsets(admin, t.topic).catch((err: unknown) => {
        if (isSluiceError(err, 'UNKNOWN_TOPIC')) return new Map<number, number>(); // gone: the final read says so
        throw err;
      });
      for (const [p, hw] of latest) hws.set(`${t.topic}/${p}`, hw);
      admin.close();
    }
    const grouped = !run.clustered;
    const caughtUp = await until(() => [...hws].every(([k, hw]) => (workload.readerPositions.get(k) ?? 0) >= hw && (!grouped || (workload.groupPositions.get(k) ?? 0) >= hw)), C.WORKLOAD_DRAIN_MS);
    run.note(caughtUp ? `readers${grouped ? ' and the group' : ''} caught up with the high watermarks` : `readers${grouped ? ' or the group' : ''} did not catch up in time (what they read is still checked)`);
    await workload.stop();
    for (const t of targets) await finalRead(run.clustered ? t.address : run.nodes[Number(t.name.slice(1)) - 1].grpcAddress, t.topic, run.history);
    const sets = run.clustered ? await finalReplicaSets(run, targets) : null;
    if (run.clustered) await convergeReplicas(run, targets, sets);
    // All at once: a cluster node stopping alone may wait on peers that are stopping too.
    const stopAt = performance.now();
    await Promise.all(
      run.nodes.map(async (n) => {
        const s = await n.stop();
        stops.push({ node: n.id, code: s.code, signal: s.signal });
        if (s.code !== 0) run.note(`n${n.id} did not stop cleanly (${s.code ?? s.signal}): ${s.stderr.slice(-500)}`);
      }),
    );
    stops.sort((a, b) => a.node - b.node);
    run.note(`nodes stopped in ${Math.round(performance.now() - stopAt)} ms`);
    replicas = compareAllReplicas(run, targets, sets);
    for (const why of replicas.notes) run.note(why);
    for (const n of run.nodes) n.unmount();
  } finally {
    run.history.close();
    run.destroy();
  }
  const verdict = checkHistory(run.history.ops);
  verdict.replicasCompared = replicas.compared;
  verdict.replicaMismatches = replicas.mismatches;
  verdict.strayReplicas = replicas.strays;
  verdict.unsettled = unsettled;
  for (const why of replicas.mismatchNotes) verdict.samples.push({ key: why.split(' ')[0], why: `replica mismatch: ${why}` });
  verdict.ok = isClean(verdict) && stops.every((s) => s.code === 0);
  fs.writeFileSync(path.join(outDir, 'verdict.json'), JSON.stringify({ seed: o.seed, net, schedule, stops, verdict }, null, 2) + '\n');
  writeReport(path.join(outDir, 'report.html'), schedule, run.history.ops, verdict, net);
  if (!o.keepData) fs.rmSync(workDir, { recursive: true, force: true });
  return { seed: o.seed, schedule, verdict, outDir, stops, net };
}
