/**
 * A gRPC client that stops reading, as a hostile or stuck one does: a raw HTTP/2 stream whose
 * readable side is paused, so Node stops consuming it and sends no WINDOW_UPDATE. The broker's writes
 * then stall behind HTTP/2 flow control, exactly as for a client whose process stopped reading its
 * socket. (A grpc-js client cannot model this: it keeps decoding and buffering messages itself.)
 * Used by the attack benchmark and by the client-memory tests.
 */
import http2 from 'node:http2';
import { SubscribeRequest } from '../src/rpc/gen/sluice/v1/broker.js';

/** One gRPC message frame: flag 0 (uncompressed), big-endian length, body. */
function frame(body: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.writeUInt32BE(body.length, 1);
  out.set(body, 5);
  return out;
}

export interface StalledSession {
  /** Opens a Subscribe that is never read; resolves when the broker answered its headers. */
  subscribe(request: Partial<SubscribeRequest> & { topic: string }): Promise<http2.ClientHttp2Stream>;
  close(): void;
}

export function stalledSession(address: string): StalledSession {
  const session = http2.connect(`http://${address}`);
  session.on('error', () => {});
  return {
    subscribe(request) {
      const body = SubscribeRequest.encode({ partition: 0, offset: 0n, maxBytes: 0, raw: true, ...request }).finish();
      const stream = session.request({ ':method': 'POST', ':path': '/sluice.v1.Broker/Subscribe', 'content-type': 'application/grpc', te: 'trailers' });
      stream.on('error', () => {});
      stream.end(frame(body));
      stream.pause();
      return new Promise((resolve, reject) => {
        stream.once('response', () => resolve(stream));
        stream.once('close', () => reject(new Error(`Subscribe stream closed before its headers (rst code ${stream.rstCode})`)));
      });
    },
    close() {
      session.destroy();
    },
  };
}
