/**
 * `GrpcRaftTransport`: the `RaftTransport` (src/cluster/types.ts) over gRPC, one bidirectional stream
 * per node pair carrying the messages of every Raft group the two nodes share.
 *
 * - Coalescing: what `send` is given for one peer during one event-loop turn is written as one frame at
 *   the end of the turn (`setImmediate`), so a tick's heartbeats of all groups between two nodes are one
 *   gRPC message. A frame is cut early only at RAFT_TRANSPORT_FRAME_BYTES_MAX / _FRAME_MESSAGES_MAX.
 * - Flow control: per peer, the bytes written to its stream and not yet flushed (grpc-js write
 *   callbacks pending) plus the bytes waiting for this turn's frame are bounded. App and Snap messages
 *   that would pass RAFT_TRANSPORT_INFLIGHT_BYTES_MAX are dropped (Raft resends: a follower that misses
 *   an append rejects the next one, a heartbeat response frees the leader's pipeline); the small
 *   messages (heartbeats, votes, responses) may use RAFT_TRANSPORT_CONTROL_BYTES_MAX more, then drop too.
 *   Nothing is queued without bound, and `send` never blocks or throws.
 * - Connections: a peer is dialed lazily, by the address `resolve(id)` gives, when there is something
 *   to send and no stream; after a failure the next dial waits a capped exponential backoff with
 *   jitter. The dialer's first frame is a hello (from, to, incarnation); the acceptor checks `to` is
 *   itself and answers with its own hello. When both nodes dial at once, both keep the stream dialed by
 *   the lower id (the other is closed with ALREADY_EXISTS); a newer stream from the same dialer, or a
 *   hello with a new incarnation (the peer restarted), replaces the old stream. Only the current stream
 *   of a pair is read from, so messages from one peer arrive in the order sent, or not at all.
 * - Validation: frames are decoded (and bounded) by codec.ts; a frame that does not decode, a second
 *   hello, or a message whose `from` is not the stream's peer or whose `to` is not this node closes that
 *   stream with INVALID_ARGUMENT (reason MALFORMED_REQUEST) and delivers nothing of the frame. Messages
 *   of a group with no handler are dropped and counted. The server keeps serving throughout.
 */
import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { peerDialAddress } from '../test-peer-map.js';
import {
  RAFT_TRANSPORT_BACKOFF_MS_MAX,
  RAFT_TRANSPORT_BACKOFF_MS_MIN,
  RAFT_TRANSPORT_CONTROL_BYTES_MAX,
  RAFT_TRANSPORT_FRAME_BYTES_MAX,
  RAFT_TRANSPORT_FRAME_MESSAGES_MAX,
  RAFT_TRANSPORT_INFLIGHT_BYTES_MAX,
  RAFT_TRANSPORT_KEEPALIVE_MS,
  RAFT_TRANSPORT_KEEPALIVE_TIMEOUT_MS,
  RAFT_TRANSPORT_WINDOW_BYTES,
} from '../../constants.js';
import { SluiceError } from '../../errors.js';
import type { NodeId } from '../../model/index.js';
import { MessageType, type Message } from '../../raft/index.js';
import { toServiceError } from '../../rpc/errors.js';
import type { GroupId, RaftTransport } from '../types.js';
import { type DecodedFrame, type StreamHello, decodeFrame, encodeFrame, framedMessageSize, messageSize } from './codec.js';
import { NOOP_RAFT_TRANSPORT_PROBE, type RaftTransportDropReason, type RaftTransportProbe } from './probe.js';

export const RAFT_TRANSPORT_METHOD_PATH = '/sluice.cluster.v1.RaftTransport/Stream';

/** What the deserializer hands over: a decoded frame, or why the bytes are not one. Never throws. */
export type IncomingFrame = { readonly bytes: number; readonly frame: DecodedFrame; readonly error: null } | { readonly bytes: number; readonly frame: null; readonly error: string };

function decodeIncoming(buf: Buffer): IncomingFrame {
  try {
    return { bytes: buf.byteLength, frame: decodeFrame(buf), error: null };
  } catch (err) {
    return { bytes: buf.byteLength, frame: null, error: err instanceof Error ? err.message : String(err) };
  }
}

