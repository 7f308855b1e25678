/**
 * What a chaos run needs to know of a real cluster (`--nodes 3|5`): who leads what (to aim a fault at
 * a partition leader, a follower or the controller leader), a node's own replica's high watermark (to
 * wait for every replica to converge before the byte-for-byte comparison), and a raw producer that
 * writes through a node chosen by the harness, whether it leads or not (so forwarding is under test).
 * Everything is read as a client reads it, over gRPC; every call has a deadline.
 */
import * as grpc from '@grpc/grpc-js';
import { Admin } from '../../src/client/index.js';
import { encodeBatch } from '../../src/batch/index.js';
import { FastBrokerClient, readErrorInfo } from '../../src/rpc/index.js';
import { FORWARDED_METADATA_KEY } from '../../src/rpc/forward.js';
import { type ProduceRequest, type ProduceResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { Acks } from '../../src/rpc/gen/sluice/v1/records.js';
import { AdminClient } from '../../src/rpc/gen/sluice/v1/admin.js';
import * as C from './constants.js';
import type { FaultTarget } from './schedule.js';

export interface ClusterView {
  controllerId: number;
  /** Per partition of the workload topic: its leader (0 = none) and its replicas. */
  partitions: { partition: number; leader: number; replicas: number[] }[];
}

const channelOptions = { 'grpc.use_local_subchannel_pool': 1, 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 };

/** The cluster's metadata for `topic`, from the first of `addresses` that answers; null if none does. */
export async function clusterView(addresses: readonly string[], topic: string): Promise<ClusterView | null> {
  for (const address of addresses) {
    const admin = new Admin({ brokers: address, requestTimeoutMs: C.CLUSTER_PROBE_TIMEOUT_MS, channelOptions });
    try {
      const md = await admin.metadata([topic]);
      const t = md.topics.find((x) => x.name === topic);
      return { controllerId: md.controllerId, partitions: (t?.partitions ?? []).map((p) => ({ partition: p.partition, leader: p.leader, replicas: [...p.replicas] })) };
    } catch {
      // this node is down or paused: ask the next
    } finally {
      admin.close();
    }
  }
  return null;
}

/** How many nodes `address` sees alive (0 if it does not answer). */
export async function aliveSeenBy(address: string): Promise<number> {
  const admin = new Admin({ brokers: address, requestTimeoutMs: C.CLUSTER_PROBE_TIMEOUT_MS, channelOptions });
  try {
    return (await admin.metadata()).brokers.filter((b) => b.alive && b.state === 'alive').length;
  } catch {
    return 0;
  } finally {
    admin.close();
  }
}

/**
 * The node a fault aimed at `target` hits, among `candidates` (nodes up now): the leader of partition
 * `faultId mod partitions` (then of any partition), a follower of it, or the controller leader. null
 * when the cluster does not name one among the candidates (the caller falls back to the planned node).
 */
export function resolveTarget(view: ClusterView, target: FaultTarget, faultId: number, candidates: readonly number[]): number | null {
  const ok = (id: number): boolean => id > 0 && candidates.includes(id);
  if (target === 'controller') return ok(view.controllerId) ? view.controllerId : null;
  const n = view.partitions.length;
  for (let i = 0; i < n; i++) {
    const p = view.partitions[(faultId + i) % n];
    if (target === 'leader' && ok(p.leader)) return p.leader;
    if (target === 'follower' && p.leader > 0) {
      const f = p.replicas.filter((r) => r !== p.leader && ok(r));
      if (f.length > 0) return f[faultId % f.length];
    }
  }
  return null;
}

function client(address: string): InstanceType<typeof FastBrokerClient> {
  return new FastBrokerClient(address, grpc.credentials.createInsecure(), channelOptions);
}

/**
 * The high watermark of `address`'s own replica of topic/partition: DescribeTopic with the forwarded
 * marker, so the node answers from its replicas, never asking the leader (ListOffsets(latest) is
 * answered by the leader only); null on any failure.
 */
export async function localHighWatermark(address: string, topic: string, partition: number): Promise<number | null> {
  const c = new AdminClient(address, grpc.credentials.createInsecure(), channelOptions);
  const md = new grpc.Metadata();
  md.set(FORWARDED_METADATA_KEY, '1');
  try {
    return await new Promise<number | null>((resolve) =>
      c.describeTopic({ name: topic }, md, { deadline: Date.now() + C.CLUSTER_PROBE_TIMEOUT_MS }, (err, r) => {
        const p = err ? undefined : r?.topic?.partitions.find((x) => x.partition === partition);
        resolve(p === undefined ? null : Number(p.highWatermark));
      }),
    );
  } finally {
    c.close();
  }
}

/**
 * A producer that sends each write through a node the caller names (round-robin over all nodes, so
 * most writes reach a non-leader, which forwards them): one record per request, acks=all, no retries,
 * no idempotence. Every failure is an unknown outcome except a definite refusal before anything was
 * written, which the caller decides from the ErrorInfo reason.
 */
export class RawProducer {
  private readonly clients: InstanceType<typeof FastBrokerClient>[];

  constructor(addresses: readonly string[]) {
    this.clients = addresses.map(client);
  }

  send(via: number, topic: string, partition: number, value: string): Promise<{ offset: number } | { error: string; reason: string }> {
    const c = this.clients[via % this.clients.length];
    const req: ProduceRequest = { topic, partition, records: [], recordBatch: encodeBatch([{ key: null, value: Buffer.from(value), headers: [], timestampMs: Date.now() }]), acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0 };
    return new Promise((resolve) =>
      c.produce(req, new grpc.Metadata(), { deadline: Date.now() + C.WORKLOAD_REQUEST_TIMEOUT_MS }, (err: grpc.ServiceError | null, res?: ProduceResponse) => {
        if (err) resolve({ error: `${err.code} ${err.details}`.slice(0, 200), reason: readErrorInfo(err.metadata)?.reason ?? '' });
        else resolve({ offset: Number(res!.baseOffset) });
      }),
    );
  }

  close(): void {
    for (const c of this.clients) c.close();
  }
}
