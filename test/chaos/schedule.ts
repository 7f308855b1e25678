/**
 * The fault schedule of one run: a pure function of (seed, nodes, duration, fault kinds), so
 * `--seed X --schedules 1` replays the same faults at the same times. Faults come one after another
 * with quiet gaps (never two at once), each on a node set drawn for its kind: one node, or, with 3+
 * nodes, sometimes a majority at once (kill) or a minority cut off (partition).
 */
import { xorshift } from '../idempotence/tcp-proxy.js';
import type { LinkMode } from '../idempotence/tcp-proxy.js';
import { PARTITION_SHAPES, type PartitionShape } from './links.js';
import * as C from './constants.js';

export const FAULT_KINDS = ['kill', 'pause', 'partition', 'slow-disk', 'disk-full'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** Fault kinds a cluster run can inject (partitions go through the harness's node-to-node link proxies, links.ts). */
export const CLUSTER_FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition', 'slow-disk', 'disk-full'];
export const FAULT_TARGETS = ['leader', 'follower', 'controller'] as const;
export type FaultTarget = (typeof FAULT_TARGETS)[number];

export interface FaultPlan {
  id: number;
  kind: FaultKind;
  /** Node ids (1-based) the fault hits. */
  nodes: number[];
  /** Since the run started. */
  startMs: number;
  durationMs: number;
  /**
   * Cluster runs (3+ nodes), single-node kill and pause: the role of the node to hit, resolved when the
   * fault starts from the cluster's metadata (a leader of a workload partition, a follower of one, the
   * controller leader). `nodes` is then the fallback if the role cannot be resolved (no metadata), and
   * the history's fault record names the node actually hit. Who leads is decided at run time, so a
   * replay has the same faults, roles and times, but perhaps other node ids.
   */
  target?: FaultTarget;
  /** partition, one node: what the links of `nodes` do meanwhile. */
  linkMode?: LinkMode;
  /**
   * partition, a cluster: the shape (links.ts `linkSettings`): `minority` cuts `nodes` off the rest,
   * `bridge` cuts `nodes` off the rest but `bridge`, `one-way` loses what `nodes` send.
   */
  shape?: PartitionShape;
  /** partition, `bridge`: the node that still reaches both sides. */
  bridge?: number;
  /** slow-disk: the delay added to each fdatasync. */
  fsyncDelayMs?: number;
  /** One line for people: "kill -9 n2 for 830 ms". */
  detail: string;
}

export interface Schedule {
  seed: number;
  nodes: number;
  durationMs: number;
  /** The kinds the faults were drawn from (for the replay command). */
  kinds: FaultKind[];
  faults: FaultPlan[];
}

export interface ScheduleOptions {
  seed: number;
  nodes: number;
  durationMs: number;
  kinds: readonly FaultKind[];
}

/** A seeded source with the few draws a schedule needs. */
export function rng(seed: number): { next(): number; int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T } {
  // Spread nearby seeds apart (xorshift's first outputs from seeds 1, 2, 3 are close).
  const next = xorshift(Math.imul(seed >>> 0, 2654435761) ^ 0x5bd1e995);
  for (let i = 0; i < 8; i++) next();
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  return { next, int, pick: (xs) => xs[int(0, xs.length - 1)] };
}

function nodeSet(r: ReturnType<typeof rng>, n: number, size: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i + 1);
  for (let i = all.length - 1; i > 0; i--) {
    const j = r.int(0, i);
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, size).sort((a, b) => a - b);
}

const names = (nodes: number[]): string => nodes.map((n) => `n${n}`).join('+');
const who = (nodes: number[], target: FaultTarget | undefined): string => (target === undefined ? names(nodes) : `a ${target === 'controller' ? 'controller leader' : `partition ${target}`}`);

function planFault(r: ReturnType<typeof rng>, id: number, kind: FaultKind, n: number, startMs: number): FaultPlan {
  const minority = Math.max(1, Math.floor((n - 1) / 2));
  switch (kind) {
    case 'kill': {
      const majority = n >= 3 && r.next() < 0.2;
      const nodes = nodeSet(r, n, majority ? Math.floor(n / 2) + 1 : 1);
      const durationMs = r.int(C.CHAOS_KILL_DOWN_MS_MIN, C.CHAOS_KILL_DOWN_MS_MAX);
      const target = n >= 3 && !majority ? r.pick(FAULT_TARGETS) : undefined;
      return { id, kind, nodes, startMs, durationMs, target, detail: `kill -9 ${who(nodes, target)} (power cut), restart after ${durationMs} ms` };
    }
    case 'pause': {
      const nodes = nodeSet(r, n, 1);
      const durationMs = n >= 3 ? r.int(C.CLUSTER_PAUSE_MS_MIN, C.CLUSTER_PAUSE_MS_MAX) : r.int(C.CHAOS_PAUSE_MS_MIN, C.CHAOS_PAUSE_MS_MAX);
      const target = n >= 3 ? r.pick(FAULT_TARGETS) : undefined;
      return { id, kind, nodes, startMs, durationMs, target, detail: `SIGSTOP ${who(nodes, target)} for ${durationMs} ms` };
    }
    case 'partition': {
      if (n >= 3) return planClusterPartition(r, id, n, startMs);
      const nodes = nodeSet(r, n, r.int(1, minority));
      const linkMode = r.pick<LinkMode>(['drop', 'drop', 'drop-responses', 'drop-requests']);
      const durationMs = r.int(C.CHAOS_PARTITION_MS_MIN, C.CHAOS_PARTITION_MS_MAX);
      return { id, kind, nodes, startMs, durationMs, linkMode, detail: `partition ${names(nodes)} (${linkMode}) for ${durationMs} ms` };
    }
    case 'slow-disk': {
      const nodes = nodeSet(r, n, 1);
      const fsyncDelayMs = r.int(C.CHAOS_SLOW_FSYNC_MS_MIN, C.CHAOS_SLOW_FSYNC_MS_MAX);
      const durationMs = r.int(C.CHAOS_DISK_MS_MIN, C.CHAOS_DISK_MS_MAX);
      return { id, kind, nodes, startMs, durationMs, fsyncDelayMs, detail: `slow disk on ${names(nodes)}: fdatasync +${fsyncDelayMs} ms for ${durationMs} ms` };
    }
    case 'disk-full': {
      const nodes = nodeSet(r, n, 1);
      const durationMs = r.int(C.CHAOS_DISK_MS_MIN, C.CHAOS_DISK_MS_MAX);
      return { id, kind, nodes, startMs, durationMs, detail: `disk full on ${names(nodes)} for ${durationMs} ms` };
    }
  }
}

/**
 * A partition between the nodes of a cluster: a minority cut off (one node in three of them aimed at
 * a partition leader or the controller leader), a bridge node that still sees both sides, or one node
 * whose messages are lost one way (it hears the others, they do not hear it).
 */
function planClusterPartition(r: ReturnType<typeof rng>, id: number, n: number, startMs: number): FaultPlan {
  const shape = r.pick(PARTITION_SHAPES);
  const durationMs = r.int(C.CHAOS_PARTITION_MS_MIN, C.CHAOS_PARTITION_MS_MAX);
  const base = { id, kind: 'partition' as const, startMs, durationMs, shape };
  if (shape === 'bridge') {
    const order = nodeSet(r, n, n);
    for (let i = order.length - 1; i > 0; i--) {
      const j = r.int(0, i);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const bridge = order[0];
    const nodes = order.slice(1, 1 + r.int(1, Math.floor((n - 1) / 2))).sort((a, b) => a - b);
    return { ...base, nodes, bridge, detail: `partition ${names(nodes)} from the others but bridge n${bridge} for ${durationMs} ms` };
  }
  const size = shape === 'minority' ? r.int(1, Math.floor((n - 1) / 2)) : 1;
  const nodes = nodeSet(r, n, size);
  const target = size === 1 ? r.pick<FaultTarget | undefined>(['leader', 'controller', undefined]) : undefined;
  const what = shape === 'minority' ? `cut ${who(nodes, target)} off the others` : `lose what ${who(nodes, target)} sends (one way)`;
  return { ...base, nodes, target, detail: `partition: ${what} for ${durationMs} ms` };
}

export function makeSchedule(o: ScheduleOptions): Schedule {
  if (!Number.isSafeInteger(o.nodes) || o.nodes < 1) throw new Error(`nodes must be a positive integer, got ${o.nodes}`);
  if (o.kinds.length === 0) throw new Error('at least one fault kind is needed');
  const r = rng(o.seed);
  const faults: FaultPlan[] = [];
  let t = C.CHAOS_LEAD_IN_MS;
  const end = o.durationMs - C.CHAOS_TAIL_MS;
  for (let id = 1; ; id++) {
    const plan = planFault(r, id, r.pick(o.kinds), o.nodes, t);
    if (plan.startMs + plan.durationMs > end) break;
    faults.push(plan);
    t = plan.startMs + plan.durationMs + r.int(C.CHAOS_GAP_MS_MIN, C.CHAOS_GAP_MS_MAX);
  }
  return { seed: o.seed, nodes: o.nodes, durationMs: o.durationMs, kinds: [...o.kinds], faults };
}

export function parseFaultKinds(text: string): FaultKind[] {
  const kinds = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  for (const k of kinds) if (!(FAULT_KINDS as readonly string[]).includes(k)) throw new Error(`unknown fault '${k}'; known: ${FAULT_KINDS.join(', ')}`);
  if (kinds.length === 0) throw new Error('--faults needs at least one fault kind');
  return [...new Set(kinds)] as FaultKind[];
}

/**
 * A fixed schedule for reproducing one scenario with any seed: kill -9 of every node at once with a
 * power cut, 2 s into a 6 s run, restarted after 300 ms (the CI's whole-cluster restart; `--preset
 * kill-all`). The seed only names the run's output directory.
 */
export function killAllSchedule(seed: number, nodes: number): Schedule {
  const all = Array.from({ length: nodes }, (_, i) => i + 1);
  const detail = `kill -9 ${names(all)} (power cut), restart after 300 ms`;
  return { seed, nodes, durationMs: 6_000, kinds: ['kill'], faults: [{ id: 1, kind: 'kill', nodes: all, startMs: 2_000, durationMs: 300, detail }] };
}
