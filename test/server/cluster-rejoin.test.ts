/**
 * Goal: a node back with a wiped data dir under its old id opens NONE of the replicas its earlier
 * incarnation held while it re-applies the metadata log from the start (those records name the old
 * uuid; opening them from an empty disk as the voter it was is how a wiped disk loses acknowledged
 * data). Its registration with the new uuid marks them lost everywhere, and it waits for the rebuild.
 * Method: four in-process brokers on 127.0.0.1-4 with real gossip, Raft transport, controller and gRPC
 * over a fake replica core (test/server/fake-replica-core.ts) that records every replica it is asked
 * to open; the fake has no membership changes, so no rebuild step runs and any open of the lost groups
 * on the wiped node would come from the replayed records. Waits poll observables, bounded.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Admin } from '../../src/client/index.js';
import type { ReplicaSpec } from '../../src/broker/index.js';
import type { NodeId } from '../../src/model/index.js';
import { FakeReplicaCore } from './fake-replica-core.js';

const WAIT_MS = 30_000;
const POLL_MS = 25;
const running: RunningBroker[] = [];
const dirs: string[] = [];

class RecordingCore extends FakeReplicaCore {
  readonly opened: ReplicaSpec[] = [];
  override async openReplicas(specs: readonly ReplicaSpec[]): Promise<void> {
    this.opened.push(...specs);
    return super.openReplicas(specs);
  }
}

async function waitFor(what: string, pred: () => Promise<boolean> | boolean): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < WAIT_MS / POLL_MS + 1 && performance.now() - t0 < WAIT_MS; i++) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${WAIT_MS} ms waiting for: ${what}`);
}

async function start(id: number, dir: string, seeds: string[], core: RecordingCore): Promise<RunningBroker> {
  const b = await startBroker({
    dataDir: dir,
    grpcAddress: `127.0.0.${id}:0`,
    httpAddress: `127.0.0.${id}:0`,
    nodeId: id,
    shards: 1,
    openBroker: async () => core,
    cluster: { seeds, controllerVoters: [1, 2, 3] },
    drainMs: 1_000,
  });
  running.push(b);
  return b;
}

afterAll(async () => {
  await Promise.all(running.map((n) => n.close().catch(() => {})));
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('wiped disk (fake replica core)', () => {
  it('the wiped node opens none of its old replicas while replaying the metadata; they are marked lost', { timeout: 90_000 }, async () => {
    const dir = (id: number): string => {
      const d = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-rejoin-${id}-`));
      dirs.push(d);
      return d;
    };
    const first = await start(1, dir(1), [], new RecordingCore(1 as NodeId));
    const cores = new Map<number, RecordingCore>();
    for (const id of [2, 3, 4]) {
      const core = new RecordingCore(id as NodeId);
      cores.set(id, core);
      await start(id, dir(id), [first.grpcAddress], core);
    }
    await waitFor('four alive everywhere', () => running.every((n) => n.membership!.members().filter((m) => m.state === 'alive').length === 4));
    await waitFor('every node registered', () => running.every((n) => n.clusterNode?.notReady() === null));
    const admin = new Admin({ brokers: first.grpcAddress });
    try {
      await waitFor('topic w created on all four', async () => {
        try {
          await admin.createTopic('w', { partitions: 2, replicationFactor: 4 });
          return true;
        } catch (err) {
          return (err as { code?: string }).code === 'TOPIC_ALREADY_EXISTS';
        }
      });
    } finally {
      admin.close();
    }
    const groups = first.clusterNode!.controller.state.topic('w')!.partitions.map((p) => p.group);
    await waitFor('node 4 holds both replicas', () => groups.every((g) => cores.get(4)!.replicas.has(g)));
    const oldUuid = first.clusterNode!.controller.state.node(4 as NodeId)!.uuid;
    // Every group the old incarnation was a replica of (also `__consumer_offsets`, when the controller
    // created it before node 4 went away).
    const onOld = (s: typeof first): number[] =>
      s.clusterNode!.controller.state.partitions().filter((p) => p.voters.nodes.includes(4 as NodeId) || p.learners.nodes.includes(4 as NodeId)).map((p) => p.group);

    // Node 4 goes away; its data dir is wiped; it comes back under the same id.
    const old = running.find((n) => n.clusterNode?.controller.nodeId === 4)!;
    const oldGroups = new Set(onOld(old));
    expect(groups.every((g) => oldGroups.has(g))).toBe(true);
    const oldDir = dirs[3];
    await old.close();
    fs.rmSync(oldDir, { recursive: true, force: true });
    fs.mkdirSync(oldDir, { recursive: true });
    const fresh = new RecordingCore(4 as NodeId);
    const back = await start(4, oldDir, [first.grpcAddress], fresh);
    await waitFor('node 4 registered with a new uuid, its replicas lost, as node 4 itself has applied', () => {
      const s = back.clusterNode?.controller.state;
      const me = s?.node(4 as NodeId);
      return me !== undefined && me.uuid !== oldUuid && groups.every((g) => s!.partitionByGroup(g)?.lost.includes(4 as NodeId) === true);
    });
    // Every node agrees they are lost.
    await waitFor('lost everywhere', () => running.filter((n) => n !== old).every((n) => groups.every((g) => n.clusterNode!.controller.state.partitionByGroup(g)?.lost.includes(4 as NodeId) === true)));
    // Nothing of the old incarnation was opened on the wiped node. What it did open was placed on the
    // new incarnation after it registered: `__consumer_offsets`, when a slow start left the controller to
    // create it only then.
    expect(fresh.opened.filter((s) => oldGroups.has(s.group))).toEqual([]);
    const state = back.clusterNode!.controller.state;
    for (const s of fresh.opened) {
      const p = state.partitionByGroup(s.group);
      expect(p?.topic).toBe('__consumer_offsets');
      expect(p!.lost.includes(4 as NodeId)).toBe(false);
    }
  });
});
