/**
 * gRPC channels to the brokers (one per node, shared by its Broker and Admin stubs), with calls turned
 * into promises whose failures are SluiceErrors (decoded from the ErrorInfo detail by src/rpc), and
 * each partition's requests routed to its leader.
 */
import * as grpc from '@grpc/grpc-js';
import { CLIENT_BROKER_PORT_DEFAULT, CLIENT_REDIAL_BACKOFF_MS_MAX, CLIENT_REDIAL_BACKOFF_MS_MIN, CLIENT_REQUEST_TIMEOUT_MS_DEFAULT, CLIENT_ROUTE_MAX_AGE_MS, GRPC_RECEIVE_BYTES_MAX } from '../constants.js';
import { SluiceError, isSluiceError } from '../errors.js';
import { AdminClient, FastBrokerClient, fromServiceError, readErrorInfo, type BrokerClient } from '../rpc/index.js';
import type { ProduceRequest, ProduceResponse } from '../rpc/gen/sluice/v1/broker.js';
import { ProduceStream } from './produce-stream.js';

export interface ClientOptions {
  /**
   * "host:port", a comma-separated list, or an array: nodes of one cluster. Requests start at the first
   * and move to the next when one does not answer; partition requests go to the partition's leader. A
   * host alone gets port 7070 (the broker's default gRPC port). Default 127.0.0.1:7070.
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

interface NodeClients {
  readonly broker: BrokerClient;
  readonly admin: AdminClient;
  /** The node's ProduceStream, made on the first produce. */
  produce?: ProduceStream;
}

/** What the client knows of one topic's leaders: partition → leader address ('' = unknown). */
interface TopicRoute {
  leaders: string[];
  fetchedMs: number;
}

/**
 * Channels to a cluster: one per node address, made on first use. Unary calls go to the bootstrap node
 * (the first of `brokers` that answers: a transport failure moves on to the next), and each partition's
 * requests (`brokerFor`) to its leader as GetMetadata names it. A NOT_LEADER or UNAVAILABLE answer for a
 * partition (`routeFailed`) takes the leader the error names, or forgets the route and looks again, so
 * the caller's retry goes where the partition now lives. A node also forwards a request it cannot serve
 * to the leader, so a stale route costs a hop, not a failure.
 */
export class Connection {
  /** Every bootstrap address given (`brokers`), normalized. */
  readonly addresses: readonly string[];
  readonly requestTimeoutMs: number;
  private readonly channelOptions: grpc.ChannelOptions;
  private readonly nodes = new Map<string, NodeClients>();
  private readonly addressOf = new WeakMap<grpc.Client, string>();
  private bootstrap = 0;
  private readonly routes = new Map<string, TopicRoute>();
  private readonly refreshing = new Map<string, Promise<void>>();
  private closed = false;

  constructor(options: ClientOptions = {}) {
    this.addresses = brokerList(options.brokers);
    this.requestTimeoutMs = options.requestTimeoutMs ?? CLIENT_REQUEST_TIMEOUT_MS_DEFAULT;
    if (!Number.isSafeInteger(this.requestTimeoutMs) || this.requestTimeoutMs <= 0) {
      throw new SluiceError('INVALID_REQUEST', `requestTimeoutMs must be a positive integer (got ${this.requestTimeoutMs})`);
    }
    this.channelOptions = {
      'grpc.max_receive_message_length': GRPC_RECEIVE_BYTES_MAX,
      'grpc.max_send_message_length': GRPC_RECEIVE_BYTES_MAX,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.initial_reconnect_backoff_ms': CLIENT_REDIAL_BACKOFF_MS_MIN,
      'grpc.min_reconnect_backoff_ms': CLIENT_REDIAL_BACKOFF_MS_MIN,
      'grpc.max_reconnect_backoff_ms': CLIENT_REDIAL_BACKOFF_MS_MAX,
      // HTTP/2's default 64 KiB window stalls every fetch of a few hundred KB on a WINDOW_UPDATE.
      'grpc-node.flow_control_window': 4 << 20,
      ...options.channelOptions,
    };
    this.node(this.address);
  }

