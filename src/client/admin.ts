/** Admin: topics, metadata and offsets over gRPC. */
import { fromPbTopic } from '../rpc/convert.js';
import { OffsetSpec } from '../rpc/gen/sluice/v1/broker.js';
import { Connection, type ClientOptions } from './connection.js';
import type { ClusterMetadata, TopicDescription, TopicSummary } from './types.js';
import { checkInt32, checkPartition, checkTimestampMs } from './validate.js';

export interface CreateTopicOptions {
  partitions?: number;
  replicationFactor?: number;
  configs?: Record<string, string>;
}

export type OffsetQuery = 'earliest' | 'latest' | { timestampMs: number };

/** Moves in progress (voters now, learners being added, the target, lost replicas) and node lifecycles. */
export interface Reassignments {
  reassignments: Array<{ topic: string; partition: number; replicas: number[]; learners: number[]; target: number[]; lost: number[]; leader: number }>;
  nodes: Array<{ nodeId: number; state: 'active' | 'decommissioning' | 'decommissioned'; replicas: number }>;
}

/** A recommission's answer: the node's state before (as the broker asked had it) and the node now. */
export interface Recommission {
  previousState: Reassignments['nodes'][number]['state'];
  node: Reassignments['nodes'][number];
}

export class Admin {
  private readonly conn: Connection;
  private readonly ownsConnection: boolean;

  constructor(options: ClientOptions | Connection = {}) {
    this.ownsConnection = !(options instanceof Connection);
    this.conn = options instanceof Connection ? options : new Connection(options);
  }

  async createTopic(name: string, options: CreateTopicOptions = {}): Promise<TopicDescription> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.createTopic, {
      name,
      partitions: checkInt32(options.partitions ?? 1, 'partitions'),
      replicationFactor: checkInt32(options.replicationFactor ?? 1, 'replicationFactor'),
      configs: options.configs ?? {},
    });
    return fromPbTopic(res.topic!);
  }

  async deleteTopic(name: string): Promise<void> {
    await this.conn.unary(this.conn.admin, this.conn.admin.deleteTopic, { name });
  }

  async listTopics(): Promise<TopicSummary[]> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.listTopics, {});
    return res.topics;
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.describeTopic, { name });
    return fromPbTopic(res.topic!);
  }

  async alterTopicConfig(name: string, set: Record<string, string>, remove: string[] = []): Promise<Record<string, string>> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.alterTopicConfig, { name, set, remove });
    return res.configs;
  }

  async createPartitions(name: string, totalPartitions: number): Promise<TopicDescription> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.createPartitions, { name, totalPartitions: checkInt32(totalPartitions, 'totalPartitions') });
    return fromPbTopic(res.topic!);
  }

  /** Cluster mode: starts moving `topic`/`partition` to `replicas` (first = preferred leader); see `reassignments`. */
  async movePartition(topic: string, partition: number, replicas: number[]): Promise<void> {
    await this.conn.unary(this.conn.admin, this.conn.admin.movePartition, { topic, partition: checkPartition(partition), replicas: replicas.map((r) => checkInt32(r, 'replica node id')) });
  }

  /** Cluster mode: moves every replica off `nodeId`; it is decommissioned once it holds none. */
  async decommissionNode(nodeId: number): Promise<void> {
    await this.conn.unary(this.conn.admin, this.conn.admin.decommissionNode, { nodeId: checkInt32(nodeId, 'node id') });
  }

  /**
   * Cluster mode: makes a decommissioning or decommissioned node active again (an active one: nothing
   * to do). Resolves with its state before and the node now.
   */
  async recommissionNode(nodeId: number): Promise<Recommission> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.recommissionNode, { nodeId: checkInt32(nodeId, 'node id') });
    const n = res.node!;
    return { previousState: res.previousState as Recommission['previousState'], node: { nodeId: n.nodeId, state: n.state as Recommission['node']['state'], replicas: n.replicas } };
  }

  /** Cluster mode: starts moves that even out replica counts; resolves with how many started. */
  async rebalance(): Promise<number> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.rebalance, {});
    return res.moves;
  }

  /** Cluster mode: moves in progress and every node's lifecycle state. */
  async reassignments(): Promise<Reassignments> {
    const res = await this.conn.unary(this.conn.admin, this.conn.admin.listReassignments, {});
    return { reassignments: res.reassignments, nodes: res.nodes.map((n) => ({ nodeId: n.nodeId, state: n.state as Reassignments['nodes'][number]['state'], replicas: n.replicas })) };
  }

  async metadata(topics: string[] = []): Promise<ClusterMetadata> {
    const res = await this.conn.unary(this.conn.broker, this.conn.broker.getMetadata, { topics });
    const brokers = res.brokers.map((b): ClusterMetadata['brokers'][number] => ({
      nodeId: b.nodeId,
      grpcAddress: b.grpcAddress,
      httpAddress: b.httpAddress,
      rack: b.rack,
      alive: b.alive,
      state: b.state === 'suspect' || b.state === 'dead' ? b.state : ('alive' as const),
      nodeUuid: b.nodeUuid,
      controllerRole: b.controllerRole === 'voter' || b.controllerRole === 'learner' ? b.controllerRole : '',
    }));
    return { clusterId: res.clusterId, controllerId: res.controllerId, brokers, topics: res.topics.map(fromPbTopic) };
  }

  /** Offsets of the given partitions (all when omitted), as a map partition → offset. */
  async listOffsets(topic: string, query: OffsetQuery, partitions: number[] = []): Promise<Map<number, number>> {
    const spec = query === 'earliest' ? OffsetSpec.OFFSET_SPEC_EARLIEST : query === 'latest' ? OffsetSpec.OFFSET_SPEC_LATEST : OffsetSpec.OFFSET_SPEC_TIMESTAMP;
    const timestampMs = typeof query === 'object' ? BigInt(checkTimestampMs(query.timestampMs)) : 0n;
    for (const p of partitions) checkPartition(p);
    const res = await this.conn.unary(this.conn.broker, this.conn.broker.listOffsets, { topic, partitions, spec, timestampMs });
    return new Map(res.offsets.map((o) => [o.partition, Number(o.offset)]));
  }

  close(): void {
    if (this.ownsConnection) this.conn.close();
  }
}
