/**
 * sluice.cluster.v1.Controller: the wire of controller forwarding (docs/controller.md "Requests and
 * forwarding"). The server side hands a forwarded request to this node's controller, which answers with
 * the applied index or a SluiceError code inside the response (an expected outcome, not a transport
 * failure); the client side is the `ControllerForwarder` a controller uses to reach the leader.
 *
 * Only transport failures are gRPC statuses here: an unreachable or dying node is UNAVAILABLE (retriable),
 * which the controller retries against whoever leads next.
 */
import * as grpc from '@grpc/grpc-js';
import { PEER_CHANNEL_OPTIONS, peerDialAddress } from '../cluster/test-peer-map.js';
import { SluiceError } from '../errors.js';
import type { NodeId } from '../model/index.js';
import type { ControllerForwarder, ControllerLogState } from '../controller/index.js';
import {
  ControllerClient,
  ControllerLogStateResponse_State,
  ControllerService,
  type ControllerLogStateResponse,
  type ControllerServer,
  type SubmitRequest,
  type SubmitResponse,
} from './gen/sluice/cluster/v1/controller.js';
import { fromServiceError, toServiceError } from './errors.js';

/** What the service needs of the node's controller (null while it is not open). */
export interface ControllerSubmitHandler {
  handleSubmit(req: SubmitRequest): Promise<SubmitResponse>;
}

const STATE_TO_WIRE: Readonly<Record<ControllerLogState, ControllerLogStateResponse_State>> = {
  empty: ControllerLogStateResponse_State.STATE_EMPTY,
  founded: ControllerLogStateResponse_State.STATE_FOUNDED,
  records: ControllerLogStateResponse_State.STATE_RECORDS,
};

/**
 * `logState`: what this node's controller log holds (the open controller's, else read from the data
 * dir); it throws a SluiceError when it cannot tell (answered as that error's status).
 */
export function controllerService(
  controller: () => ControllerSubmitHandler | null,
  logState: () => ControllerLogState,
): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const implementation: ControllerServer = {
    logState(_call, callback) {
      let state: ControllerLogState;
      try {
        state = logState();
      } catch (err) {
        callback(toServiceError(err));
        return;
      }
      callback(null, { state: STATE_TO_WIRE[state] });
    },
    submit(call, callback) {
      const c = controller();
      if (c === null) {
        callback(toServiceError(new SluiceError('UNAVAILABLE', 'this node runs no controller yet')));
        return;
      }
      c.handleSubmit(call.request).then(
        (resp) => callback(null, resp),
        (err: unknown) => callback(toServiceError(err)),
      );
    },
  };
  return { definition: ControllerService, implementation };
}

/**
 * Forwards over gRPC to the node's advertised address (from gossip's `PeerDirectory`, or any lookup).
 * One channel per address, kept until `close()`; each call has a deadline.
 */
export class GrpcControllerForwarder implements ControllerForwarder {
  private readonly clients = new Map<string, ControllerClient>();

  constructor(
    private readonly addressOf: (id: NodeId) => string | undefined,
    private readonly deadlineMs: number,
  ) {}

  submit(leader: NodeId, req: SubmitRequest): Promise<SubmitResponse> {
    const client = this.client(leader);
    if (client === null) return Promise.reject(new SluiceError('UNAVAILABLE', `no address is known for node ${leader}`));
    return new Promise<SubmitResponse>((resolve, reject) => {
      client.submit(req, new grpc.Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, resp) => {
        if (err) reject(fromServiceError(err));
        else resolve(resp);
      });
    });
  }

  /** What node `node`'s controller log holds; rejects when it cannot be asked or gives no valid answer. */
  logState(node: NodeId, from: NodeId, deadlineMs: number): Promise<ControllerLogState> {
    const client = this.client(node);
    if (client === null) return Promise.reject(new SluiceError('UNAVAILABLE', `no address is known for node ${node}`));
    return new Promise<ControllerLogState>((resolve, reject) => {
      client.logState({ fromNode: from }, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, resp: ControllerLogStateResponse) => {
        if (err) return reject(fromServiceError(err));
        const state = (Object.keys(STATE_TO_WIRE) as ControllerLogState[]).find((k) => STATE_TO_WIRE[k] === resp.state);
        if (state === undefined) reject(new SluiceError('UNAVAILABLE', `node ${node} answered an unknown controller log state ${String(resp.state)}`));
        else resolve(state);
      });
    });
  }

  private client(node: NodeId): ControllerClient | null {
    const address = this.addressOf(node);
    if (address === undefined) return null;
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ControllerClient(peerDialAddress(address), grpc.credentials.createInsecure(), PEER_CHANNEL_OPTIONS);
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
