/**
 * Graceful stop in cluster mode (issue 14 §1 "Graceful stop"): before a node drains and closes, it
 * hands every partition it leads to an in-sync peer, so the partition's writers wait one leadership
 * transfer (a vote round trip) instead of an election timeout plus gossip's failure detection.
 *
 * `sluice serve` runs this on SIGTERM, before the drain, rather than leaving it to a preStop hook: the
 * kubelet sends SIGTERM on every path that stops a pod (rolling update, `kubectl delete`, node drain,
 * eviction), and so do `docker stop`, systemd and a terminal's `kill`, while a preStop command would
 * need a client in the image and would not run on the other paths; and doing it inside the process
 * that then closes keeps the hand-off and the close together. Leader balancing can hand a leadership
 * back meanwhile (this node is still the preferred replica and alive): this node's own controller
 * executor pauses balancing when the hand-off begins (RunningBroker.handOffLeaderships); another
 * node's cannot tell yet, so each round looks again at what this node leads and hands it away again.
 * The chart's preStop keeps only its short sleep, so Service endpoints drop the pod first.
 *
 * Targets: a voter in the leader's own in-sync set that gossip sees alive, least-loaded first, so a
 * node's leaderships spread over the others. A partition with no such peer yet is waited for (until the
 * timeout) while the metadata names a voter peer gossip does not hold dead: on a loaded machine a
 * follower can fall out of the in-sync set, or be suspected, for a moment (seen in test/k8s under the
 * full suite: the hand-off gave one partition up after 240 ms and it waited out an election). One
 * with no such peer (replication factor 1, every peer dead) keeps its leader; the result says how many.
 */
import { LEADERSHIP_HANDOFF_PASSES_MAX, LEADERSHIP_HANDOFF_POLL_MS, LEADERSHIP_HANDOFF_ROUND_MS, LEADERSHIP_HANDOFF_TIMEOUT_MS } from '../constants.js';
import type { GroupId, PeerDirectory } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { ReplicaHost, ReplicaStatus } from './replica-host.js';

export interface HandOffOptions {
  readonly nodeId: NodeId;
  readonly host: Pick<ReplicaHost, 'replicaStatus'> & Required<Pick<ReplicaHost, 'transferLeadership'>>;
  readonly peers: Pick<PeerDirectory, 'get'>;
  /**
   * The voters of a group as the metadata lists them. With it, a partition that has no target yet but
   * a voter peer gossip does not hold dead (behind, or suspected for a moment under load) is waited for,
   * until the deadline; without it (or with no such peer: replication factor 1, every peer dead) the
   * hand-off gives up on that partition at once.
   */
  readonly voters?: (group: GroupId) => readonly NodeId[] | undefined;
  /** The exact high watermarks of a topic's replicas here (the core's DescribeTopic), for the settle step. */
  readonly highWatermarks?: (topic: string) => Promise<ReadonlyMap<number, number>>;
  readonly timeoutMs?: number;
  readonly roundMs?: number;
  readonly pollMs?: number;
}

export interface HandOffResult {
  /** Partitions this node led when the hand-off began. */
  readonly led: number;
  /** Partitions this node still leads at the end (no in-sync peer, or the time ran out). */
  readonly remaining: number;
  readonly elapsedMs: number;
}

