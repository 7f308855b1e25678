/** Helpers for the partition tests: an effects recorder and a disk whose fdatasyncs the test releases. */
import fs from 'node:fs';
import { setImmediate as turn } from 'node:timers/promises';
import { decodeBatches } from '../../src/batch/index.js';
import type { Partition, PartitionEffects, ProduceOk } from '../../src/partition/index.js';
import type { LogOpenOptions } from '../../src/storage/index.js';

export interface Recorded {
  produced: Array<{ id: number; ok: ProduceOk }>;
  failed: Array<{ id: number; code: string }>;
  /** Fetches served, with the user records they returned (control batches skipped, as readers do). */
  fetches: Array<{ id: number; offset: number; values: string[]; hw: number }>;
}

/** Effects that record what a partition did; `persistAll()` plays the shard's end-of-turn group commit. */
export function recorder(): { ev: Recorded; effects: PartitionEffects; persistAll: () => void } {
  const ev: Recorded = { produced: [], failed: [], fetches: [] };
  const ready = new Set<Partition>();
  const effects: PartitionEffects = {
    produced: (_p, id, ok) => void ev.produced.push({ id, ok }),
    failed: (_p, id, err) => void ev.failed.push({ id, code: err.code }),
    serveFetch: (p, id, offset, maxBytes) => {
      const r = p.read(offset, maxBytes);
      const values = decodeBatches(r.data)
        .filter((b) => !b.header.isControl)
        .flatMap((b) => b.records.filter((x) => x.offset >= offset).map((x) => Buffer.from(x.value ?? []).toString()));
      ev.fetches.push({ id, offset, values, hw: p.highWatermark });
    },
    needPersist: (p) => void ready.add(p),
    send: () => {},
  };
  const persistAll = (): void => {
    const ps = [...ready];
    ready.clear();
    for (const p of ps) p.persist();
  };
  return { ev, effects, persistAll };
}

/**
 * A disk whose group-commit fdatasyncs wait until the test releases them, once `hold()` was called.
 * Until then (and after `pass()`) they run at once: opening a one-voter partition commits its term's
 * no-op before the open returns.
 */
export function heldDisk(): { options: LogOpenOptions; held: () => number; release: () => Promise<void>; hold: () => void; pass: () => void } {
  let queue: Array<() => Promise<void>> = [];
  let holding = false;
  const sync = (fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => () => new Promise<void>((resolve) => fs.fdatasync(fd, (err) => (cb(err), resolve())));
  return {
    options: {
      fdatasync: (fd, cb) => {
        if (holding) queue.push(sync(fd, cb));
        else void sync(fd, cb)();
      },
    },
    held: () => queue.length,
    hold: () => void (holding = true),
    pass: () => {
      holding = false;
      const q = queue;
      queue = [];
      for (const f of q) void f();
    },
    release: async () => {
      // The log starts its sync in a microtask; syncs started by completions (a generation queued
      // behind one in flight) are released too. Bounded: a handful of generations at most.
      await turn();
      for (let round = 0; round < 10 && queue.length > 0; round++) {
        const q = queue;
        queue = [];
        await Promise.all(q.map((f) => f()));
        await turn();
      }
    },
  };
}
