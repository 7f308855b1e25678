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
