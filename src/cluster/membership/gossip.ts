/**
 * The gossip driver: runs the pure SWIM core (swim.ts) on a timer, carries its messages over gRPC
 * (sluice.cluster.v1.Membership, on the client port), joins the cluster through the seeds, and serves
 * the other nodes' probes. Implements `PeerDirectory` for the rest of the node.
 *
 * Joining (docs/cluster.md):
 * - No seeds (other than this node's own address): this node founds a cluster, or carries on the one
 *   its data dir names. It is ready at once.
 * - Seeds: Join each in turn, with backoff, logging each failure's cause; `/readyz` says why it is not
 *   ready until one answers. A seed that refuses (another cluster, or our node id held by a live node
 *   with another UUID) is a misconfiguration: `onFatal` is called and the node must stop.
 * - A node listed first in its own seeds, with no cluster yet, founds one (a StatefulSet whose seeds are
 *   its first pods, this one included): when no other seed answers its first round if it may found
 *   alone (`foundsAlone`: it is the controller's only voter, or no controller runs), else only once
 *   another seed has answered that it has no cluster yet either. A pod 0 whose disk was wiped while
 *   the other pods are down cannot tell that from a first formation, and a new cluster id there would
 *   make the others refuse each other when they return; waiting for a clusterless peer tells them apart.
 * Members also Join, every reconnect interval, one member they hold as dead: a restarted node with no
 * seeds is found again that way, and learns (from the table it is sent) that it must refute.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { PEER_CHANNEL_OPTIONS, peerDialAddress } from '../test-peer-map.js';
import { SluiceError, isSluiceError } from '../../errors.js';
import {
  GOSSIP_INDIRECT_PROBES,
  GOSSIP_JOIN_RETRY_MS_MAX,
  GOSSIP_JOIN_RETRY_MS_MIN,
  GOSSIP_JOIN_TIMEOUT_MS,
  GOSSIP_MEMBERS_MAX,
  GOSSIP_PROBE_INTERVAL_MS,
  GOSSIP_PROBE_TIMEOUT_MS,
  GOSSIP_RECONNECT_INTERVAL_MS,
  GOSSIP_RETRANSMIT_MULT,
  GOSSIP_SUSPICION_TIMEOUT_MS,
  GOSSIP_TICK_MS,
  GOSSIP_UPDATES_PER_MESSAGE_MAX,
} from '../../constants.js';
import type { NodeId } from '../../model/index.js';
import { fromServiceError, toServiceError } from '../../rpc/errors.js';
import {
  MembershipClient,
  MembershipService,
  type IndirectProbeRequest,
  type IndirectProbeResponse,
  type JoinRequest,
  type JoinResponse,
  type MembershipServer,
  type ProbeRequest,
  type ProbeResponse,
} from '../../rpc/gen/sluice/cluster/v1/membership.js';
import type { NodeInfo, PeerDirectory } from '../types.js';
import { writeIdentity, type NodeIdentity } from './identity.js';
import { Swim, type AckMessage, type IndirectAckMessage, type MemberChange, type ProbeMessage, type SwimAction } from './swim.js';
import { NOOP_MEMBERSHIP_PROBE, type GossipTiming, type MembershipLogger, type MembershipProbe } from './types.js';
import { fromMember, fromMembers, toMember } from './wire.js';

export interface GossipOptions {
  dataDir: string;
  identity: NodeIdentity;
  /** host:port the others dial. */
  advertiseAddress: string;
  rack: string;
  shards: number;
  /** host:port of existing members; this node's own address is skipped. */
  seeds: readonly string[];
  /** The cluster id a founding node takes (the broker's existing id, so a single node keeps its id). */
  foundingClusterId: () => string;
  logger: MembershipLogger;
  probe?: MembershipProbe;
  /** A misconfiguration found after start (another cluster; a duplicate node id): the node must stop. */
  onFatal: (err: SluiceError) => void;
  /**
   * Whether a first-listed node with no cluster id may found one when no other seed answers (default
   * true). False when the node is one of several controller voters: it then founds only once another
   * seed answered that it has no cluster yet (a first formation), never alone (maybe a wiped disk).
   */
  foundsAlone?: boolean;
  timing?: Partial<GossipTiming>;
  random?: () => number;
}

