/**
 * The latency floor of Sluice's shape on this machine: `npm run bench:latency-floor [-- --rate N
 * --seconds S --runs R --json]`.
 *
 * Minimal servers built like the broker and nothing else: the main thread takes a request off the
 * socket, hands its bytes to a worker thread (postMessage, transferred), the worker appends them to a
 * file and fdatasyncs (one at a time, the appends that arrive meanwhile sharing the next one: group
 * commit, as the log does), and the answer goes back the same way. The load is the harness's e2e load
 * (bench/harness/load.ts): a paced producer that sends what is due every millisecond timer tick,
 * 100-byte records, latency per record from the moment the record was due (so the load's own timer
 * lateness counts, as it does for every system in `npm run bench`), here up to its acknowledgement.
 *
 * Variants:
 *  - tcp: length-prefixed frames on a plain TCP socket;
 *  - grpc: one grpc-js bidirectional stream, each request one message and each answer one message
 *    (what Sluice's ProduceStream does);
 *  - grpc-main: the same, with the append and fdatasync on the main thread (no worker hop);
 *  - sluice: a real broker (`sluice serve`, as `npm run bench` starts it), produced to through the
 *    TypeScript client's ProduceStream, acks=all, one pre-encoded v2 batch per request: the same load
 *    and the same measure, for the comparison in one run.
 *
 * Whatever Sluice's acknowledgement latency is, it cannot beat the `grpc` row on the same machine in
 * the same minute; the rows show how much of its tail the thread hops and the transport take.
 */
import * as grpc from '@grpc/grpc-js';
import { fork } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { BROKER_NODE_FLAGS } from '../src/constants.js';
import { encodeBatch } from '../src/batch/index.js';
import { Admin, Producer } from '../src/client/index.js';
import { startSluice, type ServerHandle } from './harness/servers.js';
import { median } from './load-probe.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const VARIANTS = ['tcp', 'grpc', 'grpc-main', 'sluice'] as const;
type Variant = (typeof VARIANTS)[number];
const RECORD_BYTES = 100;
/** Load sent before the measured part (a fresh process runs unoptimized code at first). */
const WARMUP_MS = 2_000;
/** Records one tick may send at most (as the harness's E2E_BATCH_MAX bounds a request). */
const BATCH_RECORDS_MAX = 1_000;
const identity = (b: Buffer): Buffer => b;
const STREAM: grpc.ServiceDefinition = {
  append: { path: '/floor.F/Append', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};

/** Appends and group-commits; `done(tags)` gets each round's tags once its fdatasync completed. */
class GroupCommitLog {
  private readonly fd: number;
  private position = 0;
  private waiting: number[] = [];
  private syncing = false;
  private scheduled = false;

  constructor(
    file: string,
    private readonly done: (tags: number[]) => void,
  ) {
    this.fd = fs.openSync(file, 'w');
  }

  append(tag: number, bytes: Uint8Array): void {
    fs.writeSync(this.fd, bytes, 0, bytes.length, this.position);
    this.position += bytes.length;
    this.waiting.push(tag);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.round());
    }
  }

  private round(): void {
    this.scheduled = false;
    if (this.syncing || this.waiting.length === 0) return;
    const tags = this.waiting;
    this.waiting = [];
    this.syncing = true;
    fs.fdatasync(this.fd, () => {
      this.syncing = false;
      this.done(tags);
      this.round();
    });
  }
}

// --- Worker thread -------------------------------------------------------------------------------

function runWorker(): void {
  const log = new GroupCommitLog(workerData.file as string, (tags) => parentPort!.postMessage(tags));
  parentPort!.on('message', (batch: Array<{ tag: number; bytes: Uint8Array }>) => {
    for (const { tag, bytes } of batch) log.append(tag, bytes);
  });
}

// --- Server process ------------------------------------------------------------------------------

