/**
 * `startBroker`: a whole broker in this process — the core (Broker.open: topic table, shard workers,
 * logs), the gRPC front-end and the HTTP health/metrics endpoint. The CLI's `serve` and the tests use
 * it; signal handling belongs to the caller (the CLI).
 *
 * Start order: bind both ports first (a taken port fails before the data dir is touched), then open
 * the core with the bound addresses, then report SERVING. Close order is the reverse, with a drain.
 */
import type http from 'node:http';
import { ServiceContext } from '../rpc/index.js';
import { groupsExtraService } from '../rpc/groups-service.js';
import { NOOP_PROBE, type BrokerProbe } from '../broker/probe.js';
import type { BrokerApi } from '../broker/types.js';
import type { GroupId, PeerDirectory } from '../cluster/types.js';
import { Broker, replicaBugsFromEnv, TEST_REPLICA_BUGS_ENV, type BrokerLogger, type BrokerOptions, type ReplicaBugs } from '../broker/index.js';
import { parseHostPort } from './address.js';
import { startGrpc, stopGrpc, type ExtraService, type GrpcFrontend } from './grpc.js';
import { startHttp, stopHttp, type MetricsHandler } from './http.js';
import { StartupError } from './errors.js';
import { CLIENT_MEMORY_BYTES_DEFAULT, CLIENT_MEMORY_BYTES_MIN, READINESS_LEADER_TIMEOUT_MS, REPLICA_QUIESCE } from '../constants.js';
import { GrpcRaftTransport, type RaftTransportProbe } from '../cluster/transport/index.js';
import type { NodeId } from '../model/index.js';
import { clusterModeVoters, membershipExtraService, startMembership, withMembership, type ClusterOptions, type MembershipHandle } from './cluster.js';
import { controllerService } from '../rpc/controller-service.js';
import { controllerLogStateOnDisk } from '../controller/index.js';
import { replicasService } from '../rpc/replicas-service.js';
import { PeerBrokers } from '../rpc/forward.js';
import { ClusterNode } from './cluster-node.js';
import { clusterApis } from './cluster-api.js';
import { isReplicaHost, type ReplicaHost } from './replica-host.js';
import { CatchUpCheck } from './readiness.js';
import { handOffLeaderships, type HandOffOptions, type HandOffResult } from './drain.js';

export interface StartBrokerOptions {
  /** Where logs and topic metadata live. Default './data'. */
  dataDir?: string;
  /** gRPC listen address. Default '127.0.0.1:0' (an ephemeral port; read it back from `grpcAddress`). */
  grpcAddress?: string;
  /** HTTP listen address for /healthz, /readyz, /metrics; null disables HTTP. Default '127.0.0.1:0'. */
  httpAddress?: string | null;
  /** Shard worker threads. Default: available parallelism - 1, at least 1. */
  shards?: number;
  nodeId?: number;
  probe?: BrokerProbe;
  /** Serves GET /metrics (src/metrics provides one). */
  metricsHandler?: MetricsHandler;
  /** A pino(-compatible) logger handed to the core. */
  logger?: BrokerLogger;
  /** Core tuning knobs (ring sizes, queue bounds), mostly for tests; defaults in src/constants.ts. */
  tuning?: Pick<BrokerOptions, 'requestRingBytes' | 'responseRingBytes' | 'ringWaitMs' | 'ringWaitersMax' | 'retentionCheckMs' | 'statsIntervalMs' | 'watchdogMs'>;
  /**
   * Budget for bytes held on behalf of clients (produce bodies, fetch responses, subscription buffers).
   * Default CLIENT_MEMORY_BYTES_DEFAULT (256 MiB); at least CLIENT_MEMORY_BYTES_MIN.
   */
  maxClientMemoryBytes?: number;
  /** How long close() waits for in-flight calls before cutting them. Default 10 s. */
  drainMs?: number;
  /**
   * More gRPC services on the same server (e.g. consumer groups). Called before the core is open, so
   * implementations reach it through `api()`, which throws a retriable UNAVAILABLE until it is.
   */
  grpcServices?: (api: () => BrokerApi) => ExtraService[];
  /** Opens the core; tests substitute a fake. Default: Broker.open from src/broker. */
  openBroker?: (options: OpenBrokerOptions) => Promise<BrokerApi>;

  // --- Raft transport (src/cluster/transport) ---------------------------------------------------
  /** The address to dial for a peer's Raft traffic. Default: what gossip knows (none without `cluster`). */
  resolvePeer?: (node: NodeId) => string | undefined;
  /** Where the Raft transport reports (src/metrics `createRaftTransportProbe`). Default: nowhere. */
  raftTransportProbe?: RaftTransportProbe;

