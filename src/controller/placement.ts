/**
 * Placement and the planners: pure functions of the metadata state (and of which nodes are live, which
 * gossip tells). No I/O, no clock, no randomness: the same state gives the same answer on every node,
 * so a test can state exactly what a placement must be. See docs/controller.md "Placement".
 *
 * - `placePartitions`: replicas of new partitions over nodes, racks and each node's shards, balancing
 *   replica counts and preferred-leader counts.
 * - `planLeaderBalance`: which leaders to move back to their preferred replica, a few at a time.
 * - `planDecommission`: a move of every replica off a node.
 * - `planMove` / `nextStep`: a move as add learner -> promote -> remove, one step per record.
 */
import { SluiceError } from '../errors.js';
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import { ReassignStep, type ReassignStepRecord } from '../rpc/gen/sluice/cluster/v1/controller.js';
import type { Assignment, NodeRecordState, PartitionState } from './types.js';

/** A node that may take new replicas. */
export interface PlacementNode {
  readonly id: NodeId;
  /** '' when not configured: such a node counts as a rack of its own. */
  readonly rack: string;
  readonly shards: number;
}

/** Replica and preferred-leader counts, per node and per (node, shard); updated as placement proceeds. */
export class PlacementLoad {
  private readonly replicas = new Map<NodeId, number>();
  private readonly leaders = new Map<NodeId, number>();
  private readonly shardReplicas = new Map<NodeId, number[]>();

  /** The load of the existing partitions: every voter and learner counts, voters[0] as preferred leader. */
  static of(partitions: readonly PartitionState[]): PlacementLoad {
    const load = new PlacementLoad();
    for (const p of partitions) {
      p.voters.nodes.forEach((n, i) => load.add(n, p.voters.shards[i], i === 0));
      p.learners.nodes.forEach((n, i) => load.add(n, p.learners.shards[i], false));
    }
    return load;
  }

  replicasOn(node: NodeId): number {
    return this.replicas.get(node) ?? 0;
  }

  leadersOn(node: NodeId): number {
    return this.leaders.get(node) ?? 0;
  }

  onShard(node: NodeId, shard: number): number {
    return this.shardReplicas.get(node)?.[shard] ?? 0;
  }

  add(node: NodeId, shard: number, preferredLeader: boolean): void {
    this.replicas.set(node, this.replicasOn(node) + 1);
    if (preferredLeader) this.leaders.set(node, this.leadersOn(node) + 1);
    let s = this.shardReplicas.get(node);
    if (s === undefined) this.shardReplicas.set(node, (s = []));
    s[shard] = (s[shard] ?? 0) + 1;
  }

  remove(node: NodeId, shard: number, preferredLeader: boolean): void {
    this.replicas.set(node, this.replicasOn(node) - 1);
    if (preferredLeader) this.leaders.set(node, this.leadersOn(node) - 1);
    const s = this.shardReplicas.get(node);
    if (s !== undefined && s[shard] !== undefined) s[shard]--;
  }

  /** The least loaded shard of `node` (lowest index on a tie). */
  leastLoadedShard(node: PlacementNode): number {
    let best = 0;
    for (let s = 1; s < node.shards; s++) if (this.onShard(node.id, s) < this.onShard(node.id, best)) best = s;
    return best;
  }
}

function rackKey(n: PlacementNode): string {
  return n.rack === '' ? `\0node-${n.id}` : n.rack;
}

/** The nodes that may take a new replica: registered, active and live. Sorted by id. */
export function placementNodes(nodes: readonly NodeRecordState[], live: (id: NodeId) => boolean): PlacementNode[] {
  return nodes.filter((n) => n.state === 'active' && live(n.id)).map((n) => ({ id: n.id, rack: n.rack, shards: n.shards }));
}

/**
 * Picks one more replica for a partition that already has `chosen`: a node not in it, on a rack it
 * does not use yet when there is one, then the fewest replicas (the fewest preferred leaders first
 * when `leader`), then the lowest id.
 */
