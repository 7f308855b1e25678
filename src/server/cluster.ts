/**
 * Cluster membership in `startBroker` (issue 11): the node's identity, the gossip driver, its gRPC
 * service on the client port, and GetMetadata's node list. Kept here so src/server/broker.ts carries
 * only the calls.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CLUSTER_DIR, TOPICS_FILE } from '../broker/index.js';
import { TopicTable } from '../broker/topic-table.js';
import type * as grpc from '@grpc/grpc-js';
import { SluiceError, isSluiceError } from '../errors.js';
import { CLUSTER_CONTROLLER_VOTERS_DEFAULT, GOSSIP_RACK_BYTES_MAX } from '../constants.js';
import { asNodeId } from '../model/index.js';
import type { BrokerApi, ClusterMetadata } from '../broker/types.js';
import type { BrokerLogger } from '../broker/index.js';
import { toServiceError } from '../rpc/errors.js';
import { Gossip, MembershipService, loadOrCreateIdentity, type GossipTiming, type MembershipLogger, type MembershipProbe } from '../cluster/membership/index.js';
import { formatHostPort, parseHostPort } from './address.js';
import { StartupError } from './errors.js';
import type { ExtraService } from './grpc.js';

export interface ClusterOptions {
  /** host:port the other nodes and clients dial. Default: the bound gRPC address (see resolveAdvertiseAddress). */
  advertiseAddress?: string;
  /** host:port of existing members. None: this node founds a cluster (or carries on its own). */
  seeds?: readonly string[];
  /** '' when not configured. */
  rack?: string;
  /** `sluice_cluster_members{state}`; createMetrics().membershipProbe. */
  probe?: MembershipProbe;
  /** Protocol timing; the defaults (src/constants.ts) are what production and the process tests use. */
  timing?: Partial<GossipTiming>;
  /**
   * The controller group's voters (`--controller-voters`). Cluster mode (a controller, replicated
   * partitions, admin through the controller) runs iff this or `seeds` is given; with seeds and no
   * voters, the voters are CLUSTER_CONTROLLER_VOTERS_DEFAULT (nodes 1, 2, 3).
   */
  controllerVoters?: readonly number[];
  /** Test hook: controller timing (defaults in src/constants.ts). */
  controllerTiming?: { tickMs?: number; electionTicks?: number; heartbeatTicks?: number };
}

/** Whether `options` asks for cluster mode, and with which controller voters. */
export function clusterModeVoters(options: ClusterOptions | undefined): readonly number[] | null {
  if (options === undefined) return null;
  if (options.controllerVoters !== undefined) return options.controllerVoters;
  return (options.seeds?.length ?? 0) > 0 ? CLUSTER_CONTROLLER_VOTERS_DEFAULT : null;
}

/** The gossip of a starting broker: null until the core is open. */
export interface MembershipHandle {
  gossip: Gossip | null;
  notReady(): string | null;
}

const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** A node id as a user gives it: a positive int32 (0 is Raft's "nobody"). */
export function validateNodeId(n: unknown): number {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > 2 ** 31 - 1) {
    throw new StartupError(`invalid node id ${String(n)}: a node id is an integer from 1 to ${2 ** 31 - 1} (0 is not a node)`);
  }
  return n;
}

/**
 * What this node advertises. An explicit address must be dialable: a wildcard (0.0.0.0, ::) or port 0
 * is refused. By default the bound gRPC address; when that is a wildcard bind, the machine's host name
 * with the bound port (a container's host name is what its network resolves).
 */
export function resolveAdvertiseAddress(explicit: string | undefined, boundGrpcAddress: string): string {
  if (explicit !== undefined && explicit !== '') {
    let hp;
    try {
      hp = parseHostPort(explicit, 'advertise address');
    } catch (err) {
      throw new StartupError((err as Error).message);
    }
    if (WILDCARD_HOSTS.has(hp.host) || explicit.trim().startsWith(':')) {
      throw new StartupError(`invalid advertise address "${explicit}": ${hp.host || '(no host)'} is a listen-on-every-interface address that no other node can dial; pass the host name or IP others reach this node at, e.g. --advertise-addr 10.0.0.5:7070`);
    }
    if (hp.port === 0) throw new StartupError(`invalid advertise address "${explicit}": port 0 cannot be dialed; give the gRPC port`);
    return formatHostPort(hp);
  }
  const bound = parseHostPort(boundGrpcAddress, 'gRPC address');
  return WILDCARD_HOSTS.has(bound.host) ? formatHostPort({ host: os.hostname(), port: bound.port }) : formatHostPort(bound);
}

export function parseSeeds(seeds: readonly string[]): string[] {
  return seeds.map((s) => {
    try {
      return formatHostPort(parseHostPort(s, 'seed'));
    } catch (err) {
      throw new StartupError(`${(err as Error).message} (--seeds takes HOST:PORT,HOST:PORT,...)`);
    }
  });
}

