/**
 * Raft driver benchmark (`npm run bench:raft-driver`, after `npm run build`). Not a test: it prints numbers.
 *
 * The partition as a Raft replica on a real disk: a `Partition` (src/partition) over a real
 * `PartitionLog`, one voter, driven as a shard drives it (effects in; every Ready collected in a turn
 * persisted at its end; acks=all answered at commit). 100-byte records in 1,000-record batches,
 * flush=always. Reported: committed records/s with 1 batch in flight (every batch waits for its own
 * fdatasync: the worst case) and with 8 in flight (group commit), against the raw rate of the same
 * bytes written with writeSync + fdatasync per batch and nothing else, on the same disk in the same
 * run. Target: 1 in flight >= 70% of raw (what the storage engine reached on its own).
 * Also, as a peer a Node server can reach at all: the same raw loop with the fdatasync issued
 * asynchronously (fs.fdatasync, one libuv threadpool hop per batch, as every non-blocking writer pays;
 * the synchronous baseline blocks the thread, which a shard serving other partitions cannot do).
 *
 * The partition is handed its batches as the shard hands them: a view of the request ring's slot
 * (src/shard/shard-worker.ts `produce`), reused once the produce returns, not a fresh copy per batch
 * (the copy from the network into the ring is the host thread's, not the shard's).
 *
 * Noise: the disk's fdatasync latency moves with the neighbours' I/O, so the cases run in short
 * interleaved rounds (raw, async raw, 1 in flight, 8 in flight, raw again), each driver case is
 * compared with the mean of the two raw runs around it, and the median of those per-round ratios is
 * reported beside the ratio of the medians. Each row also gives its median fdatasync latency, so a
 * ratio can be read against the disk wait it saw.
 *
 * Every case deletes its files when it ends, and the file system's journal is then committed (an fsync
 * of the work directory) before the next case starts: on a file system mounted with online discard the
 * commit that frees a deleted file's blocks also discards them, and that cost otherwise lands on the
 * next case's first fdatasyncs.
 *
 * Then, informational, the driver's fixed cost per batch: the 1-in-flight run again with an fdatasync
 * that completes at once (next check phase), beside the raw write alone (wall and CPU time per batch),
 * and, from the real 1-in-flight runs, the time from `produce` to the fdatasync being issued (the CPU
 * on the critical path before the disk wait; raw's is its write).
 *
 * Flags: --mb N (MiB per round and case, default 32), --runs N (rounds, default 7, medians
 * reported), --dir PATH (default os.tmpdir()), --json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeBatch } from '../src/batch/index.js';
import { Partition, type PartitionEffects } from '../src/partition/index.js';
import { defaultLogConfig, type LogConfig, type LogOpenOptions } from '../src/storage/index.js';

const MiB = 1024 * 1024;
const RECORDS_PER_BATCH = 1000;
const VALUE_BYTES = 100;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

const mb = Number(arg('--mb', '32'));
const runs = Number(arg('--runs', '7'));
const baseDir = arg('--dir', os.tmpdir());
const json = process.argv.includes('--json');

const template = encodeBatch(Array.from({ length: RECORDS_PER_BATCH }, (_, i) => ({ key: null, value: Buffer.alloc(VALUE_BYTES, i & 0xff) })));
const count = Math.max(1, Math.round((mb * MiB) / template.length));

interface Rate {
  seconds: number;
  /** CPU time of the process (user + system) over the run. */
  cpuSeconds: number;
  /** Median fdatasync latency, µs (NaN when none was timed). */
  syncUs: number;
  /** Median time from produce (raw: the write's start) to the fdatasync being issued, µs. */
  preSyncUs: number;
}

