/**
 * The workload of a chaos run, against one target (a topic reached through one address: a node's
 * proxy today, the cluster later): producers at acks=all writing unique values round-robin to every
 * partition (retrying idempotent ones, and one without idempotence and without retries), a reader per partition
 * by offset, a consumer-group member committing each batch it was delivered, and a poller of high
 * watermarks, committed offsets and leaders. Everything lands in the History with invoke/complete times.
 * The pace is fixed (WORKLOAD_WRITES_PER_SECOND per producer) so histories stay small and replays
 * comparable; a fault shows up as unknown outcomes and a gap in acknowledged throughput.
 */
import { Admin, Consumer, GroupAdmin, GroupConsumer, Producer } from '../../src/client/index.js';
import { SluiceError, isSluiceError } from '../../src/errors.js';
import { RawProducer } from './cluster.js';
import * as C from './constants.js';
import type { History, Outcome } from './history.js';

export interface Target {
  /** Short name used in process names ("n1"). */
  name: string;
  topic: string;
  /** Where clients connect: a proxy (one node), or every node's address, comma-separated (a cluster). */
  address: string;
  /**
   * A cluster: these nodes' addresses take the raw producer's writes in turn (most reach a non-leader,
   * which forwards); the consumer-group member lists every node (its coordinator is the leader of the
   * group's __consumer_offsets partition, found through any of them).
   */
  nodes?: readonly string[];
  /**
   * Whether the retrying producers are idempotent (default true). Cluster runs turn it off unless asked
   * (`--idempotent`): through the cluster the idempotent producer can be acknowledged as a duplicate of
   * another value (docs/chaos.md, "Findings"). Off, those producers still retry, so their duplicates are
   * counted as allowed ones (duplicatedPlain) and their failures are unknown, never definite.
   */
  idempotent?: boolean;
}

/** Failures after which the broker wrote nothing, for a producer that does not retry. */
const NOT_WRITTEN = new Set(['DISK_FULL', 'QUEUE_FULL', 'CLIENT_MEMORY_EXHAUSTED', 'RECORD_TOO_LARGE', 'INVALID_REQUEST', 'INVALID_RECORD', 'CORRUPT_BATCH', 'UNKNOWN_TOPIC', 'UNKNOWN_PARTITION']);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const errText = (err: unknown): string => (err instanceof SluiceError ? `${err.code}: ${err.message}` : String((err as Error)?.message ?? err)).slice(0, 200);
/**
 * Each client gets its own connection, and reconnects within a second of a broker coming back (grpc-js
 * would otherwise back off up to 2 minutes after repeated failures, and measure that, not Sluice).
 */
const channelOptions = { 'grpc.use_local_subchannel_pool': 1, 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1_000 };

export class Workload {
  private stopping = false;
  private readonly tasks: Promise<void>[] = [];
  private readonly closers = new Set<() => void>();
  /** Next offset each reader will read, by key: the harness waits for these to reach the high watermark. */
  readonly readerPositions = new Map<string, number>();
  /** The next offset the group member will be delivered, by key. */
  readonly groupPositions = new Map<string, number>();

  constructor(
    private readonly targets: readonly Target[],
    private readonly history: History,
    private readonly now: () => number,
  ) {}

  start(): void {
    for (const t of this.targets) {
      for (let i = 0; i < C.WORKLOAD_PRODUCERS_IDEMPOTENT + C.WORKLOAD_PRODUCERS_PLAIN; i++) {
        const retrying = i < C.WORKLOAD_PRODUCERS_IDEMPOTENT;
        const idem = retrying && t.idempotent !== false;
        this.tasks.push(this.producer(t, `${t.name}p${i}${idem ? 'i' : retrying ? 'r' : 'n'}`, idem, retrying));
      }
      if (t.nodes !== undefined) this.tasks.push(this.producer(t, `${t.name}p${C.WORKLOAD_PRODUCERS_IDEMPOTENT + C.WORKLOAD_PRODUCERS_PLAIN}v`, false, false, t.nodes));
      for (let p = 0; p < C.WORKLOAD_PARTITIONS; p++) this.tasks.push(this.reader(t, p));
      this.tasks.push(this.groupMember(t));
      this.tasks.push(this.poller(t));
    }
  }

