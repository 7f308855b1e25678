/**
 * Goal: under kills, restarts and cut-off nodes, no answered metadata change is lost, none is applied
 * twice, group ids stay unique, and every node converges to the same state. Method: a seeded random
 * schedule (the seed is in the test name; replay with SLUICE_TEST_SEED) of 40 steps over three voters and
 * one learner with real data dirs and the in-memory transport: create a topic from a random running
 * node, delete an answered one, close a node, reopen one, cut one off, heal one. At least two voters
 * always run and are connected, so the group can always make progress. Then everything is healed and
 * reopened, and the checks run. Timing (real timers, real fsyncs) is not replayed exactly by a seed;
 * the schedule is.
 */
import fs from 'node:fs';
import { afterAll, expect, test } from 'vitest';
import { encodeSnapshot, MetadataStm, METADATA_RECORD_VERSION, type Controller } from '../../src/controller/index.js';
import type { MetadataRecord } from '../../src/rpc/gen/sluice/cluster/v1/controller.js';
import type { NodeId } from '../../src/model/index.js';
import { MemoryNet, agreedLeader, closeNode, openNode, tempDir, waitFor, type TestNode } from './memory-net.js';

const STEPS = 40;
const VOTERS = [1, 2, 3] as NodeId[];
const seed = Number(process.env.SLUICE_TEST_SEED ?? Date.now() % 1_000_000) || 1;
let prng = seed;
const rand = (n: number): number => {
  prng = (prng * 48271) % 2147483647;
  return prng % n;
};

const net = new MemoryNet();
const nodes: TestNode[] = [1, 2, 3, 4].map((id) => ({ id: id as NodeId, dir: tempDir(`chaos${id}`), uuid: `u${id}`, controller: null }));
const cut = new Set<NodeId>();

afterAll(async () => {
  for (const n of nodes) await closeNode(net, n);
  for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
});

const opts = { requestTimeoutMs: 2_000, snapshotIntervalEntries: 16 };
const running = (): Controller[] => nodes.flatMap((n) => (n.controller ? [n.controller] : []));
/** Voters that run and are connected: the group needs two. */
const healthyVoters = (): number => nodes.filter((n) => VOTERS.includes(n.id) && n.controller && !cut.has(n.id)).length;

test(`answered metadata survives a seeded schedule of kills, restarts and cut-offs (seed ${seed})`, async () => {
  for (const n of nodes) await openNode(net, n, VOTERS, opts);
  await waitFor(running(), () => agreedLeader(running()) !== 0, 'a first leader');
  const created = new Map<string, string>(); // answered creates: name -> group ids
  const deleted = new Set<string>(); // answered deletes
  const unsure = new Set<string>(); // requests that failed: either outcome is allowed
  const log: string[] = [];
  for (let step = 0; step < STEPS; step++) {
    const action = rand(10);
    const n = nodes[rand(nodes.length)];
    if (action <= 4 && n.controller) {
      const name = `s${step}`;
      try {
        const t = await n.controller.createTopic(name, 1 + rand(3), 1 + rand(3));
        created.set(name, t.partitions.map((p) => p.group).join(','));
        log.push(`${step}: create ${name} on ${n.id} ok`);
      } catch (err) {
        unsure.add(name);
        log.push(`${step}: create ${name} on ${n.id} failed: ${(err as Error).message}`);
      }
    } else if (action === 5 && n.controller && created.size > 0) {
      const name = [...created.keys()][rand(created.size)];
      if (deleted.has(name)) continue;
      try {
        await n.controller.deleteTopic(name);
        deleted.add(name);
        log.push(`${step}: delete ${name} on ${n.id} ok`);
      } catch (err) {
        unsure.add(name);
        log.push(`${step}: delete ${name} on ${n.id} failed: ${(err as Error).message}`);
      }
    } else if (action === 6 && n.controller && (!VOTERS.includes(n.id) || cut.has(n.id) || healthyVoters() > 2)) {
      await closeNode(net, n);
      log.push(`${step}: close ${n.id}`);
    } else if (action === 7 && !n.controller) {
      await openNode(net, n, VOTERS, opts);
      log.push(`${step}: reopen ${n.id}`);
    } else if (action === 8 && !cut.has(n.id) && (!VOTERS.includes(n.id) || !n.controller || healthyVoters() > 2)) {
      cut.add(n.id);
      net.setDown(n.id, true);
      log.push(`${step}: cut ${n.id}`);
    } else if (action === 9 && cut.has(n.id)) {
      cut.delete(n.id);
      net.setDown(n.id, false);
      log.push(`${step}: heal ${n.id}`);
    }
  }
  for (const id of cut) net.setDown(id, false);
  cut.clear();
  for (const n of nodes) if (!n.controller) await openNode(net, n, VOTERS, opts);
  const cs = running();
  const image = (c: Controller) => Buffer.from(encodeSnapshot(c.state));
  await waitFor(cs, () => cs.every((c) => c.appliedIndex === cs[0].appliedIndex && image(c).equals(image(cs[0]))), `convergence (seed ${seed}; ${log.join('; ')})`, 30_000);
  expect(checkMetadata(cs[0].state, created, deleted, unsure), `seed ${seed}`).toEqual([]);
  expect(created.size, `some creates were answered (seed ${seed}; ${log.join('; ')})`).toBeGreaterThan(3);
}, 240_000);

