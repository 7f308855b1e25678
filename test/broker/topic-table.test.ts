/**
 * Goal (issue 9 §4): `__cluster/topics.json` is input like any other, and what the broker creates is
 * owner-only. Method: a real Broker on a temp dir; we damage its closed table by hand (wrong types, a
 * name that climbs out of the data dir, a missing file beside existing partitions) and check that
 * Broker.open refuses with a message naming the file and the entry, creating nothing; then, under a
 * umask of 0, that every directory and file it made is 0700/0600.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { Broker } from '../../src/broker/index.js';
import { CLUSTER_DIR, TOPICS_FILE } from '../../src/broker/topic-table.js';
import { SluiceError } from '../../src/errors.js';
import { openBroker, tempDir } from './helpers.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

function dir(): string {
  const d = tempDir('sluice-table-');
  dirs.push(d);
  return d;
}

/** A data dir holding a closed broker's table with topic `t` (2 partitions). */
async function withTable(): Promise<{ dataDir: string; file: string; table: { version: number; clusterId: string; topics: Record<string, unknown>[] } }> {
  const dataDir = dir();
  const b = await openBroker({ dataDir, shards: 1 });
  await b.createTopic('t', 2, 1, {});
  await b.close();
  const file = path.join(dataDir, CLUSTER_DIR, TOPICS_FILE);
  return { dataDir, file, table: JSON.parse(fs.readFileSync(file, 'utf8')) };
}

async function openFails(dataDir: string): Promise<SluiceError> {
  try {
    const b = await Broker.open({ dataDir, shards: 1 });
    await b.close();
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error('expected Broker.open to refuse, it started');
}

describe('topics.json is validated', () => {
  const escape = `../../sluice-escape-${process.pid}`;
  const damages: Array<[string, (t: Record<string, unknown>) => void, RegExp]> = [
    ['a name that climbs out of the data dir', (t) => (t.name = escape), /topics\[0\].*name/],
    ['a name that is not a string', (t) => (t.name = 42), /topics\[0\].*name/],
    ['a missing placement', (t) => delete t.placement, /topics\[0\] \("t"\): placement/],
    ['a placement of strings', (t) => (t.placement = ['0', '1']), /topics\[0\] \("t"\): placement\[0\]/],
    ['a negative shard', (t) => (t.placement = [0, -1]), /placement\[1\]/],
    ['an empty placement', (t) => (t.placement = []), /placement must be an array/],
    ['configs that are not strings', (t) => (t.configs = { 'retention.ms': 5 }), /configs\["retention.ms"\] must be a string/],
    ['configs that are an array', (t) => (t.configs = []), /configs must be an object/],
    ['a replication factor of 0', (t) => (t.replicationFactor = 0), /replicationFactor/],
    ['a missing createdMs', (t) => delete t.createdMs, /createdMs/],
    ['a topic id that is not a UUID', (t) => (t.topicId = '../x'), /topics\[0\] \("t"\): topicId must be a UUID/],
    ['a topic id that is a number', (t) => (t.topicId = 7), /topicId must be a UUID/],
  ];

  it('refuses to start on two topics with the same topic id', async () => {
    const { dataDir, file, table } = await withTable();
    table.topics.push({ ...table.topics[0], name: 'u' });
    fs.writeFileSync(file, JSON.stringify(table));
    const err = await openFails(dataDir);
    expect(err.code).toBe('LOG_CORRUPT');
    expect(err.message).toMatch(/gives topic id .* to two topics/);
  });

  it.each(damages)('refuses to start on %s, naming the file and the entry', async (_what, damage, expected) => {
    const { dataDir, file, table } = await withTable();
    damage(table.topics[0]);
    fs.writeFileSync(file, JSON.stringify(table));
    const err = await openFails(dataDir);
    expect(err.code).toBe('LOG_CORRUPT');
    expect(err.message).toContain(file);
    expect(err.message).toMatch(expected);
    expect(err.message).not.toMatch(/Cannot read properties|TypeError/);
    expect(fs.existsSync(path.join(dataDir, `${escape}-0`))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, '.lock'))).toBe(false);
  });

  it.each([
    ['an entry that is null', (t: { topics: unknown[] }) => (t.topics[0] = null), /topics\[0\]: is not an object/],
    ['topics that is not an array', (t: { topics: unknown }) => (t.topics = { t: 1 }), /topics must be an array/],
    ['a duplicated topic', (t: { topics: unknown[] }) => t.topics.push(t.topics[0]), /names topic 't' twice/],
    ['a wrong version', (t: { version: unknown }) => (t.version = 2), /version/],
  ] as Array<[string, (t: never) => void, RegExp]>)('refuses to start on %s', async (_what, damage, expected) => {
    const { dataDir, file, table } = await withTable();
    (damage as (t: unknown) => void)(table);
    fs.writeFileSync(file, JSON.stringify(table));
    const err = await openFails(dataDir);
    expect(err.message).toContain(file);
    expect(err.message).toMatch(expected);
  });

  it('refuses to start empty when the table is gone but partition directories remain, and says what to do', async () => {
    const { dataDir, file } = await withTable();
    fs.rmSync(file);
    const err = await openFails(dataDir);
    expect(err.message).toContain(file);
    expect(err.message).toContain('t-0');
    expect(err.message).toMatch(/Restore .*backup.*move those directories/);
    // Still refused on a second try: nothing was written in between.
    expect(fs.existsSync(file)).toBe(false);
    await openFails(dataDir);
    // Moving the partitions away is the documented way to start empty.
    const away = dir();
    for (const p of ['t-0', 't-1']) fs.renameSync(path.join(dataDir, p), path.join(away, p));
    const b = await Broker.open({ dataDir, shards: 1 });
    expect(await b.listTopics()).toEqual([]);
    await b.close();
  });
});