export const DEFAULT_GOSSIP_TIMING: Readonly<GossipTiming> = Object.freeze({
  tickMs: GOSSIP_TICK_MS,
  probeIntervalMs: GOSSIP_PROBE_INTERVAL_MS,
  probeTimeoutMs: GOSSIP_PROBE_TIMEOUT_MS,
  suspicionTimeoutMs: GOSSIP_SUSPICION_TIMEOUT_MS,
  indirectProbes: GOSSIP_INDIRECT_PROBES,
  retransmitMult: GOSSIP_RETRANSMIT_MULT,
  joinTimeoutMs: GOSSIP_JOIN_TIMEOUT_MS,
  joinRetryMsMin: GOSSIP_JOIN_RETRY_MS_MIN,
  joinRetryMsMax: GOSSIP_JOIN_RETRY_MS_MAX,
  reconnectIntervalMs: GOSSIP_RECONNECT_INTERVAL_MS,
});

/** ErrorInfo metadata of a seed's answer "I have no cluster yet" (not a transport failure). */
const CLUSTERLESS_INFO_KEY = 'clusterless';

/** Join refusals that no retry can fix. */
const FATAL_CODES = new Set(['CLUSTER_ID_MISMATCH', 'DUPLICATE_NODE_ID']);


export class Gossip implements PeerDirectory {
  private readonly swim: Swim;
  private readonly timing: GossipTiming;
  private readonly listeners = new Set<(node: NodeInfo) => void>();
  private readonly clients = new Map<string, MembershipClient>();
  private readonly seeds: string[];
  private readonly abort = new AbortController();
  private identity: NodeIdentity;
  private joined = false;
  private joinStatus = 'starting';
  private timer: NodeJS.Timeout | null = null;
  private nextReconnectMs = 0;
  private reconnecting = false;
  private readonly reportedConflicts = new Set<string>();
  private countsReported = false;
  private readonly random: () => number;

  constructor(private readonly options: GossipOptions) {
    this.timing = { ...DEFAULT_GOSSIP_TIMING, ...options.timing };
    this.random = options.random ?? Math.random;
    this.identity = options.identity;
    this.seeds = options.seeds.filter((s) => s !== options.advertiseAddress);
    this.swim = new Swim({
      self: { id: options.identity.nodeId, uuid: options.identity.nodeUuid, address: options.advertiseAddress, rack: options.rack, shards: options.shards, state: 'alive', incarnation: 0 },
      random: this.random,
      probeIntervalMs: this.timing.probeIntervalMs,
      probeTimeoutMs: this.timing.probeTimeoutMs,
      suspicionTimeoutMs: this.timing.suspicionTimeoutMs,
      indirectProbes: this.timing.indirectProbes,
      retransmitMult: this.timing.retransmitMult,
      updatesPerMessageMax: GOSSIP_UPDATES_PER_MESSAGE_MAX,
      membersMax: GOSSIP_MEMBERS_MAX,
    });
  }

  /** Starts ticking and joining. Returns at once; `notReady()` says when the node has joined. */
  start(): void {
    assert.equal(this.timer, null, 'started twice');
    this.timer = setInterval(() => this.tick(), this.timing.tickMs);
    this.flush();
    const seedsFirst = this.options.seeds[0] === this.options.advertiseAddress;
    if (this.seeds.length === 0) this.found('no seeds');
    else {
      this.joinStatus = `joining the cluster: no seed answered yet (seeds ${this.seeds.join(', ')})`;
      void this.joinLoop(seedsFirst && this.identity.clusterId === null);
    }
  }

