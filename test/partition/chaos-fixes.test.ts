/**
 * Goal: the replica-level rules behind the chaos harness's cluster findings (issue 13), each shown on
 * three real Partitions:
 *  - bug A: ListOffsets(latest) of a group of several voters is answered by a leader that has committed
 *    an entry of its term, and by nobody else: a follower cut off from the leader keeps an old high
 *    watermark, which a client that saw the leader's would see go backwards.
 * Method: the shared three-replica harness (replica-cluster.ts): real Partitions on real data dirs, a
 * test network that can cut a node off, gated fdatasyncs; every loop bounded in rounds and time.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { NotLeaderError } from '../../src/partition/index.js';
import { SluiceError } from '../../src/errors.js';
import { rmDir, tmpDir } from '../storage/helpers.js';
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