test('the checker catches a lost create, a resurrected delete and a reused group id', () => {
  const stm = new MetadataStm();
  const rec = (record: MetadataRecord['record']): MetadataRecord => ({ version: METADATA_RECORD_VERSION, record });
  stm.apply(2, rec({ $case: 'registerNode', value: { nodeId: 1, uuid: 'u', address: '', rack: '', shards: 1 } }));
  const create = (i: number, name: string, id: string) =>
    stm.apply(i, rec({ $case: 'createTopic', value: { name, topicId: id, replicationFactor: 1, configs: {}, partitions: [{ replicas: [1], shards: [0] }], createdMs: 0n } }));
  create(3, 'a', '00000000-0000-4000-8000-00000000000a');
  create(4, 'gone', '00000000-0000-4000-8000-00000000000b');
  expect(checkMetadata(stm, new Map([['a', '1']]), new Set(), new Set())).toEqual([]);
  // Lost: answered but missing; resurrected: answered delete still there; reused: answered with another id.
  const problems = checkMetadata(stm, new Map([['a', '1'], ['lost', '3'], ['gone', '2']]), new Set(['gone']), new Set());
  expect(problems).toEqual([expect.stringMatching(/lost/), expect.stringMatching(/gone.*deleted/)]);
  expect(checkMetadata(stm, new Map([['a', '7']]), new Set(), new Set())[0]).toMatch(/a has groups 1, answered with 7/);
  // A state whose group ids repeat (a broken state machine) is caught too.
  const broken = MetadataStm.fromImage({ ...stm.image(), topics: stm.image().topics.map((t) => ({ ...t, partitions: t.partitions.map((p) => ({ ...p, group: 1 })) })) });
  expect(checkMetadata(broken, new Map(), new Set(), new Set()).join()).toMatch(/group ids repeat/);
});

/** Everything wrong with the final state given the answered changes; empty when all is well. */
function checkMetadata(state: MetadataStm, created: Map<string, string>, deleted: Set<string>, unsure: Set<string>): string[] {
  const problems: string[] = [];
  for (const [name, groups] of created) {
    const t = state.topic(name);
    if (deleted.has(name)) {
      if (t !== undefined) problems.push(`${name} was deleted but is there`);
    } else if (!unsure.has(name)) {
      const got = t?.partitions.map((p) => p.group).join(',');
      if (got === undefined) problems.push(`${name} was created but is lost`);
      else if (got !== groups) problems.push(`${name} has groups ${got}, answered with ${groups}`);
    }
  }
  const groups = state.partitions().map((p) => p.group);
  if (new Set(groups).size !== groups.length) problems.push(`group ids repeat: ${groups.join(',')}`);
  if (!groups.every((g) => g < state.nextGroupId)) problems.push(`a group id is not below nextGroupId ${state.nextGroupId}`);
  return problems;
}
