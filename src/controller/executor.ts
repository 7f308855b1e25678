/**
 * The controller leader's executor: carries out what the planners decide, one metadata record per
 * step. It runs only on the controller leader, one pass at a time, every `intervalMs`:
 *
 * - moves (a user's move, a decommission, a lost-replica rebuild): the next step of each partition with a
 *   target (at most CONTROLLER_MOVES_MAX at once). PROMOTE waits until the learner has caught up; REMOVE
 *   of the partition's leader first asks for leadership to move to a replica that stays;
 * - decommission: re-submitted for each decommissioning node, which starts moves for partitions that
 *   were busy and marks the node decommissioned once it holds nothing;
 * - leader balancing (on by default): asks up to CONTROLLER_LEADER_TRANSFERS_MAX leaders to hand
 *   leadership back to their preferred replica.
 *
 * What it cannot see from the metadata (is a learner caught up, please transfer leadership) it asks of
 * `ReplicaProgress`, which the node's partition replicas implement.
 */
import { CONTROLLER_EXECUTOR_INTERVAL_MS, CONTROLLER_LEADER_TRANSFERS_MAX, CONTROLLER_MOVES_MAX } from '../constants.js';
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import { ReassignStep } from '../rpc/gen/sluice/cluster/v1/controller.js';
import type { Controller } from './controller.js';
import { nextStep, planLeaderBalance } from './placement.js';

export interface ReplicaProgress {
  /** Whether `node`'s replica of `group` holds everything the group has committed (it may vote). */
  caughtUp(group: GroupId, node: NodeId): boolean;
  /** Asks the leader of `group` to hand leadership to `to` (the new leader reports itself as usual). */
  transferLeadership(group: GroupId, to: NodeId): void;
}

export interface ExecutorOptions {
  readonly intervalMs?: number;
  /** Leader balancing (default on). */
  readonly balanceLeaders?: boolean;
  /** Liveness from gossip (default: every registered node). */
  readonly live?: (id: NodeId) => boolean;
}

export class ControllerExecutor {
  private readonly timer: NodeJS.Timeout;
  private running = false;
  /** Errors of the last pass, for tests and logs (a step refused because the state moved is normal). */
  lastErrors: Error[] = [];
  passes = 0;

  constructor(
    private readonly controller: Controller,
    private readonly progress: ReplicaProgress,
    private readonly options: ExecutorOptions = {},
  ) {
    this.timer = setInterval(() => void this.pass(), options.intervalMs ?? CONTROLLER_EXECUTOR_INTERVAL_MS);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** One pass; does nothing unless this node leads the controller group. */
  async pass(): Promise<void> {
    if (this.running || !this.controller.isLeader) return;
    this.running = true;
    const errors: Error[] = [];
    try {
      await this.advanceMoves(errors);
      await this.finishDecommissions(errors);
      if (this.options.balanceLeaders !== false) this.balanceLeaders();
    } finally {
      this.passes++;
      this.lastErrors = errors;
      this.running = false;
    }
  }

  private async advanceMoves(errors: Error[]): Promise<void> {
    const moving = this.controller.state.partitions().filter((p) => p.target !== null);
    for (const p of moving.slice(0, CONTROLLER_MOVES_MAX)) {
      const step = nextStep(p);
      if (step === null) continue;
      if (step.step === ReassignStep.REASSIGN_STEP_PROMOTE && !this.progress.caughtUp(p.group, step.nodeId as NodeId)) continue;
      if (step.step === ReassignStep.REASSIGN_STEP_REMOVE && step.nodeId === p.leader) {
        const to = p.target!.nodes.find((n) => p.voters.nodes.includes(n) && n !== p.leader && !p.lost.includes(n));
        if (to !== undefined) this.progress.transferLeadership(p.group, to);
        continue;
      }
      try {
        await this.controller.submit({ request: { $case: 'reassignStep', value: { step } } });
      } catch (err) {
        errors.push(err as Error);
      }
    }
  }

  private async finishDecommissions(errors: Error[]): Promise<void> {
    for (const n of this.controller.state.nodes()) {
      if (n.state !== 'decommissioning') continue;
      try {
        await this.controller.submit({ request: { $case: 'decommission', value: { nodeId: n.id } } });
      } catch (err) {
        errors.push(err as Error);
      }
    }
  }

  private balanceLeaders(): void {
    const live = this.options.live ?? (() => true);
    for (const t of planLeaderBalance(this.controller.state.partitions(), live, CONTROLLER_LEADER_TRANSFERS_MAX)) {
      this.progress.transferLeadership(t.group, t.to);
    }
  }
}