/** Commits the journal (frees and discards of the files a case deleted) before the next case starts. */
function settle(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const median = (xs: number[]): number => (xs.length === 0 ? NaN : [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]);
const cpuSince = (c0: NodeJS.CpuUsage): number => {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
};

function rawWrite(dir: string, sync: boolean): Rate {
  const file = path.join(dir, 'raw.bin');
  const fd = fs.openSync(file, 'w');
  const syncs: number[] = [];
  const writes: number[] = [];
  let pos = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const a = performance.now();
    let off = 0;
    while (off < template.length) off += fs.writeSync(fd, template, off, template.length - off, pos + off);
    pos += template.length;
    if (!sync) continue;
    const b = performance.now();
    fs.fdatasyncSync(fd);
    writes.push(b - a);
    syncs.push(performance.now() - b);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSince(c0);
  fs.closeSync(fd);
  fs.rmSync(file);
  return { seconds, cpuSeconds, syncUs: median(syncs) * 1000, preSyncUs: median(writes) * 1000 };
}

/** rawWrite with the fdatasync on the libuv threadpool (fs.fdatasync), awaited before the next batch. */
async function rawWriteAsyncSync(dir: string): Promise<Rate> {
  const file = path.join(dir, 'raw-async.bin');
  const fd = fs.openSync(file, 'w');
  const syncs: number[] = [];
  let pos = 0;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    let off = 0;
    while (off < template.length) off += fs.writeSync(fd, template, off, template.length - off, pos + off);
    pos += template.length;
    const b = performance.now();
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
    syncs.push(performance.now() - b);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSince(c0);
  fs.closeSync(fd);
  fs.rmSync(file);
  return { seconds, cpuSeconds, syncUs: median(syncs) * 1000, preSyncUs: NaN };
}

/** An fdatasync that completes in the next check phase without touching the disk. */
const instantFdatasync = (_fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void => void setImmediate(() => cb(null));

async function driverRun(dir: string, inFlight: number, instantSync = false): Promise<Rate> {
  const config: LogConfig = { ...defaultLogConfig(), flush: { kind: 'always' } };
  const ready = new Set<Partition>();
  let scheduled = false;
  const waiting = new Map<number, () => void>();
  const effects: PartitionEffects = {
    produced: (_p, id) => waiting.get(id)?.(),
    failed: (_p, id, err) => {
      throw new Error(`produce ${id} failed: ${err.message}`);
    },
    serveFetch: () => {},
    needPersist: (p) => {
      ready.add(p);
      if (!scheduled) {
        scheduled = true;
        setImmediate(() => {
          scheduled = false;
          const ps = [...ready];
          ready.clear();
          for (const q of ps) q.persist();
        });
      }
    },
    send: () => {},
  };
  // The fdatasyncs, timed (as the shard's own timedFdatasync does), and the time from the last
  // produce to each one being issued.
  const syncs: number[] = [];
  const preSync: number[] = [];
  let lastProduce = 0;
  let timing = false;
  const timedFdatasync: NonNullable<LogOpenOptions['fdatasync']> = (fd, cb) => {
    const t = performance.now();
    if (timing) preSync.push(t - lastProduce);
    fs.fdatasync(fd, (err) => {
      if (timing) syncs.push(performance.now() - t);
      cb(err);
    });
  };
  const p = await Partition.open(dir, { topic: 'bench', topicId: 'bench', partition: 0 }, config, true, { fdatasync: instantSync ? instantFdatasync : timedFdatasync }, effects);
  // One ring slot per request in flight, filled once: the partition patches offsets and the term in
  // place (outside the CRC), as it does in the shard's ring.
  const slots = Array.from({ length: inFlight }, () => Buffer.from(template));
  let next = 0;
  let done = 0;
  timing = true;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const issue = (): void => {
      const id = next++;
      waiting.set(id, () => {
        waiting.delete(id);
        done++;
        if (done === count) resolve();
        else if (next < count) issue();
      });
      lastProduce = performance.now();
      p.produce(id, slots[id % inFlight], 2);
    };
    for (let i = 0; i < Math.min(inFlight, count); i++) issue();
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpuSeconds = cpuSince(c0);
  timing = false;
  await p.close(true);
  return { seconds, cpuSeconds, syncUs: median(syncs) * 1000, preSyncUs: inFlight === 1 ? median(preSync) * 1000 : NaN };
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(baseDir, 'sluice-raft-driver-'));
  const cases = ['raw', 'rawAsync', 'one', 'eight', 'rawAfter', 'rawWrite', 'oneInstant'] as const;
  const res: Record<(typeof cases)[number], Rate[]> = { raw: [], rawAsync: [], one: [], eight: [], rawAfter: [], rawWrite: [], oneInstant: [] };
  const pairRatios: Record<'rawAsync' | 'one' | 'eight', number[]> = { rawAsync: [], one: [], eight: [] };
  try {
    settle(work);
    for (let r = 0; r < runs; r++) {
      const raw = rawWrite(work, true);
      settle(work);
      const rawAsync = await rawWriteAsyncSync(work);
      settle(work);
      const one = await driverRun(work, 1);
      settle(work);
      const eight = await driverRun(work, 8);
      settle(work);
      const rawAfter = rawWrite(work, true);
      settle(work);
      res.raw.push(raw, rawAfter);
      res.rawAsync.push(rawAsync);
      res.one.push(one);
      res.eight.push(eight);
      // Rates compare as inverse times; the raw rate of the round is the mean of the two around it.
      const rawSeconds = (raw.seconds + rawAfter.seconds) / 2;
      pairRatios.rawAsync.push(rawSeconds / rawAsync.seconds);
      pairRatios.one.push(rawSeconds / one.seconds);
      pairRatios.eight.push(rawSeconds / eight.seconds);
    }
    for (let r = 0; r < runs; r++) {
      res.rawWrite.push(rawWrite(work, false));
      settle(work);
      res.oneInstant.push(await driverRun(path.join(work, `instant-${r}`), 1, true));
      settle(work);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const records = count * RECORDS_PER_BATCH;
  const rate = (k: keyof typeof res): number => records / median(res[k].map((x) => x.seconds));
  const syncUs = (k: keyof typeof res): number => median(res[k].map((x) => x.syncUs));
  const raw = rate('raw');
  const rows = [
    { case: 'raw write + fdatasync per batch', recordsPerSec: raw, ofRaw: 1, ofRawPaired: 1, syncUs: syncUs('raw'), target: 'baseline' },
    { case: 'raw write + async fdatasync (threadpool)', recordsPerSec: rate('rawAsync'), ofRaw: rate('rawAsync') / raw, ofRawPaired: median(pairRatios.rawAsync), syncUs: syncUs('rawAsync'), target: 'peer' },
    { case: 'partition driver, acks=all, 1 in flight', recordsPerSec: rate('one'), ofRaw: rate('one') / raw, ofRawPaired: median(pairRatios.one), syncUs: syncUs('one'), target: '>= 70% of raw' },
    { case: 'partition driver, acks=all, 8 in flight', recordsPerSec: rate('eight'), ofRaw: rate('eight') / raw, ofRawPaired: median(pairRatios.eight), syncUs: syncUs('eight'), target: '—' },
  ];
  const perBatchUs = (k: keyof typeof res, f: (x: Rate) => number): number => (median(res[k].map(f)) / count) * 1e6;
  const fixedCost = {
    rawWriteUsPerBatch: perBatchUs('rawWrite', (x) => x.seconds),
    rawWriteCpuUsPerBatch: perBatchUs('rawWrite', (x) => x.cpuSeconds),
    driverInstantSyncUsPerBatch: perBatchUs('oneInstant', (x) => x.seconds),
    driverInstantSyncCpuUsPerBatch: perBatchUs('oneInstant', (x) => x.cpuSeconds),
    rawWriteBeforeSyncUs: median(res.raw.map((x) => x.preSyncUs)),
    driverProduceToSyncUs: median(res.one.map((x) => x.preSyncUs)),
  };
  if (json) {
    console.log(JSON.stringify({ mb, runs, batches: count, rows, oneInFlightOfAsyncRaw: rate('one') / rate('rawAsync'), fixedCost }, null, 2));
    return;
  }
  const pct = (x: number): string => `${(x * 100).toFixed(0)}%`.padStart(6);
  console.log(`raft driver over a real PartitionLog: ${count} batches x ${RECORDS_PER_BATCH} records x ${VALUE_BYTES} B per case, ${runs} interleaved rounds, medians`);
  console.log(`${''.padEnd(44)}${'rec/s'.padStart(14)}  of raw  paired  fdatasync`);
  for (const r of rows) {
    console.log(`${r.case.padEnd(44)}${Math.round(r.recordsPerSec).toLocaleString('en-US').padStart(14)}${pct(r.ofRaw)}  ${pct(r.ofRawPaired)}  ${r.syncUs.toFixed(0).padStart(6)} us  ${r.target}`);
  }
  console.log(`partition driver, 1 in flight, against the async raw peer: ${((rate('one') / rate('rawAsync')) * 100).toFixed(0)}%`);
  console.log(
    `before the fdatasync (critical path): raw write ${fixedCost.rawWriteBeforeSyncUs.toFixed(0)} us; driver produce -> fdatasync issued ${fixedCost.driverProduceToSyncUs.toFixed(0)} us`,
  );
  console.log(
    `fixed cost per batch (no disk wait), wall / CPU: raw write ${fixedCost.rawWriteUsPerBatch.toFixed(0)} / ${fixedCost.rawWriteCpuUsPerBatch.toFixed(0)} us, ` +
      `driver 1 in flight with an instant fdatasync ${fixedCost.driverInstantSyncUsPerBatch.toFixed(0)} / ${fixedCost.driverInstantSyncCpuUsPerBatch.toFixed(0)} us`,
  );
}

void main();
