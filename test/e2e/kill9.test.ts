/**
 * Goal: a record acknowledged with acks=all survives kill -9 of the broker. Method: run the real
 * `sluice serve` (dist/src/cli/main.js) as a child process on ephemeral ports, produce from several
 * concurrent TS producers with acks=all while noting every acknowledged (partition, offset, value),
 * SIGKILL the broker mid-stream, restart it on the same data dir, and check that each acknowledged
 * offset holds exactly its value. Two rounds, the second appending after the first recovery.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import { spawnBroker, waitExit } from '../../bench/broker-process.js';
import { tempDir } from './helpers.js';

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function produceUntilKilled(address: string, round: number, acked: Map<string, string>, killAfterMs: number, kill: () => void): Promise<void> {
  const producers = Array.from({ length: 3 }, () => new Producer({ brokers: address, acks: 'all', lingerMs: 2, retries: 0 }));
  let stop = false;
  setTimeout(() => {
    stop = true;
    kill();
  }, killAfterMs);
  await Promise.all(producers.map(async (producer, id) => {
    for (let i = 0; !stop; i++) {
      const value = `r${round}-p${id}-${i}`;
      const batch = Array.from({ length: 20 }, (_, j) => ({ partition: (i + j) % 4, value: `${value}-${j}` }));
      const results = await Promise.allSettled(batch.map((r) => producer.send('k9', r)));
      results.forEach((r, j) => {
        if (r.status === 'fulfilled') acked.set(`${r.value.partition}:${r.value.offset}`, batch[j].value);
      });
    }
  }));
  await Promise.allSettled(producers.map((p) => p.close()));
}

async function readAll(address: string): Promise<Map<string, string>> {
  const consumer = new Consumer({ brokers: address, topic: 'k9', stopAtEnd: true });
  const out = new Map<string, string>();
  for await (const r of consumer) out.set(`${r.partition}:${r.offset}`, r.value!.toString());
  consumer.close();
  return out;
}

describe('kill -9', () => {
  it('loses no acks=all record', async () => {
    const dataDir = tempDir('sluice-kill9-');
    const acked = new Map<string, string>();
    let broker = await spawnBroker(dataDir);
    children.push(broker.child);
    const admin = new Admin({ brokers: broker.grpcAddress });
    await admin.createTopic('k9', { partitions: 4 });
    admin.close();

    for (let round = 0; round < 2; round++) {
      const victim = broker;
      await produceUntilKilled(victim.grpcAddress, round, acked, 1_200, () => victim.child.kill('SIGKILL'));
      expect((await waitExit(victim.child)).signal).toBe('SIGKILL');
      broker = await spawnBroker(dataDir);
      children.push(broker.child);
      const stored = await readAll(broker.grpcAddress);
      const missing = [...acked].filter(([at, value]) => stored.get(at) !== value);
      expect(missing.slice(0, 5)).toEqual([]);
      expect(acked.size).toBeGreaterThan(100 * (round + 1));
    }
    broker.child.kill('SIGTERM');
    expect((await waitExit(broker.child)).code).toBe(0);
  });
});
