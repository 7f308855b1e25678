/**
 * An in-memory BrokerApi for front-end tests (gRPC mapping, client, CLI parsing) that must not depend
 * on the real core. It follows the contract of src/broker/types.ts closely enough: Kafka v2 batches
 * validated and patched in place, long-poll fetches woken by produces, SluiceErrors for bad input.
 */
import { SluiceError } from '../../src/errors.js';
import { encodeBatch, patchBatch, readBatchHeader, validateBatches } from '../../src/batch/index.js';
import { partitionForKey } from '../../src/model/murmur2.js';
import { BATCH_BYTES_MAX_DEFAULT, TOPIC_PARTITIONS_MAX } from '../../src/constants.js';
import type {
  BrokerApi, ClusterMetadata, FetchInput, FetchResult, ListOffsetsResult, OffsetSpec, ProduceInput, ProduceResult, TopicDescription, TopicSummary,
} from '../../src/broker/types.js';

interface FakePartition {
  batches: { base: number; last: number; bytes: Buffer; maxTs: number }[];
  next: number;
  waiters: Set<() => void>;
}

const NAME = /^[a-zA-Z0-9._-]{1,249}$/;

export class FakeBroker implements BrokerApi {
  readonly topics = new Map<string, { parts: FakePartition[]; configs: Record<string, string> }>();
  private rr = 0;
  closed = false;

  private topic(name: string) {
    const t = this.topics.get(name);
    if (t === undefined) throw new SluiceError('UNKNOWN_TOPIC', `topic "${name}" does not exist`);
    return t;
  }

  private part(name: string, p: number): FakePartition {
    const t = this.topic(name);
    if (!Number.isInteger(p) || p < 0 || p >= t.parts.length) throw new SluiceError('UNKNOWN_PARTITION', `topic "${name}" has no partition ${p}`);
    return t.parts[p];
  }

  private describe(name: string): TopicDescription {
    const t = this.topic(name);
    return {
      name,
      replicationFactor: 1,
      configs: { ...t.configs },
      partitions: t.parts.map((p, i) => ({
        partition: i, logStartOffset: 0, highWatermark: p.next, leader: 1, replicas: [1], sizeBytes: p.batches.reduce((n, b) => n + b.bytes.length, 0), damagedRanges: 0,
      })),
    };
  }

  async createTopic(name: string, partitions: number, _rf: number, configs: Record<string, string>): Promise<TopicDescription> {
    if (!NAME.test(name) || name === '.' || name === '..') throw new SluiceError('INVALID_TOPIC_NAME', `invalid topic name "${name}"`);
    if (!(partitions >= 1 && partitions <= TOPIC_PARTITIONS_MAX)) throw new SluiceError('INVALID_PARTITIONS', `partitions must be 1..${TOPIC_PARTITIONS_MAX}`);
    if (this.topics.has(name)) throw new SluiceError('TOPIC_ALREADY_EXISTS', `topic "${name}" already exists`);
    this.topics.set(name, { parts: Array.from({ length: partitions }, () => ({ batches: [], next: 0, waiters: new Set() })), configs: { ...configs } });
    return this.describe(name);
  }

  async deleteTopic(name: string): Promise<void> {
    this.topic(name);
    this.topics.delete(name);
  }

  async listTopics(): Promise<TopicSummary[]> {
    return [...this.topics].map(([name, t]) => ({ name, partitionCount: t.parts.length, replicationFactor: 1 }));
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    return this.describe(name);
  }

  async alterTopicConfig(name: string, set: Record<string, string>, remove: string[]): Promise<Record<string, string>> {
    const t = this.topic(name);
    Object.assign(t.configs, set);
    for (const k of remove) delete t.configs[k];
    return { ...t.configs };
  }

  async createPartitions(name: string, total: number): Promise<TopicDescription> {
    const t = this.topic(name);
    if (total <= t.parts.length) throw new SluiceError('INVALID_PARTITIONS', `topic "${name}" already has ${t.parts.length} partitions`);
    while (t.parts.length < total) t.parts.push({ batches: [], next: 0, waiters: new Set() });
    return this.describe(name);
  }

  async produce(input: ProduceInput): Promise<ProduceResult> {
    if (this.closed) throw new SluiceError('SHUTTING_DOWN', 'closed');
    const t = this.topic(input.topic);
    let bytes: Buffer;
    if (input.batches !== undefined) {
      bytes = Buffer.from(input.batches);
      validateBatches(bytes, BATCH_BYTES_MAX_DEFAULT);
    } else {
      bytes = encodeBatch(input.records!);
    }
    let p = input.partition;
    if (p === undefined) {
      const key = input.records?.[0]?.key ?? null;
      p = key !== null ? partitionForKey(key, t.parts.length) : this.rr++ % t.parts.length;
    }
    const part = this.part(input.topic, p);
    const base = part.next;
    for (let pos = 0; pos < bytes.length;) {
      const h = readBatchHeader(bytes, pos);
      patchBatch(bytes, pos, part.next, 0);
      const copy = Buffer.from(bytes.subarray(pos, pos + h.sizeBytes));
      part.batches.push({ base: part.next, last: part.next + h.lastOffsetDelta, bytes: copy, maxTs: h.maxTimestamp });
      part.next += h.lastOffsetDelta + 1;
      pos += h.sizeBytes;
    }
    for (const w of part.waiters) w();
    return { partition: p, baseOffset: base, lastOffset: part.next - 1, appendTimeMs: Date.now(), logStartOffset: 0 };
  }

  async fetch(input: FetchInput, signal?: AbortSignal): Promise<FetchResult> {
    const part = this.part(input.topic, input.partition);
    if (input.offset < 0 || input.offset > part.next) throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${input.offset} is outside [0, ${part.next}]`);
    if (input.offset === part.next && input.maxWaitMs > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          part.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, input.maxWaitMs);
        part.waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let next = input.offset;
    for (const b of part.batches) {
      if (b.last < input.offset) continue;
      if (size > 0 && size + b.bytes.length > input.maxBytes) break;
      chunks.push(b.bytes);
      size += b.bytes.length;
      next = b.last + 1;
    }
    return { batches: Buffer.concat(chunks), highWatermark: part.next, logStartOffset: 0, nextOffset: next };
  }

  async listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<ListOffsetsResult> {
    const part = this.part(topic, partition);
    if (spec.kind === 'earliest') return { partition, offset: 0 };
    if (spec.kind === 'latest') return { partition, offset: part.next };
    const b = part.batches.find((x) => x.maxTs >= spec.timestampMs);
    return { partition, offset: b === undefined ? -1 : b.base };
  }

  async metadata(topics?: string[]): Promise<ClusterMetadata> {
    const names = topics ?? [...this.topics.keys()];
    return {
      clusterId: 'fake',
      controllerId: 1,
      brokers: [{ nodeId: 1, grpcAddress: 'fake', httpAddress: '' }],
      topics: names.filter((n) => this.topics.has(n)).map((n) => this.describe(n)),
    };
  }

  private nextProducerId = 0n;

  /** Hands out ids; the fake does not deduplicate (test/idempotence runs against the real broker). */
  async initProducer(): Promise<{ producerId: bigint; producerEpoch: number }> {
    return { producerId: this.nextProducerId++, producerEpoch: 0 };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
