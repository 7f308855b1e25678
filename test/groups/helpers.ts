/**
 * Fixtures for the consumer-group tests: a real broker (startBroker, in-process, ephemeral ports) that
 * serves sluice.v1.Groups, topics with records, a raw Consume stream driver for protocol-level checks,
 * and a bounded `waitFor`.

 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { fromServiceError } from '../../src/rpc/errors.js';
import { GroupsClient, type ConsumeRequest, type ConsumeResponse } from '../../src/rpc/gen/sluice/v1/groups.js';
import { Admin, Producer } from '../../src/client/index.js';
import type { SluiceError } from '../../src/errors.js';

export function tempDir(prefix = 'sluice-groups-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export interface GroupBroker {
  running: RunningBroker;
  /** Address serving sluice.v1.Groups (the broker's own gRPC address). */
  address: string;
  /** Address serving Admin and Broker (the same). */
  brokerAddress: string;
  dataDir: string;
  close(): Promise<void>;
}

export async function startGroupBroker(dataDir = tempDir(), shards = 1): Promise<GroupBroker> {
  const running = await startBroker({ dataDir, shards, grpcAddress: '127.0.0.1:0', httpAddress: null, drainMs: 2_000 });
  return { running, address: running.grpcAddress, brokerAddress: running.grpcAddress, dataDir, close: () => running.close() };
}

/** Creates a topic and writes `perPartition` records "p<P>-<i>" to every partition. */
export async function topicWithRecords(address: string, topic: string, partitions: number, perPartition: number): Promise<void> {
  const admin = new Admin({ brokers: address });
  await admin.createTopic(topic, { partitions });
  admin.close?.();
  if (perPartition > 0) await produceTo(address, topic, partitions, perPartition, 0);
}

export async function produceTo(address: string, topic: string, partitions: number, perPartition: number, startIndex: number): Promise<void> {
  const producer = new Producer({ brokers: address, lingerMs: 1 });
  const sends: Promise<unknown>[] = [];
  for (let p = 0; p < partitions; p++) {
    for (let i = startIndex; i < startIndex + perPartition; i++) sends.push(producer.send(topic, { value: `p${p}-${i}`, partition: p }));
  }
  await Promise.all(sends);
  await producer.close();
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true, at most `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/**
 * A Consume stream driven by hand: every message received is kept, in order, so tests can assert on
 * the exact protocol (joined, assign, revoke, records, commit_result).
 */
export class RawMember {
  readonly client: GroupsClient;
  readonly call: grpc.ClientDuplexStream<ConsumeRequest, ConsumeResponse>;
  readonly messages: ConsumeResponse[] = [];
  error: SluiceError | null = null;
  ended = false;

  private readonly heartbeat: NodeJS.Timeout | null;

  /** `heartbeatMs` 0 sends none (to let the session expire). */
  constructor(address: string, heartbeatMs = 300) {
    this.client = new GroupsClient(address, grpc.credentials.createInsecure());
    this.call = this.client.consume();
    this.heartbeat = heartbeatMs > 0 ? setInterval(() => this.joined && !this.ended && this.send({ $case: 'heartbeat', value: {} }), heartbeatMs) : null;
    this.call.on('data', (m: ConsumeResponse) => this.messages.push(m));
    this.call.on('error', (err: grpc.ServiceError) => {
      if (err.code !== grpc.status.CANCELLED) this.error = fromServiceError(err);
      this.ended = true;
    });
    this.call.on('end', () => (this.ended = true));
  }

  send(request: ConsumeRequest['request']): void {
    this.call.write({ request });
  }

  join(groupId: string, topics: string[], extra: Partial<Extract<ConsumeRequest['request'], { $case: 'join' }>['value']> = {}): void {
    this.send({
      $case: 'join',
      value: {
        groupId,
        topics,
        topicPattern: '',
        sessionTimeoutMs: 5_000,
        autoCommit: false,
        autoCommitIntervalMs: 0,
        offsetReset: 0,
        raw: false,
        creditRecords: 1_000_000,
        creditBytes: 1n << 40n,
        ...extra,
      },
    });
  }

  of<C extends NonNullable<ConsumeResponse['response']>['$case']>(c: C): Extract<NonNullable<ConsumeResponse['response']>, { $case: C }>['value'][] {
    return this.messages.filter((m) => m.response?.$case === c).map((m) => m.response!.value) as never;
  }

  get joined(): boolean {
    return this.messages.length > 0;
  }

  get memberId(): string {
    return this.of('joined')[0]?.memberId ?? '';
  }

  /** Partitions currently held: assigns minus revokes, in stream order. */
  held(): string[] {
    const s = new Set<string>();
    for (const m of this.messages) {
      const r = m.response;
      if (r?.$case === 'assign') for (const p of r.value.partitions) s.add(`${p.topic}/${p.partition}`);
      if (r?.$case === 'revoke') for (const p of r.value.partitions) s.delete(`${p.topic}/${p.partition}`);
    }
    return [...s].sort();
  }

  generation(): bigint {
    let g = 0n;
    for (const m of this.messages) {
      const r = m.response;
      if (r?.$case === 'assign' || r?.$case === 'revoke') g = r.value.generation;
    }
    return g;
  }

  close(): void {
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.ended = true;
    this.call.cancel();
    this.client.close();
  }
}

type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res?: Res) => void) => grpc.ClientUnaryCall;

/** Promisified unary calls of sluice.v1.Groups; failures are SluiceErrors (from the ErrorInfo reason). */
export function groupsApi(address: string) {
  const client = new GroupsClient(address, grpc.credentials.createInsecure());
  const call = <Req, Res>(method: Unary<Req, Res>) => (req: Req): Promise<Res> =>
    new Promise((resolve, reject) =>
      method.call(client, req, new grpc.Metadata(), { deadline: Date.now() + 15_000 }, (err, res) => (err ? reject(fromServiceError(err)) : resolve(res as Res))),
    );
  return {
    commitOffsets: call(client.commitOffsets),
    fetchOffsets: call(client.fetchOffsets),
    listGroups: call(client.listGroups),
    describeGroup: call(client.describeGroup),
    deleteGroup: call(client.deleteGroup),
    resetOffsets: call(client.resetOffsets),
    close: () => client.close(),
  };
}
