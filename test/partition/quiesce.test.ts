/**
 * Goal: quiescence on real replicas (RaftOptions.quiesce through Partition, docs/raft.md "Quiescence"):
 * an idle RF-3 partition stops sending anything, a produce wakes it and is acknowledged as usual, and
 * a quiesced follower of a dead leader campaigns once its driver wakes it (`wakeFor`, which the shard
 * calls when gossip changes its view of a member) - and not before, which is why only a host with a
 * failure detector turns quiescence on.
 * Method: the shared three-replica harness (replica-cluster.ts): real Partitions on real data dirs, a
 * test network counting what is sent; every loop bounded in ticks.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { REPLICA_ELECTION_TICKS } from '../../src/constants.js';
import { rmDir, tmpDir } from '../storage/helpers.js';
import { VOTERS, root, shutdown, threeNodes, values } from './replica-cluster.js';

root.dir = tmpDir('partition-quiesce');
afterAll(() => rmDir(root.dir));

/** Ticks enough for any randomized election timeout of the harness's cores (default timing). */
const QUIET_TICKS = 100;

describe('quiescence of a partition replica group', () => {
  it('an idle group goes silent; a produce wakes it, is acknowledged, and the group quiets again', async () => {
    const { c, leader } = await threeNodes('quiet', [], true);
    const id = c.produce(leader, ['a', 'b']);
    await c.settle();
    expect(c.nodes.get(leader.nodeId)!.acked.has(id)).toBe(true);
    await c.tick(3);
    for (const p of c.live()) expect(p.quiesced).toBe(true);
    const before = c.sent;
    await c.tick(QUIET_TICKS);
    expect(c.sent - before).toBe(0);
    for (const p of c.live()) expect(p.leaderId).toBe(leader.nodeId);

    const id2 = c.produce(leader, ['c']);
    await c.settle();
    expect(c.nodes.get(leader.nodeId)!.acked.has(id2)).toBe(true);
    expect(c.sent).toBeGreaterThan(before);
    await c.tick(3);
    for (const p of c.live()) expect(p.quiesced).toBe(true);
    for (const p of c.live()) expect(values(p)).toEqual(['a', 'b', 'c']);
    await shutdown(c);
  });

  it('a quiesced follower of a dead leader campaigns only once woken, and then within two election timeouts', async () => {
    const { c, leader } = await threeNodes('failover', [], true);
    c.produce(leader, ['x']);
    await c.settle();
    await c.tick(3);
    const dead = leader.nodeId;
    await c.stop(dead);
    await c.tick(QUIET_TICKS);
    const rest = VOTERS.filter((v) => v !== dead);
    for (const v of rest) expect(c.node(v).leaderId).toBe(dead);
    for (const v of rest) expect(c.node(v).wakeFor([dead])).toBe(true);
    let ticks = 0;
    for (; ticks < 2 * REPLICA_ELECTION_TICKS * 3 && !rest.some((v) => c.node(v).role === 'leader'); ticks++) await c.tick();
    const next = rest.find((v) => c.node(v).role === 'leader');
    expect(next).toBeDefined();
    const id = c.produce(c.node(next!), ['y']);
    await c.settle();
    expect(c.nodes.get(next!)!.acked.has(id)).toBe(true);
    await shutdown(c);
  });

  it('wakeFor ignores nodes that are not members, and a group that is awake', async () => {
    const { c, leader } = await threeNodes('members', [], true);
    await c.tick(3);
    expect(leader.quiesced).toBe(true);
    expect(leader.wakeFor([99])).toBe(false);
    expect(leader.quiesced).toBe(true);
    const other = VOTERS.find((v) => v !== leader.nodeId)!;
    expect(leader.wakeFor([other])).toBe(true);
    expect(leader.wakeFor([other])).toBe(false);
    await shutdown(c);
  });

  it('without the option nothing quiesces', async () => {
    const { c } = await threeNodes('off');
    await c.tick(5);
    const before = c.sent;
    await c.tick(5);
    expect(c.sent - before).toBeGreaterThan(0);
    for (const p of c.live()) expect(p.quiesced).toBe(false);
    await shutdown(c);
  });
});