  /** Stops writing at once; readers go on until `stop`. Waits (bounded) for writes in flight. */
  async stopWriting(): Promise<void> {
    this.writing = false;
    await Promise.race([Promise.allSettled(this.producerTasks), sleep(C.WORKLOAD_DRAIN_MS)]);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.writing = false;
    for (const close of this.closers) close();
    await Promise.race([Promise.allSettled(this.tasks), sleep(C.WORKLOAD_DRAIN_MS)]);
  }

  private writing = true;
  private readonly producerTasks: Promise<void>[] = [];

  private producer(t: Target, proc: string, idem: boolean, retrying: boolean, via?: readonly string[]): Promise<void> {
    const task = via === undefined ? this.runProducer(t, proc, idem, retrying) : this.runRawProducer(t, proc, via);
    this.producerTasks.push(task);
    return task;
  }

  private async runProducer(t: Target, proc: string, idem: boolean, retrying: boolean): Promise<void> {
    const producer = new Producer({
      brokers: t.address,
      idempotent: idem,
      retries: retrying ? 1_000 : 0,
      retryBackoffMaxMs: 500,
      lingerMs: 2,
      requestTimeoutMs: C.WORKLOAD_REQUEST_TIMEOUT_MS,
      channelOptions,
    });
    const pending = new Set<Promise<void>>();
    const intervalMs = 1_000 / C.WORKLOAD_WRITES_PER_SECOND;
    let nextAt = this.now();
    for (let counter = 0; this.writing; counter++) {
      while (pending.size >= C.WORKLOAD_IN_FLIGHT_MAX && this.writing) await Promise.race(pending);
      if (!this.writing) break;
      const wait = nextAt - this.now();
      if (wait > 0) await sleep(wait);
      nextAt = Math.max(nextAt + intervalMs, this.now() - 10 * intervalMs);
      const key = `${t.topic}/${counter % C.WORKLOAD_PARTITIONS}`;
      const value = `${proc}:${counter}`;
      const inv = this.now();
      const done = producer.send(t.topic, { partition: counter % C.WORKLOAD_PARTITIONS, value }).then(
        (md) => this.history.add({ t: 'produce', proc, idem, key, value, inv, end: this.now(), outcome: 'ok', offset: md.offset }),
        (err: unknown) => {
          // Only a producer that never retried knows a refusal means nothing was written.
          const outcome: Outcome = !retrying && err instanceof SluiceError && NOT_WRITTEN.has(err.code) ? 'failed' : 'unknown';
          this.history.add({ t: 'produce', proc, idem, key, value, inv, end: this.now(), outcome, err: errText(err) });
        },
      );
      pending.add(done);
      void done.finally(() => pending.delete(done));
    }
    // Writes still unanswered after the drain bound are unknown; record them so the history is whole.
    const drained = await Promise.race([Promise.allSettled(pending).then(() => true), sleep(C.WORKLOAD_DRAIN_MS).then(() => false)]);
    if (!drained) this.history.add({ t: 'note', at: this.now(), text: `${proc}: ${pending.size} writes still unanswered at the end (unknown)` });
    await producer.close().catch(() => {});
  }

  /**
   * Cluster only: writes through each node in turn (node = counter mod nodes), whether it leads the
   * partition or not, one record a request, no retries, no idempotence. Same pace as the others.
   */
  private async runRawProducer(t: Target, proc: string, via: readonly string[]): Promise<void> {
    const producer = new RawProducer(via);
    const pending = new Set<Promise<void>>();
    const intervalMs = 1_000 / C.WORKLOAD_WRITES_PER_SECOND;
    let nextAt = this.now();
    for (let counter = 0; this.writing; counter++) {
      while (pending.size >= C.WORKLOAD_IN_FLIGHT_MAX && this.writing) await Promise.race(pending);
      if (!this.writing) break;
      const wait = nextAt - this.now();
      if (wait > 0) await sleep(wait);
      nextAt = Math.max(nextAt + intervalMs, this.now() - 10 * intervalMs);
      const partition = counter % C.WORKLOAD_PARTITIONS;
      const key = `${t.topic}/${partition}`;
      const value = `${proc}:${counter}`;
      const inv = this.now();
      const done = producer.send(counter, t.topic, partition, value).then((r) => {
        if ('offset' in r) this.history.add({ t: 'produce', proc, idem: false, key, value, inv, end: this.now(), outcome: 'ok', offset: r.offset });
        else this.history.add({ t: 'produce', proc, idem: false, key, value, inv, end: this.now(), outcome: NOT_WRITTEN.has(r.reason) ? 'failed' : 'unknown', err: `via ${via[counter % via.length]}: ${r.error}` });
      });
      pending.add(done);
      void done.finally(() => pending.delete(done));
    }
    const drained = await Promise.race([Promise.allSettled(pending).then(() => true), sleep(C.WORKLOAD_DRAIN_MS).then(() => false)]);
    if (!drained) this.history.add({ t: 'note', at: this.now(), text: `${proc}: ${pending.size} writes still unanswered at the end (unknown)` });
    producer.close();
  }

