/**
 * The controller leader's executor: carries out what the planners decide, one metadata record per
 * step. It runs only on the controller leader, one pass at a time, every `intervalMs`:
 *
 * - moves (a user's move, a decommission, a rebalance, a lost-replica rebuild): the next step of each
 *   partition with a target (at most CONTROLLER_MOVES_MAX at once), and only once the partition
 *   leader's Raft membership shows the previous step committed (it equals the metadata's voters and
 *   learners, and no change is pending): the metadata says what the membership should be, the
 *   partition's leader proposes it (src/server/cluster-node.ts), and the next record waits for it.
 *   PROMOTE waits until the learner's log is within REPLICA_ISR_LAG_OFFSETS_MAX of the leader's;
 *   REMOVE of the partition's leader first asks it to hand leadership to a replica that stays;
 * - lost replicas (a node came back with a wiped disk): a partition with a lost replica and no move
 *   starts one to its own replica set, which removes the lost replica and adds it back as a fresh
 *   learner (`nextStep`);
 * - decommission: re-submitted for each decommissioning node, which starts moves for partitions that
 *   were busy and marks the node decommissioned once it holds nothing;
 * - leader balancing (on by default): asks up to CONTROLLER_LEADER_TRANSFERS_MAX leaders to hand
 *   leadership back to their preferred replica, when it is live and holds everything committed.
 *
 * What it cannot see from the metadata (a partition's Raft membership and members' progress; a
 * leadership transfer) it asks of `ReplicaProgress`, which the nodes' partition replicas implement.
 */
import { CONTROLLER_EXECUTOR_INTERVAL_MS, CONTROLLER_LEADER_TRANSFERS_MAX, CONTROLLER_MOVES_MAX, REPLICA_ISR_LAG_OFFSETS_MAX } from '../constants.js';
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import { ReassignStep } from '../rpc/gen/sluice/cluster/v1/controller.js';
import type { Controller } from './controller.js';
import { membershipMatches } from './local-view.js';
import { fromAssignment } from './metadata-stm.js';
import { nextStep, planLeaderBalance } from './placement.js';
import type { PartitionState } from './types.js';

/** A partition's Raft membership as its leader sees it. */
export interface LeaderMembership {
  readonly leader: NodeId;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** A membership change is appended but not yet committed. */
  readonly confPending: boolean;
  readonly commit: number;
  readonly lastIndex: number;
  /** Each member's match index (the leader's own: its last index). */
  readonly match: ReadonlyMap<NodeId, number>;
}

export interface ReplicaProgress {
  /**
   * The membership of each of `groups` as its leader sees it, asking `hint` (the leader the metadata
   * names) first and following a follower's answer to the leader it knows; groups whose leader did
   * not answer are left out.
   */
  membership(hint: NodeId, groups: readonly GroupId[]): Promise<ReadonlyMap<GroupId, LeaderMembership>>;
  /** Asks `leader`, the leader of `group`, to hand leadership to `to` (the new leader reports itself as usual). */
  transferLeadership(group: GroupId, leader: NodeId, to: NodeId): Promise<void>;
}

export interface ExecutorOptions {
  readonly intervalMs?: number;
  /** Leader balancing (default on). */
  readonly balanceLeaders?: boolean;
  /** Liveness from gossip (default: every registered node). */
  readonly live?: (id: NodeId) => boolean;
}

/** Whether `node`'s log is close enough to the leader's to vote (the in-sync bound). */
export function caughtUp(m: LeaderMembership, node: NodeId): boolean {
  const match = m.match.get(node) ?? -1;
  return match >= 0 && match >= m.lastIndex - REPLICA_ISR_LAG_OFFSETS_MAX;
}

export class ControllerExecutor {
  private readonly timer: NodeJS.Timeout;
  private running = false;
  /** Errors of the last pass, for tests and logs (a step refused because the state moved is normal). */
  lastErrors: Error[] = [];
  passes = 0;
  /** Set once this node stops (its SIGTERM hand-off): see pauseLeaderBalancing. */
  private balancingPaused = false;

