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
 *
 * With `--e2e`, each variant also has a subscriber on a second connection of the load process (as the
 * harness's e2e scenario has), and the latency is from the moment a record was due to the moment the
 * subscriber has it. The bare servers send each group commit's bytes to the subscriber once its
 * fdatasync completed (the worker hands them back to the main thread, transferred), then answer the
 * producer; Sluice's subscriber is a raw Subscribe, read as the harness reads it.
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
import type { FetchResponse } from '../src/rpc/gen/sluice/v1/broker.js';
import { FastBrokerClient } from '../src/rpc/fast-codec.js';
import { forEachValue, GRPC_OPTIONS } from './harness/drivers.js';
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
  tail: { path: '/floor.F/Tail', requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};

interface Entry {
  tag: number;
  bytes: Uint8Array;
}

/** Appends and group-commits; `done(entries)` gets each round's entries once its fdatasync completed. */
class GroupCommitLog {
  private readonly fd: number;
  private position = 0;
  private waiting: Entry[] = [];
  private syncing = false;
  private scheduled = false;

  constructor(
    file: string,
    private readonly done: (entries: Entry[]) => void,
  ) {
    this.fd = fs.openSync(file, 'w');
  }

  append(tag: number, bytes: Uint8Array): void {
    fs.writeSync(this.fd, bytes, 0, bytes.length, this.position);
    this.position += bytes.length;
    this.waiting.push({ tag, bytes });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.round());
    }
  }

  private round(): void {
    this.scheduled = false;
    if (this.syncing || this.waiting.length === 0) return;
    const entries = this.waiting;
    this.waiting = [];
    this.syncing = true;
    fs.fdatasync(this.fd, () => {
      this.syncing = false;
      this.done(entries);
      this.round();
    });
  }
}

// --- Worker thread -------------------------------------------------------------------------------

function runWorker(): void {
  // For --e2e the committed bytes go back (transferred) for the subscriber; otherwise only the tags.
  const e2e = workerData.e2e as boolean;
  const log = new GroupCommitLog(workerData.file as string, (entries) => {
    if (e2e) parentPort!.postMessage(entries, entries.map((e) => e.bytes.buffer as ArrayBuffer));
    else parentPort!.postMessage(entries.map((e) => ({ tag: e.tag })));
  });
  parentPort!.on('message', (batch: Array<{ tag: number; bytes: Uint8Array }>) => {
    for (const { tag, bytes } of batch) log.append(tag, bytes);
  });
}

// --- Server process ------------------------------------------------------------------------------

/**
 * The main thread's side: bytes to the log (directly or through the worker), then each committed round
 * to `committed` (its entries carry the bytes with --e2e, as the worker hands them back).
 */
function committer(variant: Variant, file: string, e2e: boolean, committed: (entries: Entry[]) => void): (tag: number, bytes: Buffer) => void {
  if (variant === 'grpc-main') {
    const log = new GroupCommitLog(file, committed);
    return (tag, bytes) => log.append(tag, bytes);
  }
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { file, e2e } });
  worker.on('message', committed);
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

/** Frames a round's bytes for a subscriber: a 4-byte length, then the records. */
function roundFrame(entries: Entry[], prefix: boolean): Buffer {
  const parts = entries.map((e) => Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.byteLength));
  const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  if (!prefix) return body;
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length, 0);
  return Buffer.concat([head, body]);
}

/** Calls `onFrame` with the body of each length-prefixed frame (4-byte little-endian length) read from `socket`. */
function onFrames(socket: net.Socket, onFrame: (body: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32LE(0)) {
      const n = pending.readUInt32LE(0);
      onFrame(pending.subarray(4, 4 + n));
      pending = pending.subarray(4 + n);
    }
  });
}

interface Writer {
  write(chunk: Buffer): unknown;
}

/** A committed round: its bytes to every subscriber first (framed when `prefix`), then each producer's answer. */
function deliver(entries: Entry[], subscribers: Set<Writer>, prefix: boolean, producers: Map<number, Writer>): void {
  if (subscribers.size > 0) {
    const message = roundFrame(entries, prefix);
    for (const sub of subscribers) sub.write(message);
  }
  for (const { tag } of entries) {
    const w = producers.get(tag);
    producers.delete(tag);
    w?.write(Buffer.alloc(4));
  }
}