  // ---- cluster membership (issue 11; src/server/cluster.ts) ----
  /**
   * Join or found a cluster: node identity in `<data-dir>/__cluster/node.json` and SWIM gossip on the
   * gRPC port. Without it the broker is a lone node with no identity file (embedded use, most tests).
   * Its node id is `nodeId` (default 1).
   */
  cluster?: ClusterOptions;
  /**
   * A misconfiguration found after start (a seed says this node is of another cluster, or that its id
   * is taken by a live node): the broker cannot serve as a member. `sluice serve` logs it and exits 1.
   * Default: throw it out of the event loop.
   */
  onFatal?: (err: Error) => void;
}

export type OpenBrokerOptions = BrokerOptions;

export interface RunningBroker {
  /** The bound gRPC address, e.g. "127.0.0.1:40123". */
  readonly grpcAddress: string;
  /** The bound HTTP address, or null when HTTP is disabled. */
  readonly httpAddress: string | null;
  /** The core, for in-process use without gRPC. */
  readonly broker: BrokerApi;
  /** Cluster membership (a PeerDirectory), or null when started without `cluster`. */
  readonly membership: PeerDirectory | null;
  /** Stops intake, drains in-flight calls, flushes and closes every log. Idempotent. */
  close(): Promise<void>;
  /** This node's Raft transport (served on the gRPC port): Raft groups register their handlers here. */
  readonly raftTransport: GrpcRaftTransport;
  /** The controller and replica wiring in cluster mode (`cluster.seeds` or `cluster.controllerVoters`), else null. */
  readonly clusterNode: ClusterNode | null;
  /**
   * Cluster mode: hands every partition this node leads to an in-sync peer (src/server/drain.ts), with
   * /readyz 503 from now on; call it before close() on a graceful stop (`sluice serve` does on SIGTERM).
   * Resolves null outside cluster mode; never rejects.
   */
  handOffLeaderships(): Promise<HandOffResult | null>;
}

/** Cluster mode's parts that readiness and the graceful stop look at. */
interface ClusterParts {
  node: ClusterNode | null;
  catchUp: CatchUpCheck | null;
  handingOff: boolean;
}

/** Why the broker is not ready, or null: starting, stopping, not yet joined, no controller, or partitions offline. */
function notReady(ctx: ServiceContext, core: BrokerApi | null, membership: MembershipHandle, cluster: ClusterParts): string | null {
  if (!ctx.ready) return core === null ? 'starting' : 'shutting down';
  if (cluster.handingOff) return 'shutting down: handing partition leaderships to in-sync peers';
  const joining = membership.notReady();
  if (joining !== null) return joining;
  const controller = cluster.node?.notReady() ?? null;
  if (controller !== null) return controller;
  // Joined and registered: every replica it holds must also be in its leader's in-sync set.
  const behind = cluster.catchUp?.notReady() ?? null;
  if (behind !== null) return behind;
  const offline = core?.offlinePartitions?.() ?? [];
  if (offline.length === 0) return null;
  const shown = offline.slice(0, 10).join(', ') + (offline.length > 10 ? ', …' : '');
  return `${offline.length} partition(s) offline (${shown}); see the broker log`;
}

/**
 * TEST ONLY: the simulator's bug modes for this node's partition replicas (`SLUICE_TEST_REPLICA_BUGS`,
 * src/broker/test-hooks.ts), read once here. An unknown name, or the variable outside cluster mode
 * (where it would do nothing), refuses the start; when set, a loud warning says so.
 */
function testReplicaBugs(clustered: boolean, logger: BrokerLogger | undefined): ReplicaBugs | null {
  let bugs: ReplicaBugs | null;
  try {
    bugs = replicaBugsFromEnv();
  } catch (err) {
    throw new StartupError((err as Error).message, { cause: err });
  }
  if (bugs === null) return null;
  if (!clustered) throw new StartupError(`${TEST_REPLICA_BUGS_ENV} needs cluster mode (--seeds or --controller-voters): it acts on partition replicas of several voters`);
  const names = [...bugs.raft, ...bugs.driver].join(',');
  const line = `TEST ONLY: ${TEST_REPLICA_BUGS_ENV}=${names}: every partition replica of this node runs with deliberate bugs and WILL lose or corrupt data; never run this in production`;
  if (logger !== undefined) logger.warn({ replicaBugs: names }, line);
  else process.stderr.write(`WARNING: ${line}\n`);
  return bugs;
}

function defaultOpen(options: OpenBrokerOptions): Promise<BrokerApi> {
  return Broker.open(options);
}

