/**
 * Memory attacks (`npm run bench:attacks`; a benchmark scenario, never a timed test).
 *
 * Each attack of issue 9 section 3 runs against a fresh real broker process (`sluice serve`, one shard,
 * the default 256 MiB client-memory budget unless --max-client-memory is given):
 *  - subscribe-300-30MB:  300 Subscribe streams (structured) that never read, on a partition of 30 MB;
 *  - subscribe-1000:      1,000 such streams (10 connections of 100 streams);
 *  - fetch-200x16MiB:     200 parallel raw Fetches of max_bytes 16 MiB, looping, read by the client;
 *  - produce-60x16MB:     60 parallel 16 MB produces, looping (refused ones retry after the hint);
 *  - gzip-bomb-fetch-40:  40 parallel structured Fetches of gzip batches that inflate to 60 MiB each.
 * "Never read" is modelled by raw HTTP/2 streams whose readable side is paused (bench/stalled-client.ts).
 * While each attack runs, the broker's RSS is sampled from /proc every 100 ms and GetMetadata is called
 * every 200 ms. Reported per attack: peak RSS against budget + 300 MB, the slowest GetMetadata against
 * 1 s, whether the shard watchdog fired (sluice_shard_restarts_total), the peak of
 * sluice_client_memory_bytes, and how the attack's requests ended. Table by default, `--json` too.
 *
 * Options: --seconds N (attack duration, default 8), --max-client-memory BYTES, --only NAME, --json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Admin } from '../src/client/index.js';
import { Compression, encodeBatch } from '../src/batch/index.js';
import { FastBrokerClient } from '../src/rpc/index.js';
import type { BrokerClient } from '../src/rpc/gen/sluice/v1/broker.js';
import { fromServiceError } from '../src/rpc/errors.js';
import { CLIENT_MEMORY_BYTES_DEFAULT } from '../src/constants.js';
import { spawnBroker, waitExit, type BrokerProcess } from './broker-process.js';
import { stalledSession, type StalledSession } from './stalled-client.js';

const MB = 1_000_000;
const MiB = 1024 * 1024;
const RSS_HEADROOM_BYTES = 300 * MB;
const METADATA_SLO_MS = 1_000;

interface Args {
  seconds: number;
  budgetBytes: number;
  only?: string;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { seconds: 8, budgetBytes: CLIENT_MEMORY_BYTES_DEFAULT, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') args.json = true;
    else if (a === '--seconds') args.seconds = Number(argv[++i]);
    else if (a === '--max-client-memory') args.budgetBytes = Number(argv[++i]);
    else if (a === '--only') args.only = argv[++i];
    else throw new Error(`unknown argument ${a}: use --seconds N --max-client-memory BYTES --only NAME --json`);
  }
  return args;
}

interface Outcomes {
  ok: number;
  refused: number;
  failed: number;
  errors: Map<string, number>;
}

function outcomes(): Outcomes {
  return { ok: 0, refused: 0, failed: 0, errors: new Map() };
}

function countError(o: Outcomes, err: unknown): void {
  const e = fromServiceError(err as grpc.ServiceError);
  if (e.code === 'CLIENT_MEMORY_EXHAUSTED') o.refused++;
  else o.failed++;
  o.errors.set(e.code, (o.errors.get(e.code) ?? 0) + 1);
}

function unary<Req, Res>(fn: (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Res) => void) => unknown, req: Req, deadlineMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => fn(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res))));
}

function clients(address: string, n: number): BrokerClient[] {
  const opts = { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 };
  // A distinct option per client keeps grpc-js from sharing one connection among them.
  return Array.from({ length: n }, (_, i) => new FastBrokerClient(address, grpc.credentials.createInsecure(), { ...opts, 'bench.channel': i }) as BrokerClient);
}

function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

async function scrape(broker: BrokerProcess): Promise<string> {
  try {
    return await (await fetch(`http://${broker.httpAddress}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  } catch {
    return '';
  }
}

function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

interface Result {
  attack: string;
  peakRssMB: number;
  rssLimitMB: number;
  maxMetadataMs: number;
  metadataFailures: number;
  watchdogFired: boolean;
  peakClientMemoryMB: number;
  ok: number;
  refused: number;
  failed: number;
  errors: Record<string, number>;
  pass: boolean;
}

interface Attack {
  name: string;
  /** Creates topics and data; runs before measuring. */
  setup(address: string): Promise<void>;
  /** Runs until `stop` aborts; counts into `o`. Returns a cleanup. */
  run(address: string, o: Outcomes, stop: AbortSignal): Promise<() => void>;
}

