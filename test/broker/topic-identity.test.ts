/**
 * Goal: a topic's identity is its topic id, new at every creation and recorded both in the topic table
 * and in each partition directory; a table written before topic ids is upgraded in place; the high
 * watermark a broker reports is the commit index + 1 (an acks=all produce is visible at once, an
 * acks=leader one once committed).
 * Method: a real Broker (shard workers) on a temp data dir; files read back from disk.
 */
import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { readPartitionMeta } from '../../src/storage/partition-meta.js';
import { readHardState } from '../../src/storage/hard-state.js';
import { batchOf, openBroker, readAll, tempDir } from './helpers.js';

const tableOf = (dataDir: string) => JSON.parse(fs.readFileSync(path.join(dataDir, '__cluster', 'topics.json'), 'utf8')) as { topics: Array<{ name: string; topicId?: string }> };

it('gives a re-created topic a new id, recorded in every partition directory', async () => {
  const dataDir = tempDir();
  const broker = await openBroker({ dataDir, shards: 2 });
  await broker.createTopic('idt', 2, 1, {});
  const first = tableOf(dataDir).topics.find((t) => t.name === 'idt')!.topicId!;
  expect(first).toMatch(/^[0-9a-f-]{36}$/);
  for (const p of [0, 1]) expect(readPartitionMeta(path.join(dataDir, `idt-${p}`))).toEqual({ topicId: first, partition: p });
  await broker.produce({ topic: 'idt', partition: 0, batches: batchOf(2, 'old'), acks: 'all' });
  await broker.deleteTopic('idt');
  await broker.createTopic('idt', 2, 1, {});
  const second = tableOf(dataDir).topics.find((t) => t.name === 'idt')!.topicId!;
  expect(second).not.toBe(first);
  expect(readPartitionMeta(path.join(dataDir, 'idt-0'))!.topicId).toBe(second);
  expect(await readAll(broker, 'idt', 0)).toEqual([]);
  await broker.produce({ topic: 'idt', partition: 0, batches: batchOf(1, 'new'), acks: 'all' });
  // The first write of a term persists its HardState (the one voter's vote for itself) first.
  expect(readHardState(path.join(dataDir, 'idt-0'))).toEqual({ term: 1, vote: 1 });
  await broker.close();
});

it('upgrades a topic table and partition directories written before topic ids', async () => {
  const dataDir = tempDir();
  let broker = await openBroker({ dataDir, shards: 1 });
  await broker.createTopic('legacy', 1, 1, {});
  await broker.produce({ topic: 'legacy', partition: 0, batches: batchOf(3, 'L'), acks: 'all' });
  await broker.close();
  // Make it look like the previous broker wrote it: no topic id, no Raft files.
  const table = tableOf(dataDir) as { topics: Array<{ topicId?: string }> };
  for (const t of table.topics) delete t.topicId;
  fs.writeFileSync(path.join(dataDir, '__cluster', 'topics.json'), JSON.stringify(table));
  for (const f of ['partition.json', 'hard-state.json', 'leader-epoch-checkpoint.json']) fs.rmSync(path.join(dataDir, 'legacy-0', f));
  broker = await openBroker({ dataDir, shards: 1 });
  expect(await readAll(broker, 'legacy', 0)).toEqual(['L0', 'L1', 'L2']);
  const id = tableOf(dataDir).topics.find((t) => t.name === 'legacy')!.topicId!;
  expect(id).toMatch(/^[0-9a-f-]{36}$/);
  expect(readPartitionMeta(path.join(dataDir, 'legacy-0'))!.topicId).toBe(id);
  // acks=leader is answered at append; an acks=all after it commits both, and the HW shows them.
  await broker.produce({ topic: 'legacy', partition: 0, batches: batchOf(1, 'x'), acks: 'leader' });
  await broker.produce({ topic: 'legacy', partition: 0, batches: batchOf(1, 'y'), acks: 'all' });
  // No-op 0 (term 1), L0-L2 (1-3), the reopen's no-op 4 (term 2), x (5), y (6).
  expect((await broker.describeTopic('legacy')).partitions[0].highWatermark).toBe(7);
  await broker.close();
});
