/**
 * Goal (issue 9 §5): a topic with too many partitions is refused up front by a named limit, in bounded
 * time and creating nothing, instead of timing out with half a topic. Method: a real Broker on a temp
 * dir; the per-topic limit (TOPIC_PARTITIONS_MAX) and the per-broker one (BROKER_PARTITIONS_MAX, lowered
 * through the `partitionsMax` option so the test stays small) are hit by CreateTopic and CreatePartitions.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import type { Broker } from '../../src/broker/index.js';
import { SluiceError } from '../../src/errors.js';
import { TOPIC_PARTITIONS_MAX } from '../../src/constants.js';
import { openBroker, tempDir } from './helpers.js';

let dataDir: string;
let b: Broker;
beforeAll(async () => {
  dataDir = tempDir('sluice-limits-');
  b = await openBroker({ dataDir, shards: 2, partitionsMax: 10 });
});
afterAll(async () => {
  await b?.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function refused(p: Promise<unknown>): Promise<SluiceError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SluiceError);
  return err as SluiceError;
}

describe('partition limits', () => {
  it('refuses 10,000 partitions at once, naming the limit, and creates nothing', async () => {
    const t0 = performance.now();
    const err = await refused(b.createTopic('huge', 10_000, 1, {}));
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(err.code).toBe('INVALID_PARTITIONS');
    expect(err.message).toContain(String(TOPIC_PARTITIONS_MAX));
    expect(await b.listTopics()).toEqual([]);
    expect(fs.readdirSync(dataDir).filter((d) => d.startsWith('huge-'))).toEqual([]);
  });

  it('refuses partitions past the broker limit, for creates and growths alike', async () => {
    await b.createTopic('a', 6, 1, {});
    const err = await refused(b.createTopic('b', 5, 1, {}));
    expect(err.code).toBe('INVALID_PARTITIONS');
    expect(err.message).toMatch(/holds 6 partitions; adding 5 would exceed its limit of 10/);
    expect((await refused(b.createPartitions('a', 11))).message).toMatch(/adding 5 would exceed its limit of 10/);
    await b.createPartitions('a', 10);
    expect((await b.listTopics()).map((t) => [t.name, t.partitionCount])).toEqual([['a', 10]]);
    expect(fs.readdirSync(dataDir).filter((d) => d.startsWith('b-'))).toEqual([]);
  });
});
