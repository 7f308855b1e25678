/**
 * Goal: the chaos checker finds each anomaly class, and stays quiet on a clean history, including the
 * legal oddities (unknown outcomes either way, offsets skipped by control batches, duplicates without
 * idempotence). Method: small hand-written histories, one per class, each checked for the one count it
 * must raise; plus the replica comparison on copies of a real partition directory (a byte changed
 * below the high watermark is found, one above it is not).
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeBatch } from '../../src/batch/index.js';
import { PartitionLog, defaultLogConfig } from '../../src/storage/index.js';
import { checkHistory, type Verdict } from './checker.js';
import type { Op } from './history.js';
import { compareReplicas } from './replicas.js';

const K = 't/0';
let clock = 0;
const w = (value: string, offset: number | null, outcome: 'ok' | 'unknown' | 'failed' = 'ok', idem = true): Op => {
  clock += 10;
  return { t: 'produce', proc: value.split(':')[0], idem, key: K, value, inv: clock - 5, end: clock, outcome, ...(offset === null ? {} : { offset }) };
};
const fin = (offset: number, value: string): Op => ({ t: 'final', key: K, offset, value });
const read = (offset: number, value: string, t: 'read' | 'gread' = 'read'): Op => ({ t, proc: 'r', key: K, offset, value, at: (clock += 1) });
const hw = (n: number): Op => ({ t: 'hw', key: K, hw: n, inv: (clock += 1), end: (clock += 1) });

/** The counts a verdict raised (non-zero anomaly fields). */
function raised(v: Verdict): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ['lost', 'inconsistent', 'duplicated', 'duplicatedPlain', 'phantom', 'hwBackwards', 'committedBackwards', 'groupGaps'] as const) if (v[k] > 0) out[k] = v[k];
  return out;
}

describe('chaos checker', () => {
  it('passes a clean history with unknown outcomes both ways and a control-batch gap', () => {
    const v = checkHistory([
      w('a:0', 0), w('a:1', null, 'unknown'), w('a:2', null, 'unknown'), w('a:3', 3), hw(4), read(0, 'a:0'), read(0, 'a:0', 'gread'), read(1, 'a:1', 'gread'),
      { t: 'commit', proc: 'g', key: K, offset: 2, inv: 100, end: 110, outcome: 'ok' },
      // Offset 2 is a Raft no-op (a control batch readers skip); a:2 was never written.
      fin(0, 'a:0'), fin(1, 'a:1'), fin(3, 'a:3'), { t: 'final-hw', key: K, hw: 4 },
    ]);
    expect(raised(v)).toEqual({});
    expect(v.ok).toBe(true);
    expect([v.acked, v.unknown]).toEqual([2, 2]);
  });

  it('finds a lost acknowledged write', () => {
    const v = checkHistory([w('a:0', 0), w('a:1', 1), fin(0, 'a:0')]);
    expect(raised(v)).toEqual({ lost: 1 });
    expect(v.samples[0].value).toBe('a:1');
  });

  it('finds an offset holding two values, whoever saw them', () => {
    expect(raised(checkHistory([w('a:0', 0), w('b:0', 1), read(1, 'a:0'), fin(0, 'a:0'), fin(1, 'b:0')]))).toEqual({ inconsistent: 1, duplicated: 1 });
    // The ack said offset 0, a later life of the log reused it for another value: lost and inconsistent.
    expect(raised(checkHistory([w('a:0', 0), w('b:0', 0), fin(0, 'b:0')]))).toEqual({ lost: 1, inconsistent: 1 });
    // A value nobody wrote.
    expect(raised(checkHistory([fin(0, 'zz:9')]))).toEqual({ inconsistent: 1 });
  });

  it('finds duplicates, and tells idempotent producers from plain ones', () => {
    expect(raised(checkHistory([w('a:0', 0), fin(0, 'a:0'), fin(1, 'a:0')]))).toEqual({ duplicated: 1 });
    expect(raised(checkHistory([w('n:0', 0, 'ok', false), fin(0, 'n:0'), fin(1, 'n:0')]))).toEqual({ duplicatedPlain: 1 });
  });

  it('finds a definitely failed write that was read (phantom)', () => {
    expect(raised(checkHistory([w('n:0', null, 'failed', false), fin(0, 'n:0')]))).toEqual({ phantom: 1 });
  });

  it('finds the high watermark going backwards, in polls and in the final read', () => {
    expect(raised(checkHistory([w('a:0', 0), hw(1), hw(0), fin(0, 'a:0')]))).toEqual({ hwBackwards: 1 });
    expect(raised(checkHistory([w('a:0', 0), hw(2), fin(0, 'a:0'), { t: 'final-hw', key: K, hw: 1 }]))).toEqual({ hwBackwards: 1 });
  });

  it('finds the committed group offset going backwards, but not for a poll sent before the commit was acked', () => {
    const commit: Op = { t: 'commit', proc: 'g', key: K, offset: 5, inv: 100, end: 200, outcome: 'ok' };
    const finals = Array.from({ length: 5 }, (_, i) => [w(`a:${i}`, i), read(i, `a:${i}`, 'gread'), fin(i, `a:${i}`)]).flat();
    const early: Op = { t: 'committed', key: K, offset: 3, inv: 150, end: 250 };
    const late: Op = { t: 'committed', key: K, offset: 3, inv: 210, end: 260 };
    expect(raised(checkHistory([...finals, commit, early]))).toEqual({});
    expect(raised(checkHistory([...finals, commit, late]))).toEqual({ committedBackwards: 1 });
    const polls: Op[] = [{ t: 'committed', key: K, offset: 4, inv: 300, end: 310 }, { t: 'committed', key: K, offset: 2, inv: 320, end: 330 }];
    expect(raised(checkHistory([...finals, ...polls]))).toEqual({ committedBackwards: 1 });
  });

  it('finds a consumer-group gap: committed past a record the group never got', () => {
    const ops: Op[] = [w('a:0', 0), w('a:1', 1), w('a:2', 2), read(0, 'a:0', 'gread'), read(2, 'a:2', 'gread'), { t: 'commit', proc: 'g', key: K, offset: 3, inv: 1, end: 2, outcome: 'ok' }, fin(0, 'a:0'), fin(1, 'a:1'), fin(2, 'a:2')];
    const v = checkHistory(ops);
    expect(raised(v)).toEqual({ groupGaps: 1 });
    expect(v.samples[0].offset).toBe(1);
  });

  it('measures unavailability from each heal to the first acknowledged write after it', () => {
    clock = 0;
    const ops: Op[] = [w('a:0', 0), { t: 'fault', id: 1, kind: 'kill', nodes: [1], start: 12, heal: 20, detail: 'kill' }, w('a:1', null, 'unknown'), w('a:2', 2), w('a:3', 3)];
    const v = checkHistory([...ops, fin(0, 'a:0'), fin(2, 'a:2'), fin(3, 'a:3')]);
    expect(v.faults).toEqual([{ id: 1, kind: 'kill', detail: 'kill', healMs: 20, unavailableMs: 10 }]);
    expect(v.worstUnavailableMs).toBe(10);
    const never = checkHistory([w('a:0', 0), { t: 'fault', id: 1, kind: 'pause', nodes: [1], start: 1e6, heal: 2e6, detail: 'p' }, fin(0, 'a:0')]);
    expect(never.worstUnavailableMs).toBeNull();
  });
});

