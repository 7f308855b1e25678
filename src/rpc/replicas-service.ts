/**
 * sluice.cluster.v1.Replicas: what the controller leader asks of a partition's leader on another node
 * (docs/cluster.md "Moves"): its Raft membership, and a leadership transfer. The server side reads the
 * node's `ReplicaHost`; the client side is what the controller's executor uses to reach that node.
 * Expected failures travel as gRPC statuses with ErrorInfo (NOT_LEADER, UNKNOWN_PARTITION), mapped here.
 */
import * as grpc from '@grpc/grpc-js';
import { PEER_CHANNEL_OPTIONS, peerDialAddress } from '../cluster/test-peer-map.js';
import { SluiceError } from '../errors.js';
import type { GroupId } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { ReplicaHost, ReplicaMembership, ReplicaRole } from '../broker/replicas.js';
import { ReplicasClient, ReplicasService, type GroupMembership, type ReplicasServer } from './gen/sluice/cluster/v1/replicas.js';
import { fromServiceError, toServiceError } from './errors.js';

const ROLES: readonly ReplicaRole[] = ['leader', 'follower', 'candidate', 'precandidate', 'learner', 'offline'];

export function toPbMembership(m: ReplicaMembership): GroupMembership {
  return {
    groupId: m.group,
    role: m.role,
    leader: m.leader,
    epoch: BigInt(m.epoch),
    voters: [...m.voters],
    learners: [...m.learners],
    confPending: m.confPending,
    commit: BigInt(m.commit),
    lastIndex: BigInt(m.lastIndex),
    matchNodes: [...m.match.keys()],
    matchIndex: [...m.match.values()].map((x) => BigInt(x)),
  };
}

export function fromPbMembership(g: GroupMembership): ReplicaMembership {
  return {
    group: g.groupId as GroupId,
    role: ROLES.includes(g.role as ReplicaRole) ? (g.role as ReplicaRole) : 'offline',
    leader: g.leader as NodeId,
    epoch: Number(g.epoch),
    voters: g.voters as NodeId[],
    learners: g.learners as NodeId[],
    confPending: g.confPending,
    commit: Number(g.commit),
    lastIndex: Number(g.lastIndex),
    match: new Map(g.matchNodes.map((n, i) => [n as NodeId, Number(g.matchIndex[i] ?? -1n)])),
  };
}

export function replicasService(host: () => ReplicaHost | null): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const need = (): ReplicaHost => {
    const h = host();
    if (h === null || h.replicaMembership === undefined || h.transferLeadership === undefined) throw new SluiceError('UNAVAILABLE', 'this node hosts no replicas yet');
    return h;
  };
  const implementation: ReplicasServer = {
    membership(call, callback) {
      Promise.resolve()
        .then(() => need().replicaMembership!(call.request.groups as GroupId[]))
        .then(
          (ms) => callback(null, { replicas: ms.map(toPbMembership) }),
          (err: unknown) => callback(toServiceError(err)),
        );
    },
    transferLeadership(call, callback) {
      Promise.resolve()
        .then(() => need().transferLeadership!(call.request.groupId as GroupId, call.request.to as NodeId))
        .then(
          () => callback(null, {}),
          (err: unknown) => callback(toServiceError(err)),
        );
    },
  };
  return { definition: ReplicasService, implementation };
}

/** Calls another node's Replicas service (one channel per address, kept until `close()`; each call has a deadline). */
export class GrpcReplicasClient {
  private readonly clients = new Map<string, ReplicasClient>();

  constructor(
    private readonly addressOf: (id: NodeId) => string | undefined,
    private readonly deadlineMs: number,
  ) {}

  private client(node: NodeId): ReplicasClient {
    const address = this.addressOf(node);
    if (address === undefined) throw new SluiceError('UNAVAILABLE', `no address is known for node ${node}`);
    let c = this.clients.get(address);
    if (c === undefined) {
      c = new ReplicasClient(peerDialAddress(address), grpc.credentials.createInsecure(), PEER_CHANNEL_OPTIONS);
      this.clients.set(address, c);
    }
    return c;
  }

  async membership(node: NodeId, groups: readonly GroupId[]): Promise<ReplicaMembership[]> {
    const c = this.client(node);
    return new Promise((resolve, reject) => {
      c.membership({ groups: [...groups] }, new grpc.Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, resp) => {
        if (err) reject(fromServiceError(err));
        else resolve(resp.replicas.map(fromPbMembership));
      });
    });
  }

  async transferLeadership(node: NodeId, group: GroupId, to: NodeId): Promise<void> {
    const c = this.client(node);
    return new Promise((resolve, reject) => {
      c.transferLeadership({ groupId: group, to }, new grpc.Metadata(), { deadline: Date.now() + this.deadlineMs }, (err) => {
        if (err) reject(fromServiceError(err));
        else resolve();
      });
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