async function createTopic(address: string, name: string, configs: Record<string, string> = {}): Promise<void> {
  const admin = new Admin({ brokers: address });
  try {
    await admin.createTopic(name, { partitions: 1, configs });
  } finally {
    admin.close();
  }
}

/** Fills partition 0 of `topic` with about `bytes` of 1 MB batches (1,000 records of 1,000 bytes). */
async function fill(address: string, topic: string, bytes: number): Promise<void> {
  const [c] = clients(address, 1);
  const batch = encodeBatch(Array.from({ length: 1000 }, (_, i) => ({ key: Buffer.from(`k${i}`), value: Buffer.alloc(1000, i % 251) })));
  for (let n = 0; n < bytes; n += batch.length) await unary(c.produce.bind(c), { topic, partition: 0, records: [], recordBatch: batch, acks: 1, producerEpoch: 0, baseSequence: 0 });
  c.close();
}

function stalledSubscribers(count: number): Attack {
  const topic = 'sub';
  return {
    name: count === 300 ? 'subscribe-300-30MB' : `subscribe-${count}`,
    setup: async (address) => {
      await createTopic(address, topic);
      await fill(address, topic, 30 * MB);
    },
    run: async (address, o, stop) => {
      const sessions: StalledSession[] = [];
      const perSession = 100;
      for (let i = 0; i < count && !stop.aborted; i += perSession) {
        const s = stalledSession(address);
        sessions.push(s);
        const opened = await Promise.allSettled(Array.from({ length: Math.min(perSession, count - i) }, () => s.subscribe({ topic, raw: false })));
        for (const r of opened) r.status === 'fulfilled' ? o.ok++ : (o.failed++, o.errors.set('stream refused', (o.errors.get('stream refused') ?? 0) + 1));
      }
      return () => sessions.forEach((s) => s.close());
    },
  };
}

/** `parallel` loops calling `once` until stopped. */
function loops(parallel: number, o: Outcomes, stop: AbortSignal, once: (i: number) => Promise<unknown>): Promise<void[]> {
  return Promise.all(
    Array.from({ length: parallel }, async (_, i) => {
      while (!stop.aborted) {
        try {
          await once(i);
          o.ok++;
        } catch (err) {
          countError(o, err);
          const delay = fromServiceError(err as grpc.ServiceError).retryAfterMs ?? 100;
          await new Promise((r) => setTimeout(r, delay));
        }
      }
    }),
  );
}

function bigFetches(): Attack {
  const topic = 'fetch';
  return {
    name: 'fetch-200x16MiB',
    setup: async (address) => {
      await createTopic(address, topic);
      await fill(address, topic, 30 * MB);
    },
    run: async (address, o, stop) => {
      const cs = clients(address, 4);
      const done = loops(200, o, stop, (i) => {
        const c = cs[i % cs.length];
        return unary(c.fetch.bind(c), { topic, partition: 0, offset: 0n, maxBytes: 16 * MiB, maxWaitMs: 0, raw: true });
      });
      return () => void done.finally(() => cs.forEach((c) => c.close()));
    },
  };
}

function bigProduces(): Attack {
  const topic = 'produce';
  let batch: Buffer;
  return {
    name: 'produce-60x16MB',
    setup: async (address) => {
      await createTopic(address, topic, { 'max.message.bytes': String(16 * MiB), 'retention.bytes': String(256 * MiB), 'segment.bytes': String(64 * MiB) });
      batch = encodeBatch([{ key: null, value: Buffer.alloc(16 * MB - 100, 3) }]);
    },
    run: async (address, o, stop) => {
      const cs = clients(address, 4);
      const done = loops(60, o, stop, (i) => {
        const c = cs[i % cs.length];
        return unary(c.produce.bind(c), { topic, partition: 0, records: [], recordBatch: batch, acks: 1, producerEpoch: 0, baseSequence: 0 });
      });
      return () => void done.finally(() => cs.forEach((c) => c.close()));
    },
  };
}

