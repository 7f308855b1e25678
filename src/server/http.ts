/**
 * The broker's HTTP side (node:http): /healthz (the process is up), /readyz (the broker is open, not
 * shutting down, and has no offline partition) and /metrics, served by an optional handler that src/metrics provides.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatHostPort, type HostPort } from './address.js';

export type MetricsHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

export interface HttpOptions {
  address: HostPort;
  /** null when ready; otherwise why not (the body of the 503). */
  notReady: () => string | null;
  metricsHandler?: MetricsHandler;
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startHttp(options: HttpOptions): Promise<{ server: http.Server; address: string }> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'method not allowed\n');
    if (path === '/healthz') return text(res, 200, 'ok\n');
    if (path === '/readyz') {
      const why = options.notReady();
      return why === null ? text(res, 200, 'ready\n') : text(res, 503, `not ready: ${why}\n`);
    }
    if (path === '/metrics' && options.metricsHandler !== undefined) {
      Promise.resolve(options.metricsHandler(req, res)).catch((err: unknown) => {
        if (!res.headersSent) text(res, 500, `metrics failed: ${err instanceof Error ? err.message : String(err)}\n`);
        else res.destroy();
      });
      return;
    }
    if (path === '/metrics') {
      return text(res, 404, 'metrics are not enabled in this broker: pass metricsHandler (from createMetrics) to startBroker, as `sluice serve` does\n');
    }
    text(res, 404, `not found: try /healthz, /readyz${options.metricsHandler === undefined ? '' : ' or /metrics'}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.address.port, options.address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  return { server, address: formatHostPort({ host: bound.address, port: bound.port }) };
}

export async function stopHttp(server: http.Server): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}