function pickNode(candidates: readonly PlacementNode[], chosen: readonly PlacementNode[], load: PlacementLoad, leader: boolean): PlacementNode | undefined {
  const usedRacks = new Set(chosen.map(rackKey));
  const free = candidates.filter((n) => !chosen.some((c) => c.id === n.id));
  const newRack = free.filter((n) => !usedRacks.has(rackKey(n)));
  const pool = newRack.length > 0 ? newRack : free;
  let best: PlacementNode | undefined;
  for (const n of pool) {
    if (best === undefined) {
      best = n;
      continue;
    }
    const dl = leader ? load.leadersOn(n.id) - load.leadersOn(best.id) : 0;
    const dr = load.replicasOn(n.id) - load.replicasOn(best.id);
    if (dl < 0 || (dl === 0 && (dr < 0 || (dr === 0 && n.id < best.id)))) best = n;
  }
  return best;
}

/**
 * Replicas for `count` new partitions with replication factor `rf`, over `nodes` (the live, active
 * ones), each as nodes + the shard on each node; the first node is the preferred leader. `load` is
 * updated as partitions are placed, so one call balances within itself and against what exists.
 */
export function placePartitions(nodes: readonly PlacementNode[], load: PlacementLoad, count: number, rf: number): Assignment[] {
  if (rf > nodes.length) {
    throw new SluiceError(
      'REPLICATION_FACTOR_TOO_LARGE',
      `replication factor ${rf} is larger than the ${nodes.length} live node${nodes.length === 1 ? '' : 's'} that can take a replica`,
    );
  }
  const out: Assignment[] = [];
  for (let p = 0; p < count; p++) {
    const chosen: PlacementNode[] = [];
    const shards: number[] = [];
    for (let r = 0; r < rf; r++) {
      const n = pickNode(nodes, chosen, load, r === 0)!;
      const shard = load.leastLoadedShard(n);
      load.add(n.id, shard, r === 0);
      chosen.push(n);
      shards.push(shard);
    }
    out.push({ nodes: chosen.map((n) => n.id), shards });
  }
  return out;
}

export interface LeaderTransfer {
  readonly group: GroupId;
  readonly topic: string;
  readonly partition: number;
  readonly from: NodeId;
  readonly to: NodeId;
}

/**
 * Leader balancing: partitions whose leader is not their preferred replica (voters[0]) while that
 * replica is live and not lost, at most `max` of them, those on the most overloaded leaders first
 * (then by group id). The caller asks each partition's leader to transfer, waits, and asks again.
 */
export function planLeaderBalance(partitions: readonly PartitionState[], live: (id: NodeId) => boolean, max: number): LeaderTransfer[] {
  const leading = new Map<NodeId, number>();
  const preferred = new Map<NodeId, number>();
  for (const p of partitions) {
    if (p.leader !== 0) leading.set(p.leader, (leading.get(p.leader) ?? 0) + 1);
    if (p.voters.nodes.length > 0) preferred.set(p.voters.nodes[0], (preferred.get(p.voters.nodes[0]) ?? 0) + 1);
  }
  const excess = (n: NodeId): number => (leading.get(n) ?? 0) - (preferred.get(n) ?? 0);
  const candidates = partitions.filter((p) => {
    const want = p.voters.nodes[0];
    return p.leader !== 0 && want !== undefined && want !== p.leader && live(want) && !p.lost.includes(want) && p.target === null;
  });
  candidates.sort((a, b) => excess(b.leader) - excess(a.leader) || a.group - b.group);
  return candidates.slice(0, Math.max(0, max)).map((p) => ({ group: p.group, topic: p.topic, partition: p.partition, from: p.leader, to: p.voters.nodes[0] }));
}

export interface PartitionMove {
  readonly group: GroupId;
  readonly topic: string;
  readonly partition: number;
  readonly from: Assignment;
  readonly to: Assignment;
}

/**
 * Moves every replica off `node`: each partition holding it gets a target where `node` is replaced (in
 * its position) by the best of `nodes` (the live, active ones; racks, then load, as placement). `racks`
 * names the rack of nodes outside `nodes` that still hold replicas. Throws
 * REPLICATION_FACTOR_TOO_LARGE when a partition has nowhere to go.
 */
