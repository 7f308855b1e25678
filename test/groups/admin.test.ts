/**
 * Goal: the unary group RPCs (CommitOffsets, FetchOffsets, ListGroups, DescribeGroup, DeleteGroup,
 * ResetOffsets) do what docs/groups.md says, with stable reasons for refusals, and committed offsets
 * survive a broker restart. Method: a real broker in-process over real gRPC (generated stubs), a
 * GroupConsumer as the live member, a close and reopen of the broker on the same data dir.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupConsumer } from '../../src/client/group-consumer.js';
import { ResetTo } from '../../src/rpc/gen/sluice/v1/groups.js';
import { groupsApi, startGroupBroker, tempDir, topicWithRecords, waitFor, type GroupBroker } from './helpers.js';

let gb: GroupBroker;
let api: ReturnType<typeof groupsApi>;
const dataDir = tempDir();

beforeAll(async () => {
  gb = await startGroupBroker(dataDir);
  api = groupsApi(gb.address);
  await topicWithRecords(gb.brokerAddress, 'ledger', 3, 10);
});
afterAll(async () => {
  api?.close();
  await gb?.close();
});

const commit = (groupId: string, partition: number, offset: number, memberId = '', generation = 0n) =>
  api.commitOffsets({ groupId, memberId, generation, offsets: [{ topic: 'ledger', partition, offset: BigInt(offset), metadata: 'm' }] });

describe('group admin RPCs', () => {
  it('commits and fetches standalone offsets; refuses bad ones with stable reasons', async () => {
    await commit('g-admin', 0, 4);
    await commit('g-admin', 1, 10);
    const fetched = await api.fetchOffsets({ groupId: 'g-admin', topics: [] });
    expect(fetched.offsets.map((o) => [o.partition, o.offset, o.metadata])).toEqual([[0, 4n, 'm'], [1, 10n, 'm']]);
    // Each partition: the first term's no-op (0), then records 1-10; the high watermark is 11.
    await expect(commit('g-admin', 2, 12)).rejects.toMatchObject({ code: 'OFFSET_OUT_OF_RANGE' });
    await expect(commit('g-admin', 2, 1, 'no-such-member', 1n)).rejects.toMatchObject({ code: 'UNKNOWN_MEMBER' });
    await expect(api.describeGroup({ groupId: 'never-seen' })).rejects.toMatchObject({ code: 'UNKNOWN_GROUP' });
    expect((await api.fetchOffsets({ groupId: 'g-admin', topics: [] })).offsets.length).toBe(2);
  });

  it('describes a group with members, assignment and per-partition lag', async () => {
    const c = new GroupConsumer({ brokers: gb.address, groupId: 'g-admin', sessionTimeoutMs: 3_000 }).subscribe(['ledger']);
    let n = 0;
    const done = c.run(async (b) => {
      n += b.records.length;
    });
    // Starts at 4, 10 and (nothing committed) 0: 7 + 1 + 10 records (records are at 1-10).
    await waitFor('18 records', () => n === 18);
    await waitFor('committed', async () => {
      // All three partitions: `every` over the two committed before would pass before partition 2's commit.
      const { offsets } = await api.fetchOffsets({ groupId: 'g-admin', topics: [] });
      return offsets.length === 3 && offsets.every((o) => o.offset === 11n);
    });
    const d = await api.describeGroup({ groupId: 'g-admin' });
    expect(d.state).toBe('STABLE');
    expect(d.members.length).toBe(1);
    expect(d.members[0].assigned.length).toBe(3);
    expect(d.partitions.map((p) => [p.partition, p.committedOffset, p.highWatermark, p.lag])).toEqual([
      [0, 11n, 11n, 0n],
      [1, 11n, 11n, 0n],
      [2, 11n, 11n, 0n],
    ]);
    expect(d.partitions.every((p) => p.owner === d.members[0].memberId)).toBe(true);
    expect((await api.listGroups({})).groups.find((g) => g.groupId === 'g-admin')).toMatchObject({ state: 'STABLE', members: 1 });

    // With a member: reset and delete are refused, and the group stays healthy.
    await expect(api.resetOffsets({ groupId: 'g-admin', topics: [], to: ResetTo.RESET_TO_EARLIEST, timestampMs: 0n, offset: 0n, execute: true })).rejects.toMatchObject({
      code: 'GROUP_NOT_EMPTY',
    });
    await expect(api.deleteGroup({ groupId: 'g-admin' })).rejects.toMatchObject({ code: 'GROUP_NOT_EMPTY' });
    await expect(commit('g-admin', 0, 1)).rejects.toMatchObject({ code: 'UNKNOWN_MEMBER' });
    expect(c.assignment().length).toBe(3);
    await c.stop();
    await done;
    await waitFor('empty', async () => (await api.describeGroup({ groupId: 'g-admin' })).state === 'EMPTY');
  });

  it('resets offsets of an empty group: a dry run changes nothing, --execute does', async () => {
    const plan = await api.resetOffsets({ groupId: 'g-admin', topics: [], to: ResetTo.RESET_TO_OFFSET, timestampMs: 0n, offset: 3n, execute: false });
    expect(plan.executed).toBe(false);
    expect(plan.plan.map((p) => [p.partition, p.currentOffset, p.newOffset])).toEqual([[0, 11n, 3n], [1, 11n, 3n], [2, 11n, 3n]]);
    expect((await api.fetchOffsets({ groupId: 'g-admin', topics: [] })).offsets.map((o) => o.offset)).toEqual([11n, 11n, 11n]);
    await api.resetOffsets({ groupId: 'g-admin', topics: [], to: ResetTo.RESET_TO_OFFSET, timestampMs: 0n, offset: 3n, execute: true });
    expect((await api.fetchOffsets({ groupId: 'g-admin', topics: [] })).offsets.map((o) => o.offset)).toEqual([3n, 3n, 3n]);
    await api.resetOffsets({ groupId: 'g-admin', topics: ['ledger'], to: ResetTo.RESET_TO_LATEST, timestampMs: 0n, offset: 0n, execute: true });
    expect((await api.fetchOffsets({ groupId: 'g-admin', topics: [] })).offsets.map((o) => o.offset)).toEqual([11n, 11n, 11n]);
    await api.resetOffsets({ groupId: 'g-admin', topics: [], to: ResetTo.RESET_TO_TIMESTAMP, timestampMs: 0n, offset: 0n, execute: true });
    expect((await api.fetchOffsets({ groupId: 'g-admin', topics: [] })).offsets.map((o) => o.offset)).toEqual([0n, 0n, 0n]);
    await expect(api.resetOffsets({ groupId: 'g-admin', topics: [], to: ResetTo.RESET_TO_OFFSET, timestampMs: 0n, offset: 99n, execute: true })).rejects.toMatchObject({
      code: 'OFFSET_OUT_OF_RANGE',
    });
    // A member reads from the reset position.
    const c = new GroupConsumer({ brokers: gb.address, groupId: 'g-admin' }).subscribe(['ledger']);
    let n = 0;
    const done = c.run(async (b) => {
      n += b.records.length;
    });
    await waitFor('30 records', () => n === 30);
    await c.stop();
    await done;
  });

  it('keeps committed offsets across a broker restart', async () => {
    await api.resetOffsets({ groupId: 'g-restart', topics: ['ledger'], to: ResetTo.RESET_TO_OFFSET, timestampMs: 0n, offset: 7n, execute: true });
    await commit('g-restart', 1, 9);
    api.close();
    await gb.close();
    gb = await startGroupBroker(dataDir);
    api = groupsApi(gb.address);
    const fetched = await api.fetchOffsets({ groupId: 'g-restart', topics: [] });
    expect(fetched.offsets.map((o) => [o.partition, o.offset])).toEqual([[0, 7n], [1, 9n], [2, 7n]]);
    expect((await api.fetchOffsets({ groupId: 'g-admin', topics: [] })).offsets.length).toBe(3);
    const c = new GroupConsumer({ brokers: gb.address, groupId: 'g-restart' }).subscribe(['ledger']);
    const seen: string[] = [];
    const done = c.run(async (b) => {
      for (const r of b.records) seen.push(`${r.partition}:${r.offset}`);
    });
    // Records are at 1-10 (the no-op is 0; the restart added its own no-op at 11).
    await waitFor('10 records', () => seen.length === 10);
    expect(seen.sort()).toEqual(['0:10', '0:7', '0:8', '0:9', '1:10', '1:9', '2:10', '2:7', '2:8', '2:9']);
    await c.stop();
    await done;
  });

  it('deletes an empty group and its offsets', async () => {
    await api.deleteGroup({ groupId: 'g-restart' });
    expect((await api.fetchOffsets({ groupId: 'g-restart', topics: [] })).offsets).toEqual([]);
    await expect(api.describeGroup({ groupId: 'g-restart' })).rejects.toMatchObject({ code: 'UNKNOWN_GROUP' });
    await expect(api.deleteGroup({ groupId: 'g-restart' })).rejects.toMatchObject({ code: 'UNKNOWN_GROUP' });
  });
});
