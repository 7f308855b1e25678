/**
 * Cluster-mode readiness, part two (issue 14 §1 "Probes"): a node is ready only when every replica the
 * metadata gives it is open here and in sync with its leader, so a rolling restart (which waits for
 * `/readyz` before it stops the next pod) never takes a second copy of a partition down while the
 * first is still catching up.
 *
 * "In sync" is the leader's word, not the follower's: the leader's in-sync set (voters whose match
 * index is within REPLICA_ISR_LAG_OFFSETS_MAX of its log end, what DescribeTopic shows as ISR) must
 * name this node. A follower cannot judge that itself: its own high watermark never runs ahead of its
 * log, and a heartbeat tells it the leader's commit only up to what it already holds. So the check
 * asks each leader node once per round (one GetMetadata for the topics concerned, answered from that
 * node's own replicas) and keeps the verdict for `/readyz`, which never waits on the network.
 *
 * Learners (a move in progress) have no in-sync set and are not waited for.
 */
import { READINESS_CHECK_INTERVAL_MS, READINESS_QUIESCED_ASK_EVERY_ROUNDS } from '../constants.js';
import type { PartitionInfo } from '../broker/types.js';
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { PartitionState } from '../controller/index.js';
import type { ReplicaStatus } from './replica-host.js';

/** How many replicas a reason names before "…". */
const NAMED_MAX = 5;

/** What a leader node said of the partitions it leads: `topic/partition` -> its description. */
export type LeaderViews = ReadonlyMap<NodeId, ReadonlyMap<string, PartitionInfo> | Error>;

const key = (topic: string, partition: number): string => `${topic}/${partition}`;

function named(what: string, list: readonly string[]): string {
  return `${list.length} replica(s) ${what}: ${list.slice(0, NAMED_MAX).join(', ')}${list.length > NAMED_MAX ? ', …' : ''}`;
}

/**
 * With `trust`, a quiesced follower is in sync without its leader's word: the leader went quiet only
 * once this replica held the whole log, and a write since would have woken the group (unless this
 * node was cut off from the leader: hence only between full rounds, see CatchUpCheck).
 */
function believedInSync(s: ReplicaStatus, trust: boolean): boolean {
  return trust && s.quiesced === true && s.role === 'follower';
}

/**
 * Why the replicas here are not all caught up, or null. Pure: `assigned` is what the applied metadata
 * gives this node, `held` what its Broker reports, `views` what each leader node answered (an Error
 * when it did not).
 */
export function replicasNotReady(self: NodeId, assigned: readonly PartitionState[], held: readonly ReplicaStatus[], views: LeaderViews, trustQuiesced = false): string | null {
  const byGroup = new Map<GroupId, ReplicaStatus>(held.map((s) => [s.group, s]));
  const notOpen: string[] = [];
  const noLeader: string[] = [];
  const behind: string[] = [];
  for (const p of assigned) {
    if (!p.voters.nodes.includes(self)) continue; // a learner: nothing to be in sync with yet
    const name = key(p.topic, p.partition);
    const s = byGroup.get(p.group);
    if (s === undefined || s.role === 'offline') {
      notOpen.push(name);
      continue;
    }
    if (s.role === 'leader' && s.leader === self) continue;
    if (s.leader === 0 || s.leader === self) {
      noLeader.push(name);
      continue;
    }
    if (believedInSync(s, trustQuiesced)) continue;
    const view = views.get(s.leader);
    const theirs = view === undefined || view instanceof Error ? undefined : view.get(name);
    if (view instanceof Error) behind.push(`${name} (its leader, node ${s.leader}, did not answer: ${view.message})`);
    else if (theirs === undefined || theirs.leader !== s.leader) behind.push(`${name} (node ${s.leader} does not lead it now)`);
    else if (!(theirs.inSyncReplicas ?? []).includes(self)) behind.push(`${name} (not in node ${s.leader}'s in-sync replicas ${JSON.stringify(theirs.inSyncReplicas ?? [])})`);
  }
  if (notOpen.length > 0) return named('not open here yet', notOpen);
  if (noLeader.length > 0) return named('without a leader', noLeader);
  if (behind.length > 0) return named('catching up with their leaders', behind);
  return null;
}

