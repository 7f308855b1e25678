/**
 * The fault schedule of one run: a pure function of (seed, nodes, duration, fault kinds), so
 * `--seed X --schedules 1` replays the same faults at the same times. Faults come one after another
 * with quiet gaps, each on a node set drawn for its kind: one node, or, with 3+ nodes, sometimes a
 * majority at once (kill) or a minority cut off (partition). Membership changes (`move`,
 * `decommission`, cluster runs only) are the exception: the next fault starts while one runs (a kill,
 * pause or partition during a move), and the next membership change waits until it ended.
 */
import { xorshift } from '../idempotence/tcp-proxy.js';
import type { LinkMode } from '../idempotence/tcp-proxy.js';
import { PARTITION_SHAPES, type PartitionShape } from './links.js';
import * as C from './constants.js';

export const FAULT_KINDS = ['kill', 'pause', 'partition', 'slow-disk', 'disk-full', 'move', 'decommission'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** Fault kinds a cluster run can inject (partitions go through the harness's node-to-node link proxies, links.ts). */
export const CLUSTER_FAULT_KINDS: readonly FaultKind[] = ['kill', 'pause', 'partition', 'slow-disk', 'disk-full', 'move', 'decommission'];
/** Membership changes: cluster runs only; each runs alongside the faults that follow it (see makeSchedule). */
export const MEMBERSHIP_KINDS: readonly FaultKind[] = ['move', 'decommission'];
export const isMembership = (kind: FaultKind): boolean => MEMBERSHIP_KINDS.includes(kind);
/**
 * How a move's target replica set follows from the partition's replica set when the move starts (who
 * holds a partition is decided by the controller at run time, so the schedule names the change, not
 * the node ids): `swap` replaces one replica by a node outside the set (needs more nodes than the
 * replication factor), `rotate` moves the first replica to the end (same nodes, another preferred
 * leader), `back` returns to the set the partition had before the schedule's last move of it.
 */
export const MOVE_SHAPES = ['swap', 'rotate', 'back'] as const;
export type MoveShape = (typeof MOVE_SHAPES)[number];
export const FAULT_TARGETS = ['leader', 'follower', 'controller'] as const;
export type FaultTarget = (typeof FAULT_TARGETS)[number];

export interface FaultPlan {
  id: number;
  kind: FaultKind;
  /** Node ids (1-based) the fault hits. */
  nodes: number[];
  /** Since the run started. */
  startMs: number;
  /**
   * How long the fault lasts. For a membership change a bound: a move is followed until it completes
   * or this much time passed; a decommission until the node is drained or this much time passed, then
   * the node is recommissioned.
   */
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
  /** move: the workload topic's partition to move, and how its target follows from its replicas. */
  partition?: number;
  move?: MoveShape;
  /** move `swap`: which replica goes (index into the set) and which outside node comes (index, modulo their count). */
  replicaIndex?: number;
  outsiderIndex?: number;
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

function planFault(r: ReturnType<typeof rng>, id: number, kind: FaultKind, n: number, startMs: number, moved: Set<number>): FaultPlan {
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
    case 'move':
      return planMove(r, id, n, startMs, moved);
    case 'decommission': {
      const nodes = nodeSet(r, n, 1);
      const durationMs = r.int(C.CHAOS_DECOMMISSION_MS_MIN, C.CHAOS_DECOMMISSION_MS_MAX);
      return { id, kind, nodes, startMs, durationMs, detail: `decommission ${names(nodes)}, recommission once drained or after ${durationMs} ms` };
    }
  }
}

/** The workload topic's replication factor on `n` nodes (the harness creates it so). */
export const replicationFactor = (n: number): number => Math.min(C.CLUSTER_REPLICATION_FACTOR, n);

/**
 * A move of one workload partition: sometimes back to where an earlier move of this schedule took it
 * from (`moved` holds the partitions moved and not yet back), else a swap of one replica for a node
 * outside the set when there are more nodes than replicas, or a rotation of the set's order.
 */
function planMove(r: ReturnType<typeof rng>, id: number, n: number, startMs: number, moved: Set<number>): FaultPlan {
  const durationMs = r.int(C.CHAOS_MOVE_MS_MIN, C.CHAOS_MOVE_MS_MAX);
  const base = { id, kind: 'move' as const, nodes: [], startMs, durationMs };
  if (moved.size > 0 && r.next() < C.CHAOS_MOVE_BACK_CHANCE) {
    const partition = r.pick([...moved].sort((a, b) => a - b));
    moved.delete(partition);
    return { ...base, partition, move: 'back', detail: `move partition ${partition} back to its replicas before its last move (bound ${durationMs} ms)` };
  }
  const partition = r.int(0, C.WORKLOAD_PARTITIONS - 1);
  moved.add(partition);
  const rf = replicationFactor(n);
  if (n > rf && r.next() < 0.75) {
    const replicaIndex = r.int(0, rf - 1);
    const outsiderIndex = r.int(0, n - rf - 1);
    return { ...base, partition, move: 'swap', replicaIndex, outsiderIndex, detail: `move partition ${partition}: replica #${replicaIndex + 1} for outside node #${outsiderIndex + 1} (bound ${durationMs} ms)` };
  }
  return { ...base, partition, move: 'rotate', detail: `move partition ${partition}: rotate its replicas (another preferred leader; bound ${durationMs} ms)` };
}

/**
 * The kinds a schedule on `n` nodes draws from: membership changes need a cluster, and a decommission
 * needs more nodes than the replication factor (on 3 nodes at RF 3 there is nowhere to drain to, so
 * it is not drawn).
 */
export function drawableKinds(kinds: readonly FaultKind[], n: number): FaultKind[] {
  return kinds.filter((k) => (!isMembership(k) || n >= 3) && (k !== 'decommission' || n > replicationFactor(n)));
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
  const kinds = drawableKinds(o.kinds, o.nodes);
  if (kinds.length === 0) throw new Error(`none of the fault kinds ${o.kinds.join(',')} can run on ${o.nodes} node(s) (move needs a cluster, decommission more nodes than the replication factor)`);
  const r = rng(o.seed);
  const faults: FaultPlan[] = [];
  const moved = new Set<number>();
  // `t`: when the next fault may start; `memberFree`: when the next membership change may start.
  let t = C.CHAOS_LEAD_IN_MS;
  let memberFree = t;
  const end = o.durationMs - C.CHAOS_TAIL_MS;
  for (let id = 1; ; id++) {
    const kind = r.pick(kinds);
    const membership = isMembership(kind);
    const plan = planFault(r, id, kind, o.nodes, membership ? Math.max(t, memberFree) : t, moved);
    if (plan.startMs + plan.durationMs > end) break;
    faults.push(plan);
    const gap = r.int(C.CHAOS_GAP_MS_MIN, C.CHAOS_GAP_MS_MAX);
    if (membership) {
      memberFree = plan.startMs + plan.durationMs + gap;
      t = plan.startMs + r.int(C.CHAOS_MEMBERSHIP_OVERLAP_MS_MIN, C.CHAOS_MEMBERSHIP_OVERLAP_MS_MAX);
    } else t = plan.startMs + plan.durationMs + gap;
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
