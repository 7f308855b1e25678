/**
 * Storage benchmark (`npm run bench:storage`, after `npm run build`). Not a test: it prints numbers.
 *
 * Appends 100-byte records in batches of 1,000 with flush=always (each append awaited: one fdatasync
 * per batch, the worst case for group commit) and flush=none, then reads the log sequentially from the
 * page cache. Beside them, in the same run and on the same disk, the raw rate: the same bytes written
 * with writeSync + fdatasync per batch and nothing else. Finally, recovery time of a 1 GiB log (128 MiB
 * segments) whose active segment has a torn tail. Every figure is the median of --runs runs.
 *
 * Flags: --json (print JSON instead of a table), --mb N (MiB per append run, default 256),
 * --runs N (default 3), --recovery-mb N (default 1024), --dir PATH (default os.tmpdir()).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { encodeBatch } from '../src/batch/index.js';
import { CLEAN_SHUTDOWN_FILE, PartitionLog, defaultLogConfig, type FlushPolicy, type LogConfig } from '../src/storage/index.js';

interface Args {
  json: boolean;
  mb: number;
  runs: number;
  recoveryMb: number;
  dir: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, dflt: string): string => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] ? argv[i + 1] : dflt;
  };
  return {
    json: argv.includes('--json'),
    mb: Number(get('--mb', '256')),
    runs: Number(get('--runs', '3')),
    recoveryMb: Number(get('--recovery-mb', '1024')),
    dir: get('--dir', os.tmpdir()),
  };
}

const RECORDS_PER_BATCH = 1000;
const RECORD_VALUE_BYTES = 100;
const MiB = 1024 * 1024;

/** A few distinct batches, reused round-robin (append patches only fields outside the CRC). */
function makeBatches(): Buffer[] {
  const now = Date.now();
  return Array.from({ length: 8 }, (_, b) =>
    encodeBatch(
      Array.from({ length: RECORDS_PER_BATCH }, (_, i) => ({
        key: null,
        value: Buffer.alloc(RECORD_VALUE_BYTES, (b * 31 + i) & 0xff),
        timestampMs: now + i,
      })),
    ),
  );
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

interface Rate {
  seconds: number;
  bytes: number;
  records: number;
}

const mbps = (r: Rate): number => r.bytes / MiB / r.seconds;
const rps = (r: Rate): number => r.records / r.seconds;

function medianRate(rs: Rate[]): Rate {
  const s = median(rs.map((r) => r.seconds));
  return { seconds: s, bytes: rs[0].bytes, records: rs[0].records };
}

function rawWrite(dir: string, batches: Buffer[], count: number): Rate {
  const file = path.join(dir, 'raw.bin');
  const fd = fs.openSync(file, 'w');
  let bytes = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const b = batches[i % batches.length];
    let off = 0;
    while (off < b.length) off += fs.writeSync(fd, b, off, b.length - off, bytes + off);
    bytes += b.length;
    fs.fdatasyncSync(fd);
  }
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  fs.unlinkSync(file);
  return { seconds, bytes, records: count * RECORDS_PER_BATCH };
}

async function appendRun(dir: string, batches: Buffer[], count: number, flush: FlushPolicy, inFlight: number): Promise<Rate> {
  const config: LogConfig = { ...defaultLogConfig(), flush };
  const log = await PartitionLog.open(dir, config);
  let bytes = 0;
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const b = batches[i % batches.length];
    bytes += b.length;
    const r = log.append(b);
    if (flush.kind === 'always') {
      pending.push(r.durable);
      if (pending.length >= inFlight) await pending.shift();
    }
  }
  await Promise.all(pending);
  const seconds = (performance.now() - t0) / 1000;
  await log.close();
  return { seconds, bytes, records: count * RECORDS_PER_BATCH };
}

