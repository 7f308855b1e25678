/**
 * Goal: the producer-id table never hands out an id, or a (name, epoch), twice, across restarts; a
 * failed write hands out nothing. Method: ProducerIdTable on a temp dir: take ids across a block
 * boundary, reload (as after a crash) and compare; bump a name's epoch; make the directory
 * unusable and check the call fails with STORAGE_ERROR and changes nothing.
 */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { ProducerIdTable, PRODUCER_IDS_FILE } from '../../src/broker/producer-ids.js';
import { CLUSTER_DIR } from '../../src/broker/topic-table.js';
import { PRODUCER_ID_BLOCK_COUNT } from '../../src/constants.js';
import { tempDir } from '../e2e/helpers.js';

describe('producer-id table', () => {
  it('reserves ids in persisted blocks, so a reload never repeats one', () => {
    const dir = tempDir('sluice-pids-');
    const a = ProducerIdTable.load(dir);
    const seen = new Set<bigint>();
    for (let i = 0; i < PRODUCER_ID_BLOCK_COUNT + 5; i++) seen.add(a.init().producerId);
    expect(seen.size).toBe(PRODUCER_ID_BLOCK_COUNT + 5);
    const file = JSON.parse(fs.readFileSync(path.join(dir, CLUSTER_DIR, PRODUCER_IDS_FILE), 'utf8')) as { blockEnd: number };
    expect(file.blockEnd).toBe(2 * PRODUCER_ID_BLOCK_COUNT);
    const b = ProducerIdTable.load(dir);
    const next = b.init().producerId;
    expect(seen.has(next)).toBe(false);
    expect(next).toBe(BigInt(2 * PRODUCER_ID_BLOCK_COUNT));
  });

  it('bumps a name’s epoch, persisted, and reports the current epoch for fencing', () => {
    const dir = tempDir('sluice-pids-');
    const a = ProducerIdTable.load(dir);
    const first = a.init('app');
    const second = a.init('app');
    expect(second).toEqual({ producerId: first.producerId, producerEpoch: first.producerEpoch + 1 });
    expect(a.currentEpoch(first.producerId)).toBe(second.producerEpoch);
    const anon = a.init();
    expect(a.currentEpoch(anon.producerId)).toBeUndefined();
    const b = ProducerIdTable.load(dir);
    expect(b.currentEpoch(first.producerId)).toBe(second.producerEpoch);
    expect(b.init('app')).toEqual({ producerId: first.producerId, producerEpoch: second.producerEpoch + 1 });
    expect(b.init().producerId).not.toBe(anon.producerId);
  });

  it('refuses bad names, and hands out nothing when it cannot persist', () => {
    const dir = tempDir('sluice-pids-');
    const a = ProducerIdTable.load(dir);
    expect(() => a.init('')).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    a.init('app');
    // A file where the directory should be: every write fails, even as root.
    const cluster = path.join(dir, CLUSTER_DIR);
    fs.renameSync(cluster, `${cluster}.away`);
    fs.writeFileSync(cluster, '');
    try {
      expect(() => a.init('app')).toThrow(expect.objectContaining({ code: 'STORAGE_ERROR' }));
      expect(() => a.init('other')).toThrow(expect.objectContaining({ code: 'STORAGE_ERROR' }));
    } finally {
      fs.rmSync(cluster);
      fs.renameSync(`${cluster}.away`, cluster);
    }
    expect(a.init('app').producerEpoch).toBe(1);
    expect(ProducerIdTable.load(dir).currentEpoch(0n)).toBe(1);
  });
});
