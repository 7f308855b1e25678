/**
 * The transport ceiling on this machine: a no-op grpc-js unary server in one process, a client in
 * another, requests the size of one produce request (1,000 records of 100 bytes, about 110 KB). Whatever
 * Sluice's Produce reaches, it cannot beat this. Run with and without a widened HTTP/2 connection window
 * on the server to see how much the 64 KB default costs:
 *
 *     node dist/bench/harness/grpc-ceiling.js            # both variants
 */
import * as grpc from '@grpc/grpc-js';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Http2Server, ServerHttp2Session } from 'node:http2';

const identity = (b: Buffer): Buffer => b;
const definition: grpc.ServiceDefinition = {
  echo: { path: '/ceiling.T/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};
const REQUEST_BYTES = 110_000;
const SECONDS = 2;

async function serve(windowBytes: number): Promise<void> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 << 20 });
  server.addService(definition, { echo: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(16)) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  if (windowBytes > 0) {
    // grpc-js has no server option for this; its http2 servers are reachable only through a private field.
    const servers = (server as unknown as { http2Servers: Map<Http2Server, unknown> }).http2Servers;
    for (const h of servers.keys()) h.on('session', (s: ServerHttp2Session) => s.once('localSettings', () => s.setLocalWindowSize(windowBytes)));
  }
  process.send!(port);
}

async function measure(windowBytes: number): Promise<string[]> {
  const child = fork(fileURLToPath(import.meta.url), ['serve', String(windowBytes)]);
  try {
    const port = await new Promise<number>((resolve) => child.once('message', (p) => resolve(p as number)));
    const Client = grpc.makeGenericClientConstructor(definition, 'T');
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
    const payload = Buffer.alloc(REQUEST_BYTES, 3);
    const call = () => new Promise<void>((resolve, reject) => (client as unknown as { echo: (b: Buffer, cb: (e: Error | null) => void) => void }).echo(payload, (e) => (e ? reject(e) : resolve())));
    for (let i = 0; i < 50; i++) await call();
    const lines: string[] = [];
    for (const inflight of [1, 5, 16]) {
      const start = performance.now();
      const end = start + SECONDS * 1000;
      let n = 0;
      await Promise.all(Array.from({ length: inflight }, async () => {
        for (let i = 0; performance.now() < end && i < 1_000_000; i++) {
          await call();
          n++;
        }
      }));
      const s = (performance.now() - start) / 1000;
      lines.push(`server window ${windowBytes > 0 ? `${windowBytes >> 20} MiB` : 'default 64 KB'}, ${inflight} in flight: ${(n / s).toFixed(0)} req/s = ${((n / s) / 1000).toFixed(2)}M rec/s at 1,000/req, ${((1000 * inflight * s) / n).toFixed(2)} ms/req`);
    }
    client.close();
    return lines;
  } finally {
    child.kill();
  }
}

if (process.argv[2] === 'serve') {
  await serve(Number(process.argv[3]));
} else {
  for (const windowBytes of [0, 16 << 20]) for (const line of await measure(windowBytes)) console.log(line);
}
