/**
 * Goal (issue 11 §1, §3, §6): leadership and replicas come back by themselves. (1) Leader balancing:
 * after a node that was the preferred leader of some partitions is killed and restarted, leadership
 * returns to every partition's preferred replica. (2) A wiped disk: node 4 comes back under its old id
 * with an empty data dir (a new node uuid); it joins as a new member, every replica it held is marked
 * lost and rebuilt from the others (removed, added as a fresh learner, caught up, promoted) while an
 * acks=all producer keeps writing; it never leads a partition before its replica is rebuilt; nothing
 * acknowledged is lost and its rebuilt copy is byte-identical to the others.
 * Method: four `sluice serve` processes on 127.0.0.1-4 (test/cluster/process-cluster.ts), controller
 * voters 1-3 (node 4 is a controller learner, which may be wiped); kill -9, a real `rm -rf` of the data
 * dir, restart on the same address. State is read as clients read it; waits poll observables, bounded.
 */
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ProcessCluster, agreedLogs, createTopic, runProducer } from './process-cluster.js';

/** Per test: these take 5-25 s each on an idle machine; a loaded shared one stretches them. */
const TEST_MS = 120_000;
let c: ProcessCluster;

beforeAll(async () => {
  c = await ProcessCluster.create(4, 'rejoin');
  await c.startAll([1, 2, 3, 4]);
  await createTopic(c, 1, 'bal', 4, 3);
}, 120_000);

afterAll(async () => {
  await c?.closeAll();
});

async function describeBal(via: number): Promise<Awaited<ReturnType<Parameters<ProcessCluster['withAdmin']>[1]>> & { partitions: Array<{ partition: number; leader: number; replicas: number[] }> }> {
  return c.withAdmin(via, (a) => a.describeTopic('bal'));
}

describe('leadership and replicas come back (4 processes)', () => {
  it('leader balancing: after a restart, leadership returns to each partition\'s preferred replica', async () => {
    await c.waitFor('every partition led by its preferred replica', async () => {
      const d = await describeBal(1);
      return d.partitions.every((p) => p.leader === p.replicas[0]);
    });
    const d0 = await describeBal(1);
    const preferredBy2 = d0.partitions.filter((p) => p.replicas[0] === 2).map((p) => p.partition);
    expect(preferredBy2.length).toBeGreaterThan(0);
    await c.kill(2);
    await c.waitFor('node 2\'s partitions led by others', async () => {
      const d = await describeBal(1);
      return preferredBy2.every((i) => d.partitions[i].leader !== 0 && d.partitions[i].leader !== 2);
    });
    const t0 = performance.now();
    await c.start(2);
    await c.waitFor('leadership back on the preferred replicas', async () => {
      const d = await describeBal(3);
      return d.partitions.every((p) => p.leader === p.replicas[0]);
    });
    console.log(`leadership back on node 2 ${Math.round(performance.now() - t0)} ms after its restart began`);
  }, TEST_MS);

  it('a wiped disk under an old node id is rebuilt from the others; it never leads before, nothing acked is lost', async () => {
    const before = await describeBal(1);
    const held = before.partitions.filter((p) => p.replicas.includes(4));
    expect(held.length).toBeGreaterThan(0);
    const loaded = held[0].partition;
    const oldUuid = (await c.withAdmin(1, (a) => a.metadata())).brokers.find((b) => b.nodeId === 4)!.nodeUuid;
    const prod = runProducer(c.nodes.map((n) => n.address), 'bal', loaded, 'w');
    const leadersSeen: Array<{ partition: number; leader: number; rebuilding: boolean }> = [];
    try {
      await c.waitFor('the producer is running', () => prod.acked.length >= 100);
      await c.kill(4);
      // Gossip must see the old process dead first: a live node 4 with another uuid is refused.
      await c.waitFor('node 4 dead in gossip', async () => (await c.withAdmin(1, (a) => a.metadata())).brokers.find((b) => b.nodeId === 4)?.state === 'dead');
      fs.rmSync(c.node(4).dir, { recursive: true, force: true });
      fs.mkdirSync(c.node(4).dir, { recursive: true });
      const t0 = performance.now();
      await c.start(4);
      await c.waitFor('node 4 registered with a new uuid', async () => {
        const b = (await c.withAdmin(1, (a) => a.metadata())).brokers.find((x) => x.nodeId === 4);
        return b !== undefined && b.nodeUuid !== '' && b.nodeUuid !== oldUuid;
      });
      // Until its replicas are rebuilt, node 4 must not lead any of them. (The metadata's uuid comes from
      // gossip; the controller applies the new registration a moment later: the rebuild must be seen.)
      let sawRebuild = false;
      await c.waitFor('every lost replica rebuilt', async () => {
        const r = await c.withAdmin(2, (a) => a.reassignments());
        const d = await describeBal(2);
        for (const p of d.partitions) {
          const m = r.reassignments.find((x) => x.topic === 'bal' && x.partition === p.partition);
          leadersSeen.push({ partition: p.partition, leader: p.leader, rebuilding: m !== undefined && (m.lost.includes(4) || m.learners.includes(4) || (m.target.includes(4) && !m.replicas.includes(4))) });
        }
        const balMoves = r.reassignments.filter((x) => x.topic === 'bal');
        if (balMoves.some((m) => m.lost.includes(4) || m.learners.includes(4) || !m.replicas.includes(4))) sawRebuild = true;
        return sawRebuild && balMoves.length === 0 && held.every((h) => d.partitions[h.partition].replicas.includes(4));
      }, 50_000);
      console.log(`node 4's ${held.length} replicas rebuilt ${Math.round(performance.now() - t0)} ms after its wiped restart began`);
      const at = prod.acked.length;
      await c.waitFor('writes continue', () => prod.acked.length >= at + 50);
    } finally {
      await prod.stop();
    }
    expect(leadersSeen.filter((s) => s.rebuilding && s.leader === 4)).toEqual([]);
    const d = await c.waitFor('node 3 applied the rebuild', async () => {
      const x = await describeBal(3);
      return held.every((h) => x.partitions[h.partition].replicas.includes(4)) ? x : null;
    });
    const replicas = d.partitions[loaded].replicas;
    expect(replicas).toContain(4);
    const logs = await agreedLogs(c, replicas, 'bal', loaded);
    for (const l of logs) expect(l.bytes.equals(logs[0].bytes)).toBe(true);
    const have = new Set(logs[replicas.indexOf(4)].values);
    expect(prod.acked.filter((v) => !have.has(v))).toEqual([]);
    console.log(`${prod.acked.length} acked, ${prod.failed()} sends failed`);
  }, TEST_MS);
});
