/**
 * Goal: the Raft transport (src/cluster/transport) carries every Raft message type between real gRPC
 * servers byte for byte, keeps one stream per node pair, coalesces a turn's messages into one frame,
 * bounds what a backed-up peer costs its sender, and survives bad input. Method: two or three nodes in
 * this process, each its own grpc-js server on 127.0.0.1/.2/.3; a raw grpc-js client for bad frames; a
 * pausable TCP proxy for a peer that stops reading. Waits poll the probes, bounded in count and time.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { encodeFrame, messageSize, RAFT_TRANSPORT_METHOD_PATH } from '../../src/cluster/transport/index.js';
import { BATCH_BYTES_MAX_LIMIT, RAFT_TRANSPORT_CONTROL_BYTES_MAX, RAFT_TRANSPORT_FRAME_BYTES_MAX, RAFT_TRANSPORT_INFLIGHT_BYTES_MAX } from '../../src/constants.js';
import { MessageType, type Entry, type Message } from '../../src/raft/index.js';
import type { NodeId } from '../../src/model/index.js';
import { startNode, startProxy, waitFor, type TestNode } from './transport-helpers.js';

const nodes: TestNode[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
  for (const n of nodes.splice(0)) n.kill();
});

async function cluster(n: number, options = {}): Promise<{ nodes: TestNode[]; addresses: Map<number, string> }> {
  const addresses = new Map<number, string>();
  for (let id = 1; id <= n; id++) nodes.push(await startNode(id, addresses, options));
  return { nodes: nodes.slice(), addresses };
}

function msg(type: number, from: number, to: number, extra: Record<string, unknown> = {}): Message {
  return { type, from, to, term: 7, logTerm: 6, index: 41, entries: [], commit: 40, reject: false, rejectHint: 0, snapshot: null, context: 0, ...extra } as unknown as Message;
}

function batch(index: number, bytes: number): Entry {
  return { index, count: 3, term: 7, kind: 'data', data: randomBytes(bytes), change: null } as unknown as Entry;
}

/** Every message type, with entries (data, noop, conf), a snapshot and every optional field set somewhere. */
function everyType(from: number, to: number): Message[] {
  const entries: Entry[] = [
    batch(42, 16 * 1024),
    { index: 45, count: 1, term: 7, kind: 'noop', data: new Uint8Array(0), change: null } as unknown as Entry,
    { index: 46, count: 1, term: 7, kind: 'conf', data: randomBytes(61), change: { type: 'addLearner', node: 4 as NodeId } } as unknown as Entry,
    batch(47, 1),
  ];
  const snapshot = { index: 1000, term: 5, conf: { voters: [1, 2, 3], learners: [4] }, data: randomBytes(300) } as unknown as Message['snapshot'];
  return [
    msg(MessageType.App, from, to, { entries }),
    msg(MessageType.AppResp, from, to, { reject: true, rejectHint: 17 }),
    msg(MessageType.Vote, from, to, { context: 1 }),
    msg(MessageType.VoteResp, from, to, { reject: true }),
    msg(MessageType.PreVote, from, to),
    msg(MessageType.PreVoteResp, from, to),
    msg(MessageType.Heartbeat, from, to, { context: 99 }),
    msg(MessageType.HeartbeatResp, from, to, { context: 99 }),
    msg(MessageType.Snap, from, to, { snapshot }),
    msg(MessageType.TimeoutNow, from, to),
  ];
}

