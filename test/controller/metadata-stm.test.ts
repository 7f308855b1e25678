/**
 * Goal: the metadata state machine applies every command as documented, refuses bad ones the same way
 * everywhere, and is deterministic and idempotent. Method: apply records directly (no Raft, no disk);
 * compare states through their snapshot bytes; replay a log from a snapshot taken part-way, as a
 * restarting node does, and expect the state of a node that never stopped.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MetadataStm, decodeSnapshot, encodeSnapshot, METADATA_RECORD_VERSION, planRecords, replicaOps, replicasOf, type PlanContext } from '../../src/controller/index.js';
import type { ControllerRequest } from '../../src/rpc/gen/sluice/cluster/v1/controller.js';
import { NodeState, ReassignStep, type MetadataRecord, type ReplicaAssignment } from '../../src/rpc/gen/sluice/cluster/v1/controller.js';
import type { NodeId } from '../../src/model/index.js';

const ID1 = '00000000-0000-4000-8000-000000000001';
const ID2 = '00000000-0000-4000-8000-000000000002';

function rec(record: MetadataRecord['record']): MetadataRecord {
  return { version: METADATA_RECORD_VERSION, record };
}

function register(id: number, uuid = `uuid-${id}`, rack = '', shards = 2): MetadataRecord {
  return rec({ $case: 'registerNode', value: { nodeId: id, uuid, address: `127.0.0.${id}:7070`, rack, shards } });
}

function a(replicas: number[], shards = replicas.map(() => 0)): ReplicaAssignment {
  return { replicas, shards };
}

function create(name: string, topicId: string, parts: ReplicaAssignment[], rf = parts[0].replicas.length): MetadataRecord {
  return rec({ $case: 'createTopic', value: { name, topicId, replicationFactor: rf, configs: { 'retention.ms': '1000' }, partitions: parts, createdMs: 5n } });
}

function step(group: number, s: ReassignStep, node = 0, shard = 0, target?: ReplicaAssignment): MetadataRecord {
  return rec({ $case: 'reassignStep', value: { groupId: group, step: s, nodeId: node, shard, target } });
}

/** Planning as the controller leader does, with every node live. */
const PLAN: PlanContext = { live: () => true, nowMs: 0, newTopicId: () => ID2 };

/** A state machine fed records at indexes 2, 3, … (the log starts after the founding snapshot). */
class Feeder {
  stm = new MetadataStm();
  index = 1;
  log: MetadataRecord[] = [];
  apply(r: MetadataRecord) {
    this.log.push(r);
    return this.stm.apply(++this.index, r);
  }
}

function cluster(): Feeder {
  const f = new Feeder();
  for (const id of [1, 2, 3]) expect(f.apply(register(id)).error).toBeNull();
  return f;
}

