/**
 * Goal (issue 11 §3, "Placement" and "Leader balancing"): a new partition elects its preferred replica
 * (the first of its replica list) at its first election, so no leadership transfer follows the create
 * (no second term, no NOT_LEADER window, an idle cluster that is idle); and a new partition whose
 * preferred replica is down when it is created still gets a leader, one election timeout later.
 * Before this, each replica of a new group timed out at random and two partitions in three elected
 * another replica, which leader balancing then moved back (epoch 2).
 * Method: three `sluice serve` processes on 127.0.0.1-3 (test/cluster/process-cluster.ts). Topics are
 * created through the Admin client and read back with DescribeTopic: leader, leader epoch (= Raft
 * term; a first election is term 1, every transfer or re-election adds one) and the replica list.
 * Waits poll observables, bounded in count and time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CONTROLLER_EXECUTOR_INTERVAL_MS, REPLICA_ELECTION_TICKS, SHARD_TICK_MS } from '../../src/constants.js';
import type { TopicDescription } from '../../src/client/index.js';
import { ProcessCluster } from './process-cluster.js';

/** Per test: about 5-15 s on an idle machine; a loaded shared one stretches them. */
const TEST_MS = 120_000;
const PARTITIONS = 12;
/** The epoch of a partition's first leader: a new group starts at term 0 and its first vote is term 1. */
const FIRST_EPOCH = 1;
/** How long every partition of a new topic may take to show a leader (elections plus the metadata report). */
const LEADERS_MS = 20_000;
let c: ProcessCluster;

beforeAll(async () => {
  c = await ProcessCluster.create(3, 'prefer');
  await c.startAll([1, 2, 3]);
}, 120_000);

afterAll(async () => {
  await c?.closeAll();
});

async function describeVia(id: number, topic: string): Promise<TopicDescription> {
  return c.withAdmin(id, (a) => a.describeTopic(topic));
}

/** The topic once every partition shows a leader (and an epoch), as node `id` describes it. */
async function withLeaders(id: number, topic: string): Promise<TopicDescription> {
  return c.waitFor(`every partition of ${topic} has a leader`, async () => {
    const d = await describeVia(id, topic);
    return d.partitions.every((p) => p.leader > 0 && (p.leaderEpoch ?? 0) > 0) ? d : null;
  }, LEADERS_MS);
}

