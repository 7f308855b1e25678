/** `sluice topic create|list|describe|delete|alter-config|add-partitions`. */
import { Admin, type ClientOptions } from '../client/index.js';
import type { TopicDescription } from '../client/types.js';
import { emit, formatTable, type OutputFormat } from './output.js';

export interface Common {
  brokers: string;
  /** Deadline of one request, in milliseconds (`--timeout`). */
  timeout: number;
  format: OutputFormat;
}

/** What every client the CLI makes is given: the broker address and the request deadline. */
export function clientOptions(o: Common): ClientOptions {
  return { brokers: o.brokers, requestTimeoutMs: o.timeout };
}

/** Internal topics (`__consumer_offsets`, ...) start with two underscores; users cannot create such names. */
export const INTERNAL_TOPIC_PREFIX = '__';

async function withAdmin<T>(common: Common, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin(clientOptions(common));
  try {
    return await fn(admin);
  } finally {
    admin.close();
  }
}

function describeTable(t: TopicDescription): string {
  const summary = formatTable([{ name: t.name, partitions: t.partitions.length, replicas: t.replicationFactor }], ['name', 'partitions', 'replicas']);
  const configs = Object.keys(t.configs).length === 0 ? '' : '\n' + formatTable(Object.entries(t.configs).sort().map(([key, value]) => ({ key, value })), ['key', 'value']);
  const parts = formatTable(
    t.partitions.map((p) => ({
      partition: p.partition,
      leader: p.leader,
      epoch: p.leaderEpoch ?? 0,
      replicas: p.replicas,
      isr: p.inSyncReplicas ?? [],
      'log-start-offset': p.logStartOffset,
      'high-watermark': p.highWatermark,
      size: p.sizeBytes,
      damaged: p.damagedRanges,
    })),
    ['partition', 'leader', 'epoch', 'replicas', 'isr', 'log-start-offset', 'high-watermark', 'size', 'damaged'],
  );
  return `${summary}${configs}\n${parts}`;
}

export function createTopic(name: string, o: Common & { partitions: number; replicas: number; config: [string, string][] }): Promise<void> {
  return withAdmin(o, async (admin) => {
    const t = await admin.createTopic(name, { partitions: o.partitions, replicationFactor: o.replicas, configs: Object.fromEntries(o.config) });
    emit(o.format, t, () => formatTable([{ topic: t.name, status: 'created', partitions: t.partitions.length }], ['topic', 'status', 'partitions']));
  });
}

/** Lists topics; internal ones only with `--internal`, as Kafka's tools do. */
export function listTopics(o: Common & { internal?: boolean }): Promise<void> {
  return withAdmin(o, async (admin) => {
    const topics = (await admin.listTopics())
      .filter((t) => o.internal === true || !t.name.startsWith(INTERNAL_TOPIC_PREFIX))
      .sort((a, b) => a.name.localeCompare(b.name));
    emit(o.format, topics, () => formatTable(topics.map((t) => ({ name: t.name, partitions: t.partitionCount, replicas: t.replicationFactor })), ['name', 'partitions', 'replicas']));
  });
}

export function describeTopic(name: string, o: Common): Promise<void> {
  return withAdmin(o, async (admin) => {
    const t = await admin.describeTopic(name);
    emit(o.format, t, () => describeTable(t));
  });
}

export function deleteTopic(name: string, o: Common): Promise<void> {
  return withAdmin(o, async (admin) => {
    await admin.deleteTopic(name);
    emit(o.format, { topic: name, status: 'deleted' }, () => formatTable([{ topic: name, status: 'deleted' }], ['topic', 'status']));
  });
}

export function alterConfig(name: string, o: Common & { set: [string, string][]; delete: string[] }): Promise<void> {
  return withAdmin(o, async (admin) => {
    const configs = await admin.alterTopicConfig(name, Object.fromEntries(o.set), o.delete);
    emit(o.format, configs, () => formatTable(Object.entries(configs).sort().map(([key, value]) => ({ key, value })), ['key', 'value']));
  });
}

export function addPartitions(name: string, o: Common & { num?: number; total?: number }): Promise<void> {
  return withAdmin(o, async (admin) => {
    const current = (await admin.describeTopic(name)).partitions.length;
    const total = o.total ?? current + (o.num ?? 0);
    const t = await admin.createPartitions(name, total);
    emit(o.format, t, () => formatTable([{ topic: name, before: current, after: t.partitions.length }], ['topic', 'before', 'after']));
  });
}