  /** The bootstrap node's address: the first of `brokers`, or the next after it failed to answer. */
  get address(): string {
    return this.addresses[this.bootstrap];
  }

  /** The bootstrap node's Broker stub. */
  get broker(): BrokerClient {
    return this.node(this.address).broker;
  }

  /** The bootstrap node's Admin stub (same channel). */
  get admin(): AdminClient {
    return this.node(this.address).admin;
  }

  private node(address: string): NodeClients {
    let n = this.nodes.get(address);
    if (n === undefined) {
      const broker = new FastBrokerClient(address, grpc.credentials.createInsecure(), this.channelOptions);
      const admin = new AdminClient(address, grpc.credentials.createInsecure(), { ...this.channelOptions, channelOverride: broker.getChannel() });
      n = { broker, admin };
      this.addressOf.set(broker, address);
      this.addressOf.set(admin, address);
      this.nodes.set(address, n);
    }
    return n;
  }

  /**
   * The Broker stub of the node leading `topic`/`partition` when known, else the bootstrap node's. An
   * unknown or old route is looked up in the background (GetMetadata); this call never waits for it.
   */
  brokerFor(topic: string, partition: number | undefined): BrokerClient {
    const r = this.routes.get(topic);
    if (r === undefined || Date.now() - r.fetchedMs > CLIENT_ROUTE_MAX_AGE_MS) this.refresh(topic);
    const leader = partition === undefined ? '' : (r?.leaders[partition] ?? '');
    return leader === '' ? this.broker : this.node(leader).broker;
  }

  /** A partition request failed: follow the leader a NOT_LEADER names, or forget the route and look again. */
  routeFailed(topic: string, partition: number | undefined, err: unknown): void {
    if (!(err instanceof SluiceError) || partition === undefined) return;
    if (err.code !== 'NOT_LEADER' && err.code !== 'UNAVAILABLE' && err.code !== 'TIMEOUT' && err.code !== 'SHUTTING_DOWN') return;
    const r = this.routes.get(topic);
    const hinted = err.code === 'NOT_LEADER' ? (err.info?.leader_address ?? '') : '';
    if (r !== undefined && partition < r.leaders.length) r.leaders[partition] = hinted !== '' ? normalizeBrokerAddress(hinted) : '';
    if (hinted === '') this.refresh(topic, true);
  }

  /** Looks up the leaders of `topic` (one lookup at a time per topic); failures leave the old route. */
  private refresh(topic: string, force = false): void {
    if (this.closed || this.refreshing.has(topic)) return;
    const r = this.routes.get(topic);
    if (!force && r !== undefined && Date.now() - r.fetchedMs <= CLIENT_ROUTE_MAX_AGE_MS) return;
    const p = this.unary(this.broker, this.broker.getMetadata, { topics: [topic] })
      .then((m) => {
        const t = m.topics.find((x) => x.name === topic);
        if (t === undefined) return;
        // A lone node's metadata names itself by its bind address, which may not be dialable (0.0.0.0):
        // route only in a cluster, where every node advertises a dialable address.
        const byId = new Map(m.brokers.filter((b) => b.alive).map((b) => [b.nodeId, b.grpcAddress]));
        const leaders = t.partitions.map((p) => (m.brokers.length > 1 ? (byId.get(p.leader) ?? '') : ''));
        this.routes.set(topic, { leaders, fetchedMs: Date.now() });
      })
      .catch(() => {})
      .finally(() => this.refreshing.delete(topic));
    this.refreshing.set(topic, p);
  }

  /** Resolves once a lookup of `topic`'s leaders in flight (if any) has finished. */
  async routed(topic: string): Promise<void> {
    await this.refreshing.get(topic);
  }

