/**
 * Goal (issue 13, chaos finding D): retention.ms never deletes a segment because a Raft control batch
 * (a term's no-op) carries timestamp 0. A leader's first segment holding only its no-op used to be
 * deleted as soon as it rolled, so its log started at 1 while its followers' started at 0. A segment
 * with no real timestamp is as old as the next segment that has one.
 * Method: a real PartitionLog with a fake clock: a control batch, a roll by segment.ms, data with
 * current timestamps; retention now keeps both; once the data expires, both go together.
 */
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { PartitionLog, defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import { controlBatch } from '../../src/partition/control-batch.js';
import { makeBatch, rmDir, tmpDir } from './helpers.js';

const root = tmpDir('retention-control');
afterAll(() => rmDir(root));

const T0 = 1_800_000_000_000;
const RETENTION_MS = 60_000;
const SEGMENT_MS = 1_000;

describe('retention.ms and timestamp-0 control batches', () => {
  test('a segment of control batches only is kept while the data after it is young, and goes with it', async () => {
    let now = T0;
    const config: LogConfig = { ...defaultLogConfig(), retentionMs: RETENTION_MS, segmentMs: SEGMENT_MS };
    const log = await PartitionLog.open(path.join(root, 'p'), config, { nowMs: () => now });
    log.append(Buffer.from(controlBatch('noop', 0, 1, null)));
    now += SEGMENT_MS + 1; // the next append rolls the no-op's segment
    log.append(makeBatch(3, 10, 'data', now));
    expect(log.segmentBaseOffsets()).toEqual([0, 1]);
    now += 1;
    expect(log.enforceRetention(now)).toBe(0);
    expect(log.logStartOffset).toBe(0);
    // Later data in a third segment; the first two are now older than retention.ms.
    now += RETENTION_MS + SEGMENT_MS;
    log.append(makeBatch(1, 10, 'late', now));
    expect(log.segmentBaseOffsets()).toEqual([0, 1, 4]);
    expect(log.enforceRetention(now)).toBe(2);
    expect(log.logStartOffset).toBe(4);
    await log.close();
  });
});
