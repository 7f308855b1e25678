/**
 * Goal: the Consume stream protocol is exactly as documented (docs/groups.md): join → joined + assign,
 * revoke before assign on a move, the new owner starts at the old owner's final commit, bad input gets
 * a stable reason and leaves the group healthy, static members come back without a rebalance.
 * Method: a real broker in-process (startBroker) and hand-driven Consume streams (RawMember) over
 * real gRPC, so every message on the wire can be checked in order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawMember, groupsApi, startGroupBroker, topicWithRecords, waitFor, type GroupBroker } from './helpers.js';

let gb: GroupBroker;
const members: RawMember[] = [];
const member = (heartbeatMs?: number): RawMember => {
  const m = new RawMember(gb.address, heartbeatMs);
  members.push(m);
  return m;
};

beforeAll(async () => {
  gb = await startGroupBroker();
  await topicWithRecords(gb.brokerAddress, 'orders', 4, 10);
});
afterAll(async () => {
  for (const m of members) m.close();
  await gb?.close();
});

describe('Consume stream protocol', () => {
  it('joins, is assigned every partition and receives every record', async () => {
    const a = member();
    a.join('g-basic', ['orders']);
    await waitFor('all records', () => a.of('records').reduce((n, c) => n + c.records.length, 0) >= 40);
    expect(a.messages[0].response?.$case).toBe('joined');
    expect(a.held()).toEqual(['orders/0', 'orders/1', 'orders/2', 'orders/3']);
    const values = a.of('records').flatMap((c) => c.records.map((r) => Buffer.from(r.value!).toString()));
    expect(new Set(values).size).toBe(40);
    a.send({ $case: 'leave', value: {} });
    await waitFor('stream end', () => a.ended);
    expect(a.error).toBeNull();
  });

  it('revokes from the old owner first and assigns to the new owner only after the ack, at the final commit', async () => {
    const a = member();
    a.join('g-handover', ['orders']);
    await waitFor('a owns 4', () => a.held().length === 4);
    await waitFor('a got records', () => a.of('records').length >= 4);
    const b = member();
    b.join('g-handover', ['orders']);
    await waitFor('revoke to a', () => a.of('revoke').length === 1);
    const revoked = a.of('revoke')[0].partitions;
    expect(revoked.length).toBe(2);
    // b has joined but holds nothing yet: the partitions are still a's until it acknowledges.
    await new Promise((r) => setTimeout(r, 150));
    expect(b.of('joined').length).toBe(1);
    expect(b.held()).toEqual([]);
    // a commits offset 7 for the revoked partitions (as if it processed 7 records), then acks.
    const gen = a.generation();
    a.send({ $case: 'commit', value: { commitId: 1n, generation: gen, offsets: revoked.map((p) => ({ ...p, offset: 7n, metadata: '' })) } });
    await waitFor('commit result', () => a.of('commitResult').length === 1);
    expect(a.of('commitResult')[0].errorCode).toBe('');
    a.send({ $case: 'revokeAck', value: { generation: gen, partitions: revoked } });
    await waitFor('b assigned', () => b.held().length === 2);
    expect(b.held()).toEqual(revoked.map((p) => `${p.topic}/${p.partition}`).sort());
    expect(b.of('assign')[0].partitions.map((p) => p.offset)).toEqual([7n, 7n]);
    await waitFor('b records', () => b.of('records').reduce((n, c) => n + c.records.length, 0) >= 6);
    expect(b.of('records').every((c) => c.firstOffset >= 7n)).toBe(true);
    // No records of a revoked partition reach a after its revoke.
    const revokeAt = a.messages.findIndex((m) => m.response?.$case === 'revoke');
    const later = a.messages.slice(revokeAt + 1).filter((m) => m.response?.$case === 'records');
    const revokedKeys = new Set(revoked.map((p) => `${p.topic}/${p.partition}`));
    expect(later.filter((m) => m.response?.$case === 'records' && revokedKeys.has(`${m.response.value.topic}/${m.response.value.partition}`))).toEqual([]);
  });

  it('answers bad input with a stable reason and keeps the group healthy', async () => {
    const bad = member();
    bad.join('g-bad', ['orders', 'no-such-topic']);
    await waitFor('join refused', () => bad.ended);
    expect(bad.error?.code).toBe('UNKNOWN_TOPIC');

    const a = member();
    a.join('g-bad', ['orders']);
    await waitFor('a owns 4', () => a.held().length === 4);
    const gen = a.generation();
    const commit = (id: bigint, generation: bigint, topic: string, partition: number, offset: bigint): void =>
      a.send({ $case: 'commit', value: { commitId: id, generation, offsets: [{ topic, partition, offset, metadata: '' }] } });
    commit(1n, gen, 'orders', 99, 1n); // not assigned
    commit(2n, gen, 'orders', 0, 1000n); // beyond the high watermark (10)
    commit(3n, gen + 5n, 'orders', 0, 1n); // a generation from the future
    commit(4n, gen, 'orders', 0, 5n); // fine
    await waitFor('4 results', () => a.of('commitResult').length === 4);
    const byId = new Map(a.of('commitResult').map((r) => [r.commitId, r.errorCode]));
    expect(byId.get(1n)).toBe('PARTITION_NOT_ASSIGNED');
    expect(byId.get(2n)).toBe('OFFSET_OUT_OF_RANGE');
    expect(byId.get(3n)).toBe('STALE_GENERATION');
    expect(byId.get(4n)).toBe('');
    expect(a.ended).toBe(false);

    // A stale generation: b joins (generation moves on); a commit older than b's assignment is stale.
    const b = member();
    b.join('g-bad', ['orders']);
    await waitFor('revoke to a', () => a.of('revoke').length === 1);
    const revoked = a.of('revoke')[0].partitions;
    a.send({ $case: 'revokeAck', value: { generation: a.generation(), partitions: revoked } });
    await waitFor('b assigned', () => b.held().length === 2);
    b.send({ $case: 'commit', value: { commitId: 9n, generation: gen, offsets: [{ ...revoked[0], offset: 1n, metadata: '' }] } });
    await waitFor('b result', () => b.of('commitResult').length === 1);
    expect(b.of('commitResult')[0].errorCode).toBe('STALE_GENERATION');

    // A first message that is not a join ends only that stream.
    const c = member();
    c.send({ $case: 'heartbeat', value: {} });
    await waitFor('c refused', () => c.ended);
    expect(c.error?.code).toBe('INVALID_REQUEST');
    expect(a.ended || b.ended).toBe(false);
  });

  it('gives a static member its partitions back with no rebalance', async () => {
    const a = member();
    a.join('g-static', ['orders'], { instanceId: 'host-a', sessionTimeoutMs: 3_000 });
    const b = member();
    await waitFor('a owns 4', () => a.held().length === 4);
    b.join('g-static', ['orders'], { instanceId: 'host-b', sessionTimeoutMs: 3_000 });
    await waitFor('revoke to a', () => a.of('revoke').length === 1);
    a.send({ $case: 'revokeAck', value: { generation: a.generation(), partitions: a.of('revoke')[0].partitions } });
    await waitFor('b owns 2', () => b.held().length === 2);
    const bMessages = b.messages.filter((m) => m.response?.$case !== 'records').length;
    const held = a.held();
    const memberId = a.memberId;
    a.close(); // the stream breaks
    await new Promise((r) => setTimeout(r, 300));
    const a2 = member();
    a2.join('g-static', ['orders'], { instanceId: 'host-a', sessionTimeoutMs: 3_000 });
    await waitFor("a2 rejoined", () => a2.held().length === 2);
    const joined = a2.of('joined')[0];
    expect(joined.rejoined).toBe(true);
    expect(joined.memberId).toBe(memberId);
    expect(a2.held()).toEqual(held);
    await new Promise((r) => setTimeout(r, 200));
    // b saw no revoke or assign: nothing moved.
    expect(b.messages.filter((m) => m.response?.$case !== 'records').length).toBe(bMessages);
  });

  it('removes a member that sends nothing for its session timeout; the others take its partitions', async () => {
    const silent = member(0);
    silent.join('g-silent', ['orders'], { sessionTimeoutMs: 400 });
    await waitFor('silent owns 4', () => silent.held().length === 4);
    const live = member();
    live.join('g-silent', ['orders'], { sessionTimeoutMs: 5_000 });
    const started = Date.now();
    await waitFor('silent removed', () => silent.ended, 3_000);
    expect(silent.error?.code).toBe('UNKNOWN_MEMBER');
    await waitFor('live owns 4', () => live.held().length === 4, 3_000);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('auto-commit: the broker commits what it delivered and acknowledges revokes itself', async () => {
    const a = member();
    a.join('g-auto', ['orders'], { autoCommit: true, autoCommitIntervalMs: 50 });
    await waitFor('a got 40', () => a.of('records').reduce((n, c) => n + c.records.length, 0) >= 40);
    const api = groupsApi(gb.address);
    try {
      await waitFor('delivered committed', async () => {
        const o = await api.fetchOffsets({ groupId: 'g-auto', topics: [] });
        // 10 records per partition after the first term's no-op: the end is 11.
        return o.offsets.length === 4 && o.offsets.every((x) => x.offset === 11n);
      });
    } finally {
      api.close();
    }
    const b = member();
    b.join('g-auto', ['orders'], { autoCommit: true });
    await waitFor('b owns 2', () => b.held().length === 2);
    expect(a.held().length).toBe(2);
    expect(a.of('revoke').length).toBe(1);
    expect(b.of('assign')[0].partitions.every((p) => p.offset === 11n)).toBe(true);
  });
});