/** The main thread's side: bytes to the log (directly or through the worker), answers back by tag. */
function committer(variant: Variant, file: string, answer: (tag: number) => void): (tag: number, bytes: Buffer) => void {
  if (variant === 'grpc-main') {
    const log = new GroupCommitLog(file, (tags) => tags.forEach(answer));
    return (tag, bytes) => log.append(tag, bytes);
  }
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { file } });
  worker.on('message', (tags: number[]) => tags.forEach(answer));
  let outbox: Array<{ tag: number; bytes: Uint8Array }> = [];
  return (tag, bytes) => {
    // Everything of one turn in one message, as the shard host does.
    if (outbox.length === 0) {
      setImmediate(() => {
        const batch = outbox;
        outbox = [];
        worker.postMessage(batch, batch.map((b) => b.bytes.buffer as ArrayBuffer));
      });
    }
    outbox.push({ tag, bytes: new Uint8Array(bytes) });
  };
}

async function serve(variant: Variant, file: string): Promise<void> {
  let nextTag = 0;
  if (variant === 'tcp') {
    const sockets = new Map<number, net.Socket>();
    const commit = committer(variant, file, (tag) => {
      const s = sockets.get(tag);
      sockets.delete(tag);
      s?.write(Buffer.alloc(4));
    });
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      let pending: Buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32LE(0)) {
          const n = pending.readUInt32LE(0);
          const tag = nextTag++;
          sockets.set(tag, socket);
          commit(tag, pending.subarray(4, 4 + n));
          pending = pending.subarray(4 + n);
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    process.send!((server.address() as net.AddressInfo).port);
    return;
  }
  const calls = new Map<number, grpc.ServerDuplexStream<Buffer, Buffer>>();
  const commit = committer(variant, file, (tag) => {
    const call = calls.get(tag);
    calls.delete(tag);
    call?.write(Buffer.alloc(4));
  });
  const server = new grpc.Server();
  server.addService(STREAM, {
    append: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('data', (bytes: Buffer) => {
        const tag = nextTag++;
        calls.set(tag, call);
        commit(tag, bytes);
      });
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  process.send!(port);
}

// --- Load (the parent process) --------------------------------------------------------------------

interface Row {
  variant: Variant;
  p50: number;
  p99: number;
  p999: number;
  records: number;
}

/** A connection that sends one request and resolves when its answer comes (answers come in order). */
async function connect(variant: Variant, port: number): Promise<{ send(body: Buffer, onAck: () => void): void; close(): void }> {
  const acks: Array<() => void> = [];
  if (variant === 'tcp') {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      for (; bytes >= 4; bytes -= 4) acks.shift()?.();
    });
    return {
      send(body, onAck) {
        acks.push(onAck);
        const frame = Buffer.alloc(4 + body.length);
        frame.writeUInt32LE(body.length, 0);
        body.copy(frame, 4);
        socket.write(frame);
      },
      close: () => socket.destroy(),
    };
  }
  const Client = grpc.makeGenericClientConstructor(STREAM, 'F');
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5_000, (e) => (e ? reject(e) : resolve())));
  const call = (client as unknown as { append: () => grpc.ClientDuplexStream<Buffer, Buffer> }).append();
  call.on('data', () => acks.shift()?.());
  call.on('error', () => {});
  return {
    send(body, onAck) {
      acks.push(onAck);
      call.write(body);
    },
    close() {
      call.end();
      client.close();
    },
  };
}

/** A broker with a one-partition topic, and a producer on it. */
async function connectSluice(dir: string): Promise<{ server: ServerHandle; send(body: Buffer, onAck: () => void): void; close(): void }> {
  const server = await startSluice(REPO_ROOT, dir);
  const address = `127.0.0.1:${server.port}`;
  const admin = new Admin({ brokers: address });
  await admin.createTopic('floor', { partitions: 1, replicationFactor: 1 });
  admin.close();
  const producer = new Producer({ brokers: address, acks: 'all', retries: 0, idempotent: false });
  return {
    server,
    send(body, onAck) {
      const values: Array<{ key: null; value: Buffer }> = [];
      for (let i = 0; i < body.length; i += RECORD_BYTES) values.push({ key: null, value: body.subarray(i, i + RECORD_BYTES) });
      producer.produceRaw('floor', 0, encodeBatch(values)).then(onAck, () => {});
    },
    close: () => void producer.close(),
  };
}

