/**
 * The gRPC side of a broker: sluice.v1.Admin, sluice.v1.Broker and the services other modules add
 * (sluice.v1.Groups), grpc.health.v1 for each of them, and server reflection over the real .proto files
 * (so grpcurl and other generic tools work with no .proto files at hand).
 */
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import { ReflectionService } from '@grpc/reflection';
import { GRPC_CONNECTIONS_MAX, GRPC_RECEIVE_BYTES_MAX, GRPC_STREAMS_PER_CONNECTION_MAX } from '../constants.js';
import { AdminService, FastBrokerService, ServiceContext, adminService, brokerService, reflectionFiles } from '../rpc/index.js';
import { malformedRequestInterceptor, tolerantDefinition } from '../rpc/malformed-request.js';
import { callEndInterceptor } from '../rpc/call-end.js';
import { MEMORY_HOLDING_PATHS } from '../rpc/broker-service.js';
import { formatHostPort, type HostPort } from './address.js';
import { StartupError } from './errors.js';

/**
 * The fully qualified name of a service ("sluice.v1.Groups"), read from its methods' paths
 * ("/sluice.v1.Groups/Consume"), so health reports exactly the services the server carries.
 */
export function serviceName(definition: grpc.ServiceDefinition): string {
  const first = Object.values(definition)[0];
  const m = first === undefined ? null : /^\/([^/]+)\//.exec(first.path);
  assert.ok(m !== null, 'a gRPC service definition without methods has no name');
  return m[1]!;
}

export interface GrpcFrontend {
  server: grpc.Server;
  address: string;
  setServing(serving: boolean): void;
}

function bind(server: grpc.Server, address: HostPort): Promise<number> {
  const target = formatHostPort(address);
  return new Promise((resolve, reject) => {
    server.bindAsync(target, grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err === null) return resolve(port);
      const inUse = /EADDRINUSE|address already in use/i.test(err.message);
      const hint = inUse ? 'address already in use; stop the other process or pick another with --grpc-addr' : err.message;
      reject(new StartupError(`cannot listen for gRPC on ${target}: ${hint}`, { cause: err }));
    });
  });
}

/** A service another module adds to the broker's gRPC server (e.g. consumer groups). */
export interface ExtraService {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/**
 * A grpc-js server whose every service (ours, health, reflection) decodes requests tolerantly, so that
 * undecodable bytes are answered INVALID_ARGUMENT / MALFORMED_REQUEST by the interceptor instead of
 * INTERNAL by grpc-js (see src/rpc/malformed-request.ts).
 */
class TolerantServer extends grpc.Server {
  override addService(service: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation): void {
    super.addService(tolerantDefinition(service), implementation);
  }
}

export async function startGrpc(ctx: ServiceContext, address: HostPort, extra: ExtraService[] = []): Promise<GrpcFrontend> {
  const server = new TolerantServer({
    // Undecodable requests are answered INVALID_ARGUMENT first; Fetch and Subscribe hold client memory
    // until their call ends, which grpc-js tells interceptors only.
    interceptors: [malformedRequestInterceptor, callEndInterceptor(MEMORY_HOLDING_PATHS)],
    // One max batch (at the hard ceiling) plus its envelope: anything longer is refused by grpc-js
    // with RESOURCE_EXHAUSTED before it is buffered whole.
    'grpc.max_receive_message_length': GRPC_RECEIVE_BYTES_MAX,
    'grpc.max_send_message_length': -1,
    // Each call may hold client memory; the budget bounds the bytes, these bound the calls.
    'grpc.max_concurrent_streams': GRPC_STREAMS_PER_CONNECTION_MAX,
  });
  server.addService(AdminService, adminService(ctx));
  server.addService(FastBrokerService, brokerService(ctx));
  for (const s of extra) server.addService(s.definition, s.implementation);
  // '' is the whole server, as grpc.health.v1 specifies; then every service this server carries.
  const healthServices = ['', ...[AdminService, FastBrokerService, ...extra.map((s) => s.definition)].map(serviceName)];
  const health = new HealthImplementation(Object.fromEntries(healthServices.map((s) => [s, 'NOT_SERVING' as const])));
  health.addToServer(server);
  // Reflection lists only the services this server carries (the descriptor set also holds internal
  // cluster services a node may not run), so "listed" always means "answers and is SERVING".
  new ReflectionService(reflectionFiles(), { services: [...healthServices.filter((s) => s !== ''), 'grpc.health.v1.Health'] }).addToServer(server);
  const port = await bind(server, address);
  widenFlowControlWindows(server);
  capConnections(server, GRPC_CONNECTIONS_MAX);
  return {
    server,
    address: formatHostPort({ host: address.host, port }),
    setServing(serving) {
      for (const s of healthServices) health.setStatus(s, serving ? 'SERVING' : 'NOT_SERVING');
    },
  };
}

/**
 * HTTP/2 starts every stream and the connection with a 64 KiB flow-control window, and grpc-js's
 * server has no option to raise it: a 100 KB produce then waits for a WINDOW_UPDATE round trip (an
 * event-loop turn of a busy broker) in the middle of every request. We widen both windows on each new
 * session. grpc-js keeps its http2 servers in a private map, hence the guarded access: if a future
 * grpc-js renames it, we only lose the tuning.
 */
export const HTTP2_STREAM_WINDOW_BYTES = 1 << 20;
export const HTTP2_CONNECTION_WINDOW_BYTES = 16 << 20;

function widenFlowControlWindows(server: grpc.Server): void {
  const http2Servers = (server as unknown as { http2Servers?: Map<import('node:net').Server, unknown> }).http2Servers;
  if (!(http2Servers instanceof Map)) return;
  for (const h2 of http2Servers.keys()) {
    h2.on('session', (session: import('node:http2').ServerHttp2Session) => {
      try {
        session.settings({ initialWindowSize: HTTP2_STREAM_WINDOW_BYTES });
        session.setLocalWindowSize(HTTP2_CONNECTION_WINDOW_BYTES);
      } catch {
        // A session closing as it opens: nothing to tune.
      }
    });
  }
}

/**
 * grpc-js has no connection limit; its http2 servers are net.Servers, whose `maxConnections` closes
 * connections past the cap as they arrive. Same guarded access to the private map as above.
 */
function capConnections(server: grpc.Server, max: number): void {
  const http2Servers = (server as unknown as { http2Servers?: Map<import('node:net').Server, unknown> }).http2Servers;
  if (!(http2Servers instanceof Map)) return;
  for (const h2 of http2Servers.keys()) h2.maxConnections = max;
}

/** Stops accepting calls and waits for in-flight ones, up to `graceMs`; then cuts the rest. */
export async function stopGrpc(server: grpc.Server, graceMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
