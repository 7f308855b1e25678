/**
 * Goal: controller forwarding works over its real wire, `sluice.cluster.v1.Controller/Submit`, between
 * separate gRPC servers on 127.0.0.1-3, and an expected refusal crosses it with its stable code. Method:
 * three controllers (Raft over the in-memory transport, forwarding over gRPC); admin requests from
 * followers; one node's server stopped to show the forwarder's failure is a retriable UNAVAILABLE.
 */
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Controller } from '../../src/controller/index.js';
import { controllerService, GrpcControllerForwarder } from '../../src/rpc/index.js';
import type { NodeId } from '../../src/model/index.js';
import { MemoryNet, TEST_TICK_MS, agreedLeader, tempDir, waitFor } from './memory-net.js';

interface Node {
  id: NodeId;
  dir: string;
  server: grpc.Server;
  address: string;
  forwarder: GrpcControllerForwarder;
  controller: Controller | null;
}

let nodes: Node[] = [];

async function listen(server: grpc.Server, host: string): Promise<string> {
  const port = await new Promise<number>((resolve, reject) => server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  return `${host}:${port}`;
}

afterEach(async () => {
  for (const n of nodes) {
    await n.controller?.close();
    n.forwarder.close();
    n.server.forceShutdown();
    fs.rmSync(n.dir, { recursive: true, force: true });
  }
  nodes = [];
});

describe('controller forwarding over gRPC', () => {
  it('creates topics from followers through the leader, and refusals keep their code', async () => {
    const net = new MemoryNet();
    const addresses = new Map<NodeId, string>();
    for (const id of [1, 2, 3] as NodeId[]) {
      const server = new grpc.Server();
      const node: Node = { id, dir: tempDir(`g${id}`), server, address: '', forwarder: new GrpcControllerForwarder((n) => addresses.get(n), 5_000), controller: null };
      const svc = controllerService(() => node.controller, () => node.controller?.logState ?? 'empty');
      server.addService(svc.definition, svc.implementation);
      node.address = await listen(server, `127.0.0.${id}`);
      addresses.set(id, node.address);
      nodes.push(node);
    }
    for (const n of nodes) {
      n.controller = await Controller.open({
        nodeId: n.id,
        dataDir: n.dir,
        voters: [1, 2, 3] as NodeId[],
        self: { uuid: `uuid-${n.id}`, address: n.address, rack: '', shards: 1 },
        transport: net.transport(n.id),
        forwarder: n.forwarder,
        tickMs: TEST_TICK_MS,
      });
    }
    const cs = nodes.map((n) => n.controller!);
    await waitFor(cs, () => agreedLeader(cs) !== 0, 'a leader');
    await Promise.all(cs.map((c) => c.registered));
    const followers = cs.filter((c) => !c.isLeader);
    const t = await followers[0].createTopic('over-grpc', 3, 3);
    expect(t.partitions.length).toBe(3);
    await expect(followers[1].createTopic('over-grpc', 1, 1)).rejects.toMatchObject({ code: 'TOPIC_ALREADY_EXISTS' });
    await expect(followers[1].createTopic('too-big', 1, 5)).rejects.toMatchObject({ code: 'REPLICATION_FACTOR_TOO_LARGE' });
    // Registrations carried the advertised addresses.
    expect(cs[0].state.nodes().map((n) => n.address)).toEqual(nodes.map((n) => n.address));
    // A node that does not answer: the forwarder's failure is retriable, so a controller would retry.
    const leaderNode = nodes.find((n) => n.id === agreedLeader(cs))!;
    leaderNode.server.forceShutdown();
    const err = await nodes.find((n) => n !== leaderNode)!.forwarder.submit(leaderNode.id, { request: undefined, fromNode: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ retriable: true });
  });
});
