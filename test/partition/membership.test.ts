/**
 * Goal: a partition's replica set changes through its Raft group, one server at a time, with no
 * acknowledged record lost: a new replica opens as a LEARNER with an empty log and the configuration
 * it was given, catches up from offset 0 without ever campaigning, is promoted, and a voter is
 * removed; the replicas of the final set hold byte-identical logs. Only the leader proposes; one change
 * at a time. Also the hazard the brief names: a joiner replicating from 0 must not elect itself, even
 * when the leader is cut off and it ticks far past an election timeout.
 * Method: real Partitions on real data dirs in one process; a test "network" carries `send` effects to
 * the peer's `step` (as in replication.test.ts); every loop is bounded in rounds and time.
 */
import path from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { Partition, type PartitionEffects, type ProduceOk } from '../../src/partition/index.js';
import { defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import type { Message } from '../../src/raft/index.js';
import type { NodeId } from '../../src/model/index.js';
import { isSluiceError } from '../../src/errors.js';
import { rmDir, rng, tmpDir } from '../storage/helpers.js';

const root = tmpDir('partition-membership');
afterAll(() => rmDir(root));
const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 64 * 1024, flush: { kind: 'always' } };
const IDENT = { topic: 'm', topicId: 'mid', partition: 0 };
const SETTLE_ROUNDS_MAX = 100_000;
const SETTLE_MS_MAX = 20_000;
const TICKS_MAX = 300;

class Net {
  readonly parts = new Map<number, Partition>();
  readonly acked = new Map<number, ProduceOk>();
  readonly cut = new Set<number>();
  /** Every role each node has had (to prove a learner never campaigned). */
  readonly roles = new Map<number, Set<string>>();
  private readonly wire: Message[] = [];
  private readonly ready = new Set<Partition>();
  private nextId = 1;

  constructor(readonly name: string) {}

  async open(id: number, voters: number[], learners: number[] = []): Promise<Partition> {
    const effects: PartitionEffects = {
      produced: (_p, rid, ok) => void this.acked.set(rid, ok),
      failed: () => {},
      serveFetch: () => {},
      needPersist: (p) => void this.ready.add(p),
      send: (_p, msg) => void this.wire.push(msg),
    };
    const r = rng(500 + id);
    const p = await Partition.open(path.join(root, this.name, `node-${id}`), IDENT, config, true, {}, effects, undefined, { nodeId: id, voters, learners, raft: { random: () => r.next() } });
    this.parts.set(id, p);
    this.roles.set(id, new Set([p.role]));
    return p;
  }

  async settle(): Promise<void> {
    const t0 = Date.now();
    for (let round = 0; round < SETTLE_ROUNDS_MAX && Date.now() - t0 < SETTLE_MS_MAX; round++) {
      const ps = [...this.ready];
      this.ready.clear();
      for (const p of ps) p.persist();
      const msgs = this.wire.splice(0);
      for (const m of msgs) {
        const to = this.parts.get(m.to);
        if (to && !this.cut.has(m.from) && !this.cut.has(m.to)) to.step(m);
      }
      for (const [id, p] of this.parts) this.roles.get(id)!.add(p.role);
      const busy = [...this.parts.values()].some((p) => p.persisting);
      if (msgs.length === 0 && ps.length === 0 && this.ready.size === 0 && this.wire.length === 0 && !busy) return;
      await turn();
    }
    throw new Error(`${this.name}: did not settle`);
  }

  async tick(n = 1): Promise<void> {
    for (let i = 0; i < n; i++) {
      for (const p of this.parts.values()) p.tick();
      await this.settle();
    }
  }

  async leader(): Promise<Partition> {
    for (let t = 0; t < TICKS_MAX; t++) {
      const up = [...this.parts.values()].filter((p) => !this.cut.has(p.nodeId));
      const leaders = up.filter((p) => p.role === 'leader');
      if (leaders.length === 1 && leaders[0].highWatermark === leaders[0].logEndOffset) return leaders[0];
      await this.tick();
    }
    throw new Error(`${this.name}: no leader`);
  }

  produce(p: Partition, values: string[]): number {
    const id = this.nextId++;
    p.produce(id, encodeBatch(values.map((v) => ({ key: null, value: Buffer.from(v) }))), 2);
    return id;
  }