function gzipBombs(): Attack {
  const topic = 'bomb';
  return {
    name: 'gzip-bomb-fetch-40',
    setup: async (address) => {
      await createTopic(address, topic);
      const [c] = clients(address, 1);
      const bomb = encodeBatch([{ key: null, value: Buffer.alloc(60 * MiB, 0) }], { compression: Compression.Gzip });
      for (let i = 0; i < 4; i++) await unary(c.produce.bind(c), { topic, partition: 0, records: [], recordBatch: bomb, acks: 1, producerEpoch: 0, baseSequence: 0 });
      c.close();
    },
    run: async (address, o, stop) => {
      const cs = clients(address, 4);
      const done = loops(40, o, stop, (i) => {
        const c = cs[i % cs.length];
        return unary(c.fetch.bind(c), { topic, partition: 0, offset: BigInt(i % 4), maxBytes: 0, maxWaitMs: 0, raw: false });
      });
      return () => void done.finally(() => cs.forEach((c) => c.close()));
    },
  };
}

async function runAttack(attack: Attack, args: Args): Promise<Result> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-attack-${attack.name}-`));
  const broker = await spawnBroker(dataDir, ['--shards', '1', '--max-client-memory', String(args.budgetBytes)]);
  const pid = broker.child.pid!;
  try {
    await attack.setup(broker.grpcAddress);
    const o = outcomes();
    const stop = new AbortController();
    let peakRss = rssBytes(pid);
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssBytes(pid))), 100);
    let peakClientMemory = 0;
    let scraping = true;
    const scraper = (async () => {
      while (scraping) {
        peakClientMemory = Math.max(peakClientMemory, metricSum(await scrape(broker), 'sluice_client_memory_bytes'));
        await new Promise((r) => setTimeout(r, 1_000));
      }
    })();
    const [meta] = clients(broker.grpcAddress, 1);
    let maxMetadataMs = 0;
    let metadataFailures = 0;
    const prober = (async () => {
      while (!stop.signal.aborted) {
        const t0 = performance.now();
        try {
          await unary(meta.getMetadata.bind(meta), { topics: [] }, 10_000);
        } catch {
          metadataFailures++;
        }
        maxMetadataMs = Math.max(maxMetadataMs, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const cleanup = await attack.run(broker.grpcAddress, o, stop.signal);
    await new Promise((r) => setTimeout(r, args.seconds * 1000));
    stop.abort();
    await prober;
    cleanup();
    scraping = false;
    await scraper;
    clearInterval(sampler);
    meta.close();
    const restarts = metricSum(await scrape(broker), 'sluice_shard_restarts_total');
    const rssLimit = args.budgetBytes + RSS_HEADROOM_BYTES;
    return {
      attack: attack.name,
      peakRssMB: Math.round(peakRss / MB),
      rssLimitMB: Math.round(rssLimit / MB),
      maxMetadataMs: Math.round(maxMetadataMs),
      metadataFailures,
      watchdogFired: restarts > 0,
      peakClientMemoryMB: Math.round(peakClientMemory / MB),
      ok: o.ok,
      refused: o.refused,
      failed: o.failed,
      errors: Object.fromEntries(o.errors),
      pass: peakRss < rssLimit && maxMetadataMs < METADATA_SLO_MS && metadataFailures === 0 && restarts === 0,
    };
  } finally {
    broker.child.kill('SIGKILL');
    await waitExit(broker.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

function table(results: Result[]): string {
  const head = ['attack', 'peak RSS MB', 'limit MB', 'max GetMetadata ms', 'watchdog', 'client mem peak MB', 'ok', 'refused', 'failed', 'pass'];
  const rows = results.map((r) => [
    r.attack,
    String(r.peakRssMB),
    String(r.rssLimitMB),
    String(r.maxMetadataMs) + (r.metadataFailures > 0 ? ` (${r.metadataFailures} failed)` : ''),
    r.watchdogFired ? 'FIRED' : 'no',
    String(r.peakClientMemoryMB),
    String(r.ok),
    String(r.refused),
    String(r.failed) + (r.failed > 0 ? ` ${JSON.stringify(r.errors)}` : ''),
    r.pass ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const attacks = [stalledSubscribers(300), stalledSubscribers(1000), bigFetches(), bigProduces(), gzipBombs()].filter((a) => args.only === undefined || a.name === args.only);
  const results: Result[] = [];
  for (const attack of attacks) {
    if (!args.json) process.stderr.write(`running ${attack.name} for ${args.seconds} s...\n`);
    results.push(await runAttack(attack, args));
  }
  if (args.json) process.stdout.write(JSON.stringify({ budgetBytes: args.budgetBytes, seconds: args.seconds, results }, null, 2) + '\n');
  else process.stdout.write(`client-memory budget ${Math.round(args.budgetBytes / MiB)} MiB; each attack ${args.seconds} s\n${table(results)}\n`);
  process.exitCode = results.every((r) => r.pass) ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:attacks failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(2);
});
