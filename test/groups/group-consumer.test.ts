/**
 * Goal: the TypeScript GroupConsumer over a real broker balances, rebalances cooperatively without
 * pausing members whose partitions stay, and delivers every record at least once across a hand-over.
 * Method: startBroker in-process, a producer writing to every partition all along, GroupConsumers
 * that record what they process and when; assertions on assignment sizes, moved partitions, the
 * longest gap between batches of the unmoved members, and record coverage.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupConsumer, type GroupBatch } from '../../src/client/group-consumer.js';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import { produceTo, startGroupBroker, topicWithRecords, waitFor, type GroupBroker } from './helpers.js';

let gb: GroupBroker;
beforeAll(async () => {
  gb = await startGroupBroker();
});
afterAll(async () => {
  await gb?.close();
});

const SESSION_MS = 2_000;

interface Tracked {
  consumer: GroupConsumer;
  seen: Set<string>;
  arrivals: number[];
  done: Promise<void>;
}

function track(groupId: string, topic: string): Tracked {
  const consumer = new GroupConsumer({ brokers: gb.address, groupId, sessionTimeoutMs: SESSION_MS }).subscribe([topic]);
  const t: Tracked = { consumer, seen: new Set(), arrivals: [], done: Promise.resolve() };
  t.done = consumer.run(async (batch: GroupBatch) => {
    t.arrivals.push(Date.now());
    for (const r of batch.records) t.seen.add(`${r.partition}:${r.offset}`);
  });
  return t;
}

const sizes = (ts: Tracked[]): number[] => ts.map((t) => t.consumer.assignment().length);
const names = (t: Tracked): Set<string> => new Set(t.consumer.assignment().map((p) => `${p.topic}/${p.partition}`));

describe('GroupConsumer', () => {
  it('3 members on 12 partitions are 4/4/4; a 4th moves exactly 3 partitions and the others never pause', async () => {
    await topicWithRecords(gb.brokerAddress, 'rebalance', 12, 20);
    const members = [track('g-re', 'rebalance'), track('g-re', 'rebalance'), track('g-re', 'rebalance')];
    await waitFor('4/4/4', () => sizes(members).join() === '4,4,4');

    // Keep producing to every partition while the 4th joins.
    const producer = new Producer({ brokers: gb.brokerAddress, lingerMs: 1 });
    let producing = true;
    let round = 100;
    const load = (async () => {
      while (producing) {
        const sends: Promise<unknown>[] = [];
        for (let p = 0; p < 12; p++) sends.push(producer.send('rebalance', { value: `p${p}-${round}`, partition: p }));
        await Promise.all(sends);
        round++;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    const before = members.map(names);
    const joinAt = Date.now();
    const fourth = track('g-re', 'rebalance');
    members.push(fourth);
    await waitFor('3/3/3/3', () => sizes(members).join() === '3,3,3,3');
    const settledMs = Date.now() - joinAt;
    await new Promise((r) => setTimeout(r, 300));
    producing = false;
    await load;
    await producer.close();

    const lost = before.map((b, i) => [...b].filter((tp) => !names(members[i]).has(tp)).length);
    expect(lost.reduce((a, b) => a + b, 0)).toBe(3);
    expect(names(fourth).size).toBe(3);
    // Every member kept receiving during the rebalance: no gap longer than the session timeout
    // (in practice a few tens of ms: unmoved partitions' loops are never stopped).
    for (const m of members.slice(0, 3)) {
      const window = m.arrivals.filter((t) => t >= joinAt - 200);
      let gap = 0;
      for (let i = 1; i < window.length; i++) gap = Math.max(gap, window[i] - window[i - 1]);
      expect(window.length).toBeGreaterThan(5);
      expect(gap).toBeLessThan(SESSION_MS);
    }
    expect(settledMs).toBeLessThan(SESSION_MS);

    // At least once: every record produced (20 + rounds per partition) was seen by some member.
    await waitFor('every record seen', () => {
      const all = new Set<string>();
      for (const m of members) for (const s of m.seen) all.add(s);
      return all.size >= 12 * (20 + round - 100);
    });
    await Promise.all(members.map((m) => m.consumer.stop()));
    await Promise.all(members.map((m) => m.done));
  });

  it('commits after each batch: a restarted group resumes after the last processed record', async () => {
    await topicWithRecords(gb.brokerAddress, 'resume', 3, 10);
    const a = track('g-resume', 'resume');
    await waitFor('30 seen', () => a.seen.size === 30);
    await a.consumer.stop();
    await a.done;
    await produceTo(gb.brokerAddress, 'resume', 3, 5, 10);
    const b = track('g-resume', 'resume');
    await waitFor('15 more seen', () => b.seen.size === 15);
    expect([...b.seen].every((s) => Number(s.split(':')[1]) >= 10)).toBe(true);
    await b.consumer.stop();
    await b.done;
  });

  it('rejects a join with an unknown topic', async () => {
    const c = new GroupConsumer({ brokers: gb.address, groupId: 'g-unknown' }).subscribe(['nope']);
    await expect(c.run(async () => {})).rejects.toMatchObject({ code: 'UNKNOWN_TOPIC' });
  });

  it('subscribes by pattern and picks up a matching topic created later', async () => {
    await topicWithRecords(gb.brokerAddress, 'metrics.cpu', 2, 3);
    const c = new GroupConsumer({ brokers: gb.address, groupId: 'g-pattern' }).subscribe(/metrics\..*/);
    const seen = new Set<string>();
    const done = c.run(async (b) => {
      for (const r of b.records) seen.add(`${r.topic}:${r.partition}:${r.offset}`);
    });
    await waitFor('6 seen', () => seen.size === 6);
    await topicWithRecords(gb.brokerAddress, 'metrics.mem', 1, 4);
    await waitFor('new topic consumed', () => seen.size === 10, 10_000);
    expect(c.assignment().length).toBe(3);
    await c.stop();
    await done;
  });

  it('spreads new partitions of a subscribed topic over the members', async () => {
    await topicWithRecords(gb.brokerAddress, 'growing', 2, 5);
    const a = track('g-grow', 'growing');
    const b = track('g-grow', 'growing');
    await waitFor('1/1', () => sizes([a, b]).join() === '1,1');
    const admin = new Admin({ brokers: gb.brokerAddress });
    await admin.createPartitions('growing', 6);
    admin.close();
    await produceTo(gb.brokerAddress, 'growing', 6, 5, 5);
    await waitFor('3/3', () => sizes([a, b]).join() === '3,3', 10_000);
    await waitFor('every record', () => new Set([...a.seen, ...b.seen]).size === 2 * 10 + 4 * 5, 10_000);
    await Promise.all([a.consumer.stop(), b.consumer.stop()]);
    await Promise.all([a.done, b.done]);
  });

  it('new Consumer({ groupId }).subscribe(topics).run(handler): the issue\'s API, with manual commits', async () => {
    await topicWithRecords(gb.brokerAddress, 'api', 2, 4);
    const consumer = new Consumer({ brokers: gb.address, groupId: 'g-api', autoCommit: false }).subscribe(['api']);
    const seen: string[] = [];
    const done = consumer.run(async (batch) => {
      for (const r of batch.records) seen.push(`${r.partition}:${r.value!.toString()}`);
    });
    await waitFor('8 records', () => seen.length === 8);
    // Manual commits only (autoCommit false): partition 0 up to 3 (its records are at 1-4, after the
    // first term's no-op at 0), partition 1 all of it.
    await consumer.commit([{ topic: 'api', partition: 0, offset: 3 }, { topic: 'api', partition: 1, offset: 5 }]);
    await consumer.stop();
    await done;
    const again = new Consumer({ brokers: gb.address, groupId: 'g-api' }).subscribe('api');
    const replay: string[] = [];
    const done2 = again.run(async (batch) => {
      for (const r of batch.records) replay.push(`${r.partition}:${r.offset}`);
    });
    await waitFor('2 records', () => replay.length === 2);
    expect(replay).toEqual(['0:3', '0:4']);
    await again.stop();
    await done2;
    expect(() => new Consumer({ brokers: gb.address, topic: 'api' }).subscribe('api')).toThrow(/groupId/);
  });
});
