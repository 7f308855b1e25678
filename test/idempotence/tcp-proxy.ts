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
