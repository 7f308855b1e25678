/**
 * A stand-in for the Broker in cluster mode (BrokerApi + ReplicaHost), for testing the cluster layer
 * of src/server on its own: it keeps each replica's batches in memory, does not replicate, and makes
 * the first voter of each partition its leader at epoch 1 (reported through onLeaderChange when it
 * opens). A produce or listOffsets on a replica it does not lead answers NOT_LEADER, as the real one.
 */
import crypto from 'node:crypto';
import { SluiceError } from '../../src/errors.js';
import { OFF_LENGTH, OFF_RECORD_COUNT, BATCH_LOG_OVERHEAD_BYTES, asBuffer } from '../../src/batch/codec.js';
import { encodeBatch } from '../../src/batch/index.js';
import type { BrokerApi, ClusterMetadata, FetchInput, FetchResult, ProduceInput, ProduceResult, TopicDescription } from '../../src/broker/types.js';
import type { ReplicaHost, ReplicaSpec, ReplicaStatus } from '../../src/broker/replicas.js';
import type { GroupId } from '../../src/cluster/types.js';
import type { NodeId } from '../../src/model/index.js';

interface Replica {
  spec: ReplicaSpec;
  batches: Buffer[];
  records: number;
}

export class FakeReplicaCore implements BrokerApi, ReplicaHost {
  readonly replicas = new Map<GroupId, Replica>();
  readonly closed: GroupId[] = [];
  readonly produced: Array<{ topic: string; partition: number }> = [];
  private readonly listeners = new Set<(s: ReplicaStatus) => void>();
  private readonly clusterId = crypto.randomUUID();

  constructor(readonly nodeId: NodeId) {}

  private status(r: Replica): ReplicaStatus {
    const leader = r.spec.voters[0];
    return {
      group: r.spec.group,
      topic: r.spec.topic,
      partition: r.spec.partition,
      role: leader === this.nodeId ? 'leader' : 'follower',
      leader,
      epoch: 1,
      highWatermark: r.records,
      logStartOffset: 0,
      logEndOffset: r.records,
      inSync: leader === this.nodeId ? [...r.spec.voters] : [],
    };
  }

  private held(topic: string, partition: number): Replica {
    for (const r of this.replicas.values()) if (r.spec.topic === topic && r.spec.partition === partition) return r;
    throw new SluiceError('NOT_LEADER', `node ${this.nodeId} holds no replica of ${topic}/${partition}`);
  }

  // ReplicaHost
  async openReplicas(specs: readonly ReplicaSpec[]): Promise<void> {
    for (const spec of specs) {
      if (this.replicas.has(spec.group)) continue;
      const r: Replica = { spec, batches: [], records: 0 };
      this.replicas.set(spec.group, r);
      if (spec.voters[0] === this.nodeId) for (const l of this.listeners) l(this.status(r));
    }
  }
  async closeReplicas(groups: readonly GroupId[]): Promise<void> {
    for (const g of groups) if (this.replicas.delete(g)) this.closed.push(g);
  }
  async setReplicaConfigs(): Promise<void> {}
  setPartitionCount(): void {}
  replicaStatus(): ReplicaStatus[] {
    return [...this.replicas.values()].map((r) => this.status(r));
  }
  onLeaderChange(listener: (s: ReplicaStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // BrokerApi
  async produce(input: ProduceInput): Promise<ProduceResult> {
    const r = this.held(input.topic, input.partition!);
    if (r.spec.voters[0] !== this.nodeId) throw new SluiceError('NOT_LEADER', `node ${this.nodeId} does not lead ${input.topic}/${input.partition}`);
    const data = asBuffer(input.batches ?? encodeBatch(input.records ?? [], input.producer ?? {}));
    let count = 0;
    for (let pos = 0; pos < data.length; pos += data.readInt32BE(pos + OFF_LENGTH) + BATCH_LOG_OVERHEAD_BYTES) count += data.readInt32BE(pos + OFF_RECORD_COUNT);
    const base = r.records;
    r.batches.push(Buffer.from(data));
    r.records += count;
    this.produced.push({ topic: input.topic, partition: input.partition! });
    return { partition: input.partition!, baseOffset: base, lastOffset: base + count - 1, appendTimeMs: Date.now(), logStartOffset: 0 };
  }
  async fetch(input: FetchInput): Promise<FetchResult> {
    const r = this.held(input.topic, input.partition);
    return { batches: Buffer.concat(r.batches), highWatermark: r.records, logStartOffset: 0, nextOffset: r.records };
  }
  async listOffsets(topic: string, partition: number) {
    const r = this.held(topic, partition);
    if (r.spec.voters[0] !== this.nodeId) throw new SluiceError('NOT_LEADER', `node ${this.nodeId} does not lead ${topic}/${partition}`);
    return { partition, offset: r.records };
  }
  async metadata(): Promise<ClusterMetadata> {
    return { clusterId: this.clusterId, controllerId: this.nodeId, brokers: [], topics: [] };
  }
  async describeTopic(): Promise<TopicDescription> {
    throw new SluiceError('UNKNOWN_TOPIC', 'the fake core describes nothing');
  }
  async initProducer() {
    return { producerId: 7n, producerEpoch: 0 };
  }
  private refuse(): never {
    throw new SluiceError('INVALID_REQUEST', 'cluster mode: topics are changed through the controller');
  }
  async createTopic(): Promise<TopicDescription> {
    this.refuse();
  }
  async deleteTopic(): Promise<void> {
    this.refuse();
  }
  async listTopics() {
    return [];
  }
  async alterTopicConfig(): Promise<Record<string, string>> {
    this.refuse();
  }
  async createPartitions(): Promise<TopicDescription> {
    this.refuse();
  }
  async close(): Promise<void> {}
}
