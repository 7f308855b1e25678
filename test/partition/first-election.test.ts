/**
 * Goal: a brand-new group's first election (`ReplicaOptions.preferredLeaderFirst`, docs/cluster.md
 * "Election of new groups"). Its preferred replica (the first voter as given) leads at term 1 after
 * one tick; when its first pre-vote is lost because a peer had not opened the group yet, it retries
 * within REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS without raising the term; when it is down, the others
 * send nothing for one election timeout and then elect one of themselves; and a group with state
 * (a restart) gets none of this: nobody campaigns on its first ticks.
 * Method: three real `Partition`s over the in-process test network of replica-cluster.ts (a message
 * to a node that is not open is dropped, as the transport drops one for a group with no handler);
 * time is ticks, each followed by delivering and persisting everything. Loops are bounded.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { RAFT_DEFAULTS } from '../../src/raft/index.js';
import { REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS } from '../../src/constants.js';
import { rmDir, tmpDir } from '../storage/helpers.js';
import { Cluster, VOTERS, root, shutdown } from './replica-cluster.js';

root.dir = tmpDir('partition-first-election');
afterAll(() => rmDir(root.dir));

const ELECTION_TICKS = RAFT_DEFAULTS.electionTicks;

/** Ticks until some node leads and all open nodes know it; returns the leader and the ticks taken. */
async function ticksToLeader(c: Cluster, max: number): Promise<{ leader: number; ticks: number; term: number }> {
  for (let t = 1; t <= max; t++) {
    await c.tick();
    const live = c.live();
    const leader = live.find((p) => p.role === 'leader');
    if (leader !== undefined && live.every((p) => p.leaderId === leader.nodeId)) return { leader: leader.nodeId, ticks: t, term: leader.term };
  }
  throw new Error(`${c.name}: no leader after ${max} ticks`);
}

function ordered(preferred: number): number[] {
  return [preferred, ...VOTERS.filter((v) => v !== preferred)];
}

describe('a brand-new group elects its preferred replica first', () => {
  for (const preferred of VOTERS) {
    it(`node ${preferred} preferred: it leads at term 1 after one tick`, async () => {
      const c = new Cluster(`preferred-${preferred}`);
      c.preferredOrder = ordered(preferred);
      for (const id of VOTERS) await c.start(id, true);
      expect(await ticksToLeader(c, 1)).toEqual({ leader: preferred, ticks: 1, term: 1 });
      await shutdown(c);
    }, 60_000);
  }

  it('without the option nobody campaigns before an election timeout (the simulator\'s replicas, one-node partitions)', async () => {
    const c = new Cluster('option-off');
    for (const id of VOTERS) await c.start(id, true);
    await c.tick(ELECTION_TICKS - 1);
    expect(c.sent).toBe(0);
    await shutdown(c);
  }, 60_000);

  it('a first pre-vote lost to peers that had not opened the group is retried, at no cost in terms', async () => {
    const c = new Cluster('lost-prevote');
    c.preferredOrder = ordered(2);
    await c.start(2, true);
    await c.tick(); // its pre-votes go to nodes 1 and 3, which are not open: dropped
    expect(c.sent).toBe(2);
    expect(c.node(2).role).not.toBe('leader');
    for (const id of [1, 3]) await c.start(id, true);
    const r = await ticksToLeader(c, REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS);
    expect([r.leader, r.term]).toEqual([2, 1]);
    await shutdown(c);
  }, 60_000);

  it('with the preferred replica down, the others hold their clocks for one election timeout, then elect one of themselves', async () => {
    const c = new Cluster('preferred-down');
    c.preferredOrder = ordered(1);
    for (const id of [2, 3]) await c.start(id, true);
    // Held for E ticks, then ordinary Raft: a randomized timeout in [E, 2E) ticks, so nobody sends a
    // thing for 2E - 1 ticks (without the hold, someone would have campaigned by then), and then a
    // pre-vote and a vote.
    await c.tick(2 * ELECTION_TICKS - 1);
    expect(c.sent).toBe(0);
    const r = await ticksToLeader(c, ELECTION_TICKS + 2);
    expect([2, 3]).toContain(r.leader);
    expect(r.term).toBe(1);
    // The preferred replica, opened late, follows the leader it finds.
    await c.start(1, true);
    await c.tick(3);
    expect(c.node(1).leaderId).toBe(r.leader);
    expect(c.node(1).role).toBe('follower');
    await shutdown(c);
  }, 60_000);

  it('a restart is not a new group: the preferred replica does not campaign on its first ticks', async () => {
    const c = new Cluster('restart');
    c.preferredOrder = ordered(3);
    for (const id of VOTERS) await c.start(id, true);
    expect((await ticksToLeader(c, 1)).leader).toBe(3);
    for (const id of VOTERS) await c.stop(id);
    for (const id of VOTERS) await c.start(id, false);
    const sent = c.sent;
    await c.tick(ELECTION_TICKS - 1);
    expect(c.sent).toBe(sent);
    for (const p of c.live()) expect([p.role, p.term]).toEqual(['follower', 1]);
    await shutdown(c);
  }, 60_000);
});
