/**
 * Goal: a broker started with startBroker serves the Raft transport on its client port, behind the
 * broker's own request handling, and its close is not held up by a peer's open stream. Method: a real
 * broker (one shard, temp data dir) as node 1 and a bare transport node 2 on 127.0.0.2 dialing it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { MessageType, type Message } from '../../src/raft/index.js';
import type { NodeId } from '../../src/model/index.js';
import { startNode, waitFor, type TestNode } from './transport-helpers.js';

let broker: RunningBroker | null = null;
let peer: TestNode | null = null;
let dir = '';
afterEach(async () => {
  peer?.kill();
  await broker?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function hb(from: number, to: number): Message {
  return { type: MessageType.Heartbeat, from, to, term: 1, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: 3 } as unknown as Message;
}

describe('the broker serves the Raft transport', () => {
  it('on its client port, both ways, and closes promptly with a peer stream open', async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-transport-broker-'));
    const addresses = new Map<number, string>();
    broker = await startBroker({ dataDir: dir, shards: 1, httpAddress: null, nodeId: 1, resolvePeer: (n) => addresses.get(n) });
    addresses.set(1, broker.grpcAddress);
    peer = await startNode(2, addresses);
    const atBroker: Message[] = [];
    const atPeer: Message[] = [];
    broker.raftTransport.register(9, (m) => {
      atBroker.push(m);
      broker!.raftTransport.send(9, hb(1, 2));
    });
    peer.transport.register(9, (m) => atPeer.push(m));
    peer.transport.send(9, hb(2, 1));
    await waitFor('a round trip through the broker', () => atBroker.length === 1 && atPeer.length === 1);
    expect(atBroker[0].context).toBe(3);
    expect(broker.raftTransport.connected(2 as NodeId)).toBe(true);
    // The peer's stream is still open; the default drain is 10 s, and close must not wait for it.
    const t0 = performance.now();
    await broker.close();
    expect(performance.now() - t0).toBeLessThan(5_000);
    broker = null;
  });
});
