/**
 * Goal: the storage a Raft replica needs beyond the log: appendReplicated writes a leader's batches
 * verbatim and refuses a gap, an overlap or a falling epoch without writing; truncation of a
 * divergent suffix; the leader-epoch checkpoint (assign, term lookup, truncation both ends, rebuilt
 * from batch headers); HardState, snapshot metadata and partition identity files written atomically,
 * with a leftover temp file ignored and a damaged file refused loudly (LOG_CORRUPT).
 * Method: real PartitionLogs and files in a temp dir; "a leader's batches" are batches appended to one
 * log (so they carry real offsets, epochs and CRCs) and read back raw.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readBatchHeader } from '../../src/batch/index.js';
import { PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { EpochCheckpoint, EPOCH_CHECKPOINT_FILE } from '../../src/storage/epoch-checkpoint.js';
import { readHardState, writeHardState, HARD_STATE_FILE } from '../../src/storage/hard-state.js';
import { readSnapshotMeta, writeSnapshotMeta } from '../../src/storage/snapshot-meta.js';
import { checkPartitionMeta } from '../../src/storage/partition-meta.js';
import { makeBatch, readAllBatches, rmDir, snapshotDir, tmpDir } from './helpers.js';

const root = tmpDir('raft-state');
afterAll(() => rmDir(root));
let n = 0;
const fresh = (): string => path.join(root, `d${n++}`);
const config = { ...defaultLogConfig(), flush: { kind: 'always' as const } };

async function leaderLog(): Promise<{ leader: PartitionLog; batches: Buffer[] }> {
  const leader = await PartitionLog.open(fresh(), config);
  leader.append(makeBatch(3, 50, 'a'), 1);
  leader.append(makeBatch(2, 50, 'b'), 1);
  leader.append(makeBatch(4, 50, 'c'), 2);
  return { leader, batches: readAllBatches(leader) };
}

describe('appendReplicated', () => {
  it('writes batches verbatim: offsets, epochs and CRCs unchanged', async () => {
    const { leader, batches } = await leaderLog();
    const follower = await PartitionLog.open(fresh(), config);
    follower.appendReplicated(Buffer.concat(batches.slice(0, 2).map((b) => Buffer.from(b))));
    const r = follower.appendReplicated(Buffer.from(batches[2]), 1);
    expect([r.baseOffset, r.lastOffset]).toEqual([5, 8]);
    await r.durable;
    expect(readAllBatches(follower)).toEqual(batches);
    expect(follower.epochStartsFrom(0)).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 5 },
    ]);
    await Promise.all([leader.close(), follower.close()]);
  });

  it('refuses a gap, an overlap and a falling epoch, writing nothing', async () => {
    const { leader, batches } = await leaderLog();
    const follower = await PartitionLog.open(fresh(), config);
    follower.appendReplicated(Buffer.from(batches[0]));
    await follower.flush();
    const before = snapshotDir(follower.dir);
    expect(() => follower.appendReplicated(Buffer.from(batches[2]))).toThrow(/baseOffset 5, the log expects 3/); // gap
    expect(() => follower.appendReplicated(Buffer.from(batches[0]))).toThrow(/baseOffset 0, the log expects 3/); // overlap
    expect(() => follower.appendReplicated(Buffer.from(batches[1]), 2)).toThrow(/epoch 1, below 2/);
    // A run whose second batch does not follow the first is refused whole.
    expect(() => follower.appendReplicated(Buffer.concat([batches[1], batches[0]]))).toThrow(/expects 5/);
    expect(snapshotDir(follower.dir)).toEqual(before);
    expect(follower.nextOffset).toBe(3);
    await Promise.all([leader.close(), follower.close()]);
  });

  it('truncates a divergent suffix and takes the leader\'s batches in its place', async () => {
    const { leader, batches } = await leaderLog();
    const follower = await PartitionLog.open(fresh(), config);
    follower.appendReplicated(Buffer.concat(batches.slice(0, 2)));
    follower.append(makeBatch(6, 50, 'stale'), 1); // an old term's uncommitted tail at offsets 5..10
    const cp = EpochCheckpoint.create(follower.dir, follower.epochStartsFrom(0));
    follower.truncateTo(5);
    cp.truncateFrom(5);
    follower.appendReplicated(Buffer.from(batches[2]), cp.lastEpoch);
    cp.assign(2, 5);
    expect(readAllBatches(follower)).toEqual(batches);
    expect(cp.list).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 5 },
    ]);
    expect(readBatchHeader(readAllBatches(follower)[2]).partitionLeaderEpoch).toBe(2);
    await Promise.all([leader.close(), follower.close()]);
  });
});

describe('leader-epoch checkpoint', () => {
  it('answers epochAt, truncates at both ends, and survives a reload', () => {
    const dir = fresh();
    fs.mkdirSync(dir);
    expect(EpochCheckpoint.load(dir)).toBeNull();
    const cp = EpochCheckpoint.create(dir, []);
    cp.assign(1, 0);
    cp.assign(1, 5); // same epoch: nothing new
    cp.assign(3, 10);
    cp.assign(4, 10); // epoch 3 wrote nothing: replaced
    cp.assign(6, 20);
    expect(cp.list).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 4, startOffset: 10 },
      { epoch: 6, startOffset: 20 },
    ]);
    expect([cp.epochAt(0), cp.epochAt(9), cp.epochAt(10), cp.epochAt(25)]).toEqual([1, 1, 4, 6]);
    expect(cp.endOffsetFor(1, 30)).toBe(10);
    expect(cp.endOffsetFor(6, 30)).toBe(30);
    expect(() => cp.assign(5, 30)).toThrow(); // a term never goes back: a programmer bug
    cp.truncateFrom(20);
    cp.truncateBefore(12);
    expect(cp.list).toEqual([{ epoch: 4, startOffset: 12 }]);
    expect(EpochCheckpoint.load(dir)!.list).toEqual(cp.list);
  });
});

describe('state files', () => {
  it('replace atomically, ignore a leftover temp file, and refuse a damaged file', () => {
    const dir = fresh();
    fs.mkdirSync(dir);
    expect(readHardState(dir)).toBeNull();
    writeHardState(dir, { term: 3, vote: 1 });
    writeHardState(dir, { term: 4, vote: 0 });
    fs.writeFileSync(path.join(dir, `${HARD_STATE_FILE}.tmp`), '{"v":1,"torn');
    expect(readHardState(dir)).toEqual({ term: 4, vote: 0 });
    expect(fs.existsSync(path.join(dir, `${HARD_STATE_FILE}.tmp`))).toBe(false);
    const file = path.join(dir, HARD_STATE_FILE);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"term":4', '"term":5')); // a flipped digit
    expect(() => readHardState(dir)).toThrow(/CRC/);
    fs.writeFileSync(file, 'garbage');
    expect(() => readHardState(dir)).toThrow(/not valid JSON/);

    writeSnapshotMeta(dir, { index: 41, term: 2, voters: [1], learners: [], logStartOffset: 42 });
    expect(readSnapshotMeta(dir)).toEqual({ index: 41, term: 2, voters: [1], learners: [], logStartOffset: 42 });
    fs.writeFileSync(path.join(dir, EPOCH_CHECKPOINT_FILE), 'x');
    expect(() => EpochCheckpoint.load(dir)).toThrow(/LOG_CORRUPT|not valid JSON/);

    checkPartitionMeta(dir, { topicId: 'a', partition: 0 }); // adopted
    checkPartitionMeta(dir, { topicId: 'a', partition: 0 });
    expect(() => checkPartitionMeta(dir, { topicId: 'b', partition: 0 })).toThrow(/deleted topic/);
  });
});