export interface CatchUpCheckOptions {
  readonly nodeId: NodeId;
  /** The partitions the applied metadata gives this node (voters or learners). */
  readonly assigned: () => readonly PartitionState[];
  readonly held: () => readonly ReplicaStatus[];
  /** The partitions of `topics` as leader node `node` describes them from its own replicas. */
  readonly describe: (node: NodeId, topics: readonly string[]) => Promise<readonly { name: string; partitions: readonly PartitionInfo[] }[]>;
  readonly intervalMs?: number;
  /** Default READINESS_QUIESCED_ASK_EVERY_ROUNDS. */
  readonly quiescedAskEveryRounds?: number;
  /**
   * Why the metadata cannot be trusted yet (the controller's readiness), or null. A round that starts
   * while it is not null cannot say "ready": a restarted node's metadata may still be empty, and an
   * empty assignment would look caught up.
   */
  readonly gate?: () => string | null;
}

/** Runs `replicasNotReady` every interval; `notReady()` is the last verdict. */
export class CatchUpCheck {
  private verdict: string | null = 'checking that every replica here is in sync with its leader';
  private readonly timer: NodeJS.Timeout;
  private current: Promise<void> | null = null;
  private closed = false;
  /** Rounds that got past the gate (see READINESS_QUIESCED_ASK_EVERY_ROUNDS). */
  private rounds = 0;

  constructor(private readonly o: CatchUpCheckOptions) {
    this.timer = setInterval(() => void this.run(), o.intervalMs ?? READINESS_CHECK_INTERVAL_MS);
    this.timer.unref();
    void this.run();
  }

  notReady(): string | null {
    return this.verdict;
  }

  /** One round; while one is running, that one (rounds never overlap: a slow leader delays the next). */
  run(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.current ??= this.round().finally(() => (this.current = null));
    return this.current;
  }

  private async round(): Promise<void> {
    const gated = this.o.gate?.() ?? null;
    if (gated !== null) {
      this.verdict = `waiting for the metadata before checking replicas (${gated})`;
      return;
    }
    // Quiesced followers are asked about in every READINESS_QUIESCED_ASK_EVERY_ROUNDS-th round (the first
    // one included), and taken as in sync in the rounds between (replicasNotReady).
    const trustQuiesced = this.rounds++ % (this.o.quiescedAskEveryRounds ?? READINESS_QUIESCED_ASK_EVERY_ROUNDS) !== 0;
    const assigned = this.o.assigned().filter((p) => p.voters.nodes.includes(this.o.nodeId) || p.learners.nodes.includes(this.o.nodeId));
    const held = this.o.held();
    const topicsByLeader = new Map<NodeId, Set<string>>();
    const mine = new Set(assigned.map((p) => p.group));
    for (const s of held) {
      if (!mine.has(s.group) || s.role === 'leader' || s.leader === 0 || s.leader === this.o.nodeId) continue;
      if (believedInSync(s, trustQuiesced)) continue; // not asked about this round
      const set = topicsByLeader.get(s.leader) ?? new Set<string>();
      set.add(s.topic);
      topicsByLeader.set(s.leader, set);
    }
    const views = new Map<NodeId, Map<string, PartitionInfo> | Error>();
    await Promise.all(
      [...topicsByLeader].map(async ([node, topics]) => {
        try {
          const described = await this.o.describe(node, [...topics]);
          views.set(node, new Map(described.flatMap((t) => t.partitions.map((p) => [key(t.name, p.partition), p] as const))));
        } catch (err) {
          views.set(node, err instanceof Error ? err : new Error(String(err)));
        }
      }),
    );
    // The replicas may have moved on while the leaders answered; judge against what is held now.
    if (!this.closed) this.verdict = replicasNotReady(this.o.nodeId, assigned, this.o.held(), views, trustQuiesced);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }
}
