/**
 * Membership changes as chaos faults (cluster runs, issue 13 §1): a move of one workload partition to
 * another replica set, and a decommission of a node followed by its recommission, done through the
 * Admin client as an operator would (`sluice topic move`, `sluice cluster decommission|recommission`),
 * while the schedule's other faults run. Each change ends with an outcome for the history and the
 * report:
 *  - `completed`: the move reached its target, or the decommissioned node was drained, in its time;
 *  - `running`: still under way when its time ended (a move carries on in the cluster; a node still
 *    draining is recommissioned anyway, and the moves already begun off it run to their end);
 *  - `refused`: the cluster answered with a definite error (its ErrorInfo reason is kept), e.g.
 *    REASSIGNMENT_IN_PROGRESS when an earlier move of the partition still runs, or a node that is not
 *    active as a move's target; nothing was started;
 *  - `unanswered`: no node answered before the time ended (the controller leader killed, say): the
 *    change may or may not have started; the settle phase at the end of the run waits for it either way.
 *    (A decommission's outcome is read from its recommission's answer, which says whether the node was
 *    decommissioning or decommissioned, so it is `unanswered` only when it never took effect.)
 * Calls that fail retriably (UNAVAILABLE, TIMEOUT, NOT_LEADER, ...) are asked again until the change's
 * time ends; every call has a deadline.
 */
import { Admin, type Reassignments } from '../../src/client/index.js';
import { isSluiceError } from '../../src/errors.js';
import { clusterView } from './cluster.js';
import * as C from './constants.js';
import type { MembershipOutcome } from './history.js';
import type { FaultPlan } from './schedule.js';

export interface MembershipResult {
  outcome: MembershipOutcome;
  /** refused / unanswered: the cluster's error (code: message) or why the harness did nothing. */
  reason?: string;
  /** The nodes involved: a move's target replica set, the decommissioned node. */
  nodes: number[];
  /** What was done, resolved against the cluster: "chaos/2 [1,2,3] -> [4,2,3], done in 4.1 s". */
  detail: string;
}