  constructor(
    private readonly controller: Controller,
    private readonly progress: ReplicaProgress,
    private readonly options: ExecutorOptions = {},
  ) {
    this.timer = setInterval(() => void this.pass(), options.intervalMs ?? CONTROLLER_EXECUTOR_INTERVAL_MS);
    this.timer.unref?.();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /**
   * Stops leader balancing for the rest of this executor's life: called when this node begins its
   * graceful stop (src/server/drain.ts), which moves its leaderships away. A controller leader that is
   * stopping would otherwise hand the partitions it prefers straight back to itself, undoing the
   * hand-off and leaving them leaderless for an election once it exits. Moves and decommissions go on.
   */
  pauseLeaderBalancing(): void {
    this.balancingPaused = true;
  }

  /** One pass; does nothing unless this node leads the controller group. */
  async pass(): Promise<void> {
    if (this.running || !this.controller.isLeader) return;
    this.running = true;
    const errors: Error[] = [];
    try {
      await this.rebuildLost(errors);
      await this.advanceMoves(errors);
      await this.finishDecommissions(errors);
      if (this.options.balanceLeaders !== false && !this.balancingPaused) await this.balanceLeaders(errors);
    } finally {
      this.passes++;
      this.lastErrors = errors;
      this.running = false;
    }
  }

  private async submitStep(step: NonNullable<ReturnType<typeof nextStep>>, errors: Error[]): Promise<void> {
    try {
      await this.controller.submit({ request: { $case: 'reassignStep', value: { step } } });
    } catch (err) {
      errors.push(err as Error);
    }
  }

  /** Partitions with a lost replica and no move: a move to their own replica set rebuilds it. */
  private async rebuildLost(errors: Error[]): Promise<void> {
    for (const p of this.controller.state.partitions()) {
      if (p.lost.length === 0 || p.target !== null) continue;
      // A lost sole voter has nothing to rebuild from; its data is gone (docs/cluster.md "Wiped disk").
      if (p.voters.nodes.every((n) => p.lost.includes(n))) continue;
      await this.submitStep({ groupId: p.group, step: ReassignStep.REASSIGN_STEP_BEGIN, nodeId: 0, shard: 0, target: fromAssignment(p.voters) }, errors);
    }
  }

  /** The leaders' memberships of `parts`, asked per metadata leader (0: asked of the first voter). */
  private async memberships(parts: readonly PartitionState[], errors: Error[]): Promise<Map<GroupId, LeaderMembership>> {
    const byHint = new Map<NodeId, GroupId[]>();
    for (const p of parts) {
      const hint = p.leader !== 0 ? p.leader : p.voters.nodes.find((n) => !p.lost.includes(n)) ?? p.voters.nodes[0];
      let list = byHint.get(hint);
      if (list === undefined) byHint.set(hint, (list = []));
      list.push(p.group);
    }
    const out = new Map<GroupId, LeaderMembership>();
    await Promise.all(
      [...byHint].map(async ([hint, groups]) => {
        try {
          for (const [g, m] of await this.progress.membership(hint, groups)) out.set(g, m);
        } catch (err) {
          errors.push(err as Error);
        }
      }),
    );
    return out;
  }

  private async advanceMoves(errors: Error[]): Promise<void> {
    const moving = this.controller.state.partitions().filter((p) => p.target !== null).slice(0, CONTROLLER_MOVES_MAX);
    if (moving.length === 0) return;
    const ms = await this.memberships(moving, errors);
    for (const p of moving) {
      const step = nextStep(p);
      const m = ms.get(p.group);
      // The previous step is not yet the partition's Raft membership (or no leader answered).
      if (step === null || m === undefined || m.confPending || !membershipMatches(p, m)) continue;
      const node = step.nodeId as NodeId;
      if (step.step === ReassignStep.REASSIGN_STEP_PROMOTE && !caughtUp(m, node)) continue;
      if (step.step === ReassignStep.REASSIGN_STEP_REMOVE && node === m.leader) {
        const to = p.target!.nodes.find((n) => m.voters.includes(n) && n !== m.leader && !p.lost.includes(n) && caughtUp(m, n));
        if (to !== undefined) await this.transfer(p.group, m.leader, to, errors);
        continue;
      }
      await this.submitStep(step, errors);
    }
  }

  private async transfer(group: GroupId, leader: NodeId, to: NodeId, errors: Error[]): Promise<void> {
    try {
      await this.progress.transferLeadership(group, leader, to);
    } catch (err) {
      errors.push(err as Error);
    }
  }

  private async finishDecommissions(errors: Error[]): Promise<void> {
    for (const n of this.controller.state.nodes()) {
      if (n.state !== 'decommissioning') continue;
      try {
        // Only to carry it on: a recommission may land before this request is planned.
        await this.controller.submit({ request: { $case: 'decommission', value: { nodeId: n.id, continueOnly: true } } });
      } catch (err) {
        errors.push(err as Error);
      }
    }
  }

  /** Hands leadership back to preferred replicas that are live and caught up, a few at a time. */
  private async balanceLeaders(errors: Error[]): Promise<void> {
    const live = this.options.live ?? (() => true);
    const plan = planLeaderBalance(this.controller.state.partitions(), live, CONTROLLER_LEADER_TRANSFERS_MAX);
    if (plan.length === 0) return;
    const byGroup = new Map(plan.map((t) => [t.group, t]));
    const parts = plan.map((t) => this.controller.state.partitionByGroup(t.group)).filter((p): p is PartitionState => p !== undefined);
    const ms = await this.memberships(parts, errors);
    for (const [g, m] of ms) {
      const t = byGroup.get(g)!;
      // A transfer to a replica that is behind would stall the leader's writes until it caught up.
      if (m.leader !== t.to && m.voters.includes(t.to) && (m.match.get(t.to) ?? -1) >= m.commit) await this.transfer(g, m.leader, t.to, errors);
    }
  }
}