export function planDecommission(partitions: readonly PartitionState[], nodes: readonly PlacementNode[], node: NodeId, racks: ReadonlyMap<NodeId, string> = new Map()): PartitionMove[] {
  const load = PlacementLoad.of(partitions);
  const candidates = nodes.filter((n) => n.id !== node);
  const byId = new Map<NodeId, PlacementNode>(nodes.map((n) => [n.id, n]));
  const moves: PartitionMove[] = [];
  for (const p of [...partitions].sort((a, b) => a.group - b.group)) {
    const i = p.voters.nodes.indexOf(node);
    if (i < 0 && !p.learners.nodes.includes(node)) continue;
    if (i < 0) {
      // Only a learner there (a move in progress): the target simply leaves it out.
      moves.push({ group: p.group, topic: p.topic, partition: p.partition, from: p.voters, to: p.target ?? p.voters });
      continue;
    }
    // A kept replica on a node that cannot take new ones (dead) still occupies its rack.
    const keep = p.voters.nodes.filter((n) => n !== node).map((n) => byId.get(n) ?? { id: n, rack: racks.get(n) ?? '', shards: 1 });
    const pick = pickNode(candidates, keep, load, i === 0);
    if (pick === undefined) {
      throw new SluiceError(
        'REPLICATION_FACTOR_TOO_LARGE',
        `cannot move ${p.topic}/${p.partition} off node ${node}: replication factor ${p.voters.nodes.length} needs ${p.voters.nodes.length} nodes but only ${candidates.length} other live node${candidates.length === 1 ? '' : 's'} can take a replica`,
      );
    }
    const shard = load.leastLoadedShard(pick);
    load.add(pick.id, shard, i === 0);
    load.remove(node, p.voters.shards[i], i === 0);
    const to: Assignment = {
      nodes: p.voters.nodes.map((n, j) => (j === i ? pick.id : n)),
      shards: p.voters.shards.map((s, j) => (j === i ? shard : s)),
    };
    moves.push({ group: p.group, topic: p.topic, partition: p.partition, from: p.voters, to });
  }
  return moves;
}

/**
 * The target of a user's move (`sluice topic move -p P --replicas 1,2,4`): the nodes in the given
 * order; a node that already holds a replica keeps its shard, a new one gets its least loaded shard.
 */
export function planMove(p: PartitionState, replicas: readonly NodeId[], nodes: readonly NodeRecordState[], load: PlacementLoad): Assignment {
  if (replicas.length === 0 || new Set(replicas).size !== replicas.length) {
    throw new SluiceError('INVALID_REQUEST', `a move needs distinct node ids, got [${replicas.join(',')}]`);
  }
  const shards = replicas.map((id) => {
    const held = p.voters.nodes.indexOf(id);
    if (held >= 0) return p.voters.shards[held];
    const n = nodes.find((x) => x.id === id);
    if (n === undefined) throw new SluiceError('UNKNOWN_NODE', `node ${id} is not registered`);
    if (n.state !== 'active') throw new SluiceError('INVALID_REQUEST', `node ${id} is ${n.state} and takes no new replicas`);
    const shard = load.leastLoadedShard(n);
    load.add(id, shard, false);
    return shard;
  });
  return { nodes: [...replicas], shards };
}

function step(group: GroupId, s: ReassignStep, node: NodeId, shard: number): ReassignStepRecord {
  return { groupId: group, step: s, nodeId: node, shard, target: undefined };
}

/**
 * The next step of a move in progress, or null when there is none: add every new replica as a learner
 * and promote it (one node at a time), then remove the replicas the target drops, then complete. A
 * lost replica (a wiped node) is removed first and re-added from scratch. The executor must wait for a
 * learner to catch up before PROMOTE, and move leadership away before REMOVE of the leader.
 */