async function serve(variant: Variant, file: string, e2e: boolean): Promise<void> {
  let nextTag = 0;
  if (variant === 'tcp') {
    const sockets = new Map<number, net.Socket>();
    const subscribers = new Set<net.Socket>();
    const commit = committer(variant, file, e2e, (entries) => deliver(entries, subscribers, true, sockets));
    // Subscribers connect to a port of their own and only read.
    const tailServer = net.createServer((socket) => {
      socket.setNoDelay(true);
      subscribers.add(socket);
      socket.on('close', () => subscribers.delete(socket));
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => tailServer.listen(0, '127.0.0.1', resolve));
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      onFrames(socket, (frame) => {
        const tag = nextTag++;
        sockets.set(tag, socket);
        commit(tag, frame);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    process.send!({ port: (server.address() as net.AddressInfo).port, tailPort: (tailServer.address() as net.AddressInfo).port });
    return;
  }
  const calls = new Map<number, grpc.ServerDuplexStream<Buffer, Buffer>>();
  const subscribers = new Set<grpc.ServerWritableStream<Buffer, Buffer>>();
  const commit = committer(variant, file, e2e, (entries) => deliver(entries, subscribers, false, calls));
  const server = new grpc.Server();
  server.addService(STREAM, {
    tail: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      subscribers.add(call);
      call.on('cancelled', () => subscribers.delete(call));
      call.on('error', () => {});
    },
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
  process.send!({ port, tailPort: port });
}

// --- Load (the parent process) --------------------------------------------------------------------

interface Row {
  variant: Variant;
  p50: number;
  p99: number;
  p999: number;
  records: number;
  /** Records sent but never acknowledged (or, with --e2e, never seen by the subscriber). */
  missing: number;
}

/** Calls `onRecord(intendedMs)` for each RECORD_BYTES record in `body` (its first 8 bytes are when it was due). */
function eachDue(body: Buffer, onRecord: (intendedMs: number) => void): void {
  for (let at = 0; at + RECORD_BYTES <= body.length; at += RECORD_BYTES) onRecord(body.readDoubleLE(at));
}

interface Connection {
  send(body: Buffer, onAck: () => void): void;
  /** --e2e: a second connection that gets every committed record; `onRecord` gets when each was due. */
  subscribe(onRecord: (intendedMs: number) => void): Promise<void>;
  close(): void;
}

/** A connection that sends one request and resolves when its answer comes (answers come in order). */
async function connect(variant: Variant, ports: { port: number; tailPort: number }): Promise<Connection> {
  const acks: Array<() => void> = [];
  const closers: Array<() => void> = [];
  if (variant === 'tcp') {
    const open = async (port: number): Promise<net.Socket> => {
      const socket = net.connect(port, '127.0.0.1');
      socket.setNoDelay(true);
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      closers.push(() => socket.destroy());
      return socket;
    };
    const socket = await open(ports.port);
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
      async subscribe(onRecord) {
        const tail = await open(ports.tailPort);
        onFrames(tail, (frame) => eachDue(frame, onRecord));
      },
      close: () => closers.forEach((c) => c()),
    };
  }
  const Client = grpc.makeGenericClientConstructor(STREAM, 'F');
  // The subscriber on a connection of its own, as the harness's Sluice driver has (its own client).
  const newClient = (): grpc.Client => new Client(`127.0.0.1:${ports.port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const client = newClient();
  closers.push(() => client.close());
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5_000, (e) => (e ? reject(e) : resolve())));
  const call = (client as unknown as { append: () => grpc.ClientDuplexStream<Buffer, Buffer> }).append();
  call.on('data', () => acks.shift()?.());
  call.on('error', () => {});
  closers.unshift(() => call.end());
  return {
    send(body, onAck) {
      acks.push(onAck);
      call.write(body);
    },
    async subscribe(onRecord) {
      const sub = newClient();
      closers.push(() => sub.close());
      await new Promise<void>((resolve, reject) => sub.waitForReady(Date.now() + 5_000, (e) => (e ? reject(e) : resolve())));
      const tail = (sub as unknown as { tail: (req: Buffer) => grpc.ClientReadableStream<Buffer> }).tail(Buffer.alloc(0));
      tail.on('data', (body: Buffer) => eachDue(body, onRecord));
      tail.on('error', () => {});
      closers.unshift(() => tail.cancel());
      await new Promise((r) => setTimeout(r, 200)); // the call reaches the server before the first record
    },
    close: () => closers.forEach((c) => c()),
  };
}

/** A broker with a one-partition topic, and a producer on it. */
async function connectSluice(dir: string): Promise<Connection & { server: ServerHandle }> {
  const server = await startSluice(REPO_ROOT, dir);
  const address = `127.0.0.1:${server.port}`;
  const admin = new Admin({ brokers: address });
  await admin.createTopic('floor', { partitions: 1, replicationFactor: 1 });
  admin.close();
  const producer = new Producer({ brokers: address, acks: 'all', retries: 0, idempotent: false });
  const closers: Array<() => void> = [() => void producer.close()];
  return {
    server,
    send(body, onAck) {
      const values: Array<{ key: null; value: Buffer }> = [];
      for (let i = 0; i < body.length; i += RECORD_BYTES) values.push({ key: null, value: body.subarray(i, i + RECORD_BYTES) });
      producer.produceRaw('floor', 0, encodeBatch(values)).then(onAck, () => {});
    },
    async subscribe(onRecord) {
      // As the harness's Sluice driver subscribes: its channel options, the zero-copy decoder, raw
      // batches walked in place.
      const broker = new FastBrokerClient(address, grpc.credentials.createInsecure(), GRPC_OPTIONS);
      const stream: grpc.ClientReadableStream<FetchResponse> = broker.subscribe({ topic: 'floor', partition: 0, offset: 0n, maxBytes: 0, raw: true });
      stream.on('data', (res: FetchResponse) => forEachValue(res.recordBatches, 0, (bytes, start) => onRecord(bytes.readDoubleLE(start))));
      stream.on('error', () => {});
      closers.push(() => {
        stream.cancel();
        broker.close();
      });
      await new Promise((r) => setTimeout(r, 200));
    },
    close: () => closers.forEach((c) => c()),
  };
}

async function measure(variant: Variant, ratePerS: number, seconds: number, dir: string, e2e: boolean): Promise<Row> {
  let server: ServerHandle | null = null;
  const child = variant === 'sluice' ? null : fork(fileURLToPath(import.meta.url), ['serve', variant, path.join(dir, `${variant}.log`), e2e ? 'e2e' : 'ack'], { execArgv: [...BROKER_NODE_FLAGS] });
  try {
    let conn: Connection;
    if (child === null) {
      const s = await connectSluice(dir);
      server = s.server;
      conn = s;
    } else {
      const ports = await new Promise<{ port: number; tailPort: number }>((resolve, reject) => {
        child.once('message', (p) => resolve(p as { port: number; tailPort: number }));
        child.once('exit', (code) => reject(new Error(`the ${variant} server exited (${code})`)));
      });
      conn = await connect(variant, ports);
    }
    const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    const warmupMs = WARMUP_MS;
    let start = Infinity;
    const record = (intended: number, now: number): void => {
      if (intended - start >= warmupMs) histogram.recordValue(Math.max(1, Math.round((now - intended) * 1000)));
    };
    let received = 0;
    if (e2e) {
      await conn.subscribe((intended) => {
        received++;
        record(intended, performance.now());
      });
    }
    const total = Math.floor((ratePerS * (seconds * 1000 + warmupMs)) / 1000);
    let sent = 0;
    let acked = 0;
    start = performance.now();
    for (let tick = 0; sent < total && tick < 10_000_000; tick++) {
      const due = Math.min(total, Math.floor(((performance.now() - start) * ratePerS) / 1000));
      if (due > sent) {
        const n = Math.min(due - sent, BATCH_RECORDS_MAX);
        const first = sent;
        sent += n;
        const body = Buffer.alloc(n * RECORD_BYTES, 7);
        for (let i = 0; i < n; i++) body.writeDoubleLE(start + ((first + i) * 1000) / ratePerS, i * RECORD_BYTES);
        conn.send(body, () => {
          const now = performance.now();
          acked += n;
          if (!e2e) for (let i = first; i < first + n; i++) record(start + (i * 1000) / ratePerS, now);
        });
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    for (let i = 0; (acked < sent || (e2e && received < sent)) && i < 500; i++) await new Promise((r) => setTimeout(r, 10));
    conn.close();
    const ms = (q: number): number => histogram.getValueAtPercentile(q) / 1000;
    return { variant, p50: ms(50), p99: ms(99), p999: ms(99.9), records: histogram.totalCount, missing: e2e ? sent - received : sent - acked };
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
      e2e: { type: 'boolean', default: false },
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
        const row = await measure(v, rate, seconds, dir, values.e2e);
        all.get(v)!.push(row);
        if (!values.json) console.log(`run ${r + 1}/${runs} ${v.padEnd(9)} p50 ${row.p50.toFixed(2)} ms, p99 ${row.p99.toFixed(2)} ms, p99.9 ${row.p999.toFixed(2)} ms (${row.records} records${row.missing > 0 ? `, ${row.missing} MISSING` : ''})`);
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
    console.log(JSON.stringify({ ratePerS: rate, seconds, runs, measure: values.e2e ? 'due -> subscriber' : 'due -> acknowledged', machineLoad: os.loadavg(), variants: summary }, null, 2));
    return;
  }
  console.log(`\nlatency floor at ${rate} records/s, ${seconds} s per run, medians of ${runs} (record due -> ${values.e2e ? 'received by a subscriber' : 'acknowledged'}, fdatasync per group commit)`);
  console.log('| variant   | p50 ms | p99 ms | p99.9 ms | p99 of each run |');
  console.log('|-----------|--------|--------|----------|-----------------|');
  for (const s of summary) console.log(`| ${s.variant.padEnd(9)} | ${s.p50.toFixed(2).padStart(6)} | ${s.p99.toFixed(2).padStart(6)} | ${s.p999.toFixed(2).padStart(8)} | ${s.runs.map((x) => x.toFixed(1)).join(', ').padEnd(15)} |`);
}

if (!isMainThread) runWorker();
else if (process.argv[2] === 'serve') void serve(process.argv[3] as Variant, process.argv[4]!, process.argv[5] === 'e2e');
else
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
