/**
 * The parent's side of bench/broker-load.ts, shared by bench:broker and bench:cluster: fork load
 * processes for one phase, wait until every one is warm, start them together, and merge what they
 * report (records, wall span, per-request latencies, their own CPU and event-loop delay).
 */
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as hdr from 'hdr-histogram-js';
import type { BrokerLoadJob, BrokerLoadMessage, BrokerLoadResult } from './broker-load.js';

const LOAD_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'broker-load.js');
/** A load process that has not answered after this long (plus 1 ms per 1,000 records) is killed. */
export const LOAD_TIMEOUT_MS = 120_000;

/** One load process's life: job in, 'warm', then the result once the parent says 'go'. */
export class LoadProcess {
  readonly warm: Promise<void>;
  readonly done: Promise<BrokerLoadResult>;
  readonly child: ChildProcess;

  constructor(job: BrokerLoadJob) {
    this.child = fork(LOAD_SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let onWarm!: () => void;
    this.warm = new Promise((resolve) => (onWarm = resolve));
    this.done = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`load process for ${job.kind} timed out`));
      }, LOAD_TIMEOUT_MS + job.requests);
      this.child.on('message', (m: BrokerLoadMessage) => {
        if (m.type === 'warm') return onWarm();
        clearTimeout(timer);
        if (m.type === 'result') resolve(m.result);
        else reject(new Error(`load process for ${job.kind} failed: ${m.message}`));
      });
      this.child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`load process for ${job.kind} exited (${code ?? signal}) without a result`));
      });
    });
    // Failing before 'warm' must not leave the parent waiting on the warm-up forever.
    this.done.catch(() => onWarm());
    this.child.send(job);
  }

  go(): void {
    if (this.child.connected) this.child.send({ type: 'go' });
  }
}

export interface LoadSummary {
  /** Highest CPU of any load process (cores). */
  cpuCores: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  stalled: boolean;
}

export interface MergedLoad {
  records: number;
  seconds: number;
  p50Ms?: number;
  p99Ms?: number;
  load: LoadSummary;
}

/**
 * Runs one load process per job (warm-up, then all start together) and merges their reports.
 * `onFork` sees every child (a caller that must kill children on Ctrl-C keeps them).
 */
export async function runLoads(jobs: BrokerLoadJob[], onFork: (child: ChildProcess) => void = () => {}): Promise<MergedLoad> {
  const loads = jobs.map((job) => new LoadProcess(job));
  for (const l of loads) onFork(l.child);
  await Promise.all(loads.map((l) => l.warm));
  for (const l of loads) l.go();
  const results = await Promise.all(loads.map((l) => l.done));
  const records = results.reduce((a, r) => a + r.records, 0);
  const seconds = (Math.max(...results.map((r) => r.endMs)) - Math.min(...results.map((r) => r.startMs))) / 1000;
  const merged: MergedLoad = {
    records,
    seconds,
    load: {
      cpuCores: Math.max(...results.map((x) => x.self.cpuCores)),
      loopDelayP99Ms: Math.max(...results.map((x) => x.self.loopDelayP99Ms)),
      loopDelayMaxMs: Math.max(...results.map((x) => x.self.loopDelayMaxMs)),
      stalled: results.some((x) => x.self.stalled),
    },
  };
  const histograms = results.flatMap((x) => (x.histogram === undefined ? [] : [hdr.decodeFromCompressedBase64(x.histogram)]));
  if (histograms.length > 0) {
    const all = histograms[0]!;
    for (const h of histograms.slice(1)) all.add(h);
    merged.p50Ms = all.getValueAtPercentile(50) / 1000;
    merged.p99Ms = all.getValueAtPercentile(99) / 1000;
  }
  return merged;
}
