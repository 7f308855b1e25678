/**
 * Goal: a coordinator in cluster mode serves exactly the offsets partitions its node leads (issue 11
 * §5): other groups get NOT_COORDINATOR naming the coordinator; gaining a partition replays it before
 * its groups are served; losing it fences the members with NOT_COORDINATOR and forgets the groups and
 * their offsets; regaining it at a new epoch replays again, so commits another coordinator wrote in
 * between are there.
 * Method: GroupCoordinator over the in-memory FakeBroker (test/client/fake-broker.ts) with a scripted
 * CoordinatorPlacement; "another coordinator" is a second GroupCoordinator on the same log.
 */
import { describe, expect, it } from 'vitest';
import { GroupCoordinator } from '../../src/groups/coordinator.js';
import { offsetsPartitionFor } from '../../src/groups/offsets-store.js';
import { OFFSETS_PARTITIONS } from '../../src/groups/constants.js';
import type { AssignedPartition, CoordinatorPlacement, JoinResult, MemberSink } from '../../src/groups/types.js';
import { FakeBroker } from '../client/fake-broker.js';

class Sink implements MemberSink {
  memberId = '';
  generation = 0;
  assigned: AssignedPartition[] = [];
  fencedWith: Error | null = null;
  joined(r: JoinResult): void {
    this.memberId = r.memberId;
  }
  assign(g: number, ps: AssignedPartition[]): void {
    this.generation = g;
    this.assigned.push(...ps);
  }
  revoke(): void {}
  fenced(err: Error): void {
    this.fencedWith = err;
  }
}

class ScriptedPlacement implements CoordinatorPlacement {
  readonly nodeId = 1;
  epochs: (number | null)[] = Array<number | null>(OFFSETS_PARTITIONS).fill(null);
  private readonly listeners = new Set<() => void>();
  leaderships(): (number | null)[] {
    return this.epochs;
  }
  coordinatorOf(): { nodeId: number; address: string } {
    return { nodeId: 2, address: '127.0.0.2:7070' };
  }
  onChange(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  /** Leads `partition` at `epoch` (null: does not lead it) and says so. */
  set(partition: number, epoch: number | null): void {
    this.epochs = this.epochs.map((e, i) => (i === partition ? epoch : e));
    for (const l of this.listeners) l();
  }
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('coordinator placement (cluster mode)', () => {
  it('serves only what it leads, fences members when it loses a partition, and replays it when it leads it again', async () => {
    const api = new FakeBroker();
    await api.createTopic('t', 2, 1, {});
    await api.produce({ topic: 't', partition: 0, records: Array.from({ length: 10 }, () => ({ key: null, value: Buffer.from('x') })), acks: 'all' });
    const placement = new ScriptedPlacement();
    const c = await GroupCoordinator.open(api, { timers: false, placement });
    const group = 'billing';
    const p = offsetsPartitionFor(group);

    // Not led here: refused, naming the coordinator this node knows of.
    const refused = await c.join({ groupId: group, topics: ['t'] }, new Sink()).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: 'NOT_COORDINATOR', retriable: true, info: { coordinator_id: '2', coordinator_address: '127.0.0.2:7070', coordinator_partition: String(p) } });
    expect(() => c.fetchOffsets(group)).toThrow(expect.objectContaining({ code: 'NOT_COORDINATOR' }));

    // Led at epoch 3: loaded, then served.
    placement.set(p, 3);
    await until('partition loaded', () => c.serves(p));
    const m = new Sink();
    await c.join({ groupId: group, topics: ['t'] }, m);
    expect(m.assigned.map((a) => [a.partition, a.committed])).toEqual([
      [0, null],
      [1, null],
    ]);
    await c.commit(group, m.memberId, m.generation, [{ topic: 't', partition: 0, offset: 4 }]);
    expect(c.listGroups().map((g) => g.groupId)).toEqual([group]);

    // Lost: the member is fenced (its stream would end), the group and its offsets are forgotten here.
    placement.set(p, null);
    expect(m.fencedWith).toMatchObject({ code: 'NOT_COORDINATOR' });
    expect(c.serves(p)).toBe(false);
    expect(c.listGroups()).toEqual([]);
    await expect(c.commit(group, m.memberId, m.generation, [{ topic: 't', partition: 0, offset: 5 }])).rejects.toMatchObject({ code: 'NOT_COORDINATOR' });

    // Another coordinator (another node's tenure) commits meanwhile, on the same replicated log.
    const other = await GroupCoordinator.open(api, { timers: false, placement: null });
    expect(other.fetchOffsets(group).map((e) => e.offset)).toEqual([4]);
    await other.commit(group, null, 0, [{ topic: 't', partition: 0, offset: 9 }]);
    other.close();

    // Led again at a new epoch: replayed, so the other coordinator's commit is what a member starts at.
    placement.set(p, 5);
    await until('partition reloaded', () => c.serves(p));
    expect(c.fetchOffsets(group).map((e) => e.offset)).toEqual([9]);
    const back = new Sink();
    await c.join({ groupId: group, topics: ['t'] }, back);
    expect(back.assigned.find((a) => a.partition === 0)?.committed).toBe(9);

    // The same partition at a newer epoch without a gap in between is a new tenure too: reloaded, members fenced.
    placement.set(p, 6);
    expect(back.fencedWith).toMatchObject({ code: 'NOT_COORDINATOR' });
    await until('partition reloaded at epoch 6', () => c.serves(p));
    c.close();
  });
});