  close(): void {
    this.abort.abort();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  // ---- PeerDirectory ----

  get self(): NodeInfo {
    return this.swim.self;
  }

  members(): readonly NodeInfo[] {
    return this.swim.all();
  }

  get(id: NodeId): NodeInfo | undefined {
    return this.swim.get(id);
  }

  onChange(listener: (node: NodeInfo) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  forget(id: NodeId): boolean {
    const gone = this.swim.get(id);
    if (gone === undefined || !this.swim.forget(id)) return false;
    this.countsReported = false; // the gauges count it no more
    this.options.logger.info({ node: id, address: gone.address, uuid: gone.uuid }, 'cluster member forgotten: dead and decommissioned (it left the cluster)');
    return true;
  }

  /**
   * This node begins a graceful stop: from now on its record says `leaving` (a new incarnation, spread
   * by the probes like any change), so the other nodes stop handing it leaderships and a whole cluster
   * stopping at once does not pass leaderships around until every hand-off times out.
   */
  announceLeaving(): void {
    if (this.swim.self.leaving === true) return;
    this.swim.updateSelf({ leaving: true });
    this.flush();
  }

  get clusterId(): string | null {
    return this.identity.clusterId;
  }

  /** null once this node is a member of a cluster; otherwise why not (for /readyz). */
  notReady(): string | null {
    return this.joined ? null : this.joinStatus;
  }

  // ---- joining ----

  private found(why: string): void {
    if (this.identity.clusterId === null) this.setClusterId(this.options.foundingClusterId());
    this.markJoined();
    this.options.logger.info({ clusterId: this.identity.clusterId, nodeId: this.self.id, why }, 'cluster membership: this node founds (or carries on) the cluster');
  }

  private setClusterId(id: string): void {
    this.identity = { ...this.identity, clusterId: id };
    writeIdentity(this.options.dataDir, this.identity);
  }

  private markJoined(): void {
    if (this.joined) return;
    this.joined = true;
    this.joinStatus = 'joined';
  }

  private async joinLoop(mayFound: boolean): Promise<void> {
    let delay = this.timing.joinRetryMsMin;
    for (let attempt = 1; !this.abort.signal.aborted && !this.joined; attempt++) {
      const causes: string[] = [];
      let clusterless = 0;
      for (const seed of this.seeds) {
        if (this.joined || this.abort.signal.aborted) return;
        try {
          await this.joinThrough(seed);
          this.options.logger.info({ seed, clusterId: this.identity.clusterId, attempt }, 'joined the cluster');
          return;
        } catch (err) {
          const e = toSluice(err);
          if (FATAL_CODES.has(e.code)) {
            this.joinStatus = `refused by seed ${seed}: ${e.message}`;
            this.options.onFatal(e);
            return;
          }
          if (e.info?.[CLUSTERLESS_INFO_KEY] === 'true') clusterless++;
          causes.push(`${seed}: ${e.message.split('\n')[0]}`);
          this.options.logger.warn({ seed, attempt, cause: e.message.split('\n')[0], retryInMs: delay }, 'cannot join the cluster through this seed yet');
        }
      }
      if (this.joined) return;
      if (mayFound && (this.options.foundsAlone ?? true) && attempt === 1) return this.found('first in its own seed list, and no other seed answered');
      if (mayFound && clusterless > 0) return this.found('first in its own seed list, and the seeds that answered have no cluster yet (a first formation)');
      this.joinStatus = `joining the cluster: no seed answered (attempt ${attempt}; ${causes.join('; ')})`;
      try {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, delay);
          this.abort.signal.addEventListener('abort', () => (clearTimeout(t), reject(new Error('closed'))), { once: true });
        });
      } catch {
        return;
      }
      delay = Math.min(delay * 2, this.timing.joinRetryMsMax);
    }
  }

  private async joinThrough(seed: string): Promise<void> {
    const req: JoinRequest = { clusterId: this.identity.clusterId ?? '', from: toMember(this.self), members: this.swim.all().map(toMember) };
    const res = await this.unary<JoinRequest, JoinResponse>(seed, 'join', req, this.timing.joinTimeoutMs);
    const you = fromMember(res.you, 'you');
    const table = fromMembers(res.members, 'members', GOSSIP_MEMBERS_MAX);
    if (res.clusterId.length === 0) throw new SluiceError('INVALID_REQUEST', `seed ${seed} answered a Join without a cluster id`);
    if (this.identity.clusterId !== null && res.clusterId !== this.identity.clusterId) {
      throw new SluiceError('CLUSTER_ID_MISMATCH', `seed ${seed} is in cluster ${res.clusterId}, but this node's data dir belongs to cluster ${this.identity.clusterId}`);
    }
    if (this.identity.clusterId === null) this.setClusterId(res.clusterId);
    this.swim.onJoined(you, table, this.now());
    this.markJoined();
    this.flush();
  }

  // ---- the protocol loop ----

  private now(): number {
    return performance.now();
  }

  private tick(): void {
    const now = this.now();
    for (const a of this.swim.tick(now)) this.perform(a);
    this.flush();
    if (this.joined && now >= this.nextReconnectMs) {
      this.nextReconnectMs = now + this.timing.reconnectIntervalMs;
      this.reconnect();
    }
  }

  private perform(a: SwimAction): void {
    const cluster = this.identity.clusterId ?? '';
    if (a.kind === 'probe') {
      // An answer that fails validation counts as no answer (and must not become an unhandled rejection).
      this.unary<ProbeRequest, ProbeResponse>(a.target.address, 'probe', probeRequest(cluster, a.message), a.timeoutMs)
        .then((res) => this.swim.onProbeAnswer(a.seq, ackFrom(res), this.now()))
        .catch((err: unknown) => this.options.logger.debug({ target: a.target.id, address: a.target.address, err: String(err) }, 'probe failed'))
        .finally(() => this.flush());
    } else {
      const req: IndirectProbeRequest = { clusterId: cluster, from: toMember(a.message.from), target: toMember(a.message.target), updates: a.message.updates.map(toMember), timeoutMs: a.message.timeoutMs };
      this.unary<IndirectProbeRequest, IndirectProbeResponse>(a.via.address, 'indirectProbe', req, a.timeoutMs)
        .then((res) => this.swim.onIndirectAnswer(a.seq, { acked: res.acked, from: fromMember(res.from, 'from'), updates: fromMembers(res.updates, 'updates') }, this.now()))
        .catch((err: unknown) => this.options.logger.debug({ via: a.via.id, err: String(err) }, 'indirect probe failed'))
        .finally(() => this.flush());
    }
  }

  /** Push-pull with one member held as dead: if it is back, both sides learn (and it refutes). */
  private reconnect(): void {
    if (this.reconnecting) return;
    const dead = this.swim.all().filter((m) => m.state === 'dead');
    if (dead.length === 0) return;
    const target = dead[Math.floor(this.random() * dead.length)]!;
    this.reconnecting = true;
    const req: JoinRequest = { clusterId: this.identity.clusterId ?? '', from: toMember(this.self), members: this.swim.all().map(toMember) };
    this.unary<JoinRequest, JoinResponse>(target.address, 'join', req, this.timing.joinTimeoutMs)
      .then((res) => {
        if (res.clusterId !== this.identity.clusterId) return;
        this.swim.onJoined(fromMember(res.you, 'you'), fromMembers(res.members, 'members', GOSSIP_MEMBERS_MAX), this.now());
      })
      .catch((err: unknown) => this.options.logger.debug({ node: target.id, address: target.address, err: String(err) }, 'reconnect to a dead member failed'))
      .finally(() => {
        this.reconnecting = false;
        this.flush();
      });
  }

  /** Reports the core's changes: listeners, metrics, and one log line per change. */
  private flush(): void {
    const changes: MemberChange[] = this.swim.drainChanges();
    for (const { node, previous } of changes) {
      const fields = { node: node.id, address: node.address, state: node.state, incarnation: node.incarnation, uuid: node.uuid };
      if (previous === undefined) this.options.logger.info(fields, 'cluster member discovered');
      else if (previous.uuid !== node.uuid) this.options.logger.warn({ ...fields, previousUuid: previous.uuid }, 'cluster member replaced: same node id, new node UUID (a wiped data dir)');
      else if (previous.state !== node.state) this.options.logger.info({ ...fields, previous: previous.state }, `cluster member ${node.state}`);
      else if (node.leaving === true && previous.leaving !== true) this.options.logger.info(fields, 'cluster member leaving (a graceful stop began)');
      for (const l of this.listeners) l(node);
    }
    for (const c of this.swim.drainConflicts()) {
      if (this.reportedConflicts.has(c.uuid)) continue;
      if (this.reportedConflicts.size >= GOSSIP_MEMBERS_MAX) this.reportedConflicts.clear(); // bounded
      this.reportedConflicts.add(c.uuid);
      this.options.logger.error({ nodeId: c.id, uuid: c.uuid, address: c.address }, `another node (${c.address}) claims this node's id ${c.id} with another node UUID: two nodes share one --node-id`);
    }
    // Counted only when something changed (and once at start): flush runs on every 20 ms tick, and a
    // pass over the table plus three gauge sets there was idle CPU spent on nothing.
    if (changes.length === 0 && this.countsReported) return;
    this.countsReported = true;
    const counts = { alive: 0, suspect: 0, dead: 0 };
    for (const m of this.swim.all()) counts[m.state]++;
    (this.options.probe ?? NOOP_MEMBERSHIP_PROBE).membersChanged(counts);
  }

  // ---- the service other nodes call ----

  private checkCluster(clusterId: string, from: NodeInfo): string {
    const mine = this.identity.clusterId;
    if (mine === null) throw new SluiceError('UNAVAILABLE', `node ${this.self.id} at ${this.self.address} has not joined a cluster yet`, { info: { [CLUSTERLESS_INFO_KEY]: 'true' } });
    if (clusterId !== mine) {
      throw new SluiceError(
        'CLUSTER_ID_MISMATCH',
        `node ${from.id} (${from.address}) belongs to cluster ${clusterId || '(none)'}, but node ${this.self.id} at ${this.self.address} is in cluster ${mine}; ` +
          `a node cannot move between clusters: start it with an empty data dir to join this one`,
      );
    }
    return mine;
  }

  handleProbe(req: ProbeRequest): ProbeResponse {
    const from = fromMember(req.from, 'from');
    this.checkCluster(req.clusterId, from);
    const msg: ProbeMessage = { from, targetId: req.targetNodeId as NodeId, targetUuid: req.targetNodeUuid, updates: fromMembers(req.updates, 'updates') };
    const ack = this.swim.onProbe(msg, this.now());
    this.flush();
    return { from: toMember(ack.from), updates: ack.updates.map(toMember) };
  }

  async handleIndirectProbe(req: IndirectProbeRequest): Promise<IndirectProbeResponse> {
    const from = fromMember(req.from, 'from');
    this.checkCluster(req.clusterId, from);
    const target = fromMember(req.target, 'target');
    const probe = this.swim.onIndirectProbe({ from, target, updates: fromMembers(req.updates, 'updates'), timeoutMs: req.timeoutMs }, this.now());
    const timeoutMs = Math.max(1, Math.min(req.timeoutMs, this.timing.probeIntervalMs));
    let ack: AckMessage | null = null;
    try {
      ack = ackFrom(await this.unary<ProbeRequest, ProbeResponse>(target.address, 'probe', probeRequest(this.identity.clusterId ?? '', probe), timeoutMs));
    } catch {
      ack = null;
    }
    const answer: IndirectAckMessage = this.swim.onHelperAnswer(from, target, ack, this.now());
    this.flush();
    return { acked: answer.acked, from: toMember(answer.from), updates: answer.updates.map(toMember) };
  }

  async handleJoin(req: JoinRequest): Promise<JoinResponse> {
    const from = fromMember(req.from, 'from');
    const table = fromMembers(req.members, 'members', GOSSIP_MEMBERS_MAX);
    const clusterId = this.checkCluster(req.clusterId === '' ? (this.identity.clusterId ?? '') : req.clusterId, from);
    if (from.id === this.self.id && from.uuid === this.self.uuid) {
      // Our own Join came back to us (a seed list naming this node under another name): not a join.
      throw new SluiceError('UNAVAILABLE', `${from.address} reached this node itself (node ${from.id}); it cannot join through itself`);
    }
    await this.refuseDuplicate(from);
    if (this.swim.get(from.id) === undefined && this.swim.all().length >= GOSSIP_MEMBERS_MAX) {
      throw new SluiceError('INVALID_REQUEST', `the cluster already has ${GOSSIP_MEMBERS_MAX} members, the most gossip tracks`);
    }
    const you = this.swim.admit(from, table, this.now());
    this.markJoined();
    this.flush();
    return { clusterId, you: toMember(you), members: this.swim.all().map(toMember) };
  }

  /**
   * Refuses a joiner whose node id a live node holds under another UUID. A record at the joiner's own
   * address is the joiner's old life (two processes cannot bind one address); at another address the
   * holder is asked directly, so a node that was killed and came back wiped (before the others saw it
   * die) is admitted, and a second process started with a copy of the id is refused.
   */
  private async refuseDuplicate(joiner: NodeInfo): Promise<void> {
    const held = this.swim.get(joiner.id);
    if (held === undefined || held.uuid === joiner.uuid || held.state === 'dead') return;
    const refuse = (): never => {
      throw new SluiceError(
        'DUPLICATE_NODE_ID',
        `node id ${joiner.id} is already taken by the live node at ${held.address} (node UUID ${held.uuid}); ` +
          `the node at ${joiner.address} must use another --node-id (or stop the other one first)`,
      );
    };
    if (held.id === this.self.id) refuse();
    if (held.address === joiner.address) return;
    try {
      const res = await this.unary<ProbeRequest, ProbeResponse>(held.address, 'probe', probeRequest(this.identity.clusterId ?? '', this.swim.probeMessage(held)), this.timing.joinTimeoutMs / 2);
      if (res.from?.nodeId === held.id && res.from.nodeUuid === held.uuid) refuse();
    } catch (err) {
      if (isSluiceError(err, 'DUPLICATE_NODE_ID')) throw err;
      // No answer: the holder is gone; the joiner replaces it.
    }
  }

  private svc: MembershipServer | undefined;

  /** The grpc-js service implementation (added to the node's server). */
  service(): MembershipServer {
    return (this.svc ??= {
      probe: (call, callback) => {
        try {
          callback(null, this.handleProbe(call.request));
        } catch (err) {
          callback(toServiceError(err));
        }
      },
      indirectProbe: (call, callback) => {
        this.handleIndirectProbe(call.request).then((r) => callback(null, r), (err: unknown) => callback(toServiceError(err)));
      },
      join: (call, callback) => {
        this.handleJoin(call.request).then((r) => callback(null, r), (err: unknown) => callback(toServiceError(err)));
      },
    });
  }

  // ---- the client side ----

  private client(address: string): MembershipClient {
    let c = this.clients.get(address);
    if (c === undefined) {
      // Bounded: addresses of members (at most GOSSIP_MEMBERS_MAX) and seeds; the oldest goes first.
      if (this.clients.size >= GOSSIP_MEMBERS_MAX + this.seeds.length) {
        const [oldest, client] = this.clients.entries().next().value as [string, MembershipClient];
        client.close();
        this.clients.delete(oldest);
      }
      c = new MembershipClient(peerDialAddress(address), grpc.credentials.createInsecure(), PEER_CHANNEL_OPTIONS);
      this.clients.set(address, c);
    }
    return c;
  }

  private unary<Req, Res>(address: string, method: 'probe' | 'indirectProbe' | 'join', req: Req, timeoutMs: number): Promise<Res> {
    if (this.abort.signal.aborted) return Promise.reject(new SluiceError('SHUTTING_DOWN', 'membership is closed'));
    const client = this.client(address) as unknown as Record<string, (r: Req, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => void>;
    return new Promise((resolve, reject) => {
      client[method]!.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err === null ? resolve(res) : reject(fromServiceError(err))));
    });
  }
}

function toSluice(err: unknown): SluiceError {
  return isSluiceError(err) ? err : new SluiceError('UNAVAILABLE', err instanceof Error ? err.message : String(err));
}

function probeRequest(clusterId: string, m: ProbeMessage): ProbeRequest {
  return { clusterId, from: toMember(m.from), targetNodeId: m.targetId, targetNodeUuid: m.targetUuid, updates: m.updates.map(toMember) };
}

function ackFrom(res: ProbeResponse): AckMessage {
  return { from: fromMember(res.from, 'from'), updates: fromMembers(res.updates, 'updates') };
}

export { MembershipService };
