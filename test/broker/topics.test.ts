/**
 * Goal: the topic table behaves like Kafka's admin API on a single node, survives restarts, and every
 * bad admin input is refused with a clear code before anything is written.
 * Method: an in-process Broker on a temp dir (2 shards); create/describe/list/alter/grow/delete, then
 * close and reopen and compare; for bad inputs, compare the data dir listing before and after.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker/index.js';
import { TOPIC_PARTITIONS_MAX } from '../../src/constants.js';
import { batchOf, dirEntries, expectCode, openBroker, readAll, tempDir } from './helpers.js';

let broker: Broker | null = null;
afterEach(async () => {
  await broker?.close();
  broker = null;
});

describe('topics', () => {
  it('creates, describes, lists, alters, grows and deletes', async () => {
    const dir = tempDir();
    broker = await openBroker({ dataDir: dir });
    const created = await broker.createTopic('orders', 3, 1, { 'retention.ms': '3600000' });
    // Each partition opened as a one-voter group and committed its first term's no-op (offset 0).
    expect(created.partitions.map((p) => [p.partition, p.highWatermark, p.leader])).toEqual([
      [0, 1, 0],
      [1, 1, 0],
      [2, 1, 0],
    ]);
    expect(created.configs['retention.ms']).toBe('3600000');
    expect(created.configs['flush.policy']).toBe('always');
    expect(fs.existsSync(path.join(dir, 'orders-2'))).toBe(true);
    // Partitions are spread over both shards.
    expect(new Set([0, 1, 2].map((p) => broker!.shardFor('orders', p))).size).toBe(2);

    await broker.createTopic('audit.log_v2', 1, 0, {});
    expect(await broker.listTopics()).toEqual([
      { name: 'audit.log_v2', partitionCount: 1, replicationFactor: 1 },
      { name: 'orders', partitionCount: 3, replicationFactor: 1 },
    ]);

    const configs = await broker.alterTopicConfig('orders', { 'flush.policy': 'none', 'segment.bytes': String(2 ** 20) }, ['retention.ms']);
    expect(configs['flush.policy']).toBe('none');
    expect(configs['segment.bytes']).toBe(String(2 ** 20));
    expect(configs['retention.ms']).toBe(String(7 * 24 * 3600 * 1000));

    const grown = await broker.createPartitions('orders', 5);
    expect(grown.partitions).toHaveLength(5);
    await broker.produce({ topic: 'orders', partition: 4, batches: batchOf(2), acks: 'all' });
    expect(await readAll(broker, 'orders', 4)).toEqual(['v0', 'v1']);

    await broker.deleteTopic('orders');
    expect((await broker.listTopics()).map((t) => t.name)).toEqual(['audit.log_v2']);
    expect(dirEntries(dir).filter((e) => e.startsWith('orders'))).toEqual([]);
    await expectCode(broker.describeTopic('orders'), 'UNKNOWN_TOPIC');
  });

  it('keeps topics, configs and data across close and reopen', async () => {
    const dir = tempDir();
    broker = await openBroker({ dataDir: dir });
    await broker.createTopic('keep', 2, 1, { 'max.message.bytes': '2000000' });
    await broker.produce({ topic: 'keep', partition: 1, batches: batchOf(3), acks: 'all' });
    await broker.close();
    // Reopen with a different shard count: placement folds onto the shards there are.
    broker = await openBroker({ dataDir: dir, shards: 1 });
    const d = await broker.describeTopic('keep');
    // A no-op per term (one at creation, one at the reopen) besides the 3 records.
    expect(d.partitions.map((p) => p.highWatermark)).toEqual([2, 5]);
    expect(d.configs['max.message.bytes']).toBe('2000000');
    expect(await readAll(broker, 'keep', 1)).toEqual(['v0', 'v1', 'v2']);
  });

  it('re-creating a deleted topic starts empty', async () => {
    broker = await openBroker();
    await broker.createTopic('again', 1, 1, {});
    await broker.produce({ topic: 'again', partition: 0, batches: batchOf(5), acks: 'all' });
    await broker.deleteTopic('again');
    await broker.createTopic('again', 1, 1, {});
    expect((await broker.describeTopic('again')).partitions[0].highWatermark).toBe(1); // its own first no-op only
  });

  it('refuses bad admin input and writes nothing', async () => {
    const dir = tempDir();
    broker = await openBroker({ dataDir: dir });
    await broker.createTopic('exists', 1, 1, {});
    const before = dirEntries(dir);
    const b = broker;
    for (const name of ['', '.', '..', 'a/b', 'sp ace', 'ünïcode', 'x'.repeat(250), '__consumer_offsets']) {
      await expectCode(b.createTopic(name, 1, 1, {}), 'INVALID_TOPIC_NAME');
    }
    expect((await b.createTopic('x'.repeat(249), 1, 1, {})).name).toHaveLength(249);
    await b.deleteTopic('x'.repeat(249));
    for (const n of [0, -1, 1.5, TOPIC_PARTITIONS_MAX + 1, Number.NaN]) await expectCode(b.createTopic('p', n, 1, {}), 'INVALID_PARTITIONS');
    await expectCode(b.createTopic('rf', 1, 3, {}), 'INVALID_REPLICATION_FACTOR');
    await expectCode(b.createTopic('cfg', 1, 1, { 'no.such.key': '1' }), 'INVALID_CONFIG');
    await expectCode(b.createTopic('cfg', 1, 1, { 'retention.ms': 'soon' }), 'INVALID_CONFIG');
    await expectCode(b.createTopic('cfg', 1, 1, { 'segment.bytes': '10' }), 'INVALID_CONFIG');
    await expectCode(b.createTopic('exists', 1, 1, {}), 'TOPIC_ALREADY_EXISTS');
    await expectCode(b.createPartitions('exists', 1), 'INVALID_PARTITIONS');
    await expectCode(b.createPartitions('nope', 2), 'UNKNOWN_TOPIC');
    await expectCode(b.alterTopicConfig('exists', { 'flush.policy': 'sometimes' }, []), 'INVALID_CONFIG');
    await expectCode(b.alterTopicConfig('exists', {}, ['no.such.key']), 'INVALID_CONFIG');
    await expectCode(b.deleteTopic('nope'), 'UNKNOWN_TOPIC');
    expect(dirEntries(dir)).toEqual(before);
    expect((await b.describeTopic('exists')).configs['flush.policy']).toBe('always');
  });

  it('reports cluster metadata', async () => {
    broker = await openBroker({ nodeId: 7, grpcAddress: '127.0.0.1:1', httpAddress: '127.0.0.1:2' });
    await broker.createTopic('m', 2, 1, {});
    const md = await broker.metadata();
    expect(md.controllerId).toBe(7);
    expect(md.brokers).toEqual([{ nodeId: 7, grpcAddress: '127.0.0.1:1', httpAddress: '127.0.0.1:2' }]);
    expect(md.topics.map((t) => [t.name, t.partitions.length, t.partitions[0].leader])).toEqual([['m', 2, 7]]);
    expect(md.clusterId).toMatch(/^[0-9a-f-]{36}$/);
    await expectCode(broker.metadata(['missing']), 'UNKNOWN_TOPIC');
  });
});
