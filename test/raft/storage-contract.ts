/**
 * The `RaftStorage` contract as a reusable check: any implementation (MemoryStorage here, the
 * partition's storage over a real PartitionLog elsewhere) can be filled with known runs and handed to
 * `checkRaftStorage`, which compares every read the core may make with a per-offset reference model.
 * It throws an AssertionError naming the first read that breaks the contract.
 */
import assert from 'node:assert/strict';
import { type Entry, type RaftStorage, type Snapshot, lastIndexOf } from '../../src/raft/index.js';

/**
 * `runs`: the runs the storage is expected to hold after `snapshot.index`, contiguous. Checks
 * firstIndex/lastIndex, term() at every index in and around the log, and entries() from every index
 * with a few byte and count limits.
 */
export function checkRaftStorage(storage: RaftStorage, snapshot: Snapshot, runs: readonly Entry[]): void {
  const last = runs.length > 0 ? lastIndexOf(runs[runs.length - 1]) : snapshot.index;
  assert.equal(storage.firstIndex(), snapshot.index + 1, 'firstIndex() is snapshot.index + 1');
  assert.equal(storage.lastIndex(), last, 'lastIndex() is the end of the last run');
  assert.equal(storage.snapshot().index, snapshot.index, 'snapshot().index');
  const runAt = (i: number): number => runs.findIndex((e) => i >= e.index && i <= lastIndexOf(e));
  for (let i = snapshot.index - 2; i <= last + 2; i++) {
    const k = runAt(i);
    const want = i === snapshot.index ? snapshot.term : k < 0 ? -1 : runs[k].term;
    assert.equal(storage.term(i), want, `term(${i})`);
  }
  for (let lo = snapshot.index + 1; lo <= last; lo++) {
    const k0 = runAt(lo);
    for (const [bytesMax, countMax] of [[Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY], [1, 100], [250, 2], [1e9, 1]]) {
      for (const hi of [lo, last]) {
        const got = storage.entries(lo, hi, bytesMax, countMax);
        const what = `entries(${lo}, ${hi}, ${bytesMax}, ${countMax})`;
        assert.ok(got.length >= 1, `${what}: at least one run`);
        assert.ok(got.length <= countMax, `${what}: at most countMax runs`);
        let bytes = 0;
        for (let j = 0; j < got.length; j++) {
          const want = runs[k0 + j];
          assert.ok(want !== undefined && got[j].index === want.index && got[j].count === want.count && got[j].term === want.term, `${what}: run ${j} is the stored run`);
          assert.ok(got[j].index <= hi, `${what}: no run starts after hi`);
          bytes += got[j].data.length;
        }
        if (got.length > 1) assert.ok(bytes <= bytesMax, `${what}: within bytesMax`);
        const next = runs[k0 + got.length];
        if (next !== undefined && next.index <= hi && got.length < countMax) {
          assert.ok(bytes + next.data.length > bytesMax, `${what}: stopped early`);
        }
      }
    }
  }
}
