/**
 * One gRPC channel to a broker, shared by the Broker and Admin stubs, with calls turned into
 * promises whose failures are SluiceErrors (decoded from the ErrorInfo detail by src/rpc).
 */
import * as grpc from '@grpc/grpc-js';
import { CLIENT_BROKER_PORT_DEFAULT, CLIENT_REQUEST_TIMEOUT_MS_DEFAULT, GRPC_RECEIVE_BYTES_MAX } from '../constants.js';
import { SluiceError } from '../errors.js';
import { AdminClient, FastBrokerClient, fromServiceError, readErrorInfo, type BrokerClient } from '../rpc/index.js';

export interface ClientOptions {
  /**
   * "host:port", a comma-separated list, or an array; the first is used. A host alone gets port 7070
   * (the broker's default gRPC port). Default 127.0.0.1:7070.
   */
  brokers?: string | string[];
  /** Deadline of one unary call, connecting included. Default 30 s (long-poll fetches add their wait to it). */
  requestTimeoutMs?: number;
  /**
   * Extra grpc-js channel options. grpc-js shares one TCP connection among clients with equal
   * options; `{ 'grpc.use_local_subchannel_pool': 1 }` gives this client its own.
   */
  channelOptions?: grpc.ChannelOptions;
}

export const DEFAULT_BROKER = '127.0.0.1:7070';

/**
 * Checks one broker address and gives a bare host the default port: without it grpc-js would dial
 * port 443 and fail with a message about something else.
 */
export function normalizeBrokerAddress(address: string): string {
  const a = address.trim();
  const bad = (why: string): SluiceError =>
    new SluiceError('INVALID_REQUEST', `invalid broker address "${address}": ${why}; use HOST:PORT, e.g. 127.0.0.1:${CLIENT_BROKER_PORT_DEFAULT}`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(a)) throw bad('no scheme (the client speaks plaintext gRPC)');
  const m = /^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+)(?::(\d*))?$/.exec(a);
  if (m === null) throw bad(a.split(':').length > 2 ? 'an IPv6 address goes in brackets, [::1]:PORT' : 'not a host name or address');
  if (m[2] === undefined) return `${m[1]}:${CLIENT_BROKER_PORT_DEFAULT}`;
  const port = Number(m[2]);
  if (m[2] === '' || !Number.isInteger(port) || port < 1 || port > 65_535) throw bad('the port must be from 1 to 65535');
  return `${m[1]}:${port}`;
}

export function brokerList(brokers: string | string[] | undefined): string[] {
  const list = (Array.isArray(brokers) ? brokers : (brokers ?? DEFAULT_BROKER).split(',')).map((b) => b.trim()).filter((b) => b.length > 0);
  if (list.length === 0) throw new SluiceError('INVALID_REQUEST', 'no broker address given: pass HOST:PORT (e.g. 127.0.0.1:7070)');
  return list.map(normalizeBrokerAddress);
}

/**
 * Failures grpc-js reports itself (no ErrorInfo from a broker) say what went wrong in transport terms;
 * this says it in the user's: who did not answer, the likely reason, and what to try. The code stays.
 */
export function explainTransportError(err: SluiceError, address: string, timeoutMs: number): SluiceError {
  const m = err.message;
  let message: string | null = null;
  if (err.code === 'TIMEOUT' || /Deadline exceeded/i.test(m)) {
    message =
      `no answer from ${address} within ${timeoutMs} ms: is a Sluice broker listening there (its gRPC port, ` +
      `${CLIENT_BROKER_PORT_DEFAULT} by default, not its HTTP port)? If it is only slow, raise the timeout (--timeout, requestTimeoutMs)`;
  } else if (/ECONNREFUSED/.test(m)) {
    message = `cannot connect to ${address} (connection refused)`;
  } else if (/Protocol error|Received HTTP status|HTTP\/1|Bad Request/i.test(m)) {
    message = `${address} answered, but not as a gRPC server: is that the broker's HTTP port? Its gRPC port is ${CLIENT_BROKER_PORT_DEFAULT} by default (sluice serve --grpc-addr)`;
  } else if (/ENOTFOUND|EAI_AGAIN|Name resolution failed/i.test(m)) {
    message = `cannot resolve the host of ${address}: check the broker address`;
  } else if (err.code === 'INTERNAL' && /serialization failure/i.test(m)) {
    return new SluiceError('INVALID_REQUEST', `a request field is out of range (${m.replace(/^.*serialization failure:\s*/i, '')})`, { cause: err });
  }
  return message === null ? err : new SluiceError(err.code, message, { cause: err, retriable: err.retriable });
}

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;
type UnaryMethod<Req, Res> = (req: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: Callback<Res>) => grpc.ClientUnaryCall;

export class Connection {
  readonly address: string;
  readonly broker: BrokerClient;
  readonly admin: AdminClient;
  readonly requestTimeoutMs: number;

  constructor(options: ClientOptions = {}) {
    // A single-node cluster has one address; with several, the first is the bootstrap broker.
    this.address = brokerList(options.brokers)[0];
    this.requestTimeoutMs = options.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS_DEFAULT;
    if (!Number.isSafeInteger(this.requestTimeoutMs) || this.requestTimeoutMs <= 0) {
      throw new SluiceError('INVALID_REQUEST', `requestTimeoutMs must be a positive integer (got ${this.requestTimeoutMs})`);
    }
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': GRPC_RECEIVE_BYTES_MAX,
      'grpc.max_send_message_length': GRPC_RECEIVE_BYTES_MAX,
      'grpc.keepalive_time_ms': 30_000,
      // HTTP/2's default 64 KiB window stalls every fetch of a few hundred KB on a WINDOW_UPDATE.
      'grpc-node.flow_control_window': 4 << 20,
      ...options.channelOptions,
    };
    this.broker = new FastBrokerClient(this.address, grpc.credentials.createInsecure(), channelOptions);
    this.admin = new AdminClient(this.address, grpc.credentials.createInsecure(), {
      ...channelOptions,
      channelOverride: this.broker.getChannel(),
    });
  }

  /** Calls one unary method; rejects with a SluiceError. `extraMs` extends the deadline (long-polls). */
  unary<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, request: Req, extraMs = 0, signal?: AbortSignal): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const deadline = Date.now() + this.requestTimeoutMs + extraMs;
      const call = method.call(client, request, new grpc.Metadata(), { deadline }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err === null) resolve(res as Res);
        else if (readErrorInfo(err.metadata) !== null) reject(fromServiceError(err));
        else reject(explainTransportError(fromServiceError(err), this.address, this.requestTimeoutMs + extraMs));
      });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.admin.close();
    this.broker.close();
  }
}
