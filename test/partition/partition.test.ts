/**
 * Goal: the partition's user-visible rules as a Raft replica (one voter): the high watermark is the
 * commit index + 1, i.e. what an fdatasync covered; acks=all is answered at commit, acks=leader at
 * append; parked fetches wake on commit, not on append; reads and ListOffsets never go past the high
 * watermark; the term grows at every open and is recorded (HardState, leader-epoch checkpoint); a data
 * dir written before partitions were replicas opens; retention moves the log start through the
 * snapshot metadata (and an open records a log start found above it); the RaftStorage adapter answers
 * term(i) and entries() by offset; client produces are record-validated; an idempotent retry writes
 * nothing and is answered with the original offsets only once they are committed.
 * Method: a real Partition on a real PartitionLog in a temp dir, with the fdatasync seam held by the
 * test (so "appended but not yet durable" is a state the test controls, not a race) and effects
 * recorded instead of sent to a shard.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBatch, decodeBatches, readBatchHeader } from '../../src/batch/index.js';
import { Partition, controlBatch, readControl } from '../../src/partition/index.js';
import { PartitionLog, defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import { decodeFetched } from '../../src/client/decode.js';
import { toPbRecords } from '../../src/rpc/convert.js';
import { FetchResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { encodeStructuredRead } from '../../src/shard/structured-read.js';
import { readHardState, HARD_STATE_FILE } from '../../src/storage/hard-state.js';
import { EPOCH_CHECKPOINT_FILE } from '../../src/storage/epoch-checkpoint.js';
import { isSluiceError } from '../../src/errors.js';
import { rmDir, tmpDir } from '../storage/helpers.js';
import { heldDisk, recorder } from './helpers.js';

const root = tmpDir('partition');
afterAll(() => rmDir(root));
const config: LogConfig = { ...defaultLogConfig(), flush: { kind: 'always' } };
let n = 0;
const ident = (topicId = 'tid-1') => ({ topic: `t${n++}`, topicId, partition: 0 });
const batch = (...values: string[]) => encodeBatch(values.map((v) => ({ key: null, value: Buffer.from(v) })));

describe('commit', () => {
  it('answers acks=all and moves the high watermark only after the fdatasync, acks=leader at once', async () => {
    const disk = heldDisk();
    const { ev, effects, persistAll } = recorder();
    disk.pass();
    const p = await Partition.open(root, ident(), config, true, disk.options, effects);
    disk.hold();
    // Offset 0 is the term's no-op (a control batch readers skip), so the first record is at 1.
    p.produce(1, batch('a', 'b'), 2);
    p.produce(2, batch('c'), 1);
    expect(ev.produced.map((x) => x.id)).toEqual([2]); // acks=leader: appended
    expect(p.logEndOffset).toBe(4);
    expect(p.highWatermark).toBe(1); // only the no-op, committed by the open: nothing else durable yet
    expect(p.offsetFor('latest')).toBe(1);
    expect(() => p.read(1, 1 << 20)).not.toThrow();
    expect(p.read(1, 1 << 20).data.length).toBe(0); // uncommitted batches are never read
    persistAll();
    await disk.release();
    expect(p.highWatermark).toBe(4);
    expect(ev.produced.map((x) => x.id)).toEqual([2, 1]);
    expect(ev.produced[1].ok).toMatchObject({ baseOffset: 1, lastOffset: 2 });
    const batches = decodeBatches(p.read(0, 1 << 20).data);
    expect(batches.map((b) => b.header.isControl)).toEqual([true, false, false]);
    expect(batches.filter((b) => !b.header.isControl).flatMap((b) => b.records.map((r) => r.offset))).toEqual([1, 2, 3]);
    await p.close(false);
  });

  it('refuses a fetch above the high watermark even when the log end is there', async () => {
    const disk = heldDisk();
    const { effects } = recorder();
    disk.pass();
    const p = await Partition.open(root, ident(), config, true, disk.options, effects);
    disk.hold();
    p.produce(1, batch('x'), 2);
    expect(p.logEndOffset).toBe(2);
    let code = '';
    try {
      p.fetch(9, 2, 1024, 0, true);
    } catch (err) {
      code = isSluiceError(err) ? err.code : 'other';
    }
    expect(code).toBe('OFFSET_OUT_OF_RANGE');
    await disk.release();
    await p.close(false);
  });

  it('wakes a parked fetch on commit, not on append', async () => {
    const disk = heldDisk();
    const { ev, effects, persistAll } = recorder();
    disk.pass();
    const p = await Partition.open(root, ident(), config, true, disk.options, effects);
    disk.hold();
    expect(p.fetch(7, 0, 1024, 30_000, true)).toBe(true);
    p.produce(1, batch('late'), 2);
    persistAll();
    await new Promise((r) => setImmediate(r));
    expect(disk.held()).toBe(1); // the append is written, its sync is held
    expect(ev.fetches).toEqual([]); // append alone does not wake it
    expect(p.parkedCount).toBe(1);
    await disk.release();
    expect(ev.fetches).toEqual([{ id: 7, offset: 0, values: ['late'], hw: 2 }]);
    expect(p.parkedCount).toBe(0);
    await p.close(false);
  });

  it('commits at append under a relaxed flush policy (the topic opted out of durability)', async () => {
    const { ev, effects } = recorder();
    const p = await Partition.open(root, ident(), { ...config, flush: { kind: 'none' } }, true, {}, effects);
    p.produce(1, batch('q'), 2);
    expect(p.highWatermark).toBe(2);
    expect(ev.produced.map((x) => x.id)).toEqual([1]);
    await p.close(false);
  });

  it('fails acks=all produces waiting for a sync that fails, and fences', async () => {
    const { ev, effects, persistAll } = recorder();
    const eio = Object.assign(new Error('EIO: simulated'), { code: 'EIO' });
    let failing = false;
    const p = await Partition.open(root, ident(), config, true, { fdatasync: (fd, cb) => (failing ? setImmediate(() => cb(eio)) : fs.fdatasync(fd, cb)) }, effects);
    failing = true; // the open committed its no-op; the next sync fails
    p.produce(1, batch('lost'), 2);
    persistAll();
    for (let i = 0; i < 20 && ev.failed.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(ev.failed.map((f) => f.id)).toEqual([1]);
    expect(p.highWatermark).toBe(1);
    expect(() => p.produce(2, batch('more'), 1)).toThrow(/refuses writes/);
    await p.close(false).catch(() => {});
  });
});

describe('terms and recovery', () => {
  it('elects itself in a new term at every open; batches carry the term; HardState and checkpoint record it', async () => {
    const id = ident();
    const { effects, persistAll } = recorder();
    const disk = heldDisk();
    disk.pass();
    let p = await Partition.open(root, id, config, true, disk.options, effects);
    disk.hold();
    expect(p.term).toBe(1);
    p.produce(1, batch('one'), 2);
    persistAll();
    await disk.release();
    await p.close(false);
    disk.pass();
    p = await Partition.open(root, id, config, false, disk.options, effects);
    disk.hold();
    expect(p.term).toBe(2);
    // What survived is committed (a majority of one holds it): term 1's no-op (0) and 'one' (1); and
    // the open committed term 2's no-op (2).
    expect(p.highWatermark).toBe(3);
    p.produce(2, batch('two', 'three'), 2);
    persistAll();
    await disk.release();
    expect(readHardState(p.dir)).toEqual({ term: 2, vote: 1 });
    // Each term starts with its leader's no-op: 0 (term 1), 2 (term 2).
    expect(p.epochCheckpoint.list).toEqual([
      { epoch: 1, startOffset: 0 },
      { epoch: 2, startOffset: 2 },
    ]);
    const epochs = decodeBatches(p.read(0, 1 << 20).data).map((b) => [b.header.partitionLeaderEpoch, b.header.isControl]);
    expect(epochs).toEqual([
      [1, true],
      [1, false],
      [2, true],
      [2, false],
    ]);
    const rs = p.raftStorage();
    expect([rs.firstIndex(), rs.lastIndex(), rs.term(0), rs.term(1), rs.term(2), rs.term(4), rs.term(5), rs.term(-1)]).toEqual([0, 4, 1, 1, 2, 2, -1, 0]);
    // commit: a one-voter group starts from everything it found on disk (offsets 0 and 1).
    expect(rs.initialState().hardState).toEqual({ term: 2, vote: 1, commit: 1 });
    const runs = rs.entries(0, 4, 1 << 20, 100);
    expect(runs.map((r) => [r.index, r.count, r.term, r.kind])).toEqual([
      [0, 1, 1, 'noop'],
      [1, 1, 1, 'data'],
      [2, 1, 2, 'noop'],
      [3, 2, 2, 'data'],
    ]);
    expect(readBatchHeader(runs[3].data).baseOffset).toBe(3);
    expect(rs.entries(4, 4, 1 << 20, 100).map((r) => r.index)).toEqual([3]); // the run containing lo
    expect(rs.entries(0, 0, 1 << 20, 100).map((r) => r.index)).toEqual([0]); // none starting after hi
    expect(rs.entries(0, 4, 1 << 20, 1).length).toBe(1);
    expect(rs.entries(0, 4, 1, 100).length).toBe(1); // a byte limit still returns one whole run
    await p.close(false);
  });

  it('opens a data dir written before partitions were replicas (epoch 0, no HardState), and keeps its data', async () => {
    const id = ident('');
    const dir = path.join(root, `${id.topic}-0`);
    const old = await PartitionLog.open(dir, config);
    old.append(batch('old-a', 'old-b'));
    old.append(batch('old-c'));
    await old.close();
    expect(fs.existsSync(path.join(dir, HARD_STATE_FILE))).toBe(false);
    const disk = heldDisk();
    const { ev, effects, persistAll } = recorder();
    disk.pass();
    const p = await Partition.open(root, id, config, false, disk.options, effects);
    disk.hold();
    expect(p.highWatermark).toBe(4); // the old records and the new term's no-op
    expect(p.term).toBe(1);
    // The old batches are term-0 entries; term 1 starts with its leader's no-op at 3.
    expect(p.epochCheckpoint.list).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 1, startOffset: 3 },
    ]);
    expect(fs.existsSync(path.join(dir, EPOCH_CHECKPOINT_FILE))).toBe(true);
    p.fetch(1, 0, 1 << 20, 0, true);
    expect(ev.fetches[0].values).toEqual(['old-a', 'old-b', 'old-c']);
    p.produce(2, batch('new'), 2);
    persistAll();
    await disk.release();
    expect(ev.produced).toMatchObject([{ id: 2, ok: { baseOffset: 4, lastOffset: 4 } }]);
    expect(p.highWatermark).toBe(5);
    expect(p.epochCheckpoint.list).toEqual([
      { epoch: 0, startOffset: 0 },
      { epoch: 1, startOffset: 3 },
    ]);
    await p.close(false);
  });

  it('refuses a directory left by a deleted topic of the same name (different topic id)', async () => {
    const id = ident('first');
    const { effects } = recorder();
    const p = await Partition.open(root, id, config, true, {}, effects);
    await p.close(false);
    await expect(Partition.open(root, { ...id, topicId: 'second' }, config, false, {}, effects)).rejects.toThrow(/leftover of a deleted topic/);
  });
});

describe('retention', () => {
  it('moves the log start only to a committed offset, recording it in the snapshot metadata first', async () => {
    const small: LogConfig = { ...config, segmentBytes: 1024 * 1024, retentionBytes: 0 };
    const disk = heldDisk();
    const { effects, persistAll } = recorder();
    disk.pass();
    const p = await Partition.open(root, ident(), small, true, disk.options, effects);
    disk.hold();
    const big = Buffer.alloc(400 * 1024, 1).toString();
    for (let i = 0; i < 6; i++) p.produce(i, batch(big), 1);
    // Nothing committed: retention may not drop anything, whatever retention.bytes says.
    expect(p.enforceRetention(Date.now())).toBe(0);
    // Only the bootstrap snapshot (written at creation: the group's first configuration).
    expect(p.snapshotMeta()).toEqual({ index: -1, term: 0, voters: [1], learners: [], logStartOffset: 0 });
    persistAll();
    await disk.release();
    expect(p.highWatermark).toBe(7);
    // The core learns it applied the commit with its next Ready (the shard persists it next turn).
    persistAll();
    const deleted = p.enforceRetention(Date.now());
    expect(deleted).toBeGreaterThan(0);
    const meta = p.snapshotMeta()!;
    expect(meta.logStartOffset).toBe(p.logStartOffset);
    expect(meta.index).toBe(p.logStartOffset - 1);
    expect(meta.term).toBe(1);
    expect(meta.voters).toEqual([1]);
    await p.close(false);
  });

  it('records a log start found above the snapshot at open (a full-disk cut, or retention before Raft)', async () => {
    const id = ident('');
    const dir = path.join(root, `${id.topic}-0`);
    const small: LogConfig = { ...config, segmentBytes: 1024 * 1024, retentionBytes: 0 };
    const old = await PartitionLog.open(dir, small);
    const big = Buffer.alloc(400 * 1024, 1).toString();
    for (let i = 0; i < 6; i++) old.append(batch(big));
    // Segments deleted with no snapshot written, as the storage layer alone does it.
    expect(old.enforceRetention(Date.now())).toBeGreaterThan(0);
    const start = old.logStartOffset;
    expect(start).toBeGreaterThan(0);
    await old.close();
    const { effects } = recorder();
    const p = await Partition.open(root, id, small, false, {}, effects);
    expect(p.snapshotMeta()).toMatchObject({ index: start - 1, logStartOffset: start });
    expect(p.epochCheckpoint.list[0].startOffset).toBe(start);
    await p.close(false);
  });
});

describe('client produces', () => {
  it('validate every record of a client produce; a control batch from a client is refused, writing nothing', async () => {
    const { effects } = recorder();
    const p = await Partition.open(root, ident(), config, true, {}, effects);
    // A control batch is what Raft writes itself (appendReplicated-style), never what a client may send.
    expect(() => p.produce(1, Buffer.from(controlBatch('noop', 0, 1, null)), 1)).toThrow(/only the broker writes those/);
    expect(p.logEndOffset).toBe(1); // the term's no-op only
    await p.close(false);
  });
});

describe('idempotent producers', () => {
  const idem = (pid: bigint, seq: number, ...values: string[]) =>
    encodeBatch(values.map((v) => ({ key: null, value: Buffer.from(v) })), { producerId: pid, producerEpoch: 0, baseSequence: seq });

  it('answers a retry of an uncommitted append with its offsets only at commit, writing nothing', async () => {
    const disk = heldDisk();
    const { ev, effects, persistAll } = recorder();
    disk.pass();
    const p = await Partition.open(root, ident(), config, true, disk.options, effects);
    disk.hold();
    p.produce(1, batch('plain'), 2);
    p.produce(2, idem(7n, 0, 'a', 'b'), 2);
    // The retry arrives before the original is durable: nothing is written, nobody is answered yet.
    p.produce(3, idem(7n, 0, 'a', 'b'), 1);
    expect(p.logEndOffset).toBe(4); // the no-op (0), 'plain' (1), 'a' 'b' (2, 3)
    expect(ev.produced).toEqual([]);
    persistAll();
    await disk.release();
    expect(ev.produced.map((x) => [x.id, x.ok.baseOffset, x.ok.lastOffset])).toEqual([
      [1, 1, 1],
      [2, 2, 3],
      [3, 2, 3],
    ]);
    // Once committed, a retry is answered at once; a gap is OUT_OF_ORDER_SEQUENCE.
    p.produce(4, idem(7n, 0, 'a', 'b'), 2);
    expect(ev.produced.at(-1)).toMatchObject({ id: 4, ok: { baseOffset: 2, lastOffset: 3 } });
    expect(() => p.produce(5, idem(7n, 5, 'c'), 2)).toThrow(/sequence/);
    expect(p.logEndOffset).toBe(4);
    await p.close(false);
  });
});

describe('control batches', () => {
  it('are what RaftStorage reports as noop / conf runs, and every reader skips them', async () => {
    const dir = path.join(root, 'control-0');
    const log = await PartitionLog.open(dir, config);
    log.append(batch('before'), 1);
    log.appendReplicated(controlBatch('noop', 1, 1, null), 1);
    // A change that leaves node 1 the only voter (the open applies the log's conf runs: an addVoter
    // here would make it a group of two that cannot elect itself alone).
    log.appendReplicated(controlBatch('conf', 2, 1, { type: 'remove', node: 2 as never }), 1);
    log.append(batch('after'), 1);
    await log.close();
    const { effects } = recorder();
    const p = await Partition.open(root, { topic: 'control', topicId: '', partition: 0 }, config, false, {}, effects);
    const rs = p.raftStorage();
    const runs = rs.entries(0, 3, 1 << 20, 100);
    expect(runs.map((r) => r.kind)).toEqual(['data', 'noop', 'conf', 'data']);
    expect(runs[2].change).toEqual({ type: 'remove', node: 2 });
    expect(readControl(runs[1].data).kind).toBe('noop');
    const all = p.read(0, 1 << 20).data;
    // The TS client's decoder (Consumer, GroupConsumer, CLI) and the structured Fetch/Subscribe decoder.
    expect(decodeFetched('control', 0, all, 0).map((r) => [r.offset, r.value!.toString()])).toEqual([
      [0, 'before'],
      [3, 'after'],
    ]);
    expect(toPbRecords(all, 0).map((r) => Number(r.offset))).toEqual([0, 3]);
    // The shard's structured read (protobuf `records` bytes), decoded with the generated decoder.
    const s = encodeStructuredRead(Buffer.from(all), 0, 1 << 20);
    expect([s.records, s.nextOffset]).toEqual([2, 5]); // 4: the open's own no-op
    expect(FetchResponse.decode(s.data).records.map((r) => Number(r.offset))).toEqual([0, 3]);
    // A read of control batches only is read past, with nothing shown.
    const onlyControl = encodeStructuredRead(Buffer.concat([controlBatch('noop', 1, 1, null), controlBatch('noop', 2, 1, null)]), 1, 1 << 20);
    expect([onlyControl.records, onlyControl.nextOffset, onlyControl.data.length]).toEqual([0, 3, 0]);
    await p.close(false);
  });
});