const identity = (b: Buffer): Buffer => b;

/**
 * The service definition, with the frame codec in place of ts-proto's (the .proto is the contract;
 * codec.ts is property-tested against the generated code). Frames are encoded by the transport itself,
 * so serialization is the identity.
 */
export const RaftTransportServiceDefinition = {
  stream: {
    path: RAFT_TRANSPORT_METHOD_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: decodeIncoming,
    responseSerialize: identity,
    responseDeserialize: decodeIncoming,
    originalName: 'stream',
  },
} as const satisfies grpc.ServiceDefinition;

/** A pino-compatible logger (only these two levels are used). */
export interface RaftTransportLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface RaftTransportOptions {
  /** This node's id (> 0). */
  nodeId: NodeId;
  /** host:port to dial for a peer, or undefined when unknown (gossip's PeerDirectory; tests: a map). */
  resolve: (node: NodeId) => string | undefined;
  probe?: RaftTransportProbe;
  logger?: RaftTransportLogger;
  /** Per-peer data budget. Default RAFT_TRANSPORT_INFLIGHT_BYTES_MAX. */
  inflightBytesMax?: number;
  /** Extra per-peer room for small messages. Default RAFT_TRANSPORT_CONTROL_BYTES_MAX. */
  controlBytesMax?: number;
  backoffMsMin?: number;
  backoffMsMax?: number;
  /** Random per process start by default; tests pin it to simulate a restart. */
  incarnation?: number;
  /** Extra grpc-js channel options for the dialing side (tests, benchmarks). */
  channelOptions?: grpc.ChannelOptions;
}

type AnyCall = grpc.ClientDuplexStream<Buffer, IncomingFrame> | grpc.ServerDuplexStream<IncomingFrame, Buffer>;

/** One gRPC stream to a peer, dialed by us (`outgoing`) or by the peer. */
class PeerStream {
  /** Bytes written to the call whose write callback has not fired. */
  inflightBytes = 0;
  helloSent = false;
  /** The peer's hello (incoming: its first frame; outgoing: the answer). */
  peerHello: StreamHello | null = null;
  closed = false;

  constructor(
    readonly call: AnyCall,
    readonly outgoing: boolean,
    /** The node that dialed this stream (for an accepted stream: known once its hello arrives). */
    public dialer: NodeId,
    public peer: Peer | null,
  ) {}
}

/** One peer: its current stream, this turn's pending frame, and its reconnect state. */
class Peer {
  stream: PeerStream | null = null;
  readonly groups: GroupId[] = [];
  readonly messages: Message[] = [];
  readonly sizes: number[] = [];
  /** Bytes of the pending frame (each message with its tag and length). */
  pendingBytes = 0;
  scheduled = false;
  client: grpc.Client | null = null;
  address: string | null = null;
  backoffMs = 0;
  /** A dial is not allowed before this (monotonic ms). */
  dialAfterMs = 0;
  dialTimer: NodeJS.Timeout | null = null;
  /** Whether the last state change was logged as unreachable (log once per outage). */
  reportedDown = false;

  constructor(readonly id: NodeId) {}
}

const now = (): number => performance.now();