/** Raft messages the nodes dropped for a group they had not opened (yet), summed over the nodes. */
async function unknownGroupDrops(): Promise<number> {
  let sum = 0;
  for (const n of c.nodes) {
    if (n.proc === null) continue;
    const text = await (await fetch(`http://${n.http}/metrics`)).text();
    for (const line of text.split('\n')) if (line.startsWith('sluice_raft_transport_dropped_messages_total{') && line.includes('reason="unknown_group"')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function summary(d: TopicDescription): string {
  return d.partitions.map((p) => `${p.partition}: leader ${p.leader} epoch ${p.leaderEpoch} replicas ${p.replicas.join(',')}`).join('\n');
}

describe('a new partition elects its preferred replica first', () => {
  it(`creates ${PARTITIONS} partitions at RF 3: each is led by its preferred replica at epoch ${FIRST_EPOCH}, and nothing moves afterwards`, async () => {
    const drops0 = await unknownGroupDrops();
    const t0 = performance.now();
    await c.withAdmin(2, (a) => a.createTopic('fresh', { partitions: PARTITIONS, replicationFactor: 3 }));
    const d = await withLeaders(1, 'fresh');
    const ms = Math.round(performance.now() - t0);
    console.log(`create + every leader known: ${ms} ms; messages dropped for a group not open yet: ${(await unknownGroupDrops()) - drops0}\n${summary(d)}`);
    // Placement spreads the preferred replicas over the nodes, so a test that elected at random would
    // pass this with odds of (1/3)^12.
    expect(new Set(d.partitions.map((p) => p.replicas[0])).size).toBe(3);
    for (const p of d.partitions) {
      expect(p.replicas).toHaveLength(3);
      expect({ partition: p.partition, leader: p.leader, epoch: p.leaderEpoch }).toEqual({ partition: p.partition, leader: p.replicas[0], epoch: FIRST_EPOCH });
    }
    // The leader balancer had nothing to move: after several of its rounds every partition is still
    // at its first election, on every node's view.
    await new Promise((r) => setTimeout(r, 4 * CONTROLLER_EXECUTOR_INTERVAL_MS));
    for (const id of [1, 2, 3]) {
      const again = await describeVia(id, 'fresh');
      expect(again.partitions.map((p) => [p.leader, p.leaderEpoch])).toEqual(d.partitions.map((p) => [p.replicas[0], FIRST_EPOCH]));
    }
  }, TEST_MS);

  it('a new partition whose preferred replica is down at create time elects another replica, an election timeout later', async () => {
    // Node 3 is killed and the topic created at once, while gossip still holds it alive or suspect
    // (placement counts such nodes; it is declared dead about 2 s later). The controller must not
    // be on node 3, or the create would wait for a new controller leader.
    const controller = (await c.withAdmin(1, (a) => a.metadata())).controllerId;
    const down = controller === 3 ? 2 : 3;
    const via = down === 3 ? 1 : 3;
    await c.kill(down);
    const t0 = performance.now();
    // A loaded machine can take longer than one admin call's 5 s: the create is retried until it is
    // known (TOPIC_ALREADY_EXISTS then means an earlier attempt applied).
    const created = await c.waitFor('the create of orphans answered', () =>
      c.withAdmin(via, (a) => a.createTopic('orphans', { partitions: PARTITIONS, replicationFactor: 3 })).then(
        () => 'created' as const,
        (err: unknown) => {
          const code = (err as { code?: string }).code;
          if (code === 'TOPIC_ALREADY_EXISTS') return 'created' as const; // an earlier attempt applied
          if (code === 'REPLICATION_FACTOR_TOO_LARGE') return 'refused' as const;
          return null;
        },
      ),
    );
    if (created === 'refused') {
      // The create reached placement only after gossip had declared the node dead (about 2 s after the
      // kill: a starved machine), and three replicas do not fit on two live nodes. Nothing to check
      // here; test/partition/first-election.test.ts covers the election itself.
      console.log(`node ${down} was declared dead before the create was placed (${Math.round(performance.now() - t0)} ms): skipped`);
      await c.startAll([1, 2, 3]);
      return;
    }
    const d = await withLeaders(via, 'orphans');
    const ms = Math.round(performance.now() - t0);
    console.log(`node ${down} down: create + every leader known: ${ms} ms\n${summary(d)}`);
    const orphaned = d.partitions.filter((p) => p.replicas[0] === down);
    for (const p of d.partitions) expect(p.leader).not.toBe(down);
    // The others are still elected at once by their own preferred replicas.
    for (const p of d.partitions) if (p.replicas[0] !== down) expect([p.partition, p.leader, p.leaderEpoch]).toEqual([p.partition, p.replicas[0], FIRST_EPOCH]);
    // The orphans waited the head start (one election timeout) and then elected someone; the bound
    // is generous for a loaded machine but well under "never".
    expect(ms).toBeLessThan(LEADERS_MS);
    console.log(`head start given to a dead preferred replica: ${REPLICA_ELECTION_TICKS * SHARD_TICK_MS} ms`);
    await c.startAll([1, 2, 3]);
    // Back, node `down` gets its preferred leaderships from the leader balancer.
    await c.waitFor(`node ${down} leads its preferred partitions again`, async () => {
      const now = await describeVia(via, 'orphans');
      return now.partitions.every((p) => p.leader === p.replicas[0]) ? now : null;
    });
  }, TEST_MS);
});
