/**
 * Goal: the gRPC front-end and the TypeScript client are correct on their own, independent of the real
 * broker core. Method: startBroker with an in-memory FakeBroker core (test/client/fake-broker.ts),
 * then drive it over real gRPC with the TS client, the generated stubs, a grpc.health.v1 client and a
 * real server-reflection client; check statuses, ErrorInfo reasons, tombstones and HTTP endpoints.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Admin, Consumer, Producer } from '../../src/client/index.js';
import { BrokerClient, readErrorInfo } from '../../src/rpc/index.js';
import { SluiceError, isSluiceError } from '../../src/errors.js';
import { FakeBroker } from './fake-broker.js';

let running: RunningBroker;
let fake: FakeBroker;

beforeAll(async () => {
  fake = new FakeBroker();
  running = await startBroker({ openBroker: async () => fake, grpcAddress: '127.0.0.1:0', httpAddress: '127.0.0.1:0' });
});
afterAll(async () => {
  await running?.close();
});

describe('front-end over a fake core', () => {
  it('creates topics, produces batches and records, consumes them in order with tombstones kept', async () => {
    const admin = new Admin({ brokers: running.grpcAddress });
    await admin.createTopic('t1', { partitions: 2 });
    const producer = new Producer({ brokers: running.grpcAddress, lingerMs: 2 });
    const metas = await producer.sendAll('t1', [
      { key: 'k', value: 'a' },
      { key: 'k', value: null },
      { key: 'k', value: '', headers: { h: 'v', n: null } },
    ]);
    expect(new Set(metas.map((m) => m.partition)).size).toBe(1);
    expect(metas.map((m) => m.offset)).toEqual([0, 1, 2]);
    const structured = new Producer({ brokers: running.grpcAddress, format: 'records' });
    await structured.send('t1', { key: 'k', value: 'd' });
    await structured.close();
    await producer.close();

    const consumer = new Consumer({ brokers: running.grpcAddress, topic: 't1', partitions: [metas[0].partition], stopAtEnd: true });
    const got = [];
    for await (const r of consumer) got.push(r);
    consumer.close();
    expect(got.map((r) => r.value?.toString() ?? null)).toEqual(['a', null, '', 'd']);
    expect(got[2].headers.map((h) => [h.key, h.value === null ? null : Buffer.from(h.value).toString()])).toEqual([['h', 'v'], ['n', null]]);
    admin.close();
  });

  it('a consumer starting while a partition is between leaders retries the offset lookup (NOT_LEADER is retriable)', async () => {
    const admin = new Admin({ brokers: running.grpcAddress });
    await admin.createTopic('between-leaders', { partitions: 1 });
    admin.close();
    const producer = new Producer({ brokers: running.grpcAddress });
    await producer.send('between-leaders', { partition: 0, value: 'x' });
    await producer.close();
    const real = fake.listOffsets.bind(fake);
    let refused = 0;
    fake.listOffsets = async (...args: Parameters<FakeBroker['listOffsets']>) => {
      if (refused < 2) {
        refused++;
        throw new SluiceError('NOT_LEADER', 'no leader is known yet (an election is under way); retry shortly');
      }
      return real(...args);
    };
    try {
      const consumer = new Consumer({ brokers: running.grpcAddress, topic: 'between-leaders', stopAtEnd: true, retryBackoffMs: 5 });
      const got: string[] = [];
      for await (const r of consumer) got.push(r.value!.toString());
      consumer.close();
      expect(refused).toBe(2);
      expect(got).toEqual(['x']);
    } finally {
      fake.listOffsets = real;
    }
  });

  it('a bootstrap node that answers SHUTTING_DOWN sends later calls to the next bootstrap address', async () => {
    const stopping = new FakeBroker();
    stopping.listTopics = async () => {
      throw new SluiceError('SHUTTING_DOWN', 'the broker is shutting down; retry against another broker or after restart');
    };
    const other = await startBroker({ openBroker: async () => stopping, grpcAddress: '127.0.0.1:0', httpAddress: null });
    const admin = new Admin({ brokers: [other.grpcAddress, running.grpcAddress] });
    try {
      await expect(admin.listTopics()).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
      expect(Array.isArray(await admin.listTopics())).toBe(true);
    } finally {
      admin.close();
      await other.close();
    }
  });

  it('maps errors to canonical statuses with an ErrorInfo reason', async () => {
    const client = new BrokerClient(running.grpcAddress, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      client.fetch({ topic: 'nope', partition: 0, offset: 0n, maxBytes: 0, maxWaitMs: 0, raw: false }, (e) => resolve(e!)),
    );
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(readErrorInfo(err.metadata)?.reason).toBe('UNKNOWN_TOPIC');
    const neg = await new Promise<grpc.ServiceError>((resolve) =>
      client.fetch({ topic: 't1', partition: 0, offset: -1n, maxBytes: 0, maxWaitMs: 0, raw: false }, (e) => resolve(e!)),
    );
    expect(neg.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(readErrorInfo(neg.metadata)?.reason).toBe('INVALID_OFFSET');
    client.close();
    const admin = new Admin({ brokers: running.grpcAddress });
    const dup = await admin.createTopic('t1', { partitions: 1 }).catch((e: unknown) => e);
    expect(isSluiceError(dup, 'TOPIC_ALREADY_EXISTS')).toBe(true);
    admin.close();
  });

  it('answers grpc.health.v1 and server reflection', async () => {
    const health = grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { enums: String })) as any;
    const hc = new health.grpc.health.v1.Health(running.grpcAddress, grpc.credentials.createInsecure());
    const res = await new Promise<any>((resolve, reject) => hc.check({ service: 'sluice.v1.Broker' }, (e: unknown, r: unknown) => (e ? reject(e) : resolve(r))));
    expect(res.status).toBe('SERVING');
    hc.close();

    const reflectionProto = new URL('../../node_modules/@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto', import.meta.url).pathname;
    const refl = grpc.loadPackageDefinition(protoLoader.loadSync(reflectionProto)) as any;
    const rc = new refl.grpc.reflection.v1.ServerReflection(running.grpcAddress, grpc.credentials.createInsecure());
    const stream = rc.ServerReflectionInfo();
    const services = await new Promise<string[]>((resolve, reject) => {
      stream.on('data', (m: any) => resolve(m.listServicesResponse.service.map((s: any) => s.name)));
      stream.on('error', reject);
      stream.write({ listServices: '' });
    });
    stream.end();
    rc.close();
    expect(services).toEqual(expect.arrayContaining(['sluice.v1.Broker', 'sluice.v1.Admin', 'sluice.v1.Groups', 'grpc.health.v1.Health']));
  });

  it('serves /healthz and /readyz', async () => {
    expect((await fetch(`http://${running.httpAddress}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${running.httpAddress}/readyz`)).status).toBe(200);
    // This broker runs without metrics: /metrics says so, and the 404 of an unknown path does not offer it.
    const metrics = await fetch(`http://${running.httpAddress}/metrics`);
    expect(metrics.status).toBe(404);
    expect(await metrics.text()).toMatch(/^metrics are not enabled in this broker: pass metricsHandler \(from createMetrics\) to startBroker/);
    const other = await fetch(`http://${running.httpAddress}/nope`);
    expect(other.status).toBe(404);
    expect(await other.text()).toBe('not found: try /healthz, /readyz\n');
  });
});
