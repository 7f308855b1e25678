/**
 * Goal: a group member's delivery loop that has caught up long-polls through a chained fetch (the
 * shard renews the read itself after each answer, at most two answers ahead: src/shard/fetch-chain.ts),
 * and its consumer still gets every record once and in order, whether it keeps up or stalls in its
 * handler while more records commit.
 * Method: an in-process broker with one shard; a GroupConsumer on a one-partition topic; produces of one
 * record each, acks=all, awaited one by one so each commits on its own; the handler blocks while twenty
 * more commit. The chain is read from the shard host (its count of running chains).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupConsumer } from '../../src/client/group-consumer.js';
import { Admin, Producer } from '../../src/client/index.js';
import type { ShardHost } from '../../src/shard/shard-host.js';
import { startGroupBroker, waitFor, type GroupBroker } from './helpers.js';

let gb: GroupBroker;
beforeAll(async () => {
  gb = await startGroupBroker();
});
afterAll(async () => {
  await gb?.close();
});

const chains = (): number => (gb.running.broker as unknown as { hosts: ShardHost[] }).hosts[0]!.chainsRunning;

describe('group delivery through a fetch chain', () => {
  it('delivers every record once and in order while caught up and after the handler stalls', async () => {
    const admin = new Admin({ brokers: gb.brokerAddress });
    await admin.createTopic('chained', { partitions: 1 });
    admin.close();
    const producer = new Producer({ brokers: gb.brokerAddress, acks: 'all', lingerMs: 0 });
    const consumer = new GroupConsumer({ brokers: gb.address, groupId: 'g-chain', sessionTimeoutMs: 2_000 }).subscribe(['chained']);
    const seen: string[] = [];
    let stall: Promise<void> | null = null;
    const done = consumer.run(async (batch) => {
      for (const r of batch.records) seen.push(Buffer.from(r.value!).toString());
      if (stall !== null) await stall;
    });
    try {
      await waitFor('the member assigned', () => consumer.assignment().length === 1);
      for (let i = 0; i < 60; i++) {
        await producer.send('chained', { value: `r${i}`, partition: 0 });
        if (i % 10 === 9) await waitFor(`record r${i}`, () => seen.length === i + 1);
      }
      // Caught up: the member's long-poll is a chain on the shard.
      await waitFor('a fetch chain serving the member', () => chains() === 1);
      let release!: () => void;
      stall = new Promise<void>((r) => (release = r));
      await producer.send('chained', { value: 'r60', partition: 0 });
      await waitFor('the stalled batch', () => seen.length === 61);
      for (let i = 61; i < 80; i++) await producer.send('chained', { value: `r${i}`, partition: 0 });
      await new Promise((r) => setTimeout(r, 200));
      stall = null;
      release();
      await waitFor('all 80 records', () => seen.length >= 80);
      await new Promise((r) => setTimeout(r, 200)); // nothing more arrives
      expect(seen).toEqual(Array.from({ length: 80 }, (_, i) => `r${i}`));
    } finally {
      await consumer.stop();
      await done.catch(() => {});
      await producer.close();
    }
    // The member's loop ended its chain when the consumer left.
    await waitFor('no chain left', () => chains() === 0);
  });
});
