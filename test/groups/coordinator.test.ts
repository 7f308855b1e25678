/**
 * Goal: the coordinator's protocol logic at scale and its offsets bookkeeping, without gRPC: 100
 * members on 1,000 partitions end balanced with every partition owned exactly once, joins and leaves
 * move the minimum, no partition is ever held by two members, offsets recover by replay (last value per
 * key wins, tombstones delete) and expire for empty groups after offsets.retention.ms.
 * Method: GroupCoordinator over the in-memory FakeBroker (test/client/fake-broker.ts), fake member
 * sinks that acknowledge revokes on the next microtask, and an injected clock.
 */
import { describe, expect, it } from 'vitest';
import { GroupCoordinator } from '../../src/groups/coordinator.js';
import { OffsetsStm } from '../../src/groups/offsets-stm.js';
import { decodeOffsetKey, decodeOffsetValue, encodeOffsetKey, encodeOffsetValue } from '../../src/groups/offsets-codec.js';
import { offsetsPartitionFor } from '../../src/groups/offsets-store.js';
import { OFFSETS_PARTITIONS, OFFSETS_REFRESH_AGE_MS, OFFSETS_TOPIC } from '../../src/groups/constants.js';
import type { AssignedPartition, JoinResult, MemberSink, TopicPartition } from '../../src/groups/types.js';
import { FakeBroker } from '../client/fake-broker.js';

