/**
 * Forwarding a partition request to the node that leads the partition (issue 11 §5): the client side
 * (`PeerBrokers`, one channel per peer address, used by src/server's cluster API) and the marker that
 * stops a forwarded request from being forwarded again. A request carrying `sluice-forwarded: 1` is
 * answered by the receiving node's own replicas or refused with NOT_LEADER; it never hops twice.
 */
import * as grpc from '@grpc/grpc-js';
import { PEER_CHANNEL_OPTIONS, peerDialAddress } from '../cluster/test-peer-map.js';
import { CLUSTER_FORWARD_TIMEOUT_MS, GRPC_RECEIVE_BYTES_MAX } from '../constants.js';
import { SluiceError } from '../errors.js';
import type { FetchInput, FetchResult, ListOffsetsResult, OffsetSpec, ProduceInput, ProduceResult, TopicDescription } from '../broker/types.js';
import { encodeBatch } from '../batch/index.js';
import { asBuffer } from '../batch/codec.js';
import { AdminClient } from './gen/sluice/v1/admin.js';
import { OffsetSpec as PbOffsetSpec, type BrokerClient } from './gen/sluice/v1/broker.js';
import { FastBrokerClient } from './fast-codec.js';
import { fromAcks, fromPbTopic } from './convert.js';
import { fromServiceError } from './errors.js';

/** gRPC metadata key marking a request one node forwarded to another. */
export const FORWARDED_METADATA_KEY = 'sluice-forwarded';

export function isForwarded(metadata: grpc.Metadata | undefined): boolean {
  return metadata !== undefined && metadata.get(FORWARDED_METADATA_KEY).length > 0;
}

function forwardedMetadata(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set(FORWARDED_METADATA_KEY, '1');
  return m;
}

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;

interface Peer {
  readonly broker: BrokerClient;
  readonly admin: AdminClient;
}

/** Channels to the other nodes, by address, for forwarded requests. */
export class PeerBrokers {
  private readonly peers = new Map<string, Peer>();

  private peer(address: string): Peer {
    let p = this.peers.get(address);
    if (p === undefined) {
      const options: grpc.ChannelOptions = { ...PEER_CHANNEL_OPTIONS, 'grpc.max_receive_message_length': GRPC_RECEIVE_BYTES_MAX, 'grpc.max_send_message_length': GRPC_RECEIVE_BYTES_MAX };
      const broker = new FastBrokerClient(peerDialAddress(address), grpc.credentials.createInsecure(), options);
      const admin = new AdminClient(address, grpc.credentials.createInsecure(), { ...options, channelOverride: broker.getChannel() });
      p = { broker, admin };
      this.peers.set(address, p);
    }
    return p;
  }

  private call<Req, Res>(address: string, invoke: (p: Peer, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: Callback<Res>) => grpc.ClientUnaryCall, extraMs = 0, signal?: AbortSignal): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const call = invoke(this.peer(address), forwardedMetadata(), { deadline: Date.now() + CLUSTER_FORWARD_TIMEOUT_MS + extraMs }, (err, res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err === null) resolve(res as Res);
        else {
          const e = fromServiceError(err);
          // Say which hop failed when the leader itself did not answer (no ErrorInfo from it).
          reject(e.code === 'UNAVAILABLE' || e.code === 'TIMEOUT' || e.code === 'INTERNAL' ? new SluiceError(e.code, `forwarding to ${address}: ${e.message}`, { cause: e, retriable: e.retriable, info: e.info }) : e);
        }
      });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async produce(address: string, input: ProduceInput): Promise<ProduceResult> {
    // Structured records the edge could not encode fast are encoded here, as the core would.
    const batch = input.batches ?? encodeBatch(input.records ?? [], input.producer ?? {});
    const res = await this.call<unknown, import('./gen/sluice/v1/broker.js').ProduceResponse>(address, (p, md, o, cb) =>
      p.broker.produce({ topic: input.topic, partition: input.partition, records: [], recordBatch: asBuffer(batch), acks: fromAcks(input.acks), producerEpoch: 0, baseSequence: 0 }, md, o, cb),
    );
    return { partition: res.partition, baseOffset: Number(res.baseOffset), lastOffset: Number(res.lastOffset), appendTimeMs: Number(res.appendTimeMs), logStartOffset: Number(res.logStartOffset) };
  }

  async fetch(address: string, input: FetchInput, signal?: AbortSignal): Promise<FetchResult> {
    const res = await this.call<unknown, import('./gen/sluice/v1/broker.js').FetchResponse>(
      address,
      (p, md, o, cb) => p.broker.fetch({ topic: input.topic, partition: input.partition, offset: BigInt(input.offset), maxBytes: input.maxBytes, maxWaitMs: input.maxWaitMs, raw: true }, md, o, cb),
      input.maxWaitMs,
      signal,
    );
    // Raw batches: the edge turns them into records for a client that asked for records.
    return { batches: res.recordBatches, highWatermark: Number(res.highWatermark), logStartOffset: Number(res.logStartOffset), nextOffset: Number(res.nextOffset) };
  }

  async listOffsets(address: string, topic: string, partition: number, spec: OffsetSpec): Promise<ListOffsetsResult> {
    const pbSpec = spec.kind === 'earliest' ? PbOffsetSpec.OFFSET_SPEC_EARLIEST : spec.kind === 'latest' ? PbOffsetSpec.OFFSET_SPEC_LATEST : PbOffsetSpec.OFFSET_SPEC_TIMESTAMP;
    const timestampMs = spec.kind === 'timestamp' ? BigInt(spec.timestampMs) : 0n;
    const res = await this.call<unknown, import('./gen/sluice/v1/broker.js').ListOffsetsResponse>(address, (p, md, o, cb) => p.broker.listOffsets({ topic, partitions: [partition], spec: pbSpec, timestampMs }, md, o, cb));
    const o = res.offsets.find((x) => x.partition === partition);
    if (o === undefined) throw new SluiceError('INTERNAL', `${address} answered ListOffsets without partition ${partition}`);
    return { partition, offset: Number(o.offset) };
  }

  /** The topic as the node at `address` sees it from its own replicas (leader-side offsets and in-sync sets). */
  async describeTopic(address: string, name: string): Promise<TopicDescription> {
    const res = await this.call<unknown, import('./gen/sluice/v1/admin.js').DescribeTopicResponse>(address, (p, md, o, cb) => p.admin.describeTopic({ name }, md, o, cb));
    return fromPbTopic(res.topic!);
  }

  /**
   * The topics as the node at `address` sees them from its own replicas (GetMetadata: each partition's
   * leader and, where that node leads, its in-sync replicas). One call for many topics; readiness uses it.
   */
  async topicsSeenBy(address: string, topics: readonly string[], timeoutMs: number): Promise<TopicDescription[]> {
    const res = await this.call<unknown, import('./gen/sluice/v1/broker.js').GetMetadataResponse>(address, (p, md, o, cb) => p.broker.getMetadata({ topics: [...topics] }, md, { ...o, deadline: Date.now() + timeoutMs }, cb));
    return res.topics.map(fromPbTopic);
  }

  close(): void {
    for (const p of this.peers.values()) {
      p.admin.close();
      p.broker.close();
    }
    this.peers.clear();
  }
}