const channelOptions = { 'grpc.use_local_subchannel_pool': 1, 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const list = (ids: readonly number[]): string => `[${ids.join(',')}]`;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

type Answer<T> = { ok: T } | { refused: string } | { unanswered: string };

/** The replica set a move aims at, from the partition's replicas now (schedule.ts `MoveShape`). */
export function moveTarget(f: FaultPlan, current: readonly number[], nodeCount: number, before: readonly number[] | undefined): number[] | null {
  if (f.move === 'back') return before === undefined ? null : [...before];
  const outsiders = Array.from({ length: nodeCount }, (_, i) => i + 1).filter((id) => !current.includes(id));
  if (f.move === 'swap' && outsiders.length > 0 && current.length > 0) {
    const target = [...current];
    target[(f.replicaIndex ?? 0) % current.length] = outsiders[(f.outsiderIndex ?? 0) % outsiders.length];
    return target;
  }
  return current.length < 2 ? null : [...current.slice(1), current[0]];
}

export class MembershipDriver {
  /** Per partition of the topic, its replica set before its last move that the cluster accepted (for `back`). */
  private readonly before = new Map<number, number[]>();

  constructor(
    /** Addresses of the nodes up now (asked in this order). */
    private readonly addresses: () => string[],
    private readonly nodeCount: number,
    private readonly topic: string,
  ) {}

  /**
   * Asks until a definite answer or `untilMs` (performance.now()). Each attempt starts at the next node
   * that is up: one cut off by a partition answers nothing, and the client would wait on it first every time.
   */
  private async ask<T>(call: (a: Admin) => Promise<T>, untilMs: number): Promise<Answer<T>> {
    let last = 'no node up';
    for (let attempt = 0; ; attempt++) {
      const up = this.addresses();
      if (up.length > 0) {
        const first = attempt % up.length;
        const admin = new Admin({ brokers: [...up.slice(first), ...up.slice(0, first)], requestTimeoutMs: C.CLUSTER_PROBE_TIMEOUT_MS, channelOptions });
        try {
          return { ok: await call(admin) };
        } catch (err) {
          if (isSluiceError(err) && !err.retriable) return { refused: `${err.code}: ${err.message}` };
          last = err instanceof Error ? err.message : String(err);
        } finally {
          admin.close();
        }
      }
      if (performance.now() >= untilMs) return { unanswered: last };
      await sleep(C.CHAOS_MEMBERSHIP_POLL_MS);
    }
  }

  /** Polls ListReassignments until `done` or `untilMs`; true when done. */
  private async follow(done: (r: Reassignments) => boolean, untilMs: number): Promise<boolean> {
    for (;;) {
      const r = await this.ask((a) => a.reassignments(), untilMs);
      if ('ok' in r && done(r.ok)) return true;
      if (performance.now() >= untilMs) return false;
      await sleep(C.CHAOS_MEMBERSHIP_POLL_MS);
    }
  }

  private moving(r: Reassignments, partition: number): Reassignments['reassignments'][number] | undefined {
    return r.reassignments.find((m) => m.topic === this.topic && m.partition === partition && m.target.length > 0);
  }

  async move(f: FaultPlan, untilMs: number): Promise<MembershipResult> {
    const p = f.partition ?? 0;
    const view = await clusterView(this.addresses(), this.topic);
    const current = view?.partitions.find((x) => x.partition === p)?.replicas;
    if (current === undefined) return { outcome: 'unanswered', reason: 'no node gave the metadata', nodes: [], detail: `${this.topic}/${p}: replicas unknown` };
    const target = moveTarget(f, current, this.nodeCount, this.before.get(p));
    if (target === null) return { outcome: 'refused', reason: 'harness: nothing to move back to (the earlier move of this partition did not start)', nodes: [...current], detail: `${this.topic}/${p} stays on ${list(current)}` };
    const what = `${this.topic}/${p} ${list(current)} -> ${list(target)}`;
    const t0 = performance.now();
    let asked = await this.ask((a) => a.movePartition(this.topic, p, target), untilMs);
    if ('refused' in asked && asked.refused.startsWith('REASSIGNMENT_IN_PROGRESS')) {
      // An earlier attempt of ours that timed out may have started it: then it is this move.
      const r = await this.ask((a) => a.reassignments(), untilMs);
      const m = 'ok' in r ? this.moving(r.ok, p) : undefined;
      if (m !== undefined && m.target.join(',') === target.join(',')) asked = { ok: undefined };
    }
    if ('refused' in asked) return { outcome: 'refused', reason: asked.refused, nodes: target, detail: what };
    if ('unanswered' in asked) return { outcome: 'unanswered', reason: asked.unanswered, nodes: target, detail: what };
    this.before.set(p, [...current]);
    const done = await this.follow((r) => this.moving(r, p) === undefined, untilMs);
    const took = performance.now() - t0;
    return done ? { outcome: 'completed', nodes: target, detail: `${what}, done in ${seconds(took)}` } : { outcome: 'running', nodes: target, detail: `${what}, still moving after ${seconds(took)}` };
  }

  /**
   * Decommissions the fault's node, follows it until drained or `untilMs`, then recommissions it
   * (bounded by CHAOS_RECOMMISSION_MS; a node left out of service would shrink every later schedule's
   * cluster, so failing that is a harness error, thrown). The recommission is sent whatever the
   * decommission's answer: an attempt whose answer was lost may have taken effect before a retry was
   * refused, and on an active node it is a no-op. Its answer (the state the node was in) says what
   * the decommission came to.
   */
  async decommission(f: FaultPlan, untilMs: number): Promise<MembershipResult> {
    const id = f.nodes[0];
    const t0 = performance.now();
    const asked = await this.ask((a) => a.decommissionNode(id), untilMs);
    const drained = 'ok' in asked && (await this.follow((r) => r.nodes.find((n) => n.nodeId === id)?.state === 'decommissioned', untilMs));
    const took = performance.now() - t0;
    const back = await this.ask((a) => a.recommissionNode(id), performance.now() + C.CHAOS_RECOMMISSION_MS);
    if (!('ok' in back)) throw new Error(`the recommission of n${id} after its decommission failed: ${'refused' in back ? back.refused : back.unanswered}`);
    const was = back.ok.previousState;
    const after = `recommissioned (was ${was}, holds ${back.ok.node.replicas} replica(s))`;
    const retry = 'refused' in asked ? ` (a retry was refused: ${asked.refused})` : '';
    if (drained || was === 'decommissioned') return { outcome: 'completed', nodes: [id], detail: `n${id} drained in ${drained ? seconds(took) : `at most ${seconds(took)}`}${retry}, ${after}` };
    if (was === 'decommissioning') return { outcome: 'running', nodes: [id], detail: `n${id} still draining after ${seconds(took)}${retry}, ${after}` };
    if ('refused' in asked) return { outcome: 'refused', reason: asked.refused, nodes: [id], detail: `n${id} stayed active` };
    if ('unanswered' in asked) return { outcome: 'unanswered', reason: asked.unanswered, nodes: [id], detail: `n${id} stayed active` };
    return { outcome: 'running', nodes: [id], detail: `n${id} active again before the harness recommissioned it, ${after}` };
  }

  /**
   * After the faults: waits (bounded) until no move of any partition runs and no node is left
   * decommissioning, so the final read and the replica comparison see settled replica sets. Returns
   * what still ran at the bound ("" when settled).
   */
  async settle(ms: number): Promise<string> {
    let left = '';
    const done = (r: Reassignments): boolean => {
      const moving = r.reassignments.filter((m) => m.target.length > 0).map((m) => `${m.topic}/${m.partition} -> ${list(m.target)}`);
      const nodes = r.nodes.filter((n) => n.state !== 'active').map((n) => `n${n.nodeId} ${n.state}`);
      left = [...moving, ...nodes].join(', ');
      return left === '';
    };
    const ok = await this.follow(done, performance.now() + ms);
    return ok ? '' : left || 'no node answered ListReassignments';
  }
}
