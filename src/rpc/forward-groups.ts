/**
 * Forwarding a unary group RPC to the group's coordinator (cluster mode; docs/groups.md "Groups in a
 * cluster"), and asking every other node for its groups (ListGroups through any node). Requests carry
 * `sluice-forwarded: 1` (./forward.ts), so the receiving node answers from its own coordinator or
 * refuses with NOT_COORDINATOR: a request never hops twice.
 */
import * as grpc from '@grpc/grpc-js';
import { PEER_CHANNEL_OPTIONS, peerDialAddress } from '../cluster/test-peer-map.js';
import { CLUSTER_FORWARD_TIMEOUT_MS } from '../constants.js';
import { GroupsClient } from './gen/sluice/v1/groups.js';
import { fromServiceError } from './errors.js';
import { FORWARDED_METADATA_KEY } from './forward.js';

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** One Groups client per peer address, for forwarded group RPCs. */
export class PeerGroups {
  private readonly clients = new Map<string, GroupsClient>();

  private client(address: string): GroupsClient {
    let c = this.clients.get(address);
    if (c === undefined) this.clients.set(address, (c = new GroupsClient(peerDialAddress(address), grpc.credentials.createInsecure(), PEER_CHANNEL_OPTIONS)));
    return c;
  }

  /** Calls `pick(client)` on the node at `address`, marked forwarded; failures are SluiceErrors (with the peer's ErrorInfo). */
  call<Req, Res>(address: string, pick: (c: GroupsClient) => Unary<Req, Res>, req: Req): Promise<Res> {
    const c = this.client(address);
    const md = new grpc.Metadata();
    md.set(FORWARDED_METADATA_KEY, '1');
    return new Promise<Res>((resolve, reject) => {
      pick(c).call(c, req, md, { deadline: Date.now() + CLUSTER_FORWARD_TIMEOUT_MS }, (err, res) => (err === null ? resolve(res as Res) : reject(fromServiceError(err))));
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
