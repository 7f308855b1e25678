/**
 * Helpers for the Raft transport tests: a node = a GrpcRaftTransport served by its own grpc-js server
 * on its own loopback address (127.0.0.1, .2, .3 ...), with the broker's request handling in front
 * (undecodable frames answered INVALID_ARGUMENT by the same interceptor), a counting probe, and a
 * pausable TCP proxy to play a peer that stops reading.
 */
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { GrpcRaftTransport, type RaftTransportDropReason, type RaftTransportOptions, type RaftTransportProbe } from '../../src/cluster/transport/index.js';
import { malformedRequestInterceptor, tolerantDefinition } from '../../src/rpc/malformed-request.js';
import { GRPC_RECEIVE_BYTES_MAX } from '../../src/constants.js';
import type { NodeId } from '../../src/model/index.js';

export class CountingProbe implements RaftTransportProbe {
  framesSent = 0;
  messagesSent = 0;
  bytesSent = 0;
  framesReceived = 0;
  messagesReceived = 0;
  streamsOpened = 0;
  streamsRejected = 0;
  readonly drops = new Map<RaftTransportDropReason, number>();
  frameSent(_peer: NodeId, bytes: number, messages: number): void {
    this.framesSent++;
    this.messagesSent += messages;
    this.bytesSent += bytes;
  }
  frameReceived(_peer: NodeId, _bytes: number, messages: number): void {
    this.framesReceived++;
    this.messagesReceived += messages;
  }
  dropped(_peer: NodeId, reason: RaftTransportDropReason, messages: number): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + messages);
  }
  streamOpened(): void {
    this.streamsOpened++;
  }
  streamRejected(): void {
    this.streamsRejected++;
  }
  dropCount(reason: RaftTransportDropReason): number {
    return this.drops.get(reason) ?? 0;
  }
}

export interface TestNode {
  readonly id: NodeId;
  readonly host: string;
  address: string;
  transport: GrpcRaftTransport;
  probe: CountingProbe;
  server: grpc.Server;
  /** Hard stop: connections cut, transport closed (a killed process, as far as peers can tell). */
  kill(): void;
  /** A new transport and server on the same address (a restarted process); handlers must be registered again. */
  restart(): Promise<void>;
}

function bind(server: grpc.Server, target: string): Promise<number> {
  return new Promise((resolve, reject) => server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, port) => (err === null ? resolve(port) : reject(err))));
}

/** Starts node `id` on 127.0.0.`id`; `addresses` is the shared static directory (id -> host:port). */
export async function startNode(id: number, addresses: Map<number, string>, options: Partial<RaftTransportOptions> = {}, port = 0): Promise<TestNode> {
  const host = `127.0.0.${id}`;
  const make = async (p: number): Promise<Pick<TestNode, 'transport' | 'probe' | 'server' | 'address'>> => {
    const probe = new CountingProbe();
    const transport = new GrpcRaftTransport({ nodeId: id as NodeId, resolve: (n) => addresses.get(n), probe, backoffMsMin: 20, backoffMsMax: 500, ...options });
    const server = new grpc.Server({ interceptors: [malformedRequestInterceptor], 'grpc.max_receive_message_length': GRPC_RECEIVE_BYTES_MAX });
    const svc = transport.service();
    server.addService(tolerantDefinition(svc.definition), svc.implementation);
    const bound = await bind(server, `${host}:${p}`);
    const address = `${host}:${bound}`;
    if (!addresses.has(id) || addresses.get(id) === address) addresses.set(id, address);
    return { transport, probe, server, address };
  };
  const node: TestNode = {
    id: id as NodeId,
    host,
    ...(await make(port)),
    kill() {
      node.server.forceShutdown();
      node.transport.close();
    },
    async restart() {
      const port = Number(node.address.split(':')[1]);
      Object.assign(node, await make(port));
    },
  };
  return node;
}

/** Polls `cond` every `everyMs` until true, failing after `timeoutMs` with `what`. Bounded in count and time. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000, everyMs = 10): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (let i = 0; performance.now() < deadline && i < timeoutMs / everyMs + 1; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  if (!cond()) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** A TCP proxy on `host` to `target` whose forwarding from the dialer can be paused (a peer that stops reading). */
export async function startProxy(host: string, target: string): Promise<{ address: string; pause(): void; resume(): void; close(): void }> {
  const [th, tp] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  /** Dialer-side socket -> its upstream; pausing unpipes, so a 'drain' cannot resume the reading. */
  const pairs = new Map<net.Socket, net.Socket>();
  let paused = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(tp, th);
    sockets.add(client);
    sockets.add(upstream);
    pairs.set(client, upstream);
    upstream.pipe(client);
    if (paused) client.pause();
    else client.pipe(upstream);
    const done = (): void => {
      pairs.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', done).on('close', done);
    upstream.on('error', done).on('close', done);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `${host}:${port}`,
    pause() {
      paused = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        client.pause();
      }
    },
    resume() {
      paused = false;
      for (const [client, upstream] of pairs) client.pipe(upstream);
    },
    close() {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