export class GrpcRaftTransport implements RaftTransport {
  readonly nodeId: NodeId;
  readonly incarnation: number;
  private readonly resolve: (node: NodeId) => string | undefined;
  private readonly probe: RaftTransportProbe;
  private readonly logger: RaftTransportLogger | null;
  private readonly inflightBytesMax: number;
  private readonly controlBytesMax: number;
  private readonly backoffMsMin: number;
  private readonly backoffMsMax: number;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly handlers = new Map<GroupId, (msg: Message) => void>();
  private readonly peers = new Map<NodeId, Peer>();
  /** Streams accepted but not yet past their hello, so close() can end them too. */
  private readonly unnamed = new Set<PeerStream>();
  private readonly dirty: Peer[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(options: RaftTransportOptions) {
    assert.ok(Number.isSafeInteger(options.nodeId) && options.nodeId > 0, 'raft transport: node id must be a positive integer');
    this.nodeId = options.nodeId;
    this.incarnation = options.incarnation ?? randomInt(1, 2 ** 48);
    this.resolve = options.resolve;
    this.probe = options.probe ?? NOOP_RAFT_TRANSPORT_PROBE;
    this.logger = options.logger ?? null;
    this.inflightBytesMax = options.inflightBytesMax ?? RAFT_TRANSPORT_INFLIGHT_BYTES_MAX;
    this.controlBytesMax = options.controlBytesMax ?? RAFT_TRANSPORT_CONTROL_BYTES_MAX;
    this.backoffMsMin = options.backoffMsMin ?? RAFT_TRANSPORT_BACKOFF_MS_MIN;
    this.backoffMsMax = options.backoffMsMax ?? RAFT_TRANSPORT_BACKOFF_MS_MAX;
    assert.ok(this.backoffMsMin > 0 && this.backoffMsMin <= this.backoffMsMax, 'raft transport: bad backoff bounds');
    assert.ok(this.inflightBytesMax >= RAFT_TRANSPORT_FRAME_BYTES_MAX, 'raft transport: the peer budget must fit the largest frame');
    this.channelOptions = {
      'grpc.max_receive_message_length': RAFT_TRANSPORT_FRAME_BYTES_MAX,
      'grpc.max_send_message_length': -1,
      // grpc-js's own reconnect backoff starts at 1 s and grows to 2 min; a restarted peer must be
      // found again within an election timeout.
      'grpc.initial_reconnect_backoff_ms': this.backoffMsMin,
      'grpc.max_reconnect_backoff_ms': this.backoffMsMax,
      // A peer that vanished without a FIN (host down, paused) is detected by pings.
      'grpc.keepalive_time_ms': RAFT_TRANSPORT_KEEPALIVE_MS,
      'grpc.keepalive_timeout_ms': RAFT_TRANSPORT_KEEPALIVE_TIMEOUT_MS,
      'grpc-node.flow_control_window': RAFT_TRANSPORT_WINDOW_BYTES,
      ...options.channelOptions,
    };
  }

  // --- RaftTransport -------------------------------------------------------------------------------

  register(group: GroupId, handler: (msg: Message) => void): () => void {
    assert.ok(!this.handlers.has(group), `raft transport: group ${group} already has a handler`);
    this.handlers.set(group, handler);
    return () => {
      if (this.handlers.get(group) === handler) this.handlers.delete(group);
    };
  }

  send(group: GroupId, msg: Message): void {
    const to = msg.to;
    assert.ok(to !== this.nodeId && to > 0, `raft transport: group ${group} sent a message to node ${to}`);
    const peer = this.peer(to);
    if (this.closed) return this.probe.dropped(to, 'closed', 1);
    if (peer.stream === null) this.dial(peer);
    const stream = peer.stream;
    if (stream === null) return this.drop(peer, 'unreachable', 1);
    const size = messageSize(group, msg);
    const framed = framedMessageSize(size);
    if (framed > RAFT_TRANSPORT_FRAME_BYTES_MAX) return this.probe.dropped(to, 'too_large', 1);
    const data = msg.type === MessageType.App || msg.type === MessageType.Snap;
    const limit = data ? this.inflightBytesMax : this.inflightBytesMax + this.controlBytesMax;
    if (stream.inflightBytes + peer.pendingBytes + framed > limit) return this.probe.dropped(to, 'backpressure', 1);
    if (peer.pendingBytes + framed > RAFT_TRANSPORT_FRAME_BYTES_MAX || peer.messages.length >= RAFT_TRANSPORT_FRAME_MESSAGES_MAX) this.flushPeer(peer);
    peer.groups.push(group);
    peer.messages.push(msg);
    peer.sizes.push(size);
    peer.pendingBytes += framed;
    if (!peer.scheduled) {
      peer.scheduled = true;
      this.dirty.push(peer);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flushAll);
      }
    }
  }

  // --- Introspection (tests, metrics) --------------------------------------------------------------

  /** Bytes in flight to `peer`: written and not flushed, plus this turn's pending frame. */
  inflightBytes(peer: NodeId): number {
    const p = this.peers.get(peer);
    return p === undefined ? 0 : (p.stream?.inflightBytes ?? 0) + p.pendingBytes;
  }

  /** Which node dialed the current stream to `peer` (0 when there is none). */
  streamDialer(peer: NodeId): NodeId {
    return this.peers.get(peer)?.stream?.dialer ?? (0 as NodeId);
  }

  /** Whether there is a stream to `peer` now (dialed or accepted). */
  connected(peer: NodeId): boolean {
    return this.peers.get(peer)?.stream != null;
  }

  // --- Server side ---------------------------------------------------------------------------------

  /** The service to add to this node's gRPC server (`startBroker({ grpcServices })` or a bare server). */
  service(): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
    return { definition: RaftTransportServiceDefinition, implementation: { stream: (call: grpc.ServerDuplexStream<IncomingFrame, Buffer>) => this.accept(call) } };
  }

  private accept(call: grpc.ServerDuplexStream<IncomingFrame, Buffer>): void {
    if (this.closed) {
      call.emit('error', toServiceError(new SluiceError('SHUTTING_DOWN', `node ${this.nodeId} is shutting down`)));
      return;
    }
    const stream = new PeerStream(call, false, 0 as NodeId, null);
    this.unnamed.add(stream);
    call.on('data', (incoming: IncomingFrame) => this.onIncoming(stream, incoming));
    call.on('end', () => {
      this.ended(stream, null);
      call.end();
    });
    call.on('error', () => this.ended(stream, null));
    call.on('close', () => this.ended(stream, null));
  }

  /** The first frame of an accepted stream: its hello decides whether the stream becomes the pair's. */
  private acceptHello(stream: PeerStream, hello: StreamHello | null): boolean {
    if (hello === null) return this.reject(stream, 'MALFORMED_REQUEST', 'the first frame of a stream must carry a hello');
    if (hello.to !== this.nodeId) {
      return this.reject(stream, 'INVALID_REQUEST', `this is node ${this.nodeId}, not node ${hello.to}: the dialer has a stale address for node ${hello.to}`);
    }
    if (hello.from === this.nodeId || hello.from === 0) return this.reject(stream, 'INVALID_REQUEST', `node ${hello.from} cannot dial node ${this.nodeId} as a peer`);
    const peer = this.peer(hello.from);
    const current = peer.stream;
    if (current !== null && !this.incomingWins(current, hello)) {
      // Both dialed at once and ours (the lower id's) wins: the peer drops its stream on this status.
      // Not a SluiceError: this status never reaches a client, only the peer's transport.
      this.unnamed.delete(stream);
      stream.closed = true;
      stream.call.emit('error', { code: grpc.status.ALREADY_EXISTS, details: `node ${this.nodeId} already has a stream to node ${hello.from}, dialed by the lower id` });
      return false;
    }
    this.unnamed.delete(stream);
    stream.peer = peer;
    stream.dialer = hello.from;
    stream.peerHello = hello;
    if (current !== null) this.closeStream(current, 'replaced by a newer stream');
    this.adopt(peer, stream);
    this.writeFrame(peer, stream, this.hello(peer.id), [], [], []);
    return true;
  }

  /** Tie-break between the current stream and an incoming one (see the file comment). */
  private incomingWins(current: PeerStream, hello: StreamHello): boolean {
    if (current.peerHello !== null && current.peerHello.incarnation !== hello.incarnation) return true;
    if (current.dialer === hello.from) return true;
    return hello.from < this.nodeId;
  }

  // --- Client side ---------------------------------------------------------------------------------

  private dial(peer: Peer): void {
    if (this.closed || peer.stream !== null || peer.dialTimer !== null) return;
    const wait = peer.dialAfterMs - now();
    if (wait > 0) {
      peer.dialTimer = setTimeout(() => {
        peer.dialTimer = null;
        this.dial(peer);
      }, Math.ceil(wait));
      peer.dialTimer.unref();
      return;
    }
    const address = this.resolve(peer.id);
    if (address === undefined) {
      this.failed(peer, `no address for node ${peer.id}`);
      return;
    }
    if (peer.client === null || peer.address !== address) {
      peer.client?.close();
      peer.client = null;
      try {
        peer.client = new grpc.Client(peerDialAddress(address), grpc.credentials.createInsecure(), this.channelOptions);
      } catch (err) {
        this.failed(peer, `bad address ${JSON.stringify(address)} for node ${peer.id}: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      peer.address = address;
    }
    const call = peer.client.makeBidiStreamRequest(RAFT_TRANSPORT_METHOD_PATH, identity, decodeIncoming, new grpc.Metadata());
    const stream = new PeerStream(call, true, this.nodeId, peer);
    call.on('data', (incoming: IncomingFrame) => this.onIncoming(stream, incoming));
    call.on('error', (err: grpc.ServiceError) => this.ended(stream, err));
    call.on('end', () => this.ended(stream, null));
    call.on('close', () => this.ended(stream, null));
    this.adopt(peer, stream);
    this.writeFrame(peer, stream, this.hello(peer.id), [], [], []);
  }

  private hello(to: NodeId): StreamHello {
    return { from: this.nodeId, to, incarnation: this.incarnation };
  }

  private failed(peer: Peer, why: string): void {
    peer.backoffMs = Math.min(this.backoffMsMax, peer.backoffMs === 0 ? this.backoffMsMin : peer.backoffMs * 2);
    // Jitter to [d/2, d], so peers that lost each other at once do not redial in lockstep.
    peer.dialAfterMs = now() + peer.backoffMs / 2 + Math.random() * (peer.backoffMs / 2);
    if (!peer.reportedDown) {
      peer.reportedDown = true;
      this.logger?.warn({ peer: peer.id, address: peer.address, reason: why }, 'raft transport: peer unreachable; retrying with backoff');
    }
  }

  // --- Both sides ----------------------------------------------------------------------------------

  private adopt(peer: Peer, stream: PeerStream): void {
    peer.stream = stream;
    this.probe.streamOpened(peer.id);
  }

  private onIncoming(stream: PeerStream, incoming: IncomingFrame): void {
    if (stream.closed) return;
    if (incoming.error !== null) {
      this.reject(stream, 'MALFORMED_REQUEST', incoming.error);
      return;
    }
    const frame = incoming.frame;
    if (stream.peer === null) {
      if (!this.acceptHello(stream, frame.hello)) return;
    } else if (frame.hello !== null) {
      if (!stream.outgoing || stream.peerHello !== null) return void this.reject(stream, 'MALFORMED_REQUEST', 'a second hello on one stream');
      if (frame.hello.from !== stream.peer.id || frame.hello.to !== this.nodeId) {
        return void this.reject(stream, 'INVALID_REQUEST', `dialed node ${stream.peer.id} but node ${frame.hello.from} answered (for node ${frame.hello.to})`);
      }
      stream.peerHello = frame.hello;
    }
    const peer = stream.peer!;
    if (peer.stream !== stream) return; // superseded: only the pair's current stream is read
    if (stream.peerHello !== null && peer.reportedDown) {
      peer.reportedDown = false;
      this.logger?.info({ peer: peer.id, address: peer.address }, 'raft transport: peer reachable again');
    }
    peer.backoffMs = 0;
    const { groups, messages } = frame;
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i];
      if (m.from !== peer.id || m.to !== this.nodeId) {
        return void this.reject(stream, 'INVALID_REQUEST', `a message from node ${m.from} to node ${m.to} on the stream between nodes ${peer.id} and ${this.nodeId}`);
      }
    }
    this.probe.frameReceived(peer.id, incoming.bytes, messages.length);
    let unknown = 0;
    for (let i = 0; i < messages.length; i++) {
      const handler = this.handlers.get(groups[i]);
      if (handler === undefined) unknown++;
      else handler(messages[i]);
    }
    if (unknown > 0) this.probe.dropped(peer.id, 'unknown_group', unknown);
  }

  /** Closes a stream because of what the peer sent; the status names the problem. Returns false. */
  private reject(stream: PeerStream, code: 'MALFORMED_REQUEST' | 'INVALID_REQUEST', message: string): false {
    const peerId = stream.peer?.id ?? (0 as NodeId);
    this.probe.streamRejected(peerId);
    this.logger?.warn({ peer: peerId, reason: message }, 'raft transport: closing a stream after a bad frame');
    this.closeStream(stream, message, new SluiceError(code, `raft transport: ${message}`));
    return false;
  }

  /** Ends a stream from this side (server: with a status; client: cancelled). */
  private closeStream(stream: PeerStream, why: string, err?: SluiceError): void {
    if (stream.closed) return;
    if (stream.outgoing) {
      this.ended(stream, null);
      (stream.call as grpc.ClientDuplexStream<Buffer, IncomingFrame>).cancel();
      return;
    }
    this.ended(stream, null);
    const status = toServiceError(err ?? new SluiceError('UNAVAILABLE', `raft transport: ${why}`));
    stream.call.emit('error', status);
  }

  /** A stream is over (either side, any reason): forget it and drop what waited for it. */
  private ended(stream: PeerStream, err: grpc.ServiceError | null): void {
    if (stream.closed) return;
    stream.closed = true;
    this.unnamed.delete(stream);
    const peer = stream.peer;
    if (peer === null || peer.stream !== stream) return;
    peer.stream = null;
    if (peer.messages.length > 0) {
      this.drop(peer, 'unreachable', peer.messages.length);
      this.clearPending(peer);
    }
    // A stream that never heard the peer's hello is a failed dial; one that did resets the backoff.
    if (stream.outgoing && stream.peerHello === null) this.failed(peer, err?.details ?? 'stream closed before the peer answered');
    else if (stream.outgoing) peer.dialAfterMs = 0;
    else peer.dialAfterMs = now() + this.backoffMsMin; // let the peer redial first
  }

  private drop(peer: Peer, reason: RaftTransportDropReason, n: number): void {
    this.probe.dropped(peer.id, reason, n);
  }

  private clearPending(peer: Peer): void {
    peer.groups.length = 0;
    peer.messages.length = 0;
    peer.sizes.length = 0;
    peer.pendingBytes = 0;
  }

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    const dirty = this.dirty.splice(0);
    for (const peer of dirty) {
      peer.scheduled = false;
      this.flushPeer(peer);
    }
  };

  private flushPeer(peer: Peer): void {
    if (peer.messages.length === 0) return;
    const stream = peer.stream;
    if (stream === null || stream.closed) {
      this.drop(peer, 'unreachable', peer.messages.length);
      this.clearPending(peer);
      return;
    }
    this.writeFrame(peer, stream, null, peer.groups, peer.messages, peer.sizes);
    this.clearPending(peer);
  }

  private writeFrame(peer: Peer, stream: PeerStream, hello: StreamHello | null, groups: readonly GroupId[], messages: readonly Message[], sizes: readonly number[]): void {
    const frame = encodeFrame(hello ?? (stream.helloSent ? null : this.hello(peer.id)), groups, messages, sizes);
    stream.helloSent = true;
    const bytes = frame.byteLength;
    stream.inflightBytes += bytes;
    stream.call.write(frame, () => {
      stream.inflightBytes -= bytes;
    });
    this.probe.frameSent(peer.id, bytes, messages.length);
  }

  private peer(id: NodeId): Peer {
    let p = this.peers.get(id);
    if (p === undefined) {
      p = new Peer(id);
      this.peers.set(id, p);
    }
    return p;
  }

  /** Ends every stream and channel; later sends are dropped (reason `closed`). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.unnamed]) this.close0(s);
    for (const peer of this.peers.values()) {
      if (peer.dialTimer !== null) clearTimeout(peer.dialTimer);
      peer.dialTimer = null;
      if (peer.stream !== null) this.close0(peer.stream);
      this.clearPending(peer);
      peer.client?.close();
      peer.client = null;
    }
  }

  private close0(stream: PeerStream): void {
    this.closeStream(stream, 'shutting down', new SluiceError('SHUTTING_DOWN', `raft transport: node ${this.nodeId} is shutting down`));
  }
}
