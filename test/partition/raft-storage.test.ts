/**
 * Goal: the partition's RaftStorage (PartitionRaftStorage over a real PartitionLog) keeps src/raft's
 * RaftStorage contract, before and after retention moved the log start through a snapshot, across
 * segment boundaries, with control runs (no-op, conf) among data runs.
 * Method: runs of several terms and sizes written to a real log (leader appends and verbatim control
 * batches), then test/raft's reusable `checkRaftStorage` compares every term() and entries() read the
 * core may make with a per-offset model of those runs.
 */
import path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { encodeBatch, readBatchHeader } from '../../src/batch/index.js';
import { Partition, controlBatch } from '../../src/partition/index.js';
import { PartitionLog, defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import type { Entry } from '../../src/raft/index.js';
import type { Offset, Term } from '../../src/model/index.js';
import { checkRaftStorage } from '../raft/storage-contract.js';
import { rmDir, tmpDir } from '../storage/helpers.js';
import { recorder } from './helpers.js';

const root = tmpDir('raft-storage');
afterAll(() => rmDir(root));
const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 1024 * 1024, flush: { kind: 'none' } };

/** The runs as the contract model wants them (data bytes = the stored batch). */
function runOf(batch: Uint8Array, kind: Entry['kind']): Entry {
  const h = readBatchHeader(batch);
  return { index: h.baseOffset as Offset, count: h.lastOffsetDelta + 1, term: h.partitionLeaderEpoch as Term, kind, data: batch, change: null };
}

it('keeps the RaftStorage contract over a real log, before and after a retention snapshot', async () => {
  const dir = path.join(root, 'rs-0');
  const log = await PartitionLog.open(dir, config);
  const written: Array<{ kind: Entry['kind'] }> = [];
  let term = 1;
  for (let i = 0; i < 24; i++) {
    if (i % 8 === 0 && i > 0) term++;
    if (i % 8 === 0) {
      log.appendReplicated(controlBatch('noop', log.nextOffset, term, null), term);
      written.push({ kind: 'noop' });
    }
    // Sizes vary from tiny to ~300 KB so reads cross the byte limits and segments roll (1 MiB).
    const records = [1, 3, 40, 150][i % 4];
    const valueBytes = i % 2 === 1 ? 2000 : 20;
    log.append(encodeBatch(Array.from({ length: records }, () => ({ key: null, value: Buffer.alloc(valueBytes, i) }))), term);
    written.push({ kind: 'data' });
  }
  await log.close();
  const { effects, persistAll } = recorder();
  const p = await Partition.open(root, { topic: 'rs', topicId: '', partition: 0 }, { ...config, retentionBytes: 0 }, false, {}, effects);
  // The open elected the one voter in a new term, whose no-op ends the log; commit and apply it.
  written.push({ kind: 'noop' });
  persistAll();
  persistAll();
  expect(p.highWatermark).toBe(p.logEndOffset);
  const readRuns = (from: number): Entry[] => {
    const out: Entry[] = [];
    let k = 0;
    for (let offset = p.logStartOffset; offset < p.logEndOffset; ) {
      const r = p.read(offset, 1);
      const b = Buffer.from(r.data);
      const h = readBatchHeader(b);
      if (h.baseOffset >= from) out.push(runOf(b, h.isControl ? 'noop' : 'data'));
      offset = r.nextOffset;
      k++;
    }
    expect(k).toBeGreaterThan(0);
    return out;
  };
  const rs = p.raftStorage();
  const all = readRuns(0);
  expect(all.length).toBe(written.length);
  expect(all.map((e) => e.kind)).toEqual(written.map((w) => w.kind));
  checkRaftStorage(rs, rs.snapshot(), all);
  // Retention through Raft state: the snapshot moves, the contract holds on what is left.
  expect(p.enforceRetention(Date.now())).toBeGreaterThan(0);
  const snap = rs.snapshot();
  expect(snap.index).toBe(p.logStartOffset - 1);
  expect(snap.term).toBe(all.find((e) => e.index <= snap.index && snap.index < e.index + e.count)!.term);
  checkRaftStorage(rs, snap, readRuns(p.logStartOffset));
  await p.close(false);
});

it('the contract check fails on a storage that reports a wrong term', async () => {
  const dir = path.join(root, 'bad-0');
  const log = await PartitionLog.open(dir, config);
  log.append(encodeBatch([{ key: null, value: Buffer.from('a') }]), 1);
  log.append(encodeBatch([{ key: null, value: Buffer.from('b') }]), 2);
  await log.close();
  const { effects, persistAll } = recorder();
  const p = await Partition.open(root, { topic: 'bad', topicId: '', partition: 0 }, config, false, {}, effects);
  persistAll(); // the new term's no-op at 2 commits
  const rs = p.raftStorage();
  const runs = [0, 1, 2].map((o) => runOf(Buffer.from(p.read(o, 1).data), o === 2 ? 'noop' : 'data'));
  checkRaftStorage(rs, rs.snapshot(), runs);
  const lying = Object.assign(Object.create(Object.getPrototypeOf(rs)), rs, { term: (i: number) => (i === 1 ? 1 : rs.term(i)) });
  expect(() => checkRaftStorage(lying, rs.snapshot(), runs)).toThrow(/term\(1\)/);
  await p.close(false);
});
