/**
 * One driver per system, used inside the load-generator process. Each speaks the system's own client
 * protocol: Sluice over gRPC (generated stubs), Redis over RESP (resp.ts), NATS through the `nats` npm
 * client. A driver knows how to append a request's worth of records, read everything from the start,
 * and tail new records.
 */
import { randomBytes } from 'node:crypto';
import { credentials, type ClientReadableStream } from '@grpc/grpc-js';
import { AckPolicy, connect as natsConnect, DeliverPolicy, StorageType, type JetStreamClient, type NatsConnection } from 'nats';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { Admin, Producer } from '../../src/client/index.js';
import type { BrokerClient, FetchResponse, ListOffsetsResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { FastBrokerClient } from '../../src/rpc/fast-codec.js';
import { encodeCommand, RespClient, type RespValue } from './resp.js';
import type { LoadJob } from './types.js';

export interface Driver {
  setup(): Promise<void>;
  /** Builds a reusable request of `job.recordsPerRequest` records; the returned function sends it once. */
  staticSender(): () => Promise<void>;
  /** Appends these values (one request or pipeline); resolves when all are acknowledged. */
  sendValues(values: Buffer[]): Promise<void>;
  /** Reads from the first record on; calls `onRecords` per response; stops after `total` or `deadlineMs`. */
  consumeAll(total: number, deadlineMs: number, onRecords: (n: number) => void): Promise<void>;
  /**
   * Tails records appended from now on; `onValue` gets each record's value as `bytes` from `start` (a
   * view, no copy, so the measuring process allocates as little per record as the system's client allows).
   */
  subscribe(onValue: (bytes: Buffer, start: number) => void): Promise<{ stop(): Promise<void> }>;
  close(): Promise<void>;
}

export async function createDriver(job: LoadJob): Promise<Driver> {
  switch (job.system) {
    case 'sluice':
      return new SluiceDriver(job);
    case 'redis':
      return RedisDriver.open(job);
    case 'nats':
      return NatsDriver.open(job);
  }
}

/** Distinct random values, so no layer can win by deduplicating or compressing. */
export function randomValues(count: number, bytes: number): Buffer[] {
  return Array.from({ length: count }, () => randomBytes(bytes));
}

// --- Sluice ----------------------------------------------------------------------------------------

/**
 * The channel options of Sluice's own client (src/client/connection.ts), including its 4 MiB HTTP/2
 * receive window: with HTTP/2's default 64 KiB, a 1 MiB fetch and every Subscribe message wait for
 * WINDOW_UPDATE round trips from this (busy) process.
 */
export const GRPC_OPTIONS = { 'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20, 'grpc-node.flow_control_window': 4 << 20 };

function unary<Req, Res>(call: (req: Req, cb: (err: Error | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
  return new Promise((resolve, reject) => call(req, (err, res) => (err ? reject(err) : resolve(res))));
}

/**
 * Produce and topic creation go through Sluice's own TypeScript client (src/client): `produceRaw` for
 * pre-encoded v2 batches, `produceBatch` with format 'records' for structured records. Fetch and
 * Subscribe use the generated stubs directly, asking for raw batches, so the consumer side measures the
 * broker rather than a decode loop.
 */
class SluiceDriver implements Driver {
  private readonly broker: BrokerClient;
  private readonly admin: Admin;
  private readonly producer: Producer;
  /** Throughput loads: one producer per connection (`job.connections`), each with its own TCP connection. */
  private readonly producers: Producer[];
  private next = 0;

  constructor(private readonly job: LoadJob) {
    const address = `127.0.0.1:${job.port}`;
    // The client's zero-copy FetchResponse decoder, as src/client uses (the generated one copies the batches).
    this.broker = new FastBrokerClient(address, credentials.createInsecure(), GRPC_OPTIONS);
    this.admin = new Admin({ brokers: address });
    const format = job.kind === 'produce-structured' ? 'records' : 'batch';
    const connections = job.kind === 'produce-raw' || job.kind === 'produce-structured' ? Math.max(1, job.connections ?? 1) : 1;
    // grpc-js shares one connection among clients with equal options; a local subchannel pool gives each its own.
    this.producers = Array.from(
      { length: connections },
      (_, i) => new Producer({ brokers: address, acks: 'all', retries: 0, idempotent: false, format, channelOptions: i === 0 ? {} : { 'grpc.use_local_subchannel_pool': 1 } }),
    );
    this.producer = this.producers[0]!;
  }

  /** The producers in turn, so the requests in flight spread over the connections. */
  private nextProducer(): Producer {
    const p = this.producers[this.next]!;
    this.next = (this.next + 1) % this.producers.length;
    return p;
  }

  async setup(): Promise<void> {
    await this.admin.createTopic(this.job.topic, { partitions: 1, replicationFactor: 1, configs: this.job.topicConfigs ?? {} });
  }

  staticSender(): () => Promise<void> {
    const values = randomValues(this.job.recordsPerRequest, this.job.recordBytes);
    if (this.job.kind === 'produce-structured') {
      const records = values.map((value) => ({ value }));
      return async () => {
        await this.nextProducer().produceBatch(this.job.topic, records, { partition: 0 });
      };
    }
    const batch = encodeBatch(values.map((value) => ({ key: null, value })));
    return async () => {
      await this.nextProducer().produceRaw(this.job.topic, 0, batch);
    };
  }

  async sendValues(values: Buffer[]): Promise<void> {
    if (this.job.kind === 'produce-structured') await this.producer.produceBatch(this.job.topic, values.map((value) => ({ value })), { partition: 0 });
    else await this.producer.produceRaw(this.job.topic, 0, encodeBatch(values.map((value) => ({ key: null, value }))));
  }

  async consumeAll(total: number, deadlineMs: number, onRecords: (n: number) => void): Promise<void> {
    let offset = 0n;
    let seen = 0;
    for (let i = 0; seen < total && Date.now() < deadlineMs && i < 10_000_000; i++) {
      // The data is all there (consume runs after produce), so no long-poll: a Fetch that may wait is
      // counted but not timed by the broker, and the harness reads Fetch latency from its histogram.
      const res: FetchResponse = await unary(this.broker.fetch.bind(this.broker), {
        topic: this.job.topic, partition: 0, offset, maxBytes: 1 << 20, maxWaitMs: 0, raw: true,
      });
      const n = countFrom(res.recordBatches, Number(offset));
      seen += n;
      onRecords(n);
      offset = res.nextOffset;
    }
  }

  async subscribe(onValue: (bytes: Buffer, start: number) => void): Promise<{ stop(): Promise<void> }> {
    const latest: ListOffsetsResponse = await unary(this.broker.listOffsets.bind(this.broker), { topic: this.job.topic, partitions: [0], spec: 2, timestampMs: 0n });
    const from = latest.offsets[0]?.offset ?? 0n;
    const stream: ClientReadableStream<FetchResponse> = this.broker.subscribe({ topic: this.job.topic, partition: 0, offset: from, maxBytes: 0, raw: true });
    // Raw batches walked in place (header and record framing only, no CRC, no record objects): the
    // subscriber measures the broker, not a decode loop's garbage collections.
    stream.on('data', (res: FetchResponse) => forEachValue(res.recordBatches, Number(from), onValue));
    stream.on('error', () => {
      // Cancelled on stop, or the broker went away: the missing count in the result tells.
    });
    return {
      async stop() {
        stream.cancel();
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.producers.map((p) => p.close().catch(() => undefined)));
    this.admin.close();
    this.broker.close();
  }
}


/** Reads one zigzag varint (Kafka v2 record framing) at `c.pos`. */
function varint(buf: Buffer, c: { pos: number }): number {
  let raw = 0;
  let shift = 0;
  for (let i = 0; i < 5; i++) {
    const b = buf[c.pos++]!;
    raw |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return (raw >>> 1) ^ -(raw & 1);
    shift += 7;
  }
  throw new Error('varint too long');
}

/** Skips one zigzag varlong. */
function skipVarlong(buf: Buffer, c: { pos: number }): void {
  for (let i = 0; i < 10; i++) if ((buf[c.pos++]! & 0x80) === 0) return;
  throw new Error('varlong too long');
}

/**
 * Calls `onValue(buf, start)` for the value of every record at or after `from` in concatenated,
 * uncompressed v2 batches, without allocating per record. Compressed batches go through the codec.
 */
export function forEachValue(batches: Uint8Array, from: number, onValue: (bytes: Buffer, start: number) => void): void {
  const buf = Buffer.from(batches.buffer, batches.byteOffset, batches.byteLength);
  for (let pos = 0; pos + 61 <= buf.length; ) {
    const base = buf.readInt32BE(pos) * 2 ** 32 + buf.readUInt32BE(pos + 4);
    const size = buf.readInt32BE(pos + 8) + 12;
    const attributes = buf.readInt16BE(pos + 21);
    const count = buf.readInt32BE(pos + 57);
    if ((attributes & 0x07) !== 0) {
      for (const batch of decodeBatches(buf.subarray(pos, pos + size))) {
        for (const r of batch.records) if (r.offset >= from && r.value !== null) onValue(Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength), 0);
      }
      pos += size;
      continue;
    }
    const c = { pos: pos + 61 };
    for (let i = 0; i < count; i++) {
      const length = varint(buf, c);
      const end = c.pos + length;
      c.pos++; // attributes
      skipVarlong(buf, c); // timestamp delta
      const offset = base + varint(buf, c);
      const keyLength = varint(buf, c);
      if (keyLength > 0) c.pos += keyLength;
      const valueLength = varint(buf, c);
      if (valueLength >= 0 && offset >= from) onValue(buf, c.pos);
      c.pos = end;
    }
    pos += size;
  }
}

/** Records at or after `from` in concatenated raw batches (headers only; record bodies are not decoded). */
function countFrom(batches: Uint8Array, from: number): number {
  const buf = Buffer.from(batches.buffer, batches.byteOffset, batches.byteLength);
  let n = 0;
  for (let pos = 0; pos + 61 <= buf.length; ) {
    const base = buf.readInt32BE(pos) * 2 ** 32 + buf.readUInt32BE(pos + 4);
    const size = buf.readInt32BE(pos + 8) + 12;
    const count = buf.readInt32BE(pos + 57);
    n += Math.max(0, Math.min(count, base + count - from));
    pos += size;
  }
  return n;
}

// --- Redis -----------------------------------------------------------------------------------------

class RedisDriver implements Driver {
  private constructor(private readonly job: LoadJob, private readonly client: RespClient) {}

  static async open(job: LoadJob): Promise<RedisDriver> {
    return new RedisDriver(job, await RespClient.connect(job.port));
  }

  async setup(): Promise<void> {
    await this.client.command('DEL', this.job.topic);
  }

  private pipeline(values: Buffer[]): Buffer {
    return Buffer.concat(values.map((value) => encodeCommand(['XADD', this.job.topic, '*', 'v', value])));
  }

  staticSender(): () => Promise<void> {
    const commands = this.pipeline(randomValues(this.job.recordsPerRequest, this.job.recordBytes));
    const n = this.job.recordsPerRequest;
    return async () => {
      await this.client.send(commands, n);
    };
  }

  async sendValues(values: Buffer[]): Promise<void> {
    await this.client.send(this.pipeline(values), values.length);
  }

  async consumeAll(total: number, deadlineMs: number, onRecords: (n: number) => void): Promise<void> {
    let last = '0-0';
    let seen = 0;
    for (let i = 0; seen < total && Date.now() < deadlineMs && i < 10_000_000; i++) {
      const reply = await this.client.command('XREAD', 'COUNT', '1000', 'STREAMS', this.job.topic, last);
      const entries = streamEntries(reply);
      if (entries.length === 0) continue;
      last = String(entries[entries.length - 1]![0]);
      seen += entries.length;
      onRecords(entries.length);
    }
  }

  async subscribe(onValue: (bytes: Buffer, start: number) => void): Promise<{ stop(): Promise<void> }> {
    const reader = await RespClient.connect(this.job.port);
    let stopped = false;
    // '$' only on the first call: afterwards, the last id seen, so nothing between two XREADs is missed.
    let last = '$';
    const loop = (async () => {
      for (let i = 0; !stopped && i < 100_000_000; i++) {
        const reply = await reader.command('XREAD', 'COUNT', '1000', 'BLOCK', '100', 'STREAMS', this.job.topic, last).catch(() => null);
        const entries = streamEntries(reply);
        for (const [id, fields] of entries) {
          last = String(id);
          const value = (fields as RespValue[])[1];
          if (Buffer.isBuffer(value)) onValue(value, 0);
        }
      }
    })();
    return {
      async stop() {
        stopped = true;
        await loop;
        reader.close();
      },
    };
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

/** XREAD's reply [[key, [[id, [field, value]], ...]]] as its entries. */
function streamEntries(reply: RespValue | null): Array<[RespValue, RespValue]> {
  if (!Array.isArray(reply) || reply.length === 0) return [];
  const stream = reply[0] as RespValue[];
  return (stream[1] as Array<[RespValue, RespValue]>) ?? [];
}

// --- NATS JetStream ----------------------------------------------------------------------------------

class NatsDriver implements Driver {
  private constructor(private readonly job: LoadJob, private readonly nc: NatsConnection, private readonly js: JetStreamClient) {}

  static async open(job: LoadJob): Promise<NatsDriver> {
    const nc = await natsConnect({ servers: `127.0.0.1:${job.port}`, maxReconnectAttempts: 0 });
    return new NatsDriver(job, nc, nc.jetstream());
  }

  async setup(): Promise<void> {
    const jsm = await this.nc.jetstreamManager();
    await jsm.streams.add({ name: this.job.topic, subjects: [this.job.topic], storage: StorageType.File });
  }

  staticSender(): () => Promise<void> {
    const values = randomValues(this.job.recordsPerRequest, this.job.recordBytes);
    return () => this.sendValues(values);
  }

  async sendValues(values: Buffer[]): Promise<void> {
    // JetStream has no batch publish: a window of async publishes is the closest thing to a pipeline.
    await Promise.all(values.map((value) => this.js.publish(this.job.topic, value)));
  }

  async consumeAll(total: number, deadlineMs: number, onRecords: (n: number) => void): Promise<void> {
    const consumer = await this.pullConsumer('bench-consume', DeliverPolicy.All);
    const messages = await consumer.consume({ max_messages: 10_000 });
    let seen = 0;
    let pendingCount = 0;
    const timer = setInterval(() => {
      if (pendingCount > 0) onRecords(pendingCount);
      pendingCount = 0;
      if (Date.now() >= deadlineMs) void messages.close();
    }, 50);
    try {
      for await (const _message of messages) {
        seen++;
        pendingCount++;
        if (seen >= total) break;
      }
    } finally {
      clearInterval(timer);
      if (pendingCount > 0) onRecords(pendingCount);
      // Not awaited: after a `break` out of the iterator, close()'s promise never settled here.
      void messages.close().catch(() => undefined);
    }
  }

  async subscribe(onValue: (bytes: Buffer, start: number) => void): Promise<{ stop(): Promise<void> }> {
    const consumer = await this.pullConsumer('bench-tail', DeliverPolicy.New);
    const messages = await consumer.consume({ max_messages: 10_000 });
    const loop = (async () => {
      for await (const message of messages) {
        const data = message.data;
        onValue(Buffer.from(data.buffer, data.byteOffset, data.byteLength), 0);
      }
    })();
    return {
      async stop() {
        void messages.close().catch(() => undefined);
        await Promise.race([loop.catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1000))]);
      },
    };
  }

  /**
   * A durable pull consumer without acks: the cheapest way to read a stream. (The ordered-consumer
   * `consume()` of nats.js 2.29 never delivered against Debian's nats-server 2.9.10 here.)
   */
  private async pullConsumer(name: string, deliver: DeliverPolicy) {
    const jsm = await this.nc.jetstreamManager();
    name = `${name}-${process.pid}-${Date.now()}`;
    await jsm.consumers.add(this.job.topic, { durable_name: name, ack_policy: AckPolicy.None, deliver_policy: deliver });
    return this.js.consumers.get(this.job.topic, name);
  }

  async close(): Promise<void> {
    // Not drain(): with a consumer just closed it never settled here, and the process exited silently.
    await this.nc.close();
  }
}