/** Deep equality with byte arrays compared by content. */
function plain(m: Message): unknown {
  return { ...m, entries: m.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') })), snapshot: m.snapshot === null ? null : { ...m.snapshot, data: Buffer.from(m.snapshot.data).toString('hex') } };
}

describe('raft transport', () => {
  it('round-trips every message type both ways on one stream, entries byte for byte', async () => {
    const { nodes: [a, b] } = await cluster(2);
    const gotB: Message[] = [];
    const gotA: Message[] = [];
    b.transport.register(5, (m) => gotB.push(m));
    a.transport.register(5, (m) => gotA.push(m));
    const toB = everyType(1, 2);
    const toA = everyType(2, 1);
    // Both dial in the same turn: the tie-break must leave one stream and lose nothing after it settles.
    for (const m of toB) a.transport.send(5, m);
    for (const m of toA) b.transport.send(5, m);
    await waitFor('a stream between 1 and 2', () => a.transport.connected(2 as NodeId) && b.transport.connected(1 as NodeId));
    // Messages sent before the tie-break settled may be dropped (Raft resends); send until both arrive.
    for (let round = 0; round < 50 && (gotB.length < toB.length || gotA.length < toA.length); round++) {
      gotA.length = 0;
      gotB.length = 0;
      for (const m of toB) a.transport.send(5, m);
      for (const m of toA) b.transport.send(5, m);
      await waitFor('one round', () => gotB.length >= toB.length && gotA.length >= toA.length, 2_000).catch(() => undefined);
    }
    expect(gotB.map(plain)).toEqual(toB.map(plain));
    expect(gotA.map(plain)).toEqual(toA.map(plain));
    // One stream per pair: whichever side dialed, the other did not keep a second one.
    const opened = a.probe.streamsOpened + b.probe.streamsOpened;
    expect(opened).toBeGreaterThanOrEqual(2);
    expect(a.transport.connected(2 as NodeId) && b.transport.connected(1 as NodeId)).toBe(true);
  });

  it('keeps the lower id\'s stream when both nodes dial at once, and later messages ride it in order', async () => {
    const { nodes: [a, b] } = await cluster(2);
    const got: number[] = [];
    b.transport.register(1, (m) => got.push(m.index));
    a.transport.register(1, () => undefined);
    a.transport.send(1, msg(MessageType.Heartbeat, 1, 2));
    b.transport.send(1, msg(MessageType.Heartbeat, 2, 1));
    await waitFor('settled', () => a.transport.connected(2 as NodeId) && b.transport.connected(1 as NodeId));
    // Both dialed in the same turn; both must settle on the stream node 1 (the lower id) dialed.
    // Node 1's first heartbeat rode the winning stream, so it arrives.
    await waitFor('both on the lower id\'s stream', () => a.transport.streamDialer(2 as NodeId) === 1 && b.transport.streamDialer(1 as NodeId) === 1 && got.length === 1);
    expect(a.probe.streamsOpened).toBe(1);
    expect(b.probe.streamsOpened).toBe(2); // its own dial, then node 1's, which replaced it
    got.length = 0;
    for (let i = 1; i <= 2000; i++) a.transport.send(1, msg(MessageType.Heartbeat, 1, 2, { index: i }));
    await waitFor('2000 messages', () => got.length >= 2000);
    expect(got).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
  });

  it('coalesces one turn of sends to a peer into one frame', async () => {
    const { nodes: [a, b] } = await cluster(2);
    let received = 0;
    for (let g = 0; g < 1000; g++) b.transport.register(g, () => received++);
    a.transport.send(0, msg(MessageType.Heartbeat, 1, 2));
    await waitFor('connected', () => received === 1);
    const framesBefore = a.probe.framesSent;
    const receivedFramesBefore = b.probe.framesReceived;
    for (let g = 0; g < 1000; g++) a.transport.send(g, msg(MessageType.Heartbeat, 1, 2, { commit: g }));
    await waitFor('1000 heartbeats', () => received === 1001);
    expect(a.probe.framesSent - framesBefore).toBe(1);
    expect(b.probe.framesReceived - receivedFramesBefore).toBe(1);
  });

  it('carries a maximal (16 MiB) batch byte for byte and drops one past the frame limit as too_large', async () => {
    const { nodes: [a, b] } = await cluster(2);
    const got: Message[] = [];
    b.transport.register(1, (m) => got.push(m));
    const big = randomBytes(BATCH_BYTES_MAX_LIMIT);
    const huge = Buffer.alloc(RAFT_TRANSPORT_FRAME_BYTES_MAX);
    const entry = (data: Uint8Array): Entry[] => [{ index: 1, count: 1, term: 1, kind: 'data', data, change: null } as unknown as Entry];
    a.transport.send(1, msg(MessageType.App, 1, 2, { entries: entry(huge) }));
    expect(a.probe.dropCount('too_large')).toBe(1);
    a.transport.send(1, msg(MessageType.App, 1, 2, { entries: entry(big) }));
    await waitFor('the maximal batch', () => got.length === 1, 30_000);
    expect(Buffer.from(got[0].entries[0].data).equals(big)).toBe(true);
  });

  it('drops and counts messages of unknown groups, and refuses messages not addressed to this node', async () => {
    const { nodes: [a, b, c] } = await cluster(3);
    const got: Message[] = [];
    b.transport.register(1, (m) => got.push(m));
    a.transport.send(1, msg(MessageType.Heartbeat, 1, 2));
    a.transport.send(999, msg(MessageType.Heartbeat, 1, 2));
    await waitFor('delivery', () => got.length === 1 && b.probe.dropCount('unknown_group') === 1);
    // A peer claiming to be node 3 on node 1's stream, or writing to node 3 through node 2: refused.
    const rejectedBefore = b.probe.streamsRejected;
    a.transport.send(1, msg(MessageType.Heartbeat, 3, 2));
    await waitFor('stream closed', () => b.probe.streamsRejected === rejectedBefore + 1);
    expect(got.length).toBe(1);
    // The next send redials and is delivered: the server kept serving.
    await waitFor('redelivery', () => {
      a.transport.send(1, msg(MessageType.Heartbeat, 1, 2, { index: 7 }));
      return got.some((m) => m.index === 7);
    }, 10_000, 50);
    void c;
  });

  it('answers a malformed frame or a misdirected hello with INVALID_ARGUMENT and keeps serving', async () => {
    const { nodes: [a, b] } = await cluster(2);
    const got: Message[] = [];
    b.transport.register(1, (m) => got.push(m));
    const client = new grpc.Client(b.address, grpc.credentials.createInsecure());
    cleanups.push(() => client.close());
    const attempt = (frame: Buffer): Promise<grpc.ServiceError> =>
      new Promise((resolve) => {
        const call = client.makeBidiStreamRequest(RAFT_TRANSPORT_METHOD_PATH, (x: Buffer) => x, (x: Buffer) => x, new grpc.Metadata());
        call.on('data', () => undefined);
        call.on('error', (err: grpc.ServiceError) => resolve(err));
        call.write(frame);
      });
    const garbage = await attempt(Buffer.from([0x12, 0x7f, 0x01]));
    expect(garbage.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(garbage.details).toMatch(/raft transport frame: length-delimited field runs past/);
    const hb = msg(MessageType.Heartbeat, 1, 3);
    const wrongNode = await attempt(encodeFrame({ from: 1 as NodeId, to: 3 as NodeId, incarnation: 5 }, [1], [hb], [messageSize(1, hb)]));
    expect(wrongNode.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(wrongNode.details).toMatch(/this is node 2, not node 3/);
    const noHello = await attempt(encodeFrame(null, [1], [hb], [messageSize(1, hb)]));
    expect(noHello.details).toMatch(/must carry a hello/);
    expect(got.length).toBe(0);
    a.transport.send(1, msg(MessageType.Heartbeat, 1, 2));
    await waitFor('a real peer is still served', () => got.length === 1);
  });

  it('never throws from send: unknown, malformed and dead addresses drop (unreachable) and back off', async () => {
    const addresses = new Map<number, string>([[3, 'not an address at all::'], [4, '127.0.0.4:1']]);
    const a = await startNode(1, addresses, { backoffMsMin: 5_000, backoffMsMax: 5_000 });
    nodes.push(a);
    // Node 2 has no address, node 3 a malformed one, node 4 nobody listening.
    const sendAll = (): void => {
      for (let i = 0; i < 100; i++) for (const to of [2, 3, 4]) expect(() => a.transport.send(1, msg(MessageType.Heartbeat, 1, to))).not.toThrow();
    };
    sendAll();
    // With no address there is nothing to dial: every message to node 2 is dropped at once.
    expect(a.probe.dropCount('unreachable')).toBeGreaterThanOrEqual(100);
    await waitFor('the failed dials noticed', () => !a.transport.connected(3 as NodeId) && !a.transport.connected(4 as NodeId));
    const opened = a.probe.streamsOpened;
    expect(opened).toBeLessThanOrEqual(2);
    // Within the backoff nothing is dialed again and everything is dropped, counted, not queued.
    const before = a.probe.dropCount('unreachable');
    sendAll();
    expect(a.probe.dropCount('unreachable') - before).toBe(300);
    expect(a.probe.streamsOpened).toBe(opened);
    expect(a.transport.inflightBytes(3 as NodeId) + a.transport.inflightBytes(4 as NodeId)).toBe(0);
  });

  it('bounds the bytes in flight to a peer that stops reading, drops App first, and recovers', async () => {
    const addresses = new Map<number, string>();
    const b = await startNode(2, addresses);
    nodes.push(b);
    const proxy = await startProxy('127.0.0.1', b.address);
    cleanups.push(() => proxy.close());
    const direct = new Map(addresses);
    direct.set(2, proxy.address);
    const a = await startNode(1, direct);
    nodes.push(a);
    let bytesIn = 0;
    let heartbeats = 0;
    b.transport.register(1, (m) => {
      if (m.type === MessageType.Heartbeat) heartbeats++;
      else bytesIn += m.entries[0].data.byteLength;
    });
    const payload = randomBytes(16 * 1024);
    const app = (i: number): Message => msg(MessageType.App, 1, 2, { index: i, entries: [{ index: i + 1, count: 1, term: 7, kind: 'data', data: payload, change: null } as unknown as Entry] });
    a.transport.send(1, app(0));
    await waitFor('first append through the proxy', () => bytesIn > 0);
    proxy.pause();
    // Offer far more than the budget (4x), in turns of 64 appends; the in-flight bytes must never pass it.
    const budget = RAFT_TRANSPORT_INFLIGHT_BYTES_MAX;
    let maxSeen = 0;
    const turns = Math.ceil((4 * budget) / (64 * payload.length));
    for (let t = 0; t < turns; t++) {
      for (let i = 0; i < 64; i++) a.transport.send(1, app(t * 64 + i));
      maxSeen = Math.max(maxSeen, a.transport.inflightBytes(2 as NodeId));
      await new Promise((r) => setImmediate(r));
      maxSeen = Math.max(maxSeen, a.transport.inflightBytes(2 as NodeId));
    }
    expect(a.probe.dropCount('backpressure')).toBeGreaterThan(0);
    expect(maxSeen).toBeLessThanOrEqual(budget);
    expect(maxSeen).toBeGreaterThan(budget / 2); // the budget was really reached, not just the socket buffers
    // Small messages still fit in the control room past the data budget, then drop too.
    const dropsBefore = a.probe.dropCount('backpressure');
    const hbCount = Math.ceil((2 * RAFT_TRANSPORT_CONTROL_BYTES_MAX) / 20);
    for (let i = 0; i < hbCount; i++) a.transport.send(1, msg(MessageType.Heartbeat, 1, 2, { index: i }));
    expect(a.transport.inflightBytes(2 as NodeId)).toBeLessThanOrEqual(budget + RAFT_TRANSPORT_CONTROL_BYTES_MAX);
    expect(a.transport.inflightBytes(2 as NodeId)).toBeGreaterThan(budget);
    expect(a.probe.dropCount('backpressure')).toBeGreaterThan(dropsBefore);
    // The peer reads again: what was in flight arrives, and new appends flow.
    proxy.resume();
    await waitFor('heartbeats delivered', () => heartbeats > 0, 30_000);
    await waitFor('in-flight drained', () => a.transport.inflightBytes(2 as NodeId) === 0, 30_000);
    const before = bytesIn;
    a.transport.send(1, app(1e6));
    await waitFor('a new append after the stall', () => bytesIn > before);
  });
});
