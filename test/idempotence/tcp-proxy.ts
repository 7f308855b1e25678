/**
 * A TCP proxy for tests (127.0.0.1 only) that loses RESPONSES, never requests: everything the client
 * sends reaches the broker, but when a chunk comes back from the broker the proxy may, at random,
 * drop it and cut the connection (a gRPC response cannot be dropped alone inside an HTTP/2 stream
 * without breaking the framing, so losing it means losing the connection, as a network fault would).
 * The client then sees its in-flight calls fail although the broker has processed them: exactly the
 * case an idempotent producer must survive without duplicates.
 *
 * Randomness is a seeded xorshift so a failing run can be replayed (`seed` is printed by the tests).
 */
import net from 'node:net';

export interface DropProxy {
  /** "127.0.0.1:port" to give the client. */
  address: string;
  /** Responses dropped so far (each also cut its connection). */
  readonly dropped: number;
  /** Chunks forwarded from the broker to clients. */
  readonly forwarded: number;
  /** Turns dropping on or off (e.g. off while the test reads back what was written). */
  setDropping(on: boolean): void;
  close(): Promise<void>;
}

/** A small seeded PRNG (xorshift32) in [0, 1): the proxy's and the retry tests' fates replay from a seed. */
export function xorshift(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/**
 * Listens on 127.0.0.1 (ephemeral port) and forwards to `target` ("127.0.0.1:port"). Each chunk from
 * the broker is dropped with probability `dropProbability` (connection cut), but never the first
 * `graceChunks` of a connection, so the HTTP/2 handshake completes and calls do reach the broker.
 */
export async function startDropProxy(target: string, options: { seed: number; dropProbability: number; graceChunks?: number }): Promise<DropProxy> {
  const [host, portText] = [target.slice(0, target.lastIndexOf(':')), target.slice(target.lastIndexOf(':') + 1)];
  if (!host.startsWith('127.')) throw new Error(`the test proxy only talks to loopback, not ${host}`);
  const random = xorshift(options.seed);
  const grace = options.graceChunks ?? 2;
  let dropped = 0;
  let forwarded = 0;
  let dropping = true;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host, port: Number(portText) });
    sockets.add(client);
    sockets.add(upstream);
    let chunks = 0;
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      chunks++;
      if (dropping && chunks > grace && random() < options.dropProbability) {
        dropped++;
        cut();
        return;
      }
      forwarded++;
      client.write(d);
    });
    for (const s of [client, upstream]) {
      s.on('error', cut);
      s.on('close', () => {
        sockets.delete(s);
        cut();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    get dropped() {
      return dropped;
    },
    get forwarded() {
      return forwarded;
    },
    setDropping(on: boolean) {
      dropping = on;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * What a link proxy does to the bytes it carries (the chaos harness's network faults):
 *  - `pass`: forwards both ways;
 *  - `drop`: a partition: bytes both ways vanish, connections stay open and new ones are accepted
 *    into the void, so callers wait for their deadlines as across a real partition;
 *  - `drop-responses` / `drop-requests`: one-way loss (only one direction still arrives).
 * Returning to `pass` cuts every connection that lost bytes (its HTTP/2 framing is broken), so the
 * peers reconnect, as they would once TCP gave up.
 */
export type LinkMode = 'pass' | 'drop' | 'drop-responses' | 'drop-requests';

export interface LinkProxy {
  /** "host:port" to give the side that connects. */
  address: string;
  readonly mode: LinkMode;
  setMode(mode: LinkMode): void;
  /** Where new connections go (a restarted broker may listen on a new port); existing ones are cut. */
  retarget(target: string): void;
  /** Cuts every open connection (both sides see a reset), whatever the mode. */
  cutAll(): void;
  /** Bytes dropped so far, both directions. */
  readonly droppedBytes: number;
  close(): Promise<void>;
}

function splitHostPort(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at);
  if (!host.startsWith('127.')) throw new Error(`the test proxy only talks to loopback, not ${host}`);
  return { host, port: Number(address.slice(at + 1)) };
}

/**
 * A proxy for one directed link (a client to a broker, later a broker to a broker) listening on
 * `listenHost` (a 127.0.0.0/8 address; ephemeral port unless `listenPort`). Deterministic: it has no
 * randomness of its own; the harness decides its mode from its seeded schedule.
 */
export async function startLinkProxy(target: string, options: { listenHost?: string; listenPort?: number } = {}): Promise<LinkProxy> {
  let to = splitHostPort(target);
  const listenHost = options.listenHost ?? '127.0.0.1';
  splitHostPort(`${listenHost}:0`);
  let mode: LinkMode = 'pass';
  let droppedBytes = 0;
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket; damaged: boolean }>();
  const cut = (pair: { client: net.Socket; upstream: net.Socket }): void => {
    pair.client.destroy();
    pair.upstream.destroy();
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(to);
    const pair = { client, upstream, damaged: false };
    pairs.add(pair);
    client.on('data', (d) => {
      if (mode === 'drop' || mode === 'drop-requests') {
        droppedBytes += d.length;
        pair.damaged = true;
      } else upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (mode === 'drop' || mode === 'drop-responses') {
        droppedBytes += d.length;
        pair.damaged = true;
      } else client.write(d);
    });
    for (const s of [client, upstream]) {
      s.on('error', () => cut(pair));
      s.on('close', () => {
        pairs.delete(pair);
        cut(pair);
      });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, listenHost, resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    address: `${listenHost}:${port}`,
    get mode() {
      return mode;
    },
    setMode(next: LinkMode) {
      mode = next;
      if (next === 'pass') for (const p of [...pairs]) if (p.damaged) cut(p);
    },
    retarget(next: string) {
      to = splitHostPort(next);
      for (const p of [...pairs]) cut(p);
    },
    cutAll() {
      for (const p of [...pairs]) cut(p);
    },
    get droppedBytes() {
      return droppedBytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const p of [...pairs]) cut(p);
        server.close(() => resolve());
      }),
  };
}
