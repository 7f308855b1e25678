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
 * Then, informational, the driver's fixed cost per batch: the 1-in-flight run again with an fdatasync
 * that completes at once (next check phase), beside the raw write alone. That ratio does not depend on
 * the disk: on a shared machine the fdatasync latency (and so the ratio above) moves with the
 * neighbours' I/O, while this shows what the driver adds per batch (validation, Raft, effects, turns).
 *
 * Flags: --mb N (MiB per run, default 128), --runs N (default 3, median reported), --dir PATH
 * (default os.tmpdir()), --json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeBatch } from '../src/batch/index.js';
import { Partition, type PartitionEffects } from '../src/partition/index.js';
import { defaultLogConfig, type LogConfig } from '../src/storage/index.js';

const MiB = 1024 * 1024;
const RECORDS_PER_BATCH = 1000;
const VALUE_BYTES = 100;

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

const mb = Number(arg('--mb', '128'));
const runs = Number(arg('--runs', '3'));
const baseDir = arg('--dir', os.tmpdir());
const json = process.argv.includes('--json');

const template = encodeBatch(Array.from({ length: RECORDS_PER_BATCH }, (_, i) => ({ key: null, value: Buffer.alloc(VALUE_BYTES, i & 0xff) })));
const count = Math.max(1, Math.round((mb * MiB) / template.length));

interface Rate {
  seconds: number;
}

function rawWrite(dir: string): Rate {
  const fd = fs.openSync(path.join(dir, 'raw.bin'), 'w');
  let pos = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    let off = 0;
    while (off < template.length) off += fs.writeSync(fd, template, off, template.length - off, pos + off);
    pos += template.length;
    fs.fdatasyncSync(fd);
  }
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  return { seconds };
}

/** rawWrite with the fdatasync on the libuv threadpool (fs.fdatasync), awaited before the next batch. */
async function rawWriteAsyncSync(dir: string): Promise<Rate> {
  const fd = fs.openSync(path.join(dir, 'raw-async.bin'), 'w');
  let pos = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    let off = 0;
    while (off < template.length) off += fs.writeSync(fd, template, off, template.length - off, pos + off);
    pos += template.length;
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
  }
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  fs.rmSync(path.join(dir, 'raw-async.bin'));
  return { seconds };
}

/** The writes of rawWrite alone (no fdatasync): the floor of the fixed per-batch cost. */
function rawWriteOnly(dir: string): Rate {
  const fd = fs.openSync(path.join(dir, 'raw-nosync.bin'), 'w');
  let pos = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    let off = 0;
    while (off < template.length) off += fs.writeSync(fd, template, off, template.length - off, pos + off);
    pos += template.length;
  }
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  fs.rmSync(path.join(dir, 'raw-nosync.bin'));
  return { seconds };
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
  const p = await Partition.open(dir, { topic: 'bench', topicId: 'bench', partition: 0 }, config, true, instantSync ? { fdatasync: instantFdatasync } : {}, effects);
  let next = 0;
  let done = 0;
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
      // One copy, as the shard's ring hands the partition its own bytes.
      p.produce(id, Buffer.from(template), 2);
    };
    for (let i = 0; i < Math.min(inFlight, count); i++) issue();
  });
  const seconds = (performance.now() - t0) / 1000;
  await p.close(true);
  return { seconds };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(baseDir, 'sluice-raft-driver-'));
  const secs: Record<string, number[]> = { raw: [], rawAsync: [], one: [], eight: [], rawWrite: [], oneInstant: [] };
  try {
    for (let r = 0; r < runs; r++) {
      secs.raw.push(rawWrite(work).seconds);
      secs.rawAsync.push((await rawWriteAsyncSync(work)).seconds);
      secs.one.push((await driverRun(work, 1)).seconds);
      secs.eight.push((await driverRun(work, 8)).seconds);
    }
    for (let r = 0; r < runs; r++) {
      secs.rawWrite.push(rawWriteOnly(work).seconds);
      secs.oneInstant.push((await driverRun(path.join(work, `instant-${r}`), 1, true)).seconds);
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const records = count * RECORDS_PER_BATCH;
  const rate = (k: string): number => records / median(secs[k]);
  const raw = rate('raw');
  const rows = [
    { case: 'raw write + fdatasync per batch', recordsPerSec: raw, ofRaw: 1, target: 'baseline' },
    { case: 'raw write + async fdatasync (threadpool)', recordsPerSec: rate('rawAsync'), ofRaw: rate('rawAsync') / raw, target: 'peer' },
    { case: 'partition driver, acks=all, 1 in flight', recordsPerSec: rate('one'), ofRaw: rate('one') / raw, target: '>= 70% of raw' },
    { case: 'partition driver, acks=all, 8 in flight', recordsPerSec: rate('eight'), ofRaw: rate('eight') / raw, target: '—' },
  ];
  const usPerBatch = (k: string): number => (median(secs[k]) / count) * 1e6;
  const fixedCost = { rawWriteUsPerBatch: usPerBatch('rawWrite'), driverInstantSyncUsPerBatch: usPerBatch('oneInstant') };
  if (json) {
    console.log(JSON.stringify({ mb, runs, batches: count, rows, oneInFlightOfAsyncRaw: rate('one') / rate('rawAsync'), fixedCost }, null, 2));
    return;
  }
  console.log(`raft driver over a real PartitionLog: ${count} batches x ${RECORDS_PER_BATCH} records x ${VALUE_BYTES} B, median of ${runs}`);
  for (const r of rows) console.log(`${r.case.padEnd(44)}${Math.round(r.recordsPerSec).toLocaleString('en-US').padStart(14)} rec/s${(r.ofRaw * 100).toFixed(0).padStart(6)}%  ${r.target}`);
  console.log(`partition driver, 1 in flight, against the async raw peer: ${((rate('one') / rate('rawAsync')) * 100).toFixed(0)}%`);
  console.log(`fixed cost per batch (no disk wait): raw write ${fixedCost.rawWriteUsPerBatch.toFixed(0)} us, driver 1 in flight with an instant fdatasync ${fixedCost.driverInstantSyncUsPerBatch.toFixed(0)} us`);
}

void main();