export function nextStep(p: PartitionState): ReassignStepRecord | null {
  const t = p.target;
  if (t === null) return null;
  for (const n of p.lost) {
    if (p.voters.nodes.includes(n) || p.learners.nodes.includes(n)) return step(p.group, ReassignStep.REASSIGN_STEP_REMOVE, n, 0);
  }
  for (let i = 0; i < p.learners.nodes.length; i++) {
    if (t.nodes.includes(p.learners.nodes[i])) return step(p.group, ReassignStep.REASSIGN_STEP_PROMOTE, p.learners.nodes[i], p.learners.shards[i]);
  }
  for (let i = 0; i < t.nodes.length; i++) {
    if (!p.voters.nodes.includes(t.nodes[i])) return step(p.group, ReassignStep.REASSIGN_STEP_ADD_LEARNER, t.nodes[i], t.shards[i]);
  }
  for (const n of [...p.voters.nodes, ...p.learners.nodes]) {
    if (!t.nodes.includes(n)) return step(p.group, ReassignStep.REASSIGN_STEP_REMOVE, n, 0);
  }
  return step(p.group, ReassignStep.REASSIGN_STEP_COMPLETE, 0 as NodeId, 0);
}

/**
 * Rebalance: moves replicas from the most to the least loaded of `nodes` (the live, active ones) until
 * their replica counts differ by at most one, at most `max` moves. Each move replaces one replica of a
 * partition that is not moving, in its position (a moved preferred leader keeps the preferred slot),
 * on the new node's least loaded shard. A move never leaves a partition on fewer distinct racks than
 * it had (a node without a rack is a rack of its own, as in placement); `racks` names the rack of
 * nodes outside `nodes` that hold replicas (dead or decommissioning ones).
 */
export function planRebalance(partitions: readonly PartitionState[], nodes: readonly PlacementNode[], max: number, racks: ReadonlyMap<NodeId, string> = new Map()): PartitionMove[] {
  if (nodes.length < 2) return [];
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const rackOf = (id: NodeId): string => rackKey(byId.get(id) ?? { id, rack: racks.get(id) ?? '', shards: 1 });
  // Whether replacing `from` by `to` in `voters` keeps as many distinct racks.
  const keepsRacks = (voters: readonly NodeId[], from: NodeId, to: NodeId): boolean => {
    const others = voters.filter((n) => n !== from).map(rackOf);
    return new Set([...others, rackOf(to)]).size >= new Set([...others, rackOf(from)]).size;
  };
  const load = PlacementLoad.of(partitions);
  const moves: PartitionMove[] = [];
  const moved = new Set<GroupId>();
  const byGroup = new Map<GroupId, Assignment>();
  const sorted = [...partitions].sort((a, b) => a.group - b.group);
  while (moves.length < max) {
    const order = [...nodes].sort((a, b) => load.replicasOn(a.id) - load.replicasOn(b.id) || a.id - b.id);
    const to = order[0];
    let done = true;
    for (let i = order.length - 1; i > 0 && done; i--) {
      const from = order[i];
      if (load.replicasOn(from.id) - load.replicasOn(to.id) <= 1) break;
      const p = sorted.find(
        (x) =>
          x.target === null &&
          x.lost.length === 0 &&
          x.learners.nodes.length === 0 &&
          !moved.has(x.group) &&
          x.voters.nodes.includes(from.id) &&
          !x.voters.nodes.includes(to.id) &&
          keepsRacks(x.voters.nodes, from.id, to.id),
      );
      if (p === undefined) continue;
      const at = p.voters.nodes.indexOf(from.id);
      const shard = load.leastLoadedShard(to);
      load.add(to.id, shard, at === 0);
      load.remove(from.id, p.voters.shards[at], at === 0);
      const target: Assignment = {
        nodes: p.voters.nodes.map((n, j) => (j === at ? to.id : n)),
        shards: p.voters.shards.map((s, j) => (j === at ? shard : s)),
      };
      moved.add(p.group);
      byGroup.set(p.group, target);
      moves.push({ group: p.group, topic: p.topic, partition: p.partition, from: p.voters, to: target });
      done = false;
    }
    if (done) break;
  }
  return moves;
}