  /**
   * Calls one unary method; rejects with a SluiceError. `extraMs` extends the deadline (long-polls).
   * A call to the bootstrap node that could not connect at all (so nothing was sent) is made again on
   * the next bootstrap address, once per address.
   */
  async unary<Req, Res>(client: grpc.Client, method: UnaryMethod<Req, Res>, request: Req, extraMs = 0, signal?: AbortSignal): Promise<Res> {
    for (let tries = 0; ; tries++) {
      const address = this.addressOf.get(client) ?? this.address;
      try {
        return await this.unaryOnce(client, address, method, request, extraMs, signal);
      } catch (err) {
        const next = this.afterFailure(client, address, err, tries, signal);
        if (next === null) throw err;
        client = next;
      }
    }
  }

  /**
   * One produce on the node of `client` (a Broker stub of this connection), over that node's
   * ProduceStream (./produce-stream.ts); fails over between bootstrap addresses as `unary` does.
   */
  async produce(client: BrokerClient, request: ProduceRequest): Promise<ProduceResponse> {
    for (let tries = 0; ; tries++) {
      const address = this.addressOf.get(client) ?? this.address;
      try {
        return await this.produceStream(address).send(request);
      } catch (err) {
        const next = this.afterFailure(client, address, err, tries);
        if (next === null) throw err;
        client = next as BrokerClient;
      }
    }
  }

  private produceStream(address: string): ProduceStream {
    const n = this.node(address);
    n.produce ??= new ProduceStream(
      n.broker,
      this.requestTimeoutMs,
      (req) => this.unaryOnce(n.broker, address, n.broker.produce, req, 0),
      (err) => explainTransportError(err, address, this.requestTimeoutMs),
    );
    return n.produce;
  }

  /**
   * After a call to `address` failed: the stub to make it again on (the next bootstrap node's, when the
   * bootstrap node did not answer at all and nothing was sent), or null to give up with `err`. A
   * bootstrap node that failed or is stopping moves later calls to the next address either way.
   */
  private afterFailure(client: grpc.Client, address: string, err: unknown, tries: number, signal?: AbortSignal): grpc.Client | null {
    const bootstrap = address === this.address;
    // A bootstrap node that is stopping: later calls (and the caller's retry) start at the next one.
    if (bootstrap && isSluiceError(err, 'SHUTTING_DOWN') && this.addresses.length > 1) this.bootstrap = (this.bootstrap + 1) % this.addresses.length;
    const transport = err instanceof SluiceError && (err.code === 'UNAVAILABLE' || err.code === 'TIMEOUT') && !(err.info !== undefined || readErrorInfo((err.cause as grpc.ServiceError | undefined)?.metadata) !== null);
    if (!transport || !bootstrap || this.addresses.length < 2) return null;
    // The node did not answer at all: later calls start at the next bootstrap address.
    const kind = client === this.nodes.get(address)?.admin ? 'admin' : 'broker';
    this.bootstrap = (this.bootstrap + 1) % this.addresses.length;
    const neverSent = /connection refused|ECONNREFUSED|No connection established/i.test((err as Error).message);
    if (!neverSent || tries + 1 >= this.addresses.length || signal?.aborted === true) return null;
    return kind === 'admin' ? this.admin : this.broker;
  }

  private unaryOnce<Req, Res>(client: grpc.Client, address: string, method: UnaryMethod<Req, Res>, request: Req, extraMs: number, signal?: AbortSignal): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const deadline = Date.now() + this.requestTimeoutMs + extraMs;
      const call = method.call(client, request, new grpc.Metadata(), { deadline }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err === null) resolve(res as Res);
        else if (readErrorInfo(err.metadata) !== null) reject(fromServiceError(err));
        else reject(explainTransportError(fromServiceError(err), address, this.requestTimeoutMs + extraMs));
      });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.closed = true;
    for (const n of this.nodes.values()) {
      n.produce?.close();
      n.admin.close();
      n.broker.close();
    }
    this.nodes.clear();
  }
}