  /** Reads one partition by offset from the start, forever, restarting where it stopped after a failure. */
  private async reader(t: Target, partition: number): Promise<void> {
    const key = `${t.topic}/${partition}`;
    const proc = `${t.name}r${partition}`;
    this.readerPositions.set(key, 0);
    while (!this.stopping) {
      const consumer = new Consumer({ brokers: t.address, topic: t.topic, partitions: [partition], from: this.readerPositions.get(key)!, maxWaitMs: 200, requestTimeoutMs: C.WORKLOAD_REQUEST_TIMEOUT_MS, channelOptions });
      const close = (): void => consumer.close();
      this.closers.add(close);
      try {
        for await (const r of consumer) {
          this.history.add({ t: 'read', proc, key, offset: r.offset, value: r.value?.toString() ?? '', at: this.now() });
          this.readerPositions.set(key, r.offset + 1);
        }
        // Control batches at the end are skipped by the consumer; its position covers them.
        const pos = consumer.offsets.get(partition);
        if (pos !== undefined) this.readerPositions.set(key, Math.max(pos, this.readerPositions.get(key)!));
      } catch (err) {
        if (!this.stopping) this.history.add({ t: 'note', at: this.now(), text: `${proc} restarts after: ${errText(err)}` });
      } finally {
        this.closers.delete(close);
        consumer.close();
      }
      if (!this.stopping) await sleep(C.WORKLOAD_RESTART_MS);
    }
  }

  /** One static member of the target's group: logs each delivered record, commits each batch, rejoins after failures. */
  private async groupMember(t: Target): Promise<void> {
    const proc = `${t.name}g0`;
    while (!this.stopping) {
      const member = new GroupConsumer({ brokers: t.address, groupId: `chaos-${t.topic}`, instanceId: proc, autoCommit: false, requestTimeoutMs: C.WORKLOAD_REQUEST_TIMEOUT_MS, channelOptions });
      const close = (): void => void member.stop().catch(() => {});
      this.closers.add(close);
      try {
        // Commits go out without holding up delivery, at most one in flight per partition (later
        // offsets wait and coalesce), so the member keeps up with the producers.
        const inFlight = new Set<string>();
        const waiting = new Map<string, number>();
        const commit = (topic: string, partition: number, offset: number): void => {
          const key = `${topic}/${partition}`;
          if (inFlight.has(key)) {
            waiting.set(key, offset);
            return;
          }
          inFlight.add(key);
          const inv = this.now();
          member.commit([{ topic, partition, offset }]).then(
            () => this.history.add({ t: 'commit', proc, key, offset, inv, end: this.now(), outcome: 'ok' }),
            (err: unknown) => this.history.add({ t: 'commit', proc, key, offset, inv, end: this.now(), outcome: 'unknown', err: errText(err) }),
          ).finally(() => {
            inFlight.delete(key);
            const next = waiting.get(key);
            waiting.delete(key);
            if (next !== undefined && !this.stopping) commit(topic, partition, next);
          });
        };
        await member.subscribe(t.topic).run((batch) => {
          const key = `${batch.topic}/${batch.partition}`;
          for (const r of batch.records) {
            if (r.offset >= batch.firstOffset) this.history.add({ t: 'gread', proc, key, offset: r.offset, value: r.value?.toString() ?? '', at: this.now() });
          }
          this.groupPositions.set(key, Math.max(this.groupPositions.get(key) ?? 0, batch.nextOffset));
          commit(batch.topic, batch.partition, batch.nextOffset);
        });
      } catch (err) {
        if (!this.stopping) this.history.add({ t: 'note', at: this.now(), text: `${proc} rejoins after: ${errText(err)}` });
      } finally {
        this.closers.delete(close);
      }
      if (!this.stopping) await sleep(C.WORKLOAD_RESTART_MS);
    }
  }

