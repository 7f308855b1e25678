/**
 * The server-side, sticky and balanced partition assignor for consumer groups (KIP-848 style: the broker
 * computes every member's target assignment, so clients carry no assignment protocol).
 *
 * Properties, for members with identical subscriptions (the common case):
 * - balanced: any two members' partition counts differ by at most 1;
 * - sticky: a partition moves only when balance requires it, so a join or a leave moves the minimum
 *   number of partitions (a 4th member joining 12 partitions held 4/4/4 moves exactly 3).
 * With differing subscriptions it keeps every partition with a subscribed member and balances as far as
 * the subscriptions allow (the same greedy, restricted to members that may take a partition).
 *
 * Pure and deterministic: the same input always gives the same output (ties break by member id, then by
 * topic and partition), which makes the coordinator's behaviour replayable in tests.
 */

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface AssignorMember {
  memberId: string;
  /** Topics this member subscribes to (already resolved from any regex). */
  topics: ReadonlySet<string>;
  /** What the member holds now (or held before a rebalance), for stickiness. */
  current: readonly TopicPartition[];
}

/** memberId -> partitions assigned to it. */
export type Assignment = Map<string, TopicPartition[]>;

const key = (tp: TopicPartition): string => `${tp.topic}\u0000${tp.partition}`;

function compareTp(a: TopicPartition, b: TopicPartition): number {
  return a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition;
}

/**
 * Computes the target assignment.
 * @param partitionCounts topic -> number of partitions, for every topic any member subscribes to that exists.
 */
export function assign(members: readonly AssignorMember[], partitionCounts: ReadonlyMap<string, number>): Assignment {
  const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  const held = new Map<string, TopicPartition[]>();
  const owner = new Map<string, string>();
  for (const m of sorted) held.set(m.memberId, []);

  // 1. Stickiness: keep what each member already holds, if it still exists, is still subscribed and is
  //    not already claimed by an earlier member (two claims can happen after a member rejoined).
  for (const m of sorted) {
    for (const tp of m.current) {
      const count = partitionCounts.get(tp.topic);
      if (count === undefined || tp.partition < 0 || tp.partition >= count || !m.topics.has(tp.topic)) continue;
      const k = key(tp);
      if (owner.has(k)) continue;
      owner.set(k, m.memberId);
      held.get(m.memberId)!.push({ topic: tp.topic, partition: tp.partition });
    }
  }

  // 2. Place every unowned partition with the eligible member holding the fewest.
  const topics = [...partitionCounts.keys()].sort();
  for (const topic of topics) {
    const eligible = sorted.filter((m) => m.topics.has(topic));
    if (eligible.length === 0) continue;
    const count = partitionCounts.get(topic)!;
    for (let partition = 0; partition < count; partition++) {
      const tp = { topic, partition };
      if (owner.has(key(tp))) continue;
      const target = fewest(eligible, held);
      owner.set(key(tp), target.memberId);
      held.get(target.memberId)!.push(tp);
    }
  }

  // 3. Balance: move one partition at a time from the fullest member to the emptiest member that may
  //    take it, while their counts differ by more than one. Each move strictly lowers the sum of squared
  //    counts, so the loop ends; the bound is a guard against a bug, not a limit we expect to reach.
  const moveLimit = owner.size * Math.max(1, sorted.length);
  for (let moves = 0; moves < moveLimit; moves++) {
    if (!moveOne(sorted, held)) break;
  }

  for (const list of held.values()) list.sort(compareTp);
  return held;
}

function fewest(candidates: readonly AssignorMember[], held: Map<string, TopicPartition[]>): AssignorMember {
  let best = candidates[0];
  let bestCount = held.get(best.memberId)!.length;
  for (let i = 1; i < candidates.length; i++) {
    const n = held.get(candidates[i].memberId)!.length;
    if (n < bestCount) {
      best = candidates[i];
      bestCount = n;
    }
  }
  return best;
}

/** Performs one balancing move; returns false when no move improves balance. */
function moveOne(members: readonly AssignorMember[], held: Map<string, TopicPartition[]>): boolean {
  // Fullest donors first; for each, the emptiest receiver that subscribes to one of its partitions.
  const byCount = [...members].sort((a, b) => held.get(b.memberId)!.length - held.get(a.memberId)!.length);
  for (const donor of byCount) {
    const donorList = held.get(donor.memberId)!;
    for (let r = byCount.length - 1; r >= 0; r--) {
      const receiver = byCount[r];
      const receiverList = held.get(receiver.memberId)!;
      if (donorList.length - receiverList.length <= 1) break;
      // Give away the most recently gained partition the receiver can take: older holdings stay put.
      for (let i = donorList.length - 1; i >= 0; i--) {
        if (!receiver.topics.has(donorList[i].topic)) continue;
        receiverList.push(donorList[i]);
        donorList.splice(i, 1);
        return true;
      }
    }
  }
  return false;
}

/** Partitions that change owner between two assignments (what a rebalance must revoke). */
export function movedPartitions(before: Assignment, after: Assignment): TopicPartition[] {
  const previous = new Map<string, string>();
  for (const [member, list] of before) for (const tp of list) previous.set(key(tp), member);
  const moved: TopicPartition[] = [];
  for (const [member, list] of after) {
    for (const tp of list) {
      const was = previous.get(key(tp));
      if (was !== undefined && was !== member) moved.push(tp);
    }
  }
  return moved.sort(compareTp);
}
