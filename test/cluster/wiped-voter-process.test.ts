/**
 * Goal (issue 11 §1): a controller voter whose disk was wiped rejoins safely, by itself. Node 2 (one of
 * the controller voters 1, 2, 3) is killed with -9, its data dir removed, and it is started again with
 * the same id, address and seeds, and no other flag. It must not re-found the controller group with an
 * empty log (it would vote with no memory of its earlier life): it asks the other voters, learns the
 * group has metadata, joins as a learner, is caught up and promoted back to voter. Every topic still
 * exists on every node, its partition replicas are rebuilt from the others, and nothing acknowledged is
 * lost.
 * Method: three `sluice serve` processes on 127.0.0.1-3 (test/cluster/process-cluster.ts), an acks=all
 * producer before the kill, a real `rm -rf`; state read as clients read it (GetMetadata's controller
 * role, ListTopics on each node, ListReassignments, each replica's own log) and from node 2's log lines.
 * Waits poll observables, bounded in count and time.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath } from '../../bench/broker-process.js';
import { EMPTY_LOG_JOIN_MESSAGE } from '../../src/controller/index.js';
import { ProcessCluster, agreedLogs, createTopic, runProducer } from './process-cluster.js';

const TEST_MS = 150_000;
let c: ProcessCluster;

beforeAll(async () => {
  c = await ProcessCluster.create(3, 'wipedvoter');
  await c.startAll([1, 2, 3]);
  await createTopic(c, 1, 'alpha', 3, 3);
  await createTopic(c, 3, 'beta', 2, 3);
}, 120_000);

afterAll(async () => {
  await c?.closeAll();
});

/** `sluice cluster info --format json` through node `via`: each node's controller role. */
function cliRoles(via: number): Promise<Record<number, string>> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [cliPath(), 'cluster', 'info', '--format', 'json', '-b', c.node(via).address, '--timeout', '5s'], (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      const info = JSON.parse(stdout) as { brokers: Array<{ nodeId: number; controllerRole: string }> };
      resolve(Object.fromEntries(info.brokers.map((b) => [b.nodeId, b.controllerRole])));
    }),
  );
}

async function roleOf(via: number, node: number): Promise<string | undefined> {
  return (await c.withAdmin(via, (a) => a.metadata())).brokers.find((b) => b.nodeId === node)?.controllerRole;
}

describe('a controller voter back with a wiped disk (3 processes)', () => {
  it('joins as a learner, is promoted back to voter, every topic survives on every node, and its replicas are rebuilt', async () => {
    expect(await roleOf(1, 2)).toBe('voter');
    const oldUuid = (await c.withAdmin(1, (a) => a.metadata())).brokers.find((b) => b.nodeId === 2)!.nodeUuid;
    const prod = runProducer(c.nodes.map((n) => n.address), 'alpha', 0, 'v');
    try {
      await c.waitFor('the producer is running', () => prod.acked.length >= 100);
    } finally {
      await prod.stop();
    }
    await c.kill(2);
    await c.waitFor('node 2 dead in gossip', async () => (await c.withAdmin(1, (a) => a.metadata())).brokers.find((b) => b.nodeId === 2)?.state === 'dead');
    fs.rmSync(c.node(2).dir, { recursive: true, force: true });
    fs.mkdirSync(c.node(2).dir, { recursive: true });
    const t0 = performance.now();
    await c.start(2);
    const log = (): string => c.node(2).proc?.stderr() ?? '';

    // It decided to join (a voter told it the group holds records), not to found.
    await c.waitFor('node 2 logs that it joins the controller group as a learner', () => log().includes(EMPTY_LOG_JOIN_MESSAGE));
    expect(log()).not.toContain('founding the controller group');
    await c.waitFor('node 2 is a controller voter again, as every node sees it', async () => {
      const roles = await Promise.all([1, 2, 3].map((via) => roleOf(via, 2)));
      return roles.every((r) => r === 'voter');
    }, 60_000);
    await c.waitFor('node 2 logs the end of its rejoin', () => log().includes('controller empty-log rejoin done'));
    console.log(`node 2 was a controller voter again ${Math.round(performance.now() - t0)} ms after its wiped restart began`);
    const m = await c.withAdmin(2, (a) => a.metadata());
    expect(m.brokers.find((b) => b.nodeId === 2)!.nodeUuid).not.toBe(oldUuid);
    expect(m.brokers.filter((b) => b.controllerRole === 'voter').map((b) => b.nodeId)).toEqual([1, 2, 3]);
    expect(await cliRoles(3)).toEqual({ 1: 'voter', 2: 'voter', 3: 'voter' });

    // Every topic is still there, on every node, node 2 included.
    for (const via of [1, 2, 3]) {
      const names = (await c.withAdmin(via, (a) => a.listTopics())).map((t) => t.name).filter((n) => !n.startsWith('__'));
      expect(names.sort()).toEqual(['alpha', 'beta']);
    }

    // Its replicas were lost with the disk and are rebuilt: no move left, node 2 back in every replica set.
    await c.waitFor('every replica on node 2 rebuilt', async () => {
      const r = await c.withAdmin(1, (a) => a.reassignments());
      if (r.reassignments.some((x) => x.topic === 'alpha' || x.topic === 'beta')) return false;
      const ds = await Promise.all(['alpha', 'beta'].map((t) => c.withAdmin(1, (a) => a.describeTopic(t))));
      return ds.every((d) => d.partitions.every((p) => p.replicas.includes(2)));
    }, 60_000);
    await c.waitFor('node 2 ready', () => c.ready(2));
    const logs = await agreedLogs(c, [1, 2, 3], 'alpha', 0);
    for (const l of logs) expect(l.bytes.equals(logs[0].bytes)).toBe(true);
    const have = new Set(logs[1].values);
    expect(prod.acked.filter((v) => !have.has(v))).toEqual([]);
    console.log(`node 2's replicas rebuilt ${Math.round(performance.now() - t0)} ms after its wiped restart began; ${prod.acked.length} acked records all on its rebuilt replica`);
  }, TEST_MS);
});