describe('replica comparison', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  it('finds a byte that differs below the high watermark, and ignores the tail above it', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-replicas-'));
    dirs.push(root);
    const a = path.join(root, 'a');
    const log = await PartitionLog.open(a, defaultLogConfig());
    for (let i = 0; i < 10; i++) await log.append(encodeBatch([{ key: null, value: Buffer.from(`value-${i}`) }])).durable;
    await log.close();
    const copy = (name: string): string => {
      const d = path.join(root, name);
      fs.cpSync(a, d, { recursive: true });
      return d;
    };
    const segment = '00000000000000000000.log';
    const same = copy('same');
    expect(compareReplicas([a, same], 10)).toMatchObject({ replicas: 2, firstDifference: null });

    // Flip the last byte of the value of offset 3 (each one-record batch here is the same size).
    const low = copy('low');
    const bytes = fs.readFileSync(path.join(low, segment));
    const batchBytes = bytes.length / 10;
    bytes[3 * batchBytes + batchBytes - 2] ^= 0xff;
    fs.writeFileSync(path.join(low, segment), bytes);
    expect(compareReplicas([a, low], 10).firstDifference).toMatchObject({ offset: 3, why: 'batch bytes differ' });
    // Above the high watermark (offsets 3.. not yet committed) replicas may differ.
    expect(compareReplicas([a, low], 3).firstDifference).toBeNull();

    // A replica that lacks committed batches.
    const short = copy('short');
    fs.truncateSync(path.join(short, segment), 7 * batchBytes);
    expect(compareReplicas([a, short], 10).firstDifference).toMatchObject({ offset: 7, why: 'lacks a batch below the high watermark' });
    expect(compareReplicas([a, short], 7).firstDifference).toBeNull();
    // A replica whose log starts later (retention or a snapshot moved its start): compared from there,
    // in either order, and a difference after that start is still found.
    const later = copy('later');
    const orig = fs.readFileSync(path.join(a, segment));
    fs.rmSync(path.join(later, segment));
    fs.writeFileSync(path.join(later, '00000000000000000002.log'), orig.subarray(2 * batchBytes));
    expect(compareReplicas([a, later], 10)).toMatchObject({ from: 2, firstDifference: null });
    expect(compareReplicas([later, a], 10)).toMatchObject({ from: 2, firstDifference: null });
    expect(compareReplicas([later, low], 10).firstDifference).toMatchObject({ offset: 3, why: 'batch bytes differ' });
  });
});
