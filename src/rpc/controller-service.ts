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
import type { ControllerForwarder } from '../controller/index.js';
import { ControllerClient, ControllerService, type ControllerServer, type SubmitRequest, type SubmitResponse } from './gen/sluice/cluster/v1/controller.js';
import { fromServiceError, toServiceError } from './errors.js';

/** What the service needs of the node's controller (null while it is not open). */
export interface ControllerSubmitHandler {
  handleSubmit(req: SubmitRequest): Promise<SubmitResponse>;
}

export function controllerService(controller: () => ControllerSubmitHandler | null): { definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  const implementation: ControllerServer = {
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
    const address = this.addressOf(leader);
    if (address === undefined) return Promise.reject(new SluiceError('UNAVAILABLE', `no address is known for node ${leader}`));
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new ControllerClient(peerDialAddress(address), grpc.credentials.createInsecure(), PEER_CHANNEL_OPTIONS);
      this.clients.set(address, client);
    }
    return new Promise<SubmitResponse>((resolve, reject) => {
      client.submit(req, new grpc.Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, resp) => {
        if (err) reject(fromServiceError(err));
        else resolve(resp);
      });
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
