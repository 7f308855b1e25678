/**
 * Goal (issue 11 §1): a node that is one of several controller voters, listed first in its own seed
 * list and with no cluster id (pod 0 of a StatefulSet on its first start, or back with a wiped disk),
 * founds a gossip cluster only once another seed has answered that it has no cluster yet (a first
 * formation), never alone: a wiped pod 0 that founded alone while the others were down would carry a
 * new cluster id, and the others, on their return, would be refused by it (CLUSTER_ID_MISMATCH).
 * Method: in-process `startBroker`s in cluster mode over a fake replica core (real gossip, controller
 * and gRPC) on 127.0.0.x with ports chosen up front, so a seed can be down and come up later; the
 * founding node's join attempts are counted from its log, never timed.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import type { BrokerLogger } from '../../src/broker/index.js';
import type { NodeId } from '../../src/model/index.js';
import { FakeReplicaCore } from './fake-replica-core.js';

const WAIT_MS = 20_000;
const POLL_MS = 25;
const TIMING = { joinRetryMsMin: 50, joinRetryMsMax: 100 };
let running: RunningBroker[] = [];
let dirs: string[] = [];
const dirOf = new Map<RunningBroker, string>();

/** The cluster id in the node's identity file (`__cluster/node.json`): null until it founds or joins. */
function clusterId(b: RunningBroker): string | null {
  return (JSON.parse(fs.readFileSync(path.join(dirOf.get(b)!, '__cluster', 'node.json'), 'utf8')) as { clusterId: string | null }).clusterId;
}

afterEach(async () => {
  for (const b of running) await b.close().catch(() => {});
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  running = [];
  dirs = [];
});

async function waitFor(what: string, pred: () => boolean): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < WAIT_MS / POLL_MS + 1 && performance.now() - t0 < WAIT_MS; i++) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${WAIT_MS} ms waiting for: ${what}`);
}

async function freeAddress(ip: string): Promise<string> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, ip, r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `${ip}:${port}`;
}

/** A logger that keeps the join attempts the node reports. */
function joinAttempts(): { logger: BrokerLogger; attempts: () => number } {
  let attempts = 0;
  const note = (o: object, m: string): void => {
    if (m === 'cannot join the cluster through this seed yet') attempts = Math.max(attempts, (o as { attempt: number }).attempt);
  };
  const logger = { info: note, warn: note, error: note, debug: note } as unknown as BrokerLogger;
  return { logger, attempts: () => attempts };
}

async function start(id: number, address: string, seeds: string[], logger?: BrokerLogger): Promise<RunningBroker> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `sluice-founding-${id}-`));
  dirs.push(dir);
  const b = await startBroker({
    dataDir: dir,
    grpcAddress: address,
    httpAddress: null,
    nodeId: id,
    shards: 1,
    openBroker: async () => new FakeReplicaCore(id as NodeId),
    cluster: { seeds, controllerVoters: [1, 2, 3], timing: TIMING },
    drainMs: 1_000,
    logger,
  });
  running.push(b);
  dirOf.set(b, dir);
  return b;
}

describe('a first-listed controller voter with no cluster id', () => {
  it('does not found alone while no other seed answers (a wiped pod 0 with the others down); it joins the cluster of the seed that returns', async () => {
    const [a1, a2] = [await freeAddress('127.0.0.1'), await freeAddress('127.0.0.2')];
    const { logger, attempts } = joinAttempts();
    const pod0 = await start(1, a1, [a1, a2], logger);
    await waitFor('three join rounds with no seed answering', () => attempts() >= 3);
    expect(clusterId(pod0)).toBeNull();
    // Node 2 comes back with its data: here, a node that founded its cluster with no seeds.
    const node2 = await start(2, a2, []);
    const cluster = clusterId(node2);
    expect(cluster).not.toBeNull();
    await waitFor('pod 0 joined node 2\'s cluster', () => clusterId(pod0) !== null);
    expect(clusterId(pod0)).toBe(cluster);
  });

  it('at a first formation, founds once another seed answers that it has no cluster yet; that seed joins it', async () => {
    const [a1, a2] = [await freeAddress('127.0.0.1'), await freeAddress('127.0.0.2')];
    const pod1 = await start(2, a2, [a1, a2]);
    const pod0 = await start(1, a1, [a1, a2]);
    await waitFor('both in one cluster', () => clusterId(pod0) !== null && clusterId(pod1) === clusterId(pod0));
  });
});