/** sluice.cluster.v1.Membership, answering UNAVAILABLE until gossip has started. */
export function membershipExtraService(handle: MembershipHandle): ExtraService {
  const notYet = (callback: grpc.sendUnaryData<unknown>): void => callback(toServiceError(new SluiceError('UNAVAILABLE', 'this node is starting: membership is not running yet')));
  const forward =
    (method: 'probe' | 'indirectProbe' | 'join'): grpc.handleUnaryCall<unknown, unknown> =>
    (call, callback) => {
      if (handle.gossip === null) return notYet(callback);
      (handle.gossip.service()[method] as grpc.handleUnaryCall<unknown, unknown>)(call, callback);
    };
  const implementation: grpc.UntypedServiceImplementation = { probe: forward('probe'), indirectProbe: forward('indirectProbe'), join: forward('join') };
  return { definition: MembershipService as unknown as grpc.ServiceDefinition, implementation };
}

function membershipLogger(logger: BrokerLogger | undefined): MembershipLogger {
  const l = logger as (BrokerLogger & { debug?: (o: object, m: string) => void }) | undefined;
  return {
    debug: (o, m) => l?.debug?.(o, m),
    info: (o, m) => l?.info(o, m),
    warn: (o, m) => l?.warn(o, m),
    error: (o, m) => l?.error(o, m),
  };
}

export interface StartMembershipOptions {
  cluster: ClusterOptions;
  nodeId: number | undefined;
  dataDir: string;
  boundGrpcAddress: string;
  shards: number | undefined;
  logger: BrokerLogger | undefined;
  onFatal: ((err: Error) => void) | undefined;
  /** Cluster mode's controller voters (null: no controller runs). */
  controllerVoters: readonly number[] | null;
}

/** Loads (or creates) the node identity and starts gossip. Throws StartupError for a misconfiguration. */
export async function startMembership(handle: MembershipHandle, broker: BrokerApi, o: StartMembershipOptions): Promise<void> {
  const nodeId = validateNodeId(o.nodeId ?? 1);
  const advertiseAddress = resolveAdvertiseAddress(o.cluster.advertiseAddress, o.boundGrpcAddress);
  const seeds = parseSeeds(o.cluster.seeds ?? []);
  const rack = o.cluster.rack ?? '';
  if (Buffer.byteLength(rack) > GOSSIP_RACK_BYTES_MAX) throw new StartupError(`invalid rack "${rack}": at most ${GOSSIP_RACK_BYTES_MAX} bytes`);
  let identity;
  try {
    identity = loadOrCreateIdentity(o.dataDir, asNodeId(nodeId));
  } catch (err) {
    if (isSluiceError(err)) throw new StartupError(err.message, { cause: err });
    throw err;
  }
  // A broker in cluster mode has no topic table of its own: the founding id is then an old single-node
  // table's (so an upgraded node keeps its cluster id), else a new one.
  const foundingClusterId = (await broker.metadata()).clusterId || tableClusterId(o.dataDir) || crypto.randomUUID();
  const logger = membershipLogger(o.logger);
  const gossip = new Gossip({
    dataDir: o.dataDir,
    identity,
    advertiseAddress,
    rack,
    shards: (broker as { shardCount?: number }).shardCount ?? o.shards ?? 0,
    seeds,
    foundingClusterId: () => foundingClusterId,
    // One of several controller voters never founds a cluster id alone: it may be pod 0 back wiped.
    foundsAlone: o.controllerVoters === null || (o.controllerVoters.length === 1 && o.controllerVoters[0] === nodeId),
    logger,
    probe: o.cluster.probe,
    timing: o.cluster.timing,
    onFatal: (err) => {
      logger.error({ code: err.code }, `cluster membership refused this node: ${err.message}`);
      o.onFatal?.(err);
    },
  });
  handle.gossip = gossip;
  handle.notReady = () => gossip.notReady();
  gossip.start();
  logger.info({ nodeId, nodeUuid: identity.nodeUuid, clusterId: identity.clusterId, advertise: advertiseAddress, seeds, rack }, 'cluster membership started');
}

/** The cluster id in an old single-node topics.json, or ''. */
function tableClusterId(dataDir: string): string {
  if (!fs.existsSync(path.join(dataDir, CLUSTER_DIR, TOPICS_FILE))) return '';
  try {
    return TopicTable.load(dataDir).clusterId;
  } catch {
    return '';
  }
}

/** The core with GetMetadata answering from membership: the cluster id and every known node. */
export function withMembership(broker: BrokerApi, handle: MembershipHandle): BrokerApi {
  const gossip = handle.gossip;
  if (gossip === null) return broker;
  const metadata = async (topics?: string[]): Promise<ClusterMetadata> => {
    const m = await broker.metadata(topics);
    const own = m.brokers[0]?.httpAddress ?? '';
    return {
      ...m,
      clusterId: gossip.clusterId ?? m.clusterId,
      brokers: gossip.members().map((n) => ({
        nodeId: n.id,
        grpcAddress: n.address,
        httpAddress: n.id === gossip.self.id ? own : '',
        rack: n.rack,
        alive: n.state !== 'dead',
        state: n.state,
        nodeUuid: n.uuid,
      })),
    };
  };
  return new Proxy(broker, {
    get(target, prop) {
      if (prop === 'metadata') return metadata;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
