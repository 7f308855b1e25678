/**
 * One gRPC channel to a broker, shared by the Broker and Admin stubs, with calls turned into
 * promises whose failures are SluiceErrors (decoded from the ErrorInfo detail by src/rpc).
 */
import * as grpc from '@grpc/grpc-js';
import { GRPC_RECEIVE_BYTES_MAX } from '../constants.js';
import { SluiceError } from '../errors.js';
import { AdminClient, FastBrokerClient, fromServiceError, type BrokerClient } from '../rpc/index.js';

export interface ClientOptions {
  /** "host:port", a comma-separated list, or an array; the first reachable is used. Default 127.0.0.1:7070. */
  brokers?: string | string[];
  /** Deadline of one unary call. Default 30 s (long-poll fetches add their wait to it). */
  requestTimeoutMs?: number;
  /**
   * Extra grpc-js channel options. grpc-js shares one TCP connection among clients with equal
   * options; `{ 'grpc.use_local_subchannel_pool': 1 }` gives this client its own.
   */
  channelOptions?: grpc.ChannelOptions;
}

export const DEFAULT_BROKER = '127.0.0.1:7070';

export function brokerList(brokers: string | string[] | undefined): string[] {
  const list = (Array.isArray(brokers) ? brokers : (brokers ?? DEFAULT_BROKER).split(',')).map((b) => b.trim()).filter((b) => b.length > 0);
  if (list.length === 0) throw new SluiceError('INVALID_REQUEST', 'no broker address given: pass HOST:PORT (e.g. 127.0.0.1:7070)');
  return list;
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
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
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
        if (err !== null) reject(fromServiceError(err));
        else resolve(res as Res);
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