class FakeMember implements MemberSink {
  memberId = '';
  readonly held = new Set<string>();
  revokes = 0;
  assigns = 0;
  fencedWith: Error | null = null;
  constructor(private readonly c: () => GroupCoordinator, private readonly groupId: string, private readonly autoAck = true) {}
  joined(r: JoinResult): void {
    this.memberId = r.memberId;
  }
  assign(_g: number, ps: AssignedPartition[]): void {
    this.assigns++;
    for (const p of ps) this.held.add(`${p.topic}/${p.partition}`);
  }
  revoke(g: number, ps: TopicPartition[]): void {
    this.revokes++;
    for (const p of ps) this.held.delete(`${p.topic}/${p.partition}`);
    if (this.autoAck) queueMicrotask(() => this.c().ackRevoke(this.groupId, this.memberId, g, ps));
  }
  fenced(err: Error): void {
    this.fencedWith = err;
  }
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

/** Every partition is held by exactly one member (no double ownership, none missing). */
function checkExclusive(members: FakeMember[], total: number): void {
  const owners = new Map<string, number>();
  for (const m of members) for (const k of m.held) owners.set(k, (owners.get(k) ?? 0) + 1);
  expect([...owners.values()].every((n) => n === 1)).toBe(true);
  expect(owners.size).toBe(total);
}

describe('coordinator at scale', () => {
  it('100 members on 1,000 partitions: balanced, exclusive, minimal movement on leave and join', async () => {
    const api = new FakeBroker();
    await api.createTopic('big', 1000, 1, {});
    const c = await GroupCoordinator.open(api, { timers: false });
    const members: FakeMember[] = [];
    const started = Date.now();
    for (let i = 0; i < 100; i++) {
      const m = new FakeMember(() => c, 'g');
      members.push(m);
      await c.join({ groupId: 'g', topics: ['big'] }, m);
      await settle();
    }
    const joinAllMs = Date.now() - started;
    await settle();
    checkExclusive(members, 1000);
    expect(new Set(members.map((m) => m.held.size))).toEqual(new Set([10]));
    expect(c.snapshot('g')!.state).toBe('STABLE');
    expect(joinAllMs).toBeLessThan(20_000);

    // One leaves: exactly its 10 partitions move, spread so counts differ by at most 1.
    const before = new Map(members.map((m) => [m, new Set(m.held)]));
    const gone = members.pop()!;
    c.disconnect('g', gone.memberId, gone, true);
    await settle();
    checkExclusive(members, 1000);
    const counts = members.map((m) => m.held.size);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    expect(members.every((m) => [...before.get(m)!].every((k) => m.held.has(k)))).toBe(true);

    // One joins: it takes exactly 10 partitions, each from a member that had 11 (no other moves).
    const fresh = new FakeMember(() => c, 'g');
    const snapshot = new Map(members.map((m) => [m, new Set(m.held)]));
    await c.join({ groupId: 'g', topics: ['big'] }, fresh);
    await settle();
    members.push(fresh);
    checkExclusive(members, 1000);
    expect(fresh.held.size).toBe(10);
    let moved = 0;
    for (const [m, had] of snapshot) moved += [...had].filter((k) => !m.held.has(k)).length;
    expect(moved).toBe(10);
    c.close();
  });

  it('a member that stops talking is removed after its session timeout; an unacknowledged revoke is forced', async () => {
    let now = 1_000_000;
    const api = new FakeBroker();
    await api.createTopic('t', 4, 1, {});
    const c = await GroupCoordinator.open(api, { timers: false, now: () => now });
    const a = new FakeMember(() => c, 'g', false);
    await c.join({ groupId: 'g', topics: ['t'], sessionTimeoutMs: 1_000 }, a);
    const b = new FakeMember(() => c, 'g');
    await c.join({ groupId: 'g', topics: ['t'], sessionTimeoutMs: 5_000 }, b);
    expect(a.held.size).toBe(2);
    expect(b.held.size).toBe(0); // waiting for a's ack
    now += 600;
    c.touch('g', a.memberId);
    c.touch('g', b.memberId);
    c.tick();
    expect(b.held.size).toBe(0);
    now += 500; // a's revoke deadline (its session timeout) passed, a itself is still alive
    c.tick();
    expect(b.held.size).toBe(2);
    expect(a.fencedWith).toBeNull();
    now += 1_001; // a sent nothing for its session timeout
    c.touch('g', b.memberId);
    c.tick();
    expect(a.fencedWith?.message).toMatch(/session timeout/);
    await settle();
    expect(b.held.size).toBe(4);
    c.close();
  });
});

describe('offsets storage', () => {
  it('encodes keys and values in the documented format and round-trips them', () => {
    const k = encodeOffsetKey({ group: 'g1', topic: 'orders', partition: 7 });
    expect(k.toString('hex')).toBe('0001' + '0002' + Buffer.from('g1').toString('hex') + '0006' + Buffer.from('orders').toString('hex') + '00000007');
    expect(decodeOffsetKey(k)).toEqual({ group: 'g1', topic: 'orders', partition: 7 });
    const v = encodeOffsetValue({ offset: 2 ** 40, commitTimeMs: 1234, metadata: 'é' });
    expect(decodeOffsetValue(v)).toEqual({ offset: 2 ** 40, commitTimeMs: 1234, metadata: 'é' });
    expect(() => decodeOffsetValue(v.subarray(0, 10))).toThrow(/malformed/);
    const future = Buffer.from(k);
    future.writeUInt16BE(9, 0);
    expect(decodeOffsetKey(future)).toBeNull();
  });

  it('replay keeps the last value per key and applies tombstones', () => {
    const stm = new OffsetsStm();
    const key = (p: number) => encodeOffsetKey({ group: 'g', topic: 't', partition: p });
    const val = (o: number) => encodeOffsetValue({ offset: o, commitTimeMs: o, metadata: '' });
    stm.applyRecord(key(0), val(1), 0);
    stm.applyRecord(key(1), val(5), 0);
    stm.applyRecord(key(0), val(3), 0);
    stm.applyRecord(key(1), null, 0);
    expect(stm.list('g').map((e) => [e.partition, e.offset])).toEqual([[0, 3]]);
    stm.applyRecord(key(0), null, 0);
    expect(stm.has('g')).toBe(false);
  });

  it('maps a group to murmur2(group) mod the fixed partition count', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(offsetsPartitionFor(`group-${i}`));
    expect(seen.size).toBe(OFFSETS_PARTITIONS);
    expect(offsetsPartitionFor('group-1')).toBe(offsetsPartitionFor('group-1'));
  });

  it('recovers offsets by replaying __consumer_offsets, and expires empty groups after offsets.retention.ms', async () => {
    let now = 5_000_000;
    const api = new FakeBroker();
    await api.createTopic('t', 2, 1, {});
    await api.produce({ topic: 't', partition: 0, records: Array.from({ length: 10 }, () => ({ key: null, value: Buffer.from('x') })), acks: 'all' });
    const c1 = await GroupCoordinator.open(api, { timers: false, now: () => now, offsetsRetentionMs: 10_000 });
    await c1.commit('keep', null, 0, [{ topic: 't', partition: 0, offset: 3 }]);
    await c1.commit('keep', null, 0, [{ topic: 't', partition: 0, offset: 8 }]);
    await c1.commit('old', null, 0, [{ topic: 't', partition: 0, offset: 2 }]);
    c1.close();
    const onDisk = (await api.describeTopic(OFFSETS_TOPIC)).partitions.reduce((n, p) => n + p.highWatermark, 0);
    expect(onDisk).toBe(3);

    now += 8_000;
    const c2 = await GroupCoordinator.open(api, { timers: false, now: () => now, offsetsRetentionMs: 10_000 });
    expect(c2.fetchOffsets('keep').map((e) => e.offset)).toEqual([8]);
    await c2.commit('keep', null, 0, [{ topic: 't', partition: 0, offset: 9 }]);
    // A member keeps 'old' alive however long ago it committed.
    const m = new FakeMember(() => c2, 'old');
    await c2.join({ groupId: 'old', topics: ['t'] }, m);
    now += 5_000;
    expect(await c2.expireOffsets()).toEqual([]);
    c2.disconnect('old', m.memberId, m, true);
    expect(await c2.expireOffsets()).toEqual(['old']);
    expect(c2.fetchOffsets('old')).toEqual([]);
    c2.close();

    const c3 = await GroupCoordinator.open(api, { timers: false, now: () => now, offsetsRetentionMs: 10_000 });
    expect(c3.fetchOffsets('old')).toEqual([]);
    expect(c3.fetchOffsets('keep').map((e) => e.offset)).toEqual([9]);
    expect(c3.listGroups().map((g) => g.groupId)).toEqual(['keep']);
    c3.close();
  });

  it('reports each group\'s lag per topic to the probe, and deletions', async () => {
    const api = new FakeBroker();
    await api.createTopic('t', 2, 1, {});
    await api.produce({ topic: 't', partition: 0, records: Array.from({ length: 10 }, () => ({ key: null, value: Buffer.from('x') })), acks: 'all' });
    await api.produce({ topic: 't', partition: 1, records: Array.from({ length: 4 }, () => ({ key: null, value: Buffer.from('x') })), acks: 'all' });
    const lags: [string, string, number][] = [];
    const deleted: string[] = [];
    const probe = { consumerGroupLag: (g: string, t: string, lag: number) => lags.push([g, t, lag]), groupDeleted: (g: string) => deleted.push(g) };
    const c = await GroupCoordinator.open(api, { timers: false, probe });
    await c.commit('lagging', null, 0, [{ topic: 't', partition: 0, offset: 3 }, { topic: 't', partition: 1, offset: 4 }]);
    await c.reportLag();
    expect(lags).toEqual([['lagging', 't', 7]]);
    await c.deleteGroup('lagging');
    expect(deleted).toEqual(['lagging']);
    c.close();
  });

  it('refresh re-appends live offsets before log retention could drop them, keeping their commit time', async () => {
    let now = 10_000_000;
    const api = new FakeBroker();
    await api.createTopic('t', 1, 1, {});
    await api.produce({ topic: 't', partition: 0, records: Array.from({ length: 5 }, () => ({ key: null, value: Buffer.from('x') })), acks: 'all' });
    const c = await GroupCoordinator.open(api, { timers: false, now: () => now, offsetsRetentionMs: -1 });
    await c.commit('quiet', null, 0, [{ topic: 't', partition: 0, offset: 4 }]);
    expect(await c.store.refresh()).toBe(0);
    now += OFFSETS_REFRESH_AGE_MS + 1;
    await c.commit('busy', null, 0, [{ topic: 't', partition: 0, offset: 5 }]);
    expect(await c.store.refresh()).toBe(1); // only 'quiet' is old
    const entry = c.fetchOffsets('quiet')[0];
    expect(entry.commitTimeMs).toBe(10_000_000);
    expect(entry.writeTimeMs).toBe(now);
    c.close();
    // The newest record of every live key is young: dropping everything older loses nothing.
    const again = await GroupCoordinator.open(api, { timers: false, now: () => now, offsetsRetentionMs: -1 });
    expect(again.fetchOffsets('quiet').map((e) => [e.offset, e.commitTimeMs, e.writeTimeMs])).toEqual([[4, 10_000_000, now]]);
    again.close();
  });
});