async function readRun(dir: string, useReadInto: boolean): Promise<Rate> {
  const log = await PartitionLog.open(dir, defaultLogConfig());
  const target = new Uint8Array(MiB + 256 * 1024);
  let offset = log.logStartOffset;
  let bytes = 0;
  const t0 = performance.now();
  while (offset < log.nextOffset) {
    if (useReadInto) {
      const r = log.readInto(offset, MiB, target);
      bytes += r.bytes;
      offset = r.nextOffset;
    } else {
      const r = log.read(offset, MiB);
      bytes += r.data.length;
      offset = r.nextOffset;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const records = log.nextOffset - log.logStartOffset;
  await log.close();
  return { seconds, bytes, records };
}

/** Builds a log of `mb` MiB once, then times recovery after tearing the active segment's tail. */
async function recoveryRuns(dir: string, batches: Buffer[], mb: number, runs: number): Promise<{ ms: number[]; activeBytes: number; segments: number; truncated: number; logBytes: number }> {
  const log = await PartitionLog.open(dir, { ...defaultLogConfig(), flush: { kind: 'none' } });
  // Fill whole segments and stop just before the last one would roll, so the active segment is full:
  // the worst case for its CRC scan.
  const wantSegments = Math.max(1, Math.round((mb * MiB) / log.config.segmentBytes));
  let segBytes = 0;
  let segs = log.segmentCount;
  for (let i = 0; ; i++) {
    const b = batches[i % batches.length];
    if (log.segmentCount === wantSegments && segBytes + b.length > log.config.segmentBytes) break;
    log.append(b);
    if (log.segmentCount !== segs) {
      segs = log.segmentCount;
      segBytes = 0;
    }
    segBytes += b.length;
  }
  const logBytes = log.sizeBytes;
  const segments = log.segmentCount;
  await log.close();
  const logs = fs.readdirSync(dir).filter((n) => n.endsWith('.log')).sort();
  const activePath = path.join(dir, logs[logs.length - 1]);
  const ms: number[] = [];
  let truncated = 0;
  let activeBytes = 0;
  for (let r = 0; r < runs; r++) {
    // Tear: append the first 40% of a batch, as a write cut short by a crash would leave it.
    const torn = batches[0].subarray(0, Math.floor(batches[0].length * 0.4));
    fs.appendFileSync(activePath, torn);
    fs.rmSync(path.join(dir, CLEAN_SHUTDOWN_FILE), { force: true });
    activeBytes = fs.statSync(activePath).size;
    const t0 = performance.now();
    const opened = await PartitionLog.open(dir, defaultLogConfig());
    ms.push(performance.now() - t0);
    truncated = opened.recovery.truncatedBytes;
    await opened.close();
  }
  return { ms, activeBytes, segments, truncated, logBytes };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const batches = makeBatches();
  const count = Math.ceil((args.mb * MiB) / batches[0].length);
  const work = fs.mkdtempSync(path.join(args.dir, 'sluice-bench-storage-'));
  const fresh = (name: string): string => {
    const d = path.join(work, name);
    fs.rmSync(d, { recursive: true, force: true });
    return d;
  };
  const results: Record<string, Rate[]> = { raw: [], always: [], always8: [], none: [], readInto: [], read: [] };
  try {
    for (let run = 0; run < args.runs; run++) {
      fs.mkdirSync(work, { recursive: true });
      results.raw.push(rawWrite(work, batches, count));
      results.always.push(await appendRun(fresh('always'), batches, count, { kind: 'always' }, 1));
      results.always8.push(await appendRun(fresh('always8'), batches, count, { kind: 'always' }, 8));
      fs.rmSync(path.join(work, 'always8'), { recursive: true, force: true });
      results.none.push(await appendRun(fresh('none'), batches, count, { kind: 'none' }, 1));
      fs.rmSync(path.join(work, 'none'), { recursive: true, force: true });
      results.readInto.push(await readRun(path.join(work, 'always'), true));
      results.read.push(await readRun(path.join(work, 'always'), false));
      fs.rmSync(path.join(work, 'always'), { recursive: true, force: true });
    }
    const rec = await recoveryRuns(fresh('recovery'), batches, args.recoveryMb, args.runs);
    report(args, batches[0].length, count, results, rec);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function report(
  args: Args,
  batchBytes: number,
  count: number,
  results: Record<string, Rate[]>,
  rec: { ms: number[]; activeBytes: number; segments: number; truncated: number; logBytes: number },
): void {
  const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, medianRate(v)]));
  const raw = mbps(m.raw);
  const recoveryMs = median(rec.ms);
  const rows = [
    { case: 'raw write + fdatasync per batch', key: 'raw', target: 'baseline' },
    { case: 'append flush=always (1 in flight)', key: 'always', target: '>= 70% of raw' },
    { case: 'append flush=always (8 in flight)', key: 'always8', target: '(group commit)' },
    { case: 'append flush=none', key: 'none', target: '-' },
    { case: 'sequential readInto (page cache)', key: 'readInto', target: '>= 1 GB/s' },
    { case: 'sequential read (page cache)', key: 'read', target: '>= 1 GB/s' },
  ].map((r) => ({ ...r, mibPerSec: mbps(m[r.key]), recordsPerSec: rps(m[r.key]), ofRaw: mbps(m[r.key]) / raw }));
  const out = {
    config: { runs: args.runs, mbPerRun: args.mb, batchBytes, recordsPerBatch: RECORDS_PER_BATCH, recordValueBytes: RECORD_VALUE_BYTES, batchesPerRun: count, dir: args.dir, cpus: os.cpus().length },
    results: Object.fromEntries(rows.map((r) => [r.key, { mibPerSec: r.mibPerSec, recordsPerSec: r.recordsPerSec, ofRaw: r.ofRaw }])),
    recovery: { logMiB: rec.logBytes / MiB, segments: rec.segments, activeSegmentBytes: rec.activeBytes, truncatedBytes: rec.truncated, medianMs: recoveryMs, runsMs: rec.ms },
    targets: {
      alwaysOfRaw: { target: 0.7, actual: m.always && mbps(m.always) / raw, pass: mbps(m.always) / raw >= 0.7 },
      readGBps: { target: 1, actual: (mbps(m.readInto) * MiB) / 1e9, pass: (mbps(m.readInto) * MiB) / 1e9 >= 1 },
      recoveryMs: { target: 2000, actual: recoveryMs, pass: recoveryMs <= 2000 },
    },
  };
  if (args.json) {
    console.log(JSON.stringify(out, null, 2));
    return;
  }
  console.log(`storage bench: ${args.runs} runs x ${args.mb} MiB, batches of ${RECORDS_PER_BATCH} x ${RECORD_VALUE_BYTES} B records (${batchBytes} B/batch), medians`);
  console.log('');
  const pad = (s: string, n: number): string => s.padEnd(n);
  const lpad = (s: string, n: number): string => s.padStart(n);
  console.log(`${pad('case', 36)}${lpad('MiB/s', 10)}${lpad('records/s', 14)}${lpad('of raw', 9)}  target`);
  for (const r of rows) {
    console.log(`${pad(r.case, 36)}${lpad(r.mibPerSec.toFixed(0), 10)}${lpad(Math.round(r.recordsPerSec).toLocaleString('en-US'), 14)}${lpad((r.ofRaw * 100).toFixed(0) + '%', 9)}  ${r.target}`);
  }
  console.log(
    `${pad(`recovery, ${(rec.logBytes / MiB).toFixed(0)} MiB log, torn tail`, 36)}${lpad(recoveryMs.toFixed(0) + ' ms', 10)}${lpad('', 14)}${lpad('', 9)}  <= 2000 ms  (${rec.segments} segments, active ${(rec.activeBytes / MiB).toFixed(0)} MiB, cut ${rec.truncated} B)`,
  );
  console.log('');
  for (const [k, t] of Object.entries(out.targets)) console.log(`${t.pass ? 'PASS' : 'FAIL'} ${k}: ${typeof t.actual === 'number' ? t.actual.toFixed(2) : t.actual} (target ${t.target})`);
}

await main();