  /** High watermarks, the group's committed offsets and the leaders, every WORKLOAD_POLL_MS. */
  private async poller(t: Target): Promise<void> {
    const admin = new Admin({ brokers: t.address, requestTimeoutMs: C.WORKLOAD_REQUEST_TIMEOUT_MS, channelOptions });
    const groups = new GroupAdmin({ brokers: t.address, requestTimeoutMs: C.WORKLOAD_REQUEST_TIMEOUT_MS, channelOptions });
    const leaders = new Map<string, number>();
    try {
      while (!this.stopping) {
        let inv = this.now();
        try {
          const hws = await admin.listOffsets(t.topic, 'latest');
          const end = this.now();
          for (const [p, hw] of hws) this.history.add({ t: 'hw', key: `${t.topic}/${p}`, hw, inv, end });
          if (t.nodes === undefined) {
            inv = this.now();
            const committed = await groups.fetchOffsets(`chaos-${t.topic}`, [t.topic]);
            const end2 = this.now();
            for (const c of committed) if (c.offset >= 0) this.history.add({ t: 'committed', key: `${c.topic}/${c.partition}`, offset: c.offset, inv, end: end2 });
          }
          const md = await admin.metadata([t.topic]);
          // A cluster's controller leader changes too (key "controller"; 0 = none known to the node asked).
          if (t.nodes !== undefined && leaders.get('controller') !== md.controllerId) {
            leaders.set('controller', md.controllerId);
            this.history.add({ t: 'leader', key: 'controller', leader: md.controllerId, at: this.now() });
          }
          for (const p of md.topics[0]?.partitions ?? []) {
            const key = `${t.topic}/${p.partition}`;
            if (leaders.get(key) !== p.leader) {
              leaders.set(key, p.leader);
              this.history.add({ t: 'leader', key, leader: p.leader, at: this.now() });
            }
          }
        } catch {
          // A fault: the next poll tries again. Polls carry no outcome worth checking.
        }
        await sleep(C.WORKLOAD_POLL_MS);
      }
    } finally {
      admin.close();
      groups.close();
    }
  }
}

/**
 * The high watermarks of `topic` through `admin`, asked again (bounded by WORKLOAD_DRAIN_MS) while the
 * answer is a retriable refusal: on a cluster right after healing a partition may still be electing,
 * or its new leader may not have committed an entry of its term yet (it then refuses rather than show
 * a high watermark that could be below one already seen).
 */
export async function latestOffsets(admin: Admin, topic: string): Promise<Map<number, number>> {
  const deadline = Date.now() + C.WORKLOAD_DRAIN_MS;
  for (;;) {
    try {
      return await admin.listOffsets(topic, 'latest');
    } catch (err) {
      if (!isSluiceError(err) || !err.retriable || Date.now() > deadline) throw err;
      await sleep(C.WORKLOAD_RESTART_MS);
    }
  }
}

/** Reads every partition of `topic` from `address` to its end: the final read, after healing. */
export async function finalRead(address: string, topic: string, history: History): Promise<void> {
  const admin = new Admin({ brokers: address, channelOptions });
  try {
    let hws: Map<number, number>;
    try {
      hws = await latestOffsets(admin, topic);
    } catch (err) {
      if (!isSluiceError(err, 'UNKNOWN_TOPIC')) throw err;
      // The topic itself is gone (a broker that lost its metadata, e.g. one that acknowledges before
      // fsync, after a power cut): the final read is empty, so every acknowledged value counts as lost.
      history.add({ t: 'note', at: 0, text: `final read: topic ${topic} does not exist any more (${err.message})` });
      for (let p = 0; p < C.WORKLOAD_PARTITIONS; p++) history.add({ t: 'final-hw', key: `${topic}/${p}`, hw: 0 });
      return;
    }
    for (let p = 0; p < C.WORKLOAD_PARTITIONS; p++) {
      const key = `${topic}/${p}`;
      const consumer = new Consumer({ brokers: address, topic, partitions: [p], from: 'earliest', stopAtEnd: true, channelOptions });
      try {
        for await (const r of consumer) history.add({ t: 'final', key, offset: r.offset, value: r.value?.toString() ?? '' });
      } finally {
        consumer.close();
      }
      history.add({ t: 'final-hw', key, hw: hws.get(p) ?? 0 });
    }
  } finally {
    admin.close();
  }
}
