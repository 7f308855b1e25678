/**
 * Goal: the replica-level rules behind the chaos harness's cluster findings (issue 13), each shown on
 * three real Partitions:
 *  - bug A: ListOffsets(latest) of a group of several voters is answered by a leader that has committed
 *    an entry of its term, and by nobody else: a follower cut off from the leader keeps an old high
 *    watermark, which a client that saw the leader's would see go backwards.
 *  - bug C: a leader whose fdatasync hangs (a slow disk) keeps heartbeating and replicating: no
 *    election, the followers hold its entries, including produces that came after the hang; it
 *    shows them committed once its own fdatasync completes.
 *  - finding D: a new leader reports every voter in sync until one has been past the lag bound for
 *    REPLICA_ISR_LAG_TICKS_MAX ticks (it used to report only the voters that had answered it yet, so
 *    the in-sync set and `sluice_under_replicated_partitions` flapped on every election).
 * Method: the shared three-replica harness (replica-cluster.ts): real Partitions on real data dirs, a
 * test network that can cut a node off, gated fdatasyncs; every loop bounded in rounds and time.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { NotLeaderError } from '../../src/partition/index.js';
import { SluiceError } from '../../src/errors.js';
import { rmDir, tmpDir } from '../storage/helpers.js';
import { RAFT_ELECTION_TICKS_DEFAULT, REPLICA_ISR_LAG_OFFSETS_MAX, REPLICA_ISR_LAG_TICKS_MAX } from '../../src/constants.js';
import { VOTERS, root, shutdown, threeNodes } from './replica-cluster.js';

root.dir = tmpDir('partition-chaos-fixes');
afterAll(() => rmDir(root.dir));

describe('ListOffsets(latest) on a replicated partition (chaos bug A)', () => {
  it('a follower behind the leader refuses (NOT_LEADER) instead of showing its older high watermark', async () => {
    const { c, leader } = await threeNodes('latest-follower');
    const behind = VOTERS.find((id) => id !== leader.nodeId)!;
    c.cut.add(behind);
    c.produce(leader, ['a', 'b', 'c']);
    await c.settle();
    const shown = leader.offsetFor('latest');
    expect(shown).toBeGreaterThan(c.node(behind).highWatermark);
    let refusal: unknown = null;
    try {
      c.node(behind).offsetFor('latest');
    } catch (err) {
      refusal = err;
    }
    expect(refusal).toBeInstanceOf(NotLeaderError);
    expect((refusal as SluiceError).retriable).toBe(true);
    // Earliest and by-timestamp lookups stay local (they never go backwards on a follower).
    expect(c.node(behind).offsetFor('earliest')).toBe(0);
    c.cut.delete(behind);
    await c.tick(3);
    expect(c.node(behind).highWatermark).toBe(shown);
    await shutdown(c);
  });
});

describe('the in-sync set across an election (chaos finding D)', () => {
  it('a new leader starts with every voter in sync; a cut-off one leaves only after the lag time, and comes back', async () => {
    const { c, leader } = await threeNodes('isr-election');
    // More than the lag bound in offsets, so that a voter the new leader has not heard from is behind it.
    const batch = Array.from({ length: 1_000 }, (_, i) => `r${i}`);
    for (let i = 0; i * 1_000 <= REPLICA_ISR_LAG_OFFSETS_MAX; i++) c.produce(leader, batch);
    await c.settle();
    expect(leader.inSyncVoters(REPLICA_ISR_LAG_OFFSETS_MAX)).toEqual(VOTERS);
    const old = leader.nodeId;
    c.cut.add(old);
    const next = await c.electLeader();
    expect(next.nodeId).not.toBe(old);
    // It has never heard from the old leader in its term: still in sync (for now).
    expect(next.inSyncVoters(REPLICA_ISR_LAG_OFFSETS_MAX)).toEqual(VOTERS);
    await c.tick(REPLICA_ISR_LAG_TICKS_MAX + 1);
    expect(next.inSyncVoters(REPLICA_ISR_LAG_OFFSETS_MAX)).toEqual(VOTERS.filter((v) => v !== old));
    c.cut.delete(old);
    for (let t = 0; t < 50 && next.inSyncVoters(REPLICA_ISR_LAG_OFFSETS_MAX).length < 3; t++) await c.tick();
    expect(next.inSyncVoters(REPLICA_ISR_LAG_OFFSETS_MAX)).toEqual(VOTERS);
    await shutdown(c);
  });
});

describe('a leader with a slow disk (chaos bug C)', () => {
  it('heartbeats and replicates while its own fdatasync is in flight, and commits once it completes', async () => {
    const { c, leader } = await threeNodes('slow-leader-disk');
    const term = leader.term;
    const rid = c.produce(leader, ['x', 'y']);
    c.nodes.get(leader.nodeId)!.gate.close();
    await c.settle();
    expect(leader.persisting).toBe(true);
    // Three election timeouts of ticks while the leader's fdatasync hangs.
    await c.tick(3 * 2 * RAFT_ELECTION_TICKS_DEFAULT);
    for (const p of c.live()) expect([p.nodeId, p.term, p.leaderId]).toEqual([p.nodeId, term, leader.nodeId]);
    expect(leader.role).toBe('leader');
    for (const p of c.live()) expect(p.logEndOffset).toBe(leader.logEndOffset);
    expect(c.nodes.get(leader.nodeId)!.acked.has(rid)).toBe(false);
    c.nodes.get(leader.nodeId)!.gate.open();
    await c.tick(2);
    expect(c.nodes.get(leader.nodeId)!.acked.has(rid)).toBe(true);
    expect(leader.highWatermark).toBe(leader.logEndOffset);
    await shutdown(c);
  });

  it('proposes and replicates later produces while its fdatasync hangs (asynchronous storage writes)', async () => {
    const { c, leader } = await threeNodes('slow-leader-pipeline');
    c.nodes.get(leader.nodeId)!.gate.close();
    const first = c.produce(leader, ['a']);
    await c.settle();
    expect(leader.persisting).toBe(true);
    // With one Ready at a time this batch waited, unproposed, until the first fdatasync completed.
    const second = c.produce(leader, ['b', 'c']);
    await c.settle();
    for (const p of c.live()) expect(p.logEndOffset).toBe(leader.logEndOffset);
    // Both are on a majority (the followers), but the leader shows only what its own disk holds.
    const hw = leader.highWatermark;
    expect(hw).toBeLessThan(leader.logEndOffset);
    expect(c.nodes.get(leader.nodeId)!.acked.has(first)).toBe(false);
    c.nodes.get(leader.nodeId)!.gate.open();
    await c.tick(2);
    for (const rid of [first, second]) expect(c.nodes.get(leader.nodeId)!.acked.has(rid)).toBe(true);
    expect(leader.highWatermark).toBe(leader.logEndOffset);
    await shutdown(c);
  });
});