  /** Proposes `change` on the leader (taken at once, or it throws); then ticks until it committed. */
  async change(leader: Partition, type: 'addVoter' | 'addLearner' | 'remove', node: number): Promise<void> {
    leader.proposeConfChange({ type, node: node as NodeId });
    for (let t = 0; t < TICKS_MAX && leader.membership().confPending; t++) await this.tick();
    expect(leader.membership().confPending).toBe(false);
  }
}

function committedBytes(p: Partition): Buffer {
  const parts: Buffer[] = [];
  for (let offset = p.logStartOffset; offset < p.highWatermark; ) {
    const r = p.read(offset, 1 << 20);
    if (r.data.length === 0) break;
    parts.push(Buffer.from(r.data));
    offset = r.nextOffset;
  }
  return Buffer.concat(parts);
}

function values(p: Partition): string[] {
  return decodeBatches(committedBytes(p))
    .filter((b) => !b.header.isControl)
    .flatMap((b) => b.records.map((r) => Buffer.from(r.value!).toString()));
}

describe('partition membership changes', () => {
  it('moves 1,2,3 -> 1,2,4: learner catches up from 0, is promoted, 3 is removed; logs identical, nothing acked lost', async () => {
    const net = new Net('move');
    for (const id of [1, 2, 3]) await net.open(id, [1, 2, 3]);
    let leader = await net.leader();
    const acks: number[] = [];
    for (let i = 0; i < 20; i++) acks.push(net.produce(leader, [`a${i}`]));
    await net.tick(2);
    // The new replica opens as the metadata lists it: a learner, empty, with the group's voters.
    const joiner = await net.open(4, [1, 2, 3], [4]);
    expect(joiner.isLearner).toBe(true);
    await net.change(leader, 'addLearner', 4);
    for (let i = 20; i < 40; i++) acks.push(net.produce(leader, [`a${i}`]));
    await net.tick(3);
    expect(joiner.highWatermark).toBe(leader.highWatermark);
    expect(leader.membership().learners).toEqual([4]);
    const m = leader.membership();
    expect(m.match[[...m.voters, ...m.learners].indexOf(4)]).toBe(leader.logEndOffset - 1);
    await net.change(leader, 'addVoter', 4);
    expect(leader.membership().voters).toEqual([1, 2, 3, 4]);
    // The leader cannot remove itself: it hands leadership over first.
    if (leader.nodeId === 3) {
      leader.transferLeadership(1);
      await net.tick(5);
      leader = await net.leader();
    }
    await net.change(leader, 'remove', 3);
    expect(leader.membership().voters).toEqual([1, 2, 4]);
    await net.parts.get(3)!.close(true);
    net.parts.delete(3);
    for (let i = 40; i < 60; i++) acks.push(net.produce(leader, [`a${i}`]));
    await net.tick(3);
    for (const rid of acks) expect(net.acked.has(rid)).toBe(true);
    const bytes = committedBytes(leader);
    for (const p of net.parts.values()) expect(committedBytes(p).equals(bytes)).toBe(true);
    expect(values(net.parts.get(4)!)).toEqual(Array.from({ length: 60 }, (_, i) => `a${i}`));
    // The learner never campaigned while it was one.
    expect([...net.roles.get(4)!].filter((r) => r === 'candidate' || r === 'preCandidate')).toEqual([]);
    for (const p of net.parts.values()) await p.close(false);
  });

  it('a joining learner never campaigns, even alone far past an election timeout, and catches up from 0', async () => {
    const net = new Net('joiner');
    for (const id of [1, 2, 3]) await net.open(id, [1, 2, 3]);
    const leader = await net.leader();
    for (let i = 0; i < 5; i++) net.produce(leader, [`b${i}`]);
    await net.tick(2);
    // The joiner opens empty, as the metadata lists it (a learner), before the leader has added it or
    // sent it anything; everyone else goes silent and it ticks three election timeouts' worth. Opened
    // as a voter, it would campaign here (an empty log that once voted is how a wiped disk loses data).
    const joiner = await net.open(4, [1, 2, 3], [4]);
    for (const id of [1, 2, 3]) net.cut.add(id);
    for (let t = 0; t < (3 * TICKS_MAX) / 10; t++) joiner.tick();
    await net.settle();
    expect(joiner.role).toBe('follower');
    expect([...net.roles.get(4)!].filter((r) => r !== 'follower')).toEqual([]);
    // Back on the network, it is added and catches up from offset 0, still a learner.
    for (const id of [1, 2, 3]) net.cut.delete(id);
    await net.change(leader, 'addLearner', 4);
    await net.tick(3);
    expect(joiner.highWatermark).toBe(leader.highWatermark);
    expect(joiner.isLearner).toBe(true);
    expect([...net.roles.get(4)!].filter((r) => r !== 'follower')).toEqual([]);
    for (const p of net.parts.values()) await p.close(false);
  });

  it('only the leader proposes, one change at a time', async () => {
    const net = new Net('rules');
    for (const id of [1, 2, 3]) await net.open(id, [1, 2, 3]);
    const leader = await net.leader();
    const follower = [...net.parts.values()].find((p) => p !== leader)!;
    expect(() => follower.proposeConfChange({ type: 'addLearner', node: 4 as NodeId })).toThrow(expect.objectContaining({ code: 'NOT_LEADER' }));
    leader.proposeConfChange({ type: 'addLearner', node: 4 as NodeId });
    expect(leader.membership().confPending).toBe(true);
    let second: unknown = null;
    try {
      leader.proposeConfChange({ type: 'addLearner', node: 5 as NodeId });
    } catch (err) {
      second = err;
    }
    expect(isSluiceError(second, 'PROPOSAL_DROPPED')).toBe(true);
    expect(() => leader.proposeConfChange({ type: 'remove', node: leader.nodeId as NodeId })).toThrow();
    for (const p of net.parts.values()) await p.close(false);
  });
  it('a produce to a leader handing off leadership is refused having written nothing, and the group carries on (found by test/k8s: the shard died)', async () => {
    const net = new Net('transfer');
    for (const id of [1, 2, 3]) await net.open(id, [1, 2, 3]);
    const leader = await net.leader();
    const acks: number[] = [];
    for (let i = 0; i < 5; i++) acks.push(net.produce(leader, [`c${i}`]));
    await net.tick(2);
    // The target is cut off and behind, so the transfer stays in progress (the leader sends it appends).
    const target = [...net.parts.values()].find((p) => p !== leader)!;
    net.cut.add(target.nodeId);
    acks.push(net.produce(leader, ['c5']));
    await net.tick(2);
    expect(leader.persisting).toBe(false);
    expect(() => leader.transferLeadership(target.nodeId)).not.toThrow();
    await net.settle();
    const end = leader.logEndOffset;
    let refused: unknown = null;
    try {
      net.produce(leader, ['dropped']);
    } catch (err) {
      refused = err;
    }
    expect(isSluiceError(refused, 'PROPOSAL_DROPPED'), String(refused)).toBe(true);
    expect(leader.logEndOffset).toBe(end);
    // The old leader's next Ready persists and advances as usual (its log and its core agree).
    await net.tick(3);
    net.cut.clear();
    // The transfer completes (the target caught up) or is abandoned after an election timeout; a
    // client retries the refusal meanwhile, as here.
    let next = await net.leader();
    for (let t = 0; t < TICKS_MAX; t++) {
      try {
        acks.push(net.produce(next, ['c6']));
        break;
      } catch (err) {
        if (!isSluiceError(err, 'PROPOSAL_DROPPED') && !isSluiceError(err, 'NOT_LEADER')) throw err;
        await net.tick();
        next = await net.leader();
      }
    }
    for (let i = 7; i < 10; i++) acks.push(net.produce(next, [`c${i}`]));
    await net.tick(3);
    for (const rid of acks) expect(net.acked.has(rid)).toBe(true);
    const bytes = committedBytes(next);
    for (const p of net.parts.values()) expect(committedBytes(p).equals(bytes)).toBe(true);
    expect(values(next)).toEqual(Array.from({ length: 10 }, (_, i) => `c${i}`));
    for (const p of net.parts.values()) await p.close(false);
  });
});