/** The target of each leadership here that can move: an alive in-sync voter, least-loaded first. */
export function handOffTargets(self: NodeId, leading: readonly ReplicaStatus[], alive: (id: NodeId) => boolean): Map<GroupId, NodeId> {
  const load = new Map<NodeId, number>();
  const out = new Map<GroupId, NodeId>();
  for (const s of leading) {
    let best: NodeId | undefined;
    for (const v of s.inSync) {
      if (v === self || !alive(v)) continue;
      if (best === undefined || (load.get(v) ?? 0) < (load.get(best) ?? 0)) best = v;
    }
    if (best === undefined) continue;
    load.set(best, (load.get(best) ?? 0) + 1);
    out.set(s.group, best);
  }
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Moves this node's leaderships away; resolves (never rejects) when none is left or time is up. */
export async function handOffLeaderships(o: HandOffOptions): Promise<HandOffResult> {
  const t0 = performance.now();
  const deadline = t0 + (o.timeoutMs ?? LEADERSHIP_HANDOFF_TIMEOUT_MS);
  // Here until another node is known to lead: a leader that stepped down for its target's campaign has
  // not handed anything over until the target won (its vote may still be needed, so it must not leave).
  const leading = (): ReplicaStatus[] => o.host.replicaStatus().filter((s) => s.role === 'leader' || (s.role !== 'learner' && s.role !== 'offline' && (s.leader === 0 || s.leader === o.nodeId) && handedOff.has(s.group)));
  const handedOff = new Set<GroupId>();
  const led = o.host.replicaStatus().filter((s) => s.role === 'leader').length;
  // A peer that is stopping too (gossip's `leaving`) is no target: when a whole cluster stops at once,
  // handing leaderships among the stopping nodes only passes them around until every timeout ran out.
  const alive = (id: NodeId): boolean => {
    const p = o.peers.get(id);
    return p?.state === 'alive' && p.leaving !== true;
  };
  // A peer that may yet become a target: a voter here by the metadata that gossip does not hold dead
  // and that is not stopping.
  const hopeful = (s: ReplicaStatus): boolean =>
    (o.voters?.(s.group) ?? []).some((v) => {
      const p = o.peers.get(v);
      return v !== o.nodeId && p !== undefined && p.state !== 'dead' && p.leaving !== true;
    });
  // A leadership can come back while the handed-off replicas settle (another node's balancer had not
  // heard yet that this one is leaving; the suspected cause of one leadership left after a 259 ms
  // hand-off in test/k8s under the full suite): then the rounds run again.
  for (let pass = 0; pass < LEADERSHIP_HANDOFF_PASSES_MAX && performance.now() < deadline; pass++) {
    await handOffRounds(o, leading, handedOff, alive, hopeful, deadline);
    await settle(o, handedOff, deadline);
    const back = leading().filter((s) => s.role === 'leader');
    if (back.length === 0 || (handOffTargets(o.nodeId, back, alive).size === 0 && !back.some(hopeful))) break;
  }
  return { led, remaining: leading().filter((s) => s.role === 'leader').length, elapsedMs: Math.round(performance.now() - t0) };
}

/** Transfer rounds until nothing is led or waited for here, or the deadline. */
async function handOffRounds(
  o: HandOffOptions,
  leading: () => ReplicaStatus[],
  handedOff: Set<GroupId>,
  alive: (id: NodeId) => boolean,
  hopeful: (s: ReplicaStatus) => boolean,
  deadline: number,
): Promise<void> {
  // Bounded by the deadline; the count bound only guards against a zero round time (a round with
  // nothing to transfer lasts one poll).
  for (let round = 0; round < 10_000 && performance.now() < deadline; round++) {
    const led = leading().filter((s) => s.role === 'leader');
    const targets = handOffTargets(o.nodeId, led, alive);
    // Stepped down for a target that has not won yet: waited for, unless every other voter is now
    // stopping too or dead (a whole cluster stopping: the target may close before it wins).
    const waiting = leading().filter((s) => s.role !== 'leader' && (o.voters === undefined || hopeful(s))).map((s) => s.group);
    if (targets.size === 0 && waiting.length === 0 && !led.some(hopeful)) break;
    for (const g of targets.keys()) handedOff.add(g);
    // A refused transfer (this node no longer leads the group) is simply asked again next round.
    for (const [group, to] of targets) o.host.transferLeadership(group, to).catch(() => {});
    const roundEnd = Math.min(deadline, performance.now() + (o.roundMs ?? LEADERSHIP_HANDOFF_ROUND_MS));
    while (performance.now() < roundEnd) {
      await sleep(o.pollMs ?? LEADERSHIP_HANDOFF_POLL_MS);
      const still = new Set(leading().map((s) => s.group));
      if (![...targets.keys(), ...waiting].some((g) => still.has(g))) break;
    }
  }
}

/**
 * Produces this node accepted as leader are answered once it, now a follower, learns from the new
 * leader that they committed. The node must keep its Raft transport open until then (close() ends it
 * before draining calls), or those clients wait for the close and retry: so wait, bounded by one round,
 * until each handed-off replica's exact high watermark reaches its log end (which stopped growing when
 * it stepped down; its status was refreshed by that leader change).
 */
async function settle(o: HandOffOptions, groups: ReadonlySet<GroupId>, deadline: number): Promise<void> {
  if (o.highWatermarks === undefined || groups.size === 0) return;
  const end = Math.min(deadline, performance.now() + (o.roundMs ?? LEADERSHIP_HANDOFF_ROUND_MS));
  const targets = o.host.replicaStatus().filter((s) => groups.has(s.group) && s.role !== 'leader');
  while (targets.length > 0 && performance.now() < end) {
    const topics = [...new Set(targets.map((s) => s.topic))];
    const hws = new Map<string, ReadonlyMap<number, number>>();
    await Promise.all(topics.map(async (t) => hws.set(t, await o.highWatermarks!(t).catch(() => new Map<number, number>()))));
    for (let i = targets.length - 1; i >= 0; i--) {
      const s = targets[i];
      if ((hws.get(s.topic)?.get(s.partition) ?? -1) >= s.logEndOffset) targets.splice(i, 1);
    }
    if (targets.length > 0) await sleep(o.pollMs ?? LEADERSHIP_HANDOFF_POLL_MS);
  }
}
