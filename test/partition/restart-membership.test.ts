/**
 * Goal: a replica that restarts keeps the membership changes its log holds. The configuration is the
 * snapshot's with the log's conf runs applied (apply at append); a replica that reopened with the
 * snapshot's alone would count votes and commits in a group that no longer exists (the partition
 * simulator with --conf-changes: two leaders of one term at seed 22, a committed entry lost at seed
 * 147). The sharpest case is a one-voter group that added a voter: reopened with its bootstrap
 * configuration it is a group of one again, elects itself and commits the uncommitted addVoter run
 * (and anything after it) on its own.
 * Method: a real Partition on a real data dir, no peers (node 2 never answers): add a learner, then
 * promote it (uncommitted without node 2), close, reopen, and read the membership and the high
 * watermark. Loops are bounded in rounds and time.
 */
import path from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { Partition, type PartitionEffects } from '../../src/partition/index.js';
import { defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import type { NodeId } from '../../src/model/index.js';
import { rmDir, rng, tmpDir } from '../storage/helpers.js';

const root = tmpDir('partition-restart-membership');
afterAll(() => rmDir(root));
const config: LogConfig = { ...defaultLogConfig(), flush: { kind: 'always' } };
const IDENT = { topic: 'r', topicId: 'rid', partition: 0 };
const SETTLE_ROUNDS_MAX = 10_000;
const SETTLE_MS_MAX = 10_000;

/** One partition with no peers: its Readies are persisted, its messages go nowhere. */
class Lone {
  private readonly ready = new Set<Partition>();
  readonly effects: PartitionEffects = {
    produced: () => {},
    failed: () => {},
    serveFetch: () => {},
    needPersist: (p) => void this.ready.add(p),
    send: () => {},
  };

  open(dir: string, fresh: boolean): Promise<Partition> {
    const r = rng(7);
    return Partition.open(dir, IDENT, config, fresh, {}, this.effects, undefined, { nodeId: 1, voters: [1], raft: { random: () => r.next() } });
  }

  async settle(p: Partition): Promise<void> {
    const t0 = Date.now();
    for (let round = 0; round < SETTLE_ROUNDS_MAX && Date.now() - t0 < SETTLE_MS_MAX; round++) {
      const ps = [...this.ready];
      this.ready.clear();
      for (const q of ps) q.persist();
      if (ps.length === 0 && this.ready.size === 0 && !p.persisting) return;
      await turn();
    }
    throw new Error('did not settle');
  }
}

describe('a restarted replica keeps the membership changes in its log', () => {
  it('a one-voter group that added a voter reopens as a group of two: no self-election, the addVoter run stays uncommitted', async () => {
    const dir = path.join(root, 'grow');
    const lone = new Lone();
    const p = await lone.open(dir, true);
    expect(p.role).toBe('leader');
    expect(() => p.proposeConfChange({ type: 'addLearner', node: 2 as NodeId })).not.toThrow();
    await lone.settle(p);
    expect(p.membership()).toMatchObject({ voters: [1], learners: [2], confPending: false });
    expect(() => p.proposeConfChange({ type: 'addVoter', node: 2 as NodeId })).not.toThrow();
    await lone.settle(p);
    // Apply at append: the leader counts node 2 now, so the addVoter run waits for it.
    expect(p.membership()).toMatchObject({ voters: [1, 2], learners: [], confPending: true });
    const addVoterAt = p.logEndOffset - 1;
    expect(p.highWatermark).toBeLessThanOrEqual(addVoterAt);
    await p.close(false);

    const again = await lone.open(dir, false);
    await lone.settle(again);
    expect(again.membership()).toMatchObject({ voters: [1, 2], learners: [] });
    expect(again.role).not.toBe('leader');
    expect(again.highWatermark).toBeLessThanOrEqual(addVoterAt);
    await again.close(false);
  });
});
