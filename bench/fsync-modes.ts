/**
 * fdatasync patterns under a paced append load (`npm run bench:fsync-modes`, after `npm run build`; not a
 * test: it prints numbers). Issue 16 asks where the flush tail comes from; this measures the disk side of
 * it without the broker, the way the broker writes: one thread appends `--bytes` every `--interval-ms`
 * (1 ms: the e2e scenario's 10k records/s in 1 ms requests) to one file with writeSync and waits for an
 * fdatasync, issued through libuv's pool, that started after the append. Per append the latency from the
 * append to the completion of such an fdatasync goes into a histogram.
 *
 * Modes, every one the same appends:
 *  - serial: today's group commit (src/storage/log.ts). One fdatasync at a time; the appends made while
 *    it runs wait for it to finish and then for the next one, which covers them all.
 *  - concurrent K: up to K fdatasyncs in flight; an append starts a new one at the end of its turn
 *    unless K are running, and each completion makes durable everything written before it started.
 *    Each runs on a file descriptor of its own (opened for it, closed after), because Linux reports a
 *    writeback error once per open file description: two concurrent fdatasyncs on one descriptor can
 *    leave the error to the later one while the earlier reports success for the same pages.
 *
 * Every mode runs `--runs` times, interleaved (serial, concurrent 2, 4, 8, then again), and the table
 * quotes the median of each percentile over the runs. Flags: --json, --seconds N (per run, default 5),
 * --runs N (3), --bytes N (1200), --interval-ms N (1), --dir PATH (default os.tmpdir()).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as hdr from 'hdr-histogram-js';

interface Args {
  json: boolean;
  seconds: number;
  runs: number;
  bytes: number;
  intervalMs: number;
  dir: string;
}

const MODES = [{ name: 'serial', inflight: 1 }, { name: 'concurrent 2', inflight: 2 }, { name: 'concurrent 4', inflight: 4 }, { name: 'concurrent 8', inflight: 8 }] as const;
/** The most appends waiting for durability before the pacer skips a beat (bounds memory on a stuck disk). */
const WAITING_MAX = 100_000;

function parseArgs(argv: string[]): Args {
  const a: Args = { json: false, seconds: 5, runs: 3, bytes: 1200, intervalMs: 1, dir: os.tmpdir() };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i];
    const num = (min: number, max: number): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${f} takes a number from ${min} to ${max}`);
      return v;
    };
    if (f === '--json') a.json = true;
    else if (f === '--seconds') a.seconds = num(1, 3600);
    else if (f === '--runs') a.runs = Math.floor(num(1, 100));
    else if (f === '--bytes') a.bytes = Math.floor(num(1, 16 << 20));
    else if (f === '--interval-ms') a.intervalMs = num(1, 1000);
    else if (f === '--dir') a.dir = argv[++i] ?? a.dir;
    else throw new Error(`unknown flag ${f}: see the header of bench/fsync-modes.ts`);
  }
  return a;
}

interface RunResult {
  appends: number;
  syncs: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** One run of one mode: paced appends for `seconds`, then a bounded wait for the last fdatasync. */
function runOnce(args: Args, file: string, inflightMax: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const fd = fs.openSync(file, 'w');
    const data = Buffer.alloc(args.bytes, 0x61);
    const h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
    const waiting: Array<[seq: number, atMs: number]> = [];
    let head = 0;
    let written = 0;
    let durable = 0;
    let startedUpTo = 0;
    let inflight = 0;
    let syncs = 0;
    let position = 0;
    let scheduled = false;
    let failed: Error | null = null;
    const settle = (): void => {
      const now = performance.now();
      while (head < waiting.length && waiting[head]![0] <= durable) h.recordValue(Math.max(1, Math.round((now - waiting[head++]![1]) * 1000)));
      if (head > 4096) {
        waiting.splice(0, head);
        head = 0;
      }
    };
    const startSync = (): void => {
      if (inflight >= inflightMax || written <= startedUpTo || failed) return;
      const covers = written;
      startedUpTo = covers;
      inflight++;
      syncs++;
      // Serial keeps to the log's one descriptor; concurrent ones each open their own (see the header).
      const syncFd = inflightMax === 1 ? fd : fs.openSync(file, 'r');
      fs.fdatasync(syncFd, (err) => {
        if (syncFd !== fd) fs.closeSync(syncFd);
        inflight--;
        if (err) failed = err;
        else if (covers > durable) durable = covers;
        settle();
        startSync();
      });
    };
    const end = performance.now() + args.seconds * 1000;
    const timer = setInterval(() => {
      if (performance.now() >= end || failed) {
        clearInterval(timer);
        const deadline = Date.now() + 10_000;
        const finish = (): void => {
          if (inflight > 0 && Date.now() < deadline) return void setTimeout(finish, 5);
          fs.closeSync(fd);
          if (failed) return reject(failed);
          resolve({ appends: written, syncs, p50Ms: h.getValueAtPercentile(50) / 1000, p99Ms: h.getValueAtPercentile(99) / 1000, p999Ms: h.getValueAtPercentile(99.9) / 1000, maxMs: h.maxValue / 1000 });
        };
        return finish();
      }
      if (waiting.length - head >= WAITING_MAX) return;
      fs.writeSync(fd, data, 0, data.length, position);
      position += data.length;
      written++;
      waiting.push([written, performance.now()]);
      if (!scheduled) {
        scheduled = true;
        // As the log does: the fdatasync starts once this turn's appends are written.
        setImmediate(() => {
          scheduled = false;
          startSync();
        });
      }
    }, args.intervalMs);
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const dir = fs.mkdtempSync(path.join(args.dir, 'sluice-fsync-modes-'));
  const results = new Map<string, RunResult[]>(MODES.map((m) => [m.name, []]));
  try {
    for (let run = 1; run <= args.runs; run++) {
      for (const m of MODES) {
        const file = path.join(dir, `${m.name.replace(' ', '-')}.log`);
        const r = await runOnce(args, file, m.inflight);
        results.get(m.name)!.push(r);
        process.stderr.write(`run ${run}/${args.runs} ${m.name}: ${r.appends} appends, ${r.syncs} fdatasyncs, p50 ${r.p50Ms.toFixed(2)} p99 ${r.p99Ms.toFixed(2)} p99.9 ${r.p999Ms.toFixed(2)} max ${r.maxMs.toFixed(2)} ms\n`);
        fs.rmSync(file, { force: true });
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const rows = MODES.map((m) => {
    const rs = results.get(m.name)!;
    return { mode: m.name, inflightMax: m.inflight, appends: median(rs.map((r) => r.appends)), syncs: median(rs.map((r) => r.syncs)), p50Ms: median(rs.map((r) => r.p50Ms)), p99Ms: median(rs.map((r) => r.p99Ms)), p999Ms: median(rs.map((r) => r.p999Ms)), maxMs: median(rs.map((r) => r.maxMs)), runs: rs };
  });
  if (args.json) {
    console.log(JSON.stringify({ setup: { ...args, loadAverage: os.loadavg() }, rows }, null, 2));
    return;
  }
  console.log(`\nappend -> durable latency, ${args.bytes}-byte appends every ${args.intervalMs} ms for ${args.seconds} s, medians of ${args.runs} runs (ms); load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const header = ['mode', 'fdatasyncs', 'p50', 'p99', 'p99.9', 'max'];
  const table = rows.map((r) => [r.mode, String(r.syncs), r.p50Ms.toFixed(2), r.p99Ms.toFixed(2), r.p999Ms.toFixed(2), r.maxMs.toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((t) => t[i]!.length)));
  for (const line of [header, ...table]) console.log(line.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