describe('metadata state machine', () => {
  it('registers nodes; the same uuid again changes nothing, a new address updates', () => {
    const f = new Feeder();
    expect(f.apply(register(1)).events.map((e) => e.type)).toEqual(['nodeRegistered']);
    expect(f.apply(register(1)).events).toEqual([]);
    const moved = rec({ $case: 'registerNode', value: { nodeId: 1, uuid: 'uuid-1', address: '10.0.0.1:7070', rack: 'r1', shards: 2 } });
    expect(f.apply(moved).events.map((e) => e.type)).toEqual(['nodeUpdated']);
    expect(f.stm.node(1 as NodeId)).toMatchObject({ address: '10.0.0.1:7070', rack: 'r1', incarnation: 1, state: 'active' });
    expect(f.apply(register(0)).error?.code).toBe('INVALID_REQUEST');
    expect(f.apply(rec({ $case: 'registerNode', value: { nodeId: 4, uuid: '', address: '', rack: '', shards: 1 } })).error?.code).toBe('INVALID_REQUEST');
  });

  it('creates a topic with cluster-unique group ids that are never reused, even after a delete', () => {
    const f = cluster();
    const out = f.apply(create('orders', ID1, [a([1, 2, 3], [0, 1, 0]), a([2, 3, 1])]));
    expect(out.error).toBeNull();
    const t = f.stm.topic('orders')!;
    expect(t.partitions.map((p) => p.group)).toEqual([1, 2]);
    expect(t.partitions[0].voters).toEqual({ nodes: [1, 2, 3], shards: [0, 1, 0] });
    expect(f.stm.partitionByGroup(2)?.partition).toBe(1);
    expect(f.apply(rec({ $case: 'deleteTopic', value: { name: 'orders', topicId: '' } })).events.map((e) => e.type)).toEqual(['topicDeleted']);
    expect(f.stm.partitionByGroup(1)).toBeUndefined();
    f.apply(create('orders', ID2, [a([1])]));
    expect(f.stm.topic('orders')!.partitions[0].group).toBe(3);
  });

  it('refuses a duplicate name, unknown nodes, wrong replica counts, missing shards, a reused topic id', () => {
    const f = cluster();
    f.apply(create('t', ID1, [a([1])]));
    expect(f.apply(create('t', ID2, [a([1])])).error?.code).toBe('TOPIC_ALREADY_EXISTS');
    expect(f.apply(create('u', ID2, [a([1, 9])])).error?.message).toMatch(/node 9 is not registered/);
    expect(f.apply(create('u', ID2, [a([1, 2])], 3)).error?.message).toMatch(/2 replicas where the replication factor is 3/);
    expect(f.apply(create('u', ID2, [a([1, 1])])).error?.message).toMatch(/appears twice/);
    expect(f.apply(create('u', ID2, [a([1], [2])])).error?.message).toMatch(/no shard 2/);
    expect(f.apply(create('u', ID1, [a([1])])).error?.message).toMatch(/taken by 't'/);
    expect(f.apply(create('bad/name', ID2, [a([1])])).error?.code).toBe('INVALID_REQUEST');
    expect(f.stm.topics().map((t) => t.name)).toEqual(['t']);
  });

  it('alters configs and adds partitions with new group ids', () => {
    const f = cluster();
    f.apply(create('t', ID1, [a([1, 2])]));
    f.apply(rec({ $case: 'alterConfigs', value: { name: 't', topicId: '', set: { 'segment.bytes': '2000000' }, delete: ['retention.ms'] } }));
    expect(f.stm.topic('t')!.configs).toEqual({ 'segment.bytes': '2000000' });
    const out = f.apply(rec({ $case: 'addPartitions', value: { name: 't', topicId: ID1, partitions: [a([2, 3]), a([3, 1])] } }));
    expect(out.events.map((e) => e.type)).toEqual(['partitionsAdded']);
    expect(f.stm.topic('t')!.partitions.map((p) => [p.partition, p.group])).toEqual([
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
    expect(f.apply(rec({ $case: 'addPartitions', value: { name: 't', topicId: ID2, partitions: [a([1, 2])] } })).error?.code).toBe('UNKNOWN_TOPIC');
    expect(f.apply(rec({ $case: 'alterConfigs', value: { name: 'nope', topicId: '', set: {}, delete: [] } })).error?.code).toBe('UNKNOWN_TOPIC');
  });

  it('moves a partition one step per record: begin, add learner, promote, remove, complete', () => {
    const f = cluster();
    f.apply(register(4));
    f.apply(create('t', ID1, [a([1, 2, 3])]));
    const g = 1;
    expect(f.apply(step(g, ReassignStep.REASSIGN_STEP_PROMOTE, 4)).error?.message).toMatch(/not a learner/);
    f.apply(step(g, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([4, 2, 3], [1, 0, 0])));
    expect(f.apply(step(g, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([1, 2, 3]))).error?.code).toBe('REASSIGNMENT_IN_PROGRESS');
    expect(f.apply(step(g, ReassignStep.REASSIGN_STEP_COMPLETE)).error?.message).toMatch(/not yet the target/);
    f.apply(step(g, ReassignStep.REASSIGN_STEP_ADD_LEARNER, 4, 1));
    expect(f.stm.partitionByGroup(g)!.learners).toEqual({ nodes: [4], shards: [1] });
    f.apply(step(g, ReassignStep.REASSIGN_STEP_PROMOTE, 4));
    f.apply(step(g, ReassignStep.REASSIGN_STEP_REMOVE, 1));
    expect(f.apply(step(g, ReassignStep.REASSIGN_STEP_COMPLETE)).error).toBeNull();
    const p = f.stm.partitionByGroup(g)!;
    expect(p.voters).toEqual({ nodes: [4, 2, 3], shards: [1, 0, 0] });
    expect(p.target).toBeNull();
    expect(p.learners.nodes).toEqual([]);
  });

  it('never removes the last voter', () => {
    const f = cluster();
    f.apply(create('t', ID1, [a([1])]));
    expect(f.apply(step(1, ReassignStep.REASSIGN_STEP_REMOVE, 1)).error?.message).toMatch(/last voter/);
  });

  it('keeps the newest leader report and ignores stale ones', () => {
    const f = cluster();
    f.apply(create('t', ID1, [a([1, 2, 3])]));
    const report = (leader: number, epoch: number) => f.apply(rec({ $case: 'leaderReport', value: { groupId: 1, leader, epoch } }));
    expect(report(2, 5).events.map((e) => e.type)).toEqual(['leaderChanged']);
    expect(report(1, 4).events).toEqual([]);
    expect(report(2, 5).events).toEqual([]);
    expect(report(3, 6).events.length).toBe(1);
    expect(f.stm.partitionByGroup(1)).toMatchObject({ leader: 3, leaderEpoch: 6 });
    expect(report(1, 6).error?.message).toMatch(/two leaders/);
    expect(f.apply(rec({ $case: 'leaderReport', value: { groupId: 99, leader: 1, epoch: 1 } })).error?.code).toBe('UNKNOWN_PARTITION');
  });

  it('decommissions: decommissioning first, decommissioned only once the node holds nothing', () => {
    const f = cluster();
    f.apply(create('t', ID1, [a([1, 3])]));
    const state = (s: NodeState) => f.apply(rec({ $case: 'nodeState', value: { nodeId: 3, state: s } }));
    expect(state(NodeState.NODE_STATE_DECOMMISSIONED).error?.message).toMatch(/must be decommissioning/);
    expect(state(NodeState.NODE_STATE_DECOMMISSIONING).events.map((e) => e.type)).toEqual(['nodeStateChanged']);
    expect(state(NodeState.NODE_STATE_DECOMMISSIONED).error?.message).toMatch(/still holds 1 replicas/);
    f.apply(step(1, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([1, 2])));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_ADD_LEARNER, 2, 0));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_PROMOTE, 2));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_REMOVE, 3));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_COMPLETE));
    expect(state(NodeState.NODE_STATE_DECOMMISSIONED).error).toBeNull();
    expect(f.stm.node(3 as NodeId)!.state).toBe('decommissioned');
    expect(f.apply(rec({ $case: 'nodeState', value: { nodeId: 8, state: NodeState.NODE_STATE_ACTIVE } })).error?.code).toBe('UNKNOWN_NODE');
  });

  it('recommissions a decommissioning node: it becomes active, the move already begun goes on, nothing is left to re-plan', () => {
    const f = cluster();
    f.apply(register(4));
    f.apply(create('t', ID1, [a([1, 3]), a([2, 3])]));
    // Partition 1 is busy with a user's move (to [3,4]) when node 3's decommission is planned.
    expect(f.apply(step(2, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([3, 4]))).error).toBeNull();
    const decommission: ControllerRequest = { request: { $case: 'decommission', value: { nodeId: 3, continueOnly: false } } };
    const recommission: ControllerRequest = { request: { $case: 'recommission', value: { nodeId: 3 } } };
    const planned = planRecords(decommission, f.stm, PLAN);
    expect(planned.map((r) => r.record?.$case)).toEqual(['nodeState', 'reassignStep']);
    for (const r of planned) expect(f.apply(r).error).toBeNull();
    expect(f.stm.node(3 as NodeId)!.state).toBe('decommissioning');
    const back = planRecords(recommission, f.stm, PLAN);
    expect(back).toEqual([rec({ $case: 'nodeState', value: { nodeId: 3, state: NodeState.NODE_STATE_ACTIVE } })]);
    expect(f.apply(back[0]).events.map((e) => e.type)).toEqual(['nodeStateChanged']);
    expect(f.stm.node(3 as NodeId)!.state).toBe('active');
    // The executor's re-ask of the running decommission, queued behind the recommission (chaos finding
    // E): planned after it, it must not start a fresh decommission of the now active node. An
    // operator's plain decommission would.
    expect(planRecords({ request: { $case: 'decommission', value: { nodeId: 3, continueOnly: true } } }, f.stm, PLAN)).toEqual([]);
    expect(planRecords(decommission, f.stm, PLAN).map((r) => r.record?.$case)[0]).toBe('nodeState');
    // The move the decommission began is an ordinary move now: still recorded, and its steps apply.
    const moving = f.stm.partitionByGroup(1)!;
    expect(moving.target!.nodes).not.toContain(3);
    const to = moving.target!.nodes.find((n) => !moving.voters.nodes.includes(n))!;
    for (const r of [
      step(1, ReassignStep.REASSIGN_STEP_ADD_LEARNER, to, 0),
      step(1, ReassignStep.REASSIGN_STEP_PROMOTE, to),
      step(1, ReassignStep.REASSIGN_STEP_REMOVE, 3),
      step(1, ReassignStep.REASSIGN_STEP_COMPLETE),
    ]) {
      expect(f.apply(r).error).toBeNull();
    }
    // The busy partition's own move ends on node 3, and nothing marks node 3 decommissioned now (the
    // executor re-plans only for decommissioning nodes, and the record itself is refused).
    for (const r of [step(2, ReassignStep.REASSIGN_STEP_ADD_LEARNER, 4, 0), step(2, ReassignStep.REASSIGN_STEP_PROMOTE, 4), step(2, ReassignStep.REASSIGN_STEP_REMOVE, 2), step(2, ReassignStep.REASSIGN_STEP_COMPLETE)]) {
      expect(f.apply(r).error).toBeNull();
    }
    expect(f.stm.partitionByGroup(2)!.voters.nodes).toEqual([3, 4]);
    expect(f.apply(rec({ $case: 'nodeState', value: { nodeId: 3, state: NodeState.NODE_STATE_DECOMMISSIONED } })).error?.message).toMatch(/must be decommissioning/);
    // Asked again: already active; the record applies with no event and changes nothing.
    const again = planRecords(recommission, f.stm, PLAN);
    const { appliedIndex: _, ...image } = f.stm.image();
    expect(f.apply(again[0])).toEqual({ events: [], error: null });
    expect(f.stm.image()).toMatchObject(image);
  });

  it('recommissions a decommissioned node: active again, and placement uses it; an unknown id is refused', () => {
    const f = cluster();
    f.apply(create('t', ID1, [a([1, 3])]));
    f.apply(rec({ $case: 'nodeState', value: { nodeId: 3, state: NodeState.NODE_STATE_DECOMMISSIONING } }));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([1, 2])));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_ADD_LEARNER, 2, 0));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_PROMOTE, 2));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_REMOVE, 3));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_COMPLETE));
    expect(f.apply(rec({ $case: 'nodeState', value: { nodeId: 3, state: NodeState.NODE_STATE_DECOMMISSIONED } })).error).toBeNull();
    const create3: ControllerRequest = { request: { $case: 'createTopic', value: { name: 'three', partitions: 2, replicationFactor: 3, configs: {} } } };
    // Two active nodes cannot hold three replicas.
    expect(() => planRecords(create3, f.stm, PLAN)).toThrow(expect.objectContaining({ code: 'REPLICATION_FACTOR_TOO_LARGE' }));
    const before = encodeSnapshot(f.stm);
    expect(() => planRecords({ request: { $case: 'recommission', value: { nodeId: 9 } } }, f.stm, PLAN)).toThrow(expect.objectContaining({ code: 'UNKNOWN_NODE', message: 'node 9 is not registered' }));
    expect(encodeSnapshot(f.stm)).toEqual(before);
    const back = planRecords({ request: { $case: 'recommission', value: { nodeId: 3 } } }, f.stm, PLAN);
    expect(back.length).toBe(1);
    expect(f.apply(back[0]).error).toBeNull();
    expect(f.stm.node(3 as NodeId)!.state).toBe('active');
    const placed = planRecords(create3, f.stm, PLAN);
    expect(f.apply(placed[0]).error).toBeNull();
    for (const p of f.stm.topic('three')!.partitions) expect([...p.voters.nodes].sort()).toEqual([1, 2, 3]);
  });

  it('a known id with a new uuid (wiped disk) is a new incarnation whose replicas are lost until rebuilt', () => {
    const f = cluster();
    expect(f.apply(create('t', ID1, [a([1, 2, 3])])).error).toBeNull();
    expect(f.apply(create('u', ID2, [a([1, 2])])).error).toBeNull();
    const out = f.apply(register(3, 'uuid-3-wiped'));
    expect(out.events[0]).toMatchObject({ type: 'nodeReincarnated', lost: [1] });
    expect(f.stm.node(3 as NodeId)).toMatchObject({ uuid: 'uuid-3-wiped', incarnation: 2 });
    expect(f.stm.partitionByGroup(1)!.lost).toEqual([3]);
    expect(f.stm.partitionByGroup(2)!.lost).toEqual([]);
    // Node 3 must not serve its old replica: it is told the replica is lost, and does not open it.
    const ops = out.events.flatMap((e) => replicaOps(3 as NodeId, e));
    expect(ops.map((o) => o.op)).toEqual(['lost']);
    expect(replicasOf(f.stm, 3 as NodeId)).toEqual([]);
    // The same registration again changes nothing (no second incarnation).
    expect(f.apply(register(3, 'uuid-3-wiped')).events).toEqual([]);
    // Rebuild: remove the lost replica, add it back as a learner, promote it.
    f.apply(step(1, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([1, 2, 3])));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_REMOVE, 3));
    expect(f.stm.partitionByGroup(1)!.lost).toEqual([]);
    const add = f.apply(step(1, ReassignStep.REASSIGN_STEP_ADD_LEARNER, 3, 0));
    expect(add.events.flatMap((e) => replicaOps(3 as NodeId, e))).toMatchObject([{ op: 'open', fresh: true }]);
    f.apply(step(1, ReassignStep.REASSIGN_STEP_PROMOTE, 3));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_COMPLETE));
    expect(f.stm.partitionByGroup(1)!.voters.nodes).toEqual([1, 2, 3]);
  });

  it('imports a topics.json once', () => {
    const f = cluster();
    const imp = rec({ $case: 'importTopics', value: { clusterId: 'c-1', topics: [create('old', ID1, [a([1]), a([1], [1])]).record!.value as never] } });
    expect(f.apply(imp).events.map((e) => e.type)).toEqual(['topicCreated']);
    expect(f.stm.clusterId).toBe('c-1');
    expect(f.stm.imported).toBe(true);
    expect(f.apply(imp).events).toEqual([]);
    expect(f.stm.topics().length).toBe(1);
  });

  it('refuses a record of a newer layout version instead of guessing', () => {
    const f = cluster();
    expect(() => f.stm.apply(100, { version: 2, record: register(9).record })).toThrow(/version 2/);
  });

  it('is idempotent under replay: a snapshot part-way plus the rest of the log gives the same state', () => {
    const f = cluster();
    f.apply(register(4, 'u4', 'rack-b'));
    f.apply(create('a', ID1, [a([1, 2]), a([2, 3])]));
    const mid = encodeSnapshot(f.stm);
    const midIndex = f.index;
    f.apply(create('b', ID2, [a([3, 4])]));
    f.apply(rec({ $case: 'leaderReport', value: { groupId: 3, leader: 4, epoch: 2 } }));
    f.apply(register(2, 'u2-new'));
    f.apply(rec({ $case: 'deleteTopic', value: { name: 'a', topicId: '' } }));
    // A restarted node: state from the snapshot, then the WHOLE log replayed (indexes it has are skipped).
    const restarted = decodeSnapshot(mid);
    expect(restarted.appliedIndex).toBe(midIndex);
    f.log.forEach((r, i) => restarted.apply(i + 2, r));
    expect(Buffer.from(encodeSnapshot(restarted))).toEqual(Buffer.from(encodeSnapshot(f.stm)));
    // And applying everything twice to a fresh node changes nothing the second time.
    const twice = new MetadataStm();
    f.log.forEach((r, i) => twice.apply(i + 2, r));
    f.log.forEach((r, i) => expect(twice.apply(i + 2, r).events).toEqual([]));
    expect(Buffer.from(encodeSnapshot(twice))).toEqual(Buffer.from(encodeSnapshot(f.stm)));
  });

  it('round-trips every field through the snapshot', () => {
    const f = cluster();
    f.apply(create('a', ID1, [a([1, 2], [1, 0])]));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_BEGIN, 0, 0, a([3, 2], [1, 0])));
    f.apply(step(1, ReassignStep.REASSIGN_STEP_ADD_LEARNER, 3, 1));
    f.apply(rec({ $case: 'leaderReport', value: { groupId: 1, leader: 2, epoch: 7 } }));
    f.apply(register(1, 'new-1'));
    f.apply(rec({ $case: 'nodeState', value: { nodeId: 2, state: NodeState.NODE_STATE_DECOMMISSIONING } }));
    const back = decodeSnapshot(encodeSnapshot(f.stm));
    expect(back.image()).toEqual(f.stm.image());
    expect(() => decodeSnapshot(new Uint8Array([0xff, 0xff, 0xff]))).toThrow(/does not decode/);
  });
});

describe('purity', () => {
  it('the state machine, snapshot, placement, planners and local view import no I/O and use no clock or randomness', () => {
    const dir = new URL('../../src/controller/', import.meta.url).pathname;
    const pure = ['types.ts', 'metadata-stm.ts', 'snapshot.ts', 'placement.ts', 'plan-request.ts', 'local-view.ts', 'record-codec.ts'];
    for (const f of pure) {
      const text = readFileSync(dir + f, 'utf8');
      for (const m of [...text.matchAll(/from\s+'([^']+)'/g)].map((x) => x[1])) {
        expect(m, `${f} imports ${m}`).not.toMatch(/^(node:)?(fs|net|dgram|http|https|child_process|worker_threads|timers|crypto)(\/|$)|grpc|storage|shard|partition/);
      }
      expect(text, f).not.toMatch(/Date\.now|new Date\(|performance\.now|Math\.random|randomUUID|setTimeout|setInterval|process\.hrtime/);
    }
  });
});