export async function startBroker(options: StartBrokerOptions = {}): Promise<RunningBroker> {
  const probe = options.probe ?? NOOP_PROBE;
  const clientMemory = options.maxClientMemoryBytes ?? CLIENT_MEMORY_BYTES_DEFAULT;
  if (!Number.isSafeInteger(clientMemory) || clientMemory < CLIENT_MEMORY_BYTES_MIN) {
    throw new StartupError(`max client memory must be an integer of at least ${CLIENT_MEMORY_BYTES_MIN} bytes, got ${String(clientMemory)}`);
  }
  const ctx = new ServiceContext(probe, clientMemory);
  const grpcAddr = parseHostPort(options.grpcAddress ?? '127.0.0.1:0', 'gRPC address');
  const httpAddr = options.httpAddress === null ? null : parseHostPort(options.httpAddress ?? '127.0.0.1:0', 'HTTP address');

  const membership: MembershipHandle = { gossip: null, notReady: () => null };
  // The Raft transport between nodes rides the client port (docs/cluster.md "Raft transport").
  const nodeId = options.nodeId ?? 1;
  if (!Number.isSafeInteger(nodeId) || nodeId <= 0) throw new StartupError(`node id must be a positive integer, got ${String(nodeId)}`);
  const raftTransport = new GrpcRaftTransport({ nodeId: nodeId as NodeId, resolve: options.resolvePeer ?? ((node) => membership.gossip?.get(node)?.address), probe: options.raftTransportProbe, logger: options.logger });
  // Consumer groups share the front-end's context, so a shutdown ends their Consume streams at once.
  const services = [groupsExtraService(ctx), raftTransport.service(), ...(options.grpcServices?.(() => ctx.api()) ?? [])];
  if (options.cluster !== undefined) services.push(membershipExtraService(membership));
  // Cluster mode: the controller (group 0) and `Controller/Submit` forwarding on this port.
  const voters = clusterModeVoters(options.cluster);
  const replicaBugs = testReplicaBugs(voters !== null, options.logger);
  const cluster: ClusterParts = { node: null, catchUp: null, handingOff: false };
  // LogState is answered from the data dir until the controller is open (a wiped voter's question).
  const dataDir = options.dataDir ?? './data';
  if (voters !== null) services.push(controllerService(() => cluster.node?.controller ?? null, () => cluster.node?.controller.logState ?? controllerLogStateOnDisk(dataDir)));
  // What the controller leader asks of partition leaders here (moves, leader balancing).
  const replicaHost: { host: ReplicaHost | null } = { host: null };
  if (voters !== null) services.push(replicasService(() => replicaHost.host));
  let grpc: GrpcFrontend;
  try {
    grpc = await startGrpc(ctx, grpcAddr, services);
  } catch (err) {
    raftTransport.close();
    throw err;
  }
  let httpServer: http.Server | null = null;
  let httpAddress: string | null = null;
  let broker: BrokerApi;
  let core: BrokerApi | null = null;
  try {
    if (httpAddr !== null) {
      const started = await startHttp({ address: httpAddr, notReady: () => notReady(ctx, core, membership, cluster), metricsHandler: options.metricsHandler }).catch((err: NodeJS.ErrnoException) => {
        const hint = err.code === 'EADDRINUSE' ? 'address already in use; stop the other process or pick another with --http-addr' : err.message;
        throw new StartupError(`cannot listen for HTTP on ${options.httpAddress}: ${hint}`, { cause: err });
      });
      httpServer = started.server;
      httpAddress = started.address;
    }
    broker = await (options.openBroker ?? defaultOpen)({
      dataDir: options.dataDir ?? './data',
      shards: options.shards,
      nodeId: options.nodeId,
      grpcAddress: grpc.address,
      httpAddress: httpAddress ?? '',
      probe,
      logger: options.logger,
      ...options.tuning,
      // Cluster mode: the Broker hosts only the replicas the controller gives it (src/broker/replicas.ts).
      // Gossip is the failure detector that wakes quiesced replicas (ClusterNode -> peersChanged).
      ...(voters === null ? {} : ({ cluster: { transport: raftTransport, quiesce: REPLICA_QUIESCE, replicaBugs } } as Partial<OpenBrokerOptions>)),
    });
  } catch (err) {
    raftTransport.close();
    grpc.server.forceShutdown();
    if (httpServer !== null) await stopHttp(httpServer);
    throw err;
  }
  if (options.cluster !== undefined) {
    try {
      await startMembership(membership, broker, {
        cluster: options.cluster,
        nodeId: options.nodeId,
        dataDir: options.dataDir ?? './data',
        boundGrpcAddress: grpc.address,
        shards: options.shards,
        logger: options.logger,
        onFatal: options.onFatal,
        controllerVoters: voters,
      });
    } catch (err) {
      grpc.server.forceShutdown();
      await broker.close().catch(() => {});
      if (httpServer !== null) await stopHttp(httpServer);
      throw err;
    }
    if (voters === null) broker = withMembership(broker, membership);
  }
  const clients = new PeerBrokers();
  let handOffHost: HandOffOptions['host'] | null = null;
  let replicaCore: BrokerApi | null = null;
  let forwardedApi: BrokerApi | undefined;
  if (voters !== null) {
    const gossip = membership.gossip!;
    try {
      if (!isReplicaHost(broker)) throw new StartupError('this build\'s broker core cannot host replicas, so it cannot run in cluster mode; start it without --seeds and --controller-voters');
      replicaHost.host = broker;
      const node = await ClusterNode.start({
        nodeId: nodeId as NodeId,
        dataDir: options.dataDir ?? './data',
        voters: voters as NodeId[],
        peers: gossip,
        transport: raftTransport,
        host: broker,
        shards: (broker as { shardCount?: number }).shardCount ?? options.shards ?? 1,
        logger: options.logger,
        controllerTiming: options.cluster?.controllerTiming,
      });
      cluster.node = node;
      const host = broker;
      if (host.transferLeadership !== undefined) handOffHost = host as HandOffOptions['host'];
      replicaCore = broker;
      const addressOf = (id: NodeId): string | undefined => gossip.get(id)?.address ?? node.controller.state.node(id)?.address;
      cluster.catchUp = new CatchUpCheck({
        nodeId: nodeId as NodeId,
        assigned: () => node.controller.state.partitions(),
        held: () => host.replicaStatus(),
        describe: (id, topics) => {
          const address = addressOf(id);
          if (address === undefined) return Promise.reject(new Error(`no address known for node ${id}`));
          return clients.topicsSeenBy(address, topics, READINESS_LEADER_TIMEOUT_MS);
        },
        gate: () => node.notReady(),
      });
      const apis = clusterApis({
        nodeId: nodeId as NodeId,
        core: broker,
        controller: node.controller,
        peers: gossip,
        clusterId: () => gossip.clusterId ?? node.controller.state.clusterId,
        clients,
        httpAddress: httpAddress ?? '',
        metadataNotReady: () => node.metadataNotReady(),
      });
      broker = apis.routed;
      forwardedApi = apis.local;
    } catch (err) {
      cluster.catchUp?.close();
      gossip.close();
      raftTransport.close();
      grpc.server.forceShutdown();
      await broker.close().catch(() => {});
      if (httpServer !== null) await stopHttp(httpServer);
      throw err;
    }
  }
  core = broker;
  ctx.attach(broker, forwardedApi);
  grpc.setServing(true);

  let closing: Promise<void> | null = null;
  const close = async (): Promise<void> => {
    cluster.catchUp?.close();
    membership.gossip?.close();
    grpc.setServing(false);
    ctx.beginShutdown();
    // Its streams are long-lived: ended first, or the drain below would wait for them.
    raftTransport.close();
    await stopGrpc(grpc.server, options.drainMs ?? 10_000);
    await cluster.node?.close().catch((err: unknown) => options.logger?.error({ err }, 'closing the controller failed'));
    clients.close();
    try {
      // Rejects when a log could not be flushed or closed: the caller (the CLI) exits non-zero.
      await broker.close();
    } finally {
      if (httpServer !== null) await stopHttp(httpServer);
    }
  };
  return {
    grpcAddress: grpc.address,
    httpAddress,
    broker,
    raftTransport,
    membership: membership.gossip,
    clusterNode: cluster.node,
    close: () => (closing ??= close()),
    handOffLeaderships: async () => {
      const host = handOffHost;
      if (host === null || membership.gossip === null || closing !== null) return null;
      cluster.handingOff = true;
      // Tell the other nodes first, so none hands a leadership back (their balancers, their own hand-offs).
      membership.gossip.announceLeaving();
      // If this node leads the controller, its leader balancing must not hand leaderships back to it.
      cluster.node?.executor.pauseLeaderBalancing();
      const core = replicaCore!;
      const highWatermarks = async (topic: string): Promise<ReadonlyMap<number, number>> => new Map((await core.describeTopic(topic)).partitions.map((p) => [p.partition, p.highWatermark]));
      const voters = (g: GroupId): readonly NodeId[] | undefined => cluster.node?.controller.state.partitionByGroup(g)?.voters.nodes;
      return handOffLeaderships({ nodeId: nodeId as NodeId, host, peers: membership.gossip, voters, highWatermarks });
    },
  };
}
