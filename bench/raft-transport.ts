/**
 * Raft transport benchmark (`npm run bench:raft-transport`, after `npm run build`). Not a test: it
 * prints numbers (a table, or JSON with --json).
 *
 * Every node is its own process (forked from this file) with its own gRPC server on 127.0.0.N, as in a
 * cluster; the parent only orchestrates over IPC. Measured:
 * 1. codec: one frame of 64 App messages with 16 KiB v2 batches, encoded and decoded by ts-proto's
 *    generated code and by the transport's codec (in this process): the copies the codec saves.
 * 2. throughput: node 1 sends App messages, one 16 KiB v2 batch each, to node 2 for `--seconds`,
 *    keeping at most half the per-peer budget in flight (as Raft's own pipeline limit would): messages/s
 *    and MB/s received.
 * 3. streams: the same with S transport pairs between the same two processes (S streams on S
 *    connections, as per-shard-pair streams would give): does a second stream add throughput?
 * 4. idle: 1,000 groups at replication factor 3 on three nodes (each leads a third), heartbeats of
 *    every group to both followers every tick (SHARD_TICK_MS) and a response to each: the CPU% of each
 *    process, against the same processes with no traffic. Issue 11 targets <= 15% of one core for the
 *    whole idle cluster; this is what the transport takes of it (Raft's own tick work is not in it).
 *
 * Flags: --seconds N (throughput and idle window, default 5), --streams 1,2,4, --groups N (default
 * 1000), --json.
 */
import { fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { encodeBatch } from '../src/batch/index.js';
import { GrpcRaftTransport, encodeFrame, decodeFrame, messageSize } from '../src/cluster/transport/index.js';
import { RAFT_TRANSPORT_INFLIGHT_BYTES_MAX, SHARD_TICK_MS } from '../src/constants.js';
import type { NodeId } from '../src/model/index.js';
import { MessageType, type Entry, type Message } from '../src/raft/index.js';
import { StreamRequest, RaftEntryKind } from '../src/rpc/gen/sluice/cluster/v1/raft.js';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

/** A ~16 KiB v2 batch: 100 records of 150-byte values. */
function v2Payload(): Buffer {
  return encodeBatch(Array.from({ length: 100 }, (_, i) => ({ key: null, value: Buffer.alloc(150, i & 0xff) })));
}

function app(from: number, to: number, index: number, data: Uint8Array): Message {
  const entry = { index: index + 1, count: 100, term: 3, kind: 'data', data, change: null } as unknown as Entry;
  return { type: MessageType.App, from, to, term: 3, logTerm: 3, index, entries: [entry], commit: index, reject: false, rejectHint: 0, snapshot: null, context: 0 } as unknown as Message;
}

function heartbeat(type: number, from: number, to: number): Message {
  return { type, from, to, term: 3, logTerm: 0, index: 0, entries: [], commit: 12345, reject: false, rejectHint: 0, snapshot: null, context: 0 } as unknown as Message;
}

// --- Child: one node process ------------------------------------------------------------------------

type Command =
  | { cmd: 'start'; ids: number[]; host: string }
  | { cmd: 'addresses'; addresses: [number, string][] }
  | { cmd: 'send'; pairs: [number, number][]; seconds: number; payloadBytes: number }
  | { cmd: 'counts' }
  | { cmd: 'idle'; id: number; nodes: number[]; groups: number; seconds: number; traffic: boolean };

async function child(): Promise<void> {
  const addresses = new Map<number, string>();
  const transports = new Map<number, GrpcRaftTransport>();
  let bytesIn = 0;
  let messagesIn = 0;
  const reply = (m: unknown): void => void process.send!(m);
  process.on('message', async (c: Command) => {
    if (c.cmd === 'start') {
      const out: [number, string][] = [];
      for (const id of c.ids) {
        const t = new GrpcRaftTransport({ nodeId: id as NodeId, resolve: (n) => addresses.get(n) });
        const server = new grpc.Server({ 'grpc.max_receive_message_length': 32 << 20 });
        const svc = t.service();
        server.addService(svc.definition, svc.implementation);
        const port = await new Promise<number>((res, rej) => server.bindAsync(`${c.host}:0`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
        transports.set(id, t);
        out.push([id, `${c.host}:${port}`]);
        // Receivers of the throughput runs: count App bytes on every group 0..99.
        for (let g = 0; g < 100; g++) {
          t.register(1_000_000 + g, (m) => {
            messagesIn++;
            for (const e of m.entries) bytesIn += e.data.byteLength;
          });
        }
      }
      reply({ started: out });
    } else if (c.cmd === 'addresses') {
      for (const [id, a] of c.addresses) addresses.set(id, a);
      reply({ ok: true });
    } else if (c.cmd === 'counts') {
      reply({ bytesIn, messagesIn });
      bytesIn = 0;
      messagesIn = 0;
    } else if (c.cmd === 'send') {
      const data = v2Payload().subarray(0, c.payloadBytes);
      const until = performance.now() + c.seconds * 1000;
      let index = 0;
      const pumps = c.pairs.map(([from, to]) => {
        const t = transports.get(from)!;
        return new Promise<void>((done) => {
          const pump = (): void => {
            if (performance.now() >= until) return done();
            for (let i = 0; i < 64 && t.inflightBytes(to as NodeId) < RAFT_TRANSPORT_INFLIGHT_BYTES_MAX / 2; i++) t.send(1_000_000 + (index % 100), app(from, to, index++, data));
            setImmediate(pump);
          };
          pump();
        });
      });
      await Promise.all(pumps);
      reply({ sent: index });
    } else if (c.cmd === 'idle') {
      const t = transports.get(c.id)!;
      const others = c.nodes.filter((n) => n !== c.id);
      for (let g = 0; g < c.groups; g++) {
        t.register(g, (m) => {
          if (m.type === MessageType.Heartbeat) t.send(g, heartbeat(MessageType.HeartbeatResp, c.id, m.from));
        });
      }
      const led = Array.from({ length: c.groups }, (_, g) => g).filter((g) => c.nodes[g % c.nodes.length] === c.id);
      const timer = c.traffic
        ? setInterval(() => {
            for (const g of led) for (const o of others) t.send(g, heartbeat(MessageType.Heartbeat, c.id, o));
          }, SHARD_TICK_MS)
        : null;
      await new Promise((r) => setTimeout(r, 1000)); // connect and warm up
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, c.seconds * 1000));
      const cpu = process.cpuUsage(cpu0);
      const wall = (performance.now() - t0) * 1000;
      if (timer !== null) clearInterval(timer);
      reply({ cpuPercent: ((cpu.user + cpu.system) / wall) * 100, rssMb: process.memoryUsage().rss / 2 ** 20 });
    }
  });
  process.send!({ ready: true });
}

// --- Parent -----------------------------------------------------------------------------------------

class Node {
  private waiting: ((m: unknown) => void)[] = [];
  constructor(readonly proc: ChildProcess) {
    proc.on('message', (m) => this.waiting.shift()?.(m));
  }
  static async spawn(): Promise<Node> {
    const proc = fork(process.argv[1], ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const n = new Node(proc);
    await n.next();
    return n;
  }
  next<T>(): Promise<T> {
    return new Promise((r) => this.waiting.push(r as (m: unknown) => void));
  }
  ask<T>(c: Command): Promise<T> {
    const p = this.next<T>();
    this.proc.send(c);
    return p;
  }
  kill(): void {
    this.proc.kill('SIGKILL');
  }
}

function codecBench(): { tsProtoEncodeMBps: number; fastEncodeMBps: number; oneCopyMBps: number; tsProtoDecodeMBps: number; fastDecodeMBps: number } {
  const data = v2Payload();
  const msgs = Array.from({ length: 64 }, (_, i) => app(1, 2, i * 100, data));
  const groups = msgs.map((_, i) => i);
  const sizes = msgs.map((m, i) => messageSize(groups[i], m));
  const pb = {
    hello: undefined,
    messages: msgs.map((m, i) => ({
      group: BigInt(groups[i]), type: m.type, from: m.from, to: m.to, term: BigInt(m.term), logTerm: BigInt(m.logTerm), index: BigInt(m.index),
      entries: m.entries.map((e) => ({ index: BigInt(e.index), count: e.count, term: BigInt(e.term), kind: RaftEntryKind.RAFT_ENTRY_KIND_DATA, data: Buffer.from(e.data), change: undefined })),
      commit: BigInt(m.commit), reject: false, rejectHint: 0n, snapshot: undefined, context: 0n,
    })),
  };
  const frameBytes = encodeFrame(null, groups, msgs, sizes).byteLength;
  // The five cases take turns, 9 rounds of 50 frames each, and each keeps its best round: the machine
  // is shared, the least disturbed round is the most telling, and interleaving spreads GC and
  // neighbours' load over all of them alike.
  const wire = encodeFrame(null, groups, msgs, sizes);
  const cases: Record<string, () => unknown> = {
    // The generated serializer is Buffer.from(StreamRequest.encode(value).finish()).
    tsProtoEncodeMBps: () => Buffer.from(StreamRequest.encode(pb).finish()),
    fastEncodeMBps: () => encodeFrame(null, groups, msgs, sizes),
    // The floor of any encoder that produces one contiguous frame: one allocation, one copy of each entry.
    oneCopyMBps: () => {
      const out = Buffer.allocUnsafe(frameBytes);
      for (let i = 0; i < msgs.length; i++) out.set(data, i * data.byteLength);
      return out;
    },
    tsProtoDecodeMBps: () => StreamRequest.decode(wire),
    fastDecodeMBps: () => decodeFrame(wire),
  };
  const best: Record<string, number> = {};
  for (let round = 0; round < 9; round++) {
    for (const [name, fn] of Object.entries(cases)) {
      const n = 50;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) fn();
      best[name] = Math.max(best[name] ?? 0, (frameBytes * n) / ((performance.now() - t0) / 1000) / 2 ** 20);
    }
  }
  return best as ReturnType<typeof codecBench>;
}

async function throughput(streams: number, seconds: number): Promise<{ streams: number; messagesPerSec: number; mbPerSec: number }> {
  const a = await Node.spawn();
  const b = await Node.spawn();
  try {
    const idsA = Array.from({ length: streams }, (_, i) => 1 + 2 * i);
    const idsB = idsA.map((id) => id + 1);
    const sa = await a.ask<{ started: [number, string][] }>({ cmd: 'start', ids: idsA, host: '127.0.0.1' });
    const sb = await b.ask<{ started: [number, string][] }>({ cmd: 'start', ids: idsB, host: '127.0.0.2' });
    const all = [...sa.started, ...sb.started];
    await a.ask({ cmd: 'addresses', addresses: all });
    await b.ask({ cmd: 'addresses', addresses: all });
    const pairs = idsA.map((id) => [id, id + 1] as [number, number]);
    await a.ask({ cmd: 'send', pairs, seconds: 1, payloadBytes: 16 * 1024 }); // connect and warm up
    await new Promise((r) => setTimeout(r, 300));
    await b.ask({ cmd: 'counts' });
    await a.ask({ cmd: 'send', pairs, seconds, payloadBytes: 16 * 1024 });
    await new Promise((r) => setTimeout(r, 300));
    const c = await b.ask<{ bytesIn: number; messagesIn: number }>({ cmd: 'counts' });
    return { streams, messagesPerSec: c.messagesIn / seconds, mbPerSec: c.bytesIn / seconds / 2 ** 20 };
  } finally {
    a.kill();
    b.kill();
  }
}

async function idle(groups: number, seconds: number, traffic: boolean): Promise<{ cpuPercent: number[]; rssMb: number[] }> {
  const nodes = await Promise.all([1, 2, 3].map(() => Node.spawn()));
  try {
    const started = await Promise.all(nodes.map((n, i) => n.ask<{ started: [number, string][] }>({ cmd: 'start', ids: [i + 1], host: `127.0.0.${i + 1}` })));
    const all = started.flatMap((s) => s.started);
    await Promise.all(nodes.map((n) => n.ask({ cmd: 'addresses', addresses: all })));
    const res = await Promise.all(nodes.map((n, i) => n.ask<{ cpuPercent: number; rssMb: number }>({ cmd: 'idle', id: i + 1, nodes: [1, 2, 3], groups, seconds, traffic })));
    return { cpuPercent: res.map((r) => r.cpuPercent), rssMb: res.map((r) => r.rssMb) };
  } finally {
    for (const n of nodes) n.kill();
  }
}

async function main(): Promise<void> {
  const seconds = Number(arg('--seconds', '5'));
  const groups = Number(arg('--groups', '1000'));
  const streamCounts = arg('--streams', '1,2,4').split(',').map(Number);
  const json = process.argv.includes('--json');
  const codec = codecBench();
  const runs = [];
  for (const s of streamCounts) runs.push(await throughput(s, seconds));
  const quiet = await idle(groups, seconds, false);
  const busy = await idle(groups, seconds, true);
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
  const result = {
    loadAverage: os.loadavg(),
    seconds,
    tickMs: SHARD_TICK_MS,
    codec,
    throughput: runs,
    idle: { groups, nodes: 3, baselineCpuPercent: quiet.cpuPercent, heartbeatCpuPercent: busy.cpuPercent, transportCpuPercentTotal: sum(busy.cpuPercent) - sum(quiet.cpuPercent), rssMb: busy.rssMb },
  };
  if (json) {
    console.log(JSON.stringify(result, null, 2));
    return;
  }
  const f = (n: number, d = 0): string => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log(`load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.availableParallelism()} CPUs (numbers below are only as quiet as the machine)`);
  console.log('frame codec (64 App messages x 16 KiB v2 batch, one frame), MB/s of frame:');
  console.log(`  encode  ts-proto ${f(codec.tsProtoEncodeMBps).padStart(8)}   transport codec ${f(codec.fastEncodeMBps).padStart(8)}   (one allocation + one copy: ${f(codec.oneCopyMBps)})`);
  console.log(`  decode  ts-proto ${f(codec.tsProtoDecodeMBps).padStart(8)}   transport codec ${f(codec.fastDecodeMBps).padStart(8)}`);
  console.log(`App messages (16 KiB v2 batch each), node 1 -> node 2, separate processes on loopback, ${seconds} s:`);
  for (const r of runs) console.log(`  ${String(r.streams).padStart(2)} stream(s)  ${f(r.messagesPerSec).padStart(10)} msg/s  ${f(r.mbPerSec, 1).padStart(8)} MB/s`);
  console.log(`idle: ${groups} groups x RF 3 on 3 nodes, heartbeat + response per follower every ${SHARD_TICK_MS} ms, ${seconds} s:`);
  console.log(`  CPU% per process, no traffic:  ${quiet.cpuPercent.map((c) => f(c, 1)).join(' / ')}`);
  console.log(`  CPU% per process, heartbeats:  ${busy.cpuPercent.map((c) => f(c, 1)).join(' / ')}`);
  console.log(`  transport cost, whole cluster: ${f(result.idle.transportCpuPercentTotal, 1)}% of one core (target for everything: <= 15%)`);
  console.log(`  RSS per process (MB):          ${busy.rssMb.map((c) => f(c)).join(' / ')}`);
}

if (process.argv.includes('--child')) void child();
else void main();