async function measure(variant: Variant, ratePerS: number, seconds: number, dir: string): Promise<Row> {
  let server: ServerHandle | null = null;
  const child = variant === 'sluice' ? null : fork(fileURLToPath(import.meta.url), ['serve', variant, path.join(dir, `${variant}.log`)], { execArgv: [...BROKER_NODE_FLAGS] });
  try {
    let conn: { send(body: Buffer, onAck: () => void): void; close(): void };
    if (child === null) {
      const s = await connectSluice(dir);
      server = s.server;
      conn = s;
    } else {
      const port = await new Promise<number>((resolve, reject) => {
        child.once('message', (p) => resolve(p as number));
        child.once('exit', (code) => reject(new Error(`the ${variant} server exited (${code})`)));
      });
      conn = await connect(variant, port);
    }
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    const warmupMs = WARMUP_MS;
    const start = performance.now();
    const total = Math.floor((ratePerS * (seconds * 1000 + warmupMs)) / 1000);
    let sent = 0;
    let acked = 0;
    for (let tick = 0; sent < total && tick < 10_000_000; tick++) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * ratePerS) / 1000));
      if (due > sent) {
        const n = Math.min(due - sent, BATCH_RECORDS_MAX);
        const first = sent;
        sent += n;
        conn.send(Buffer.alloc(n * RECORD_BYTES, 7), () => {
          const now = performance.now();
          acked += n;
          for (let i = first; i < first + n; i++) {
            const intended = start + (i * 1000) / ratePerS;
            if (intended - start >= warmupMs) histogram.recordValue(Math.max(1, Math.round((now - intended) * 1000)));
          }
        });
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    for (let i = 0; acked < sent && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    conn.close();
    const ms = (q: number): number => histogram.getValueAtPercentile(q) / 1000;
    return { variant, p50: ms(50), p99: ms(99), p999: ms(99.9), records: histogram.totalCount };
  } finally {
    child?.kill('SIGKILL');
    await server?.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '10000' },
      seconds: { type: 'string', default: '10' },
      runs: { type: 'string', default: '3' },
      variants: { type: 'string', default: VARIANTS.join(',') },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const rate = Number(values.rate);
  const seconds = Number(values.seconds);
  const runs = Number(values.runs);
  const variants = values.variants.split(',') as Variant[];
  for (const v of variants) if (!VARIANTS.includes(v)) throw new Error(`unknown variant ${v}: one of ${VARIANTS.join(', ')}`);
  if (!(rate > 0 && seconds > 0 && runs > 0)) throw new Error('--rate, --seconds and --runs must be positive');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-floor-'));
  const all = new Map<Variant, Row[]>(variants.map((v) => [v, []]));
  try {
    // Interleaved, so a noisy minute of the machine hits every variant alike.
    for (let r = 0; r < runs; r++) {
      for (const v of variants) {
        const row = await measure(v, rate, seconds, dir);
        all.get(v)!.push(row);
        if (!values.json) console.log(`run ${r + 1}/${runs} ${v.padEnd(9)} p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms, p99.9 ${row.p999.toFixed(2)} ms (${row.records} records)`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const summary = variants.map((v) => {
    const rows = all.get(v)!;
    return { variant: v, p50: median(rows.map((x) => x.p50)), p99: median(rows.map((x) => x.p99)), p999: median(rows.map((x) => x.p999)), runs: rows.map((x) => x.p99) };
  });
  if (values.json) {
    console.log(JSON.stringify({ ratePerS: rate, seconds, runs, machineLoad: os.loadavg(), variants: summary }, null, 2));
    return;
  }
  console.log(`\nlatency floor at ${rate} records/s, ${seconds} s per run, medians of ${runs} (record due -> acknowledged, fdatasync per group commit)`);
  console.log('| variant   | p50 ms | p99 ms | p99.9 ms | p99 of each run |');
  console.log('|-----------|--------|--------|----------|-----------------|');
  for (const s of summary) console.log(`| ${s.variant.padEnd(9)} | ${s.p50.toFixed(2).padStart(6)} | ${s.p99.toFixed(2).padStart(6)} | ${s.p999.toFixed(2).padStart(8)} | ${s.runs.map((x) => x.toFixed(1)).join(', ').padEnd(15)} |`);
}

if (!isMainThread) runWorker();
else if (process.argv[2] === 'serve') void serve(process.argv[3] as Variant, process.argv[4]!);
else
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