describe('owner-only files', () => {
  it('creates every directory 0700 and every file 0600 even under umask 0', async () => {
    const before = process.umask(0);
    try {
      const parent = dir();
      const dataDir = path.join(parent, 'data', 'nested');
      const b = await openBroker({ dataDir, shards: 1 });
      await b.createTopic('perm', 2, 1, { 'segment.bytes': String(1024 * 1024) });
      for (let i = 0; i < 3; i++) await b.produce({ topic: 'perm', partition: 0, records: [{ key: null, value: Buffer.alloc(600 * 1024, i) }], acks: 'all' });
      // An idempotent produce: the producer-id table and the producer-state snapshot (written at close).
      const { producerId, producerEpoch } = await b.initProducer('perm-producer');
      await b.produce({ topic: 'perm', partition: 1, records: [{ key: null, value: Buffer.from('x') }], acks: 'all', producer: { producerId, producerEpoch, baseSequence: 0 } });
      await b.close();
      const seen: string[] = [];
      const walk = (d: string): void => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          const mode = fs.statSync(p).mode & 0o777;
          seen.push(`${path.relative(parent, p)} ${mode.toString(8)}`);
          if (e.isDirectory()) walk(p);
        }
      };
      walk(parent);
      const wrong = seen.filter((s) => {
        const [p, mode] = s.split(' ');
        return fs.statSync(path.join(parent, p)).isDirectory() ? mode !== '700' : mode !== '600';
      });
      // A segment roll (1 MiB segments, 3 x 600 KiB) and the clean-shutdown marker are among them.
      expect(seen.filter((s) => s.includes('.log')).length).toBeGreaterThan(1);
      expect(seen.some((s) => s.includes(TOPICS_FILE))).toBe(true);
      // The Raft and producer state files too.
      for (const f of ['partition.json', 'hard-state.json', 'leader-epoch-checkpoint.json', 'producer-state.snapshot', 'producer-ids.json']) {
        expect(seen.some((s) => s.includes(f))).toBe(true);
      }
      expect(wrong).toEqual([]);
    } finally {
      process.umask(before);
    }
  });
});
