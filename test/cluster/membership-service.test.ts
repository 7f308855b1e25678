/**
 * Goal: the internal Membership service treats every message as untrusted input. A bad message gets
 * a clear status with a stable ErrorInfo reason, changes nothing (the member table and node.json stay
 * as they were) and leaves the server serving. The service is hidden from reflection. Method: an
 * in-process startBroker with membership (a founding node 1), called with the generated client and
 * with raw bytes; after each refusal the table is compared and a good probe still gets its ack.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { MemberState, MembershipClient, MembershipService, type Member } from '../../src/rpc/gen/sluice/cluster/v1/membership.js';
import { loadFileDescriptors } from '../../src/rpc/index.js';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { failure, tempDir } from '../e2e/helpers.js';

let running: RunningBroker;
let client: MembershipClient;
let dataDir: string;
let clusterId: string;

const uuid = (n: number): string => `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
const member = (over: Partial<Member> = {}): Member => ({ nodeId: 9, nodeUuid: uuid(9), address: '127.0.0.9:1', rack: '', shards: 1, state: MemberState.MEMBER_STATE_ALIVE, incarnation: 0n, leaving: false, ...over });

function unary<Req, Res>(method: 'probe' | 'indirectProbe' | 'join', req: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as unknown as (r: Req, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => void).call(client, req, { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r)));
  });
}

const nodeJson = (): string => fs.readFileSync(path.join(dataDir, '__cluster', 'node.json'), 'utf8');
// Who is known and under which UUID (states move on their own: node 1 probes the made-up senders).
const table = (): string => JSON.stringify(running.membership!.members().map((m) => [m.id, m.uuid, m.address]));

beforeAll(async () => {
  dataDir = tempDir('sluice-membership-svc-');
  running = await startBroker({ dataDir, shards: 1, httpAddress: null, nodeId: 1, cluster: {} });
  client = new MembershipClient(running.grpcAddress, grpc.credentials.createInsecure());
  clusterId = JSON.parse(nodeJson()).clusterId;
});
afterAll(async () => {
  client?.close();
  await running?.close();
});

async function expectRefused(request: () => Promise<unknown>, code: grpc.status, reason: string, detail?: RegExp): Promise<void> {
  const before = [table(), nodeJson()];
  const f = await failure(request());
  expect([grpc.status[f.code], f.reason], f.details).toEqual([grpc.status[code], reason]);
  if (detail !== undefined) expect(f.details).toMatch(detail);
  expect([table(), nodeJson()]).toEqual(before);
  // Still serving: a good probe is acked by node 1.
  const ack = await unary<object, { from: Member }>('probe', { clusterId, from: member({ nodeId: 8, nodeUuid: uuid(8), address: '127.0.0.8:1' }), targetNodeId: 1, targetNodeUuid: running.membership!.self.uuid, updates: [] });
  expect(ack.from.nodeId).toBe(1);
}

describe('the Membership service refuses bad input and keeps serving', () => {
  it('refuses records out of bounds with INVALID_ARGUMENT / INVALID_REQUEST', async () => {
    const probe = (from: Member | undefined, updates: Member[] = []): Promise<unknown> => unary('probe', { clusterId, from, targetNodeId: 1, targetNodeUuid: '', updates });
    await expectRefused(() => probe(undefined), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /from is missing/);
    await expectRefused(() => probe(member({ nodeId: 0 })), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /node_id must be a positive int32/);
    await expectRefused(() => probe(member({ nodeUuid: 'not-a-uuid' })), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /node_uuid must be a UUID/);
    await expectRefused(() => probe(member({ state: MemberState.MEMBER_STATE_UNSPECIFIED })), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /state must be/);
    await expectRefused(() => probe(member({ address: 'x'.repeat(256) })), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /address must be/);
    await expectRefused(() => probe(member({ rack: 'r'.repeat(65) })), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /rack must be/);
    await expectRefused(() => probe(member({ incarnation: 2n ** 60n })), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /incarnation/);
    const many = Array.from({ length: 33 }, (_, i) => member({ nodeId: 100 + i, nodeUuid: uuid(100 + i) }));
    await expectRefused(() => probe(member(), many), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /at most 32/);
    const table = Array.from({ length: 1_025 }, (_, i) => member({ nodeId: 100 + i, nodeUuid: uuid(100 + i) }));
    await expectRefused(() => unary('join', { clusterId, from: member(), members: table }), grpc.status.INVALID_ARGUMENT, 'INVALID_REQUEST', /at most 1024/);
  });

  it('refuses undecodable bytes with INVALID_ARGUMENT / MALFORMED_REQUEST', async () => {
    const raw = new grpc.Client(running.grpcAddress, grpc.credentials.createInsecure());
    try {
      const call = (): Promise<unknown> =>
        new Promise((resolve, reject) =>
          raw.makeUnaryRequest('/sluice.cluster.v1.Membership/Probe', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0xff, 0xff]), { deadline: Date.now() + 5_000 }, (e, r) => (e ? reject(e) : resolve(r))),
        );
      await expectRefused(call, grpc.status.INVALID_ARGUMENT, 'MALFORMED_REQUEST');
    } finally {
      raw.close();
    }
  });

  it('refuses a node of another cluster with FAILED_PRECONDITION / CLUSTER_ID_MISMATCH', async () => {
    await expectRefused(() => unary('probe', { clusterId: 'another', from: member(), targetNodeId: 1, targetNodeUuid: '', updates: [] }), grpc.status.FAILED_PRECONDITION, 'CLUSTER_ID_MISMATCH', /belongs to cluster another/);
    await expectRefused(() => unary('join', { clusterId: 'another', from: member(), members: [] }), grpc.status.FAILED_PRECONDITION, 'CLUSTER_ID_MISMATCH', /cannot move between clusters/);
  });

  it('refuses a joiner claiming this live node\'s id, naming this node\'s address', async () => {
    await expectRefused(
      () => unary('join', { clusterId: '', from: member({ nodeId: 1, nodeUuid: uuid(77) }), members: [] }),
      grpc.status.FAILED_PRECONDITION,
      'DUPLICATE_NODE_ID',
      new RegExp(`node id 1 is already taken by the live node at ${running.grpcAddress.replace(/\./g, '\\.')}`),
    );
  });

  it('answers its own Join (a seed list naming it under another name) with UNAVAILABLE, not a join', async () => {
    const me = running.membership!.self;
    await expectRefused(
      () => unary('join', { clusterId, from: member({ nodeId: me.id, nodeUuid: me.uuid, address: me.address }), members: [] }),
      grpc.status.UNAVAILABLE,
      'UNAVAILABLE',
      /cannot join through itself/,
    );
  });

  it('admits a good joiner (the positive control): it gets the cluster id and the table, and is listed', async () => {
    const res = await unary<object, { clusterId: string; you: Member; members: Member[] }>('join', { clusterId: '', from: member({ nodeId: 5, nodeUuid: uuid(5), address: '127.0.0.5:1' }), members: [] });
    expect(res.clusterId).toBe(clusterId);
    expect(res.members.map((m) => m.nodeId)).toEqual(expect.arrayContaining([1, 5]));
    expect(running.membership!.get(5 as never)?.state).toBe('alive');
  });
});

describe('a peer that answers probes with garbage', () => {
  it('counts as not answering: it is suspected, then declared dead, listeners hear it, and the node keeps serving', async () => {
    // A fake member whose every ack fails validation (no `from`).
    const fake = new grpc.Server();
    fake.addService(MembershipService, {
      probe: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { updates: [] }),
      indirectProbe: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb(null, { acked: false, updates: [] }),
      join: (_call: unknown, cb: grpc.sendUnaryData<object>) => cb({ code: grpc.status.UNAVAILABLE, details: 'fake' } as grpc.ServiceError),
    });
    const port = await new Promise<number>((resolve, reject) => fake.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    const seen: string[] = [];
    const off = running.membership!.onChange((n) => {
      if (n.id === 12) seen.push(n.state);
    });
    try {
      // Introduce it: a probe from it (as any member would send) puts it in node 1's table.
      await unary('probe', { clusterId, from: member({ nodeId: 12, nodeUuid: uuid(12), address: `127.0.0.1:${port}` }), targetNodeId: 1, targetNodeUuid: '', updates: [] });
      const t0 = performance.now();
      while (running.membership!.get(12 as never)?.state !== 'dead' && performance.now() - t0 < 15_000) await new Promise((r) => setTimeout(r, 25));
      expect(running.membership!.get(12 as never)?.state).toBe('dead');
      expect(seen).toEqual(expect.arrayContaining(['alive', 'suspect', 'dead']));
      const ack = await unary<object, { from: Member }>('probe', { clusterId, from: member({ nodeId: 8, nodeUuid: uuid(8), address: '127.0.0.8:1' }), targetNodeId: 1, targetNodeUuid: '', updates: [] });
      expect(ack.from.nodeId).toBe(1);
    } finally {
      off();
      fake.forceShutdown();
    }
  });
});

describe('reflection', () => {
  it('serves the public API only: no sluice.cluster.* file', () => {
    const names = loadFileDescriptors().map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
    expect(names).toContain('sluice/v1/broker.proto');
    expect(names.filter((n) => n.startsWith('sluice/cluster/'))).toEqual([]);
  });
});
