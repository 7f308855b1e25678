/**
 * Goal: cluster membership works between real `sluice serve` processes, and misconfiguration is loud.
 * Method: nodes on 127.0.0.1, .2, .3 … (distinct ports) spawned from the built CLI; state is read the
 * way a client reads it (GetMetadata through the TypeScript Admin), plus /readyz and the logs. Faults
 * are real: kill -9, SIGSTOP/SIGCONT, a wiped data dir. Every wait is bounded in count and time and
 * polls an observable (never a bare sleep); measured times are printed, not asserted (the 3 s target
 * is measured by bench/gossip.ts).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnBroker, waitExit, type BrokerProcess } from '../../bench/broker-process.js';
import { Admin } from '../../src/client/index.js';
import type { ClusterMetadata } from '../../src/broker/types.js';
import { tempDir } from '../e2e/helpers.js';

const WAIT_MS = 20_000;
const POLL_MS = 25;
const started: BrokerProcess[] = [];

interface NodeSpec {
  id: number;
  ip: string;
  dir: string;
  port?: number;
  seeds?: string[];
  rack?: string;
  extra?: string[];
}

async function startNode(n: NodeSpec): Promise<BrokerProcess> {
  const args = ['--grpc-addr', `${n.ip}:${n.port ?? 0}`, '--http-addr', `${n.ip}:0`, '--node-id', String(n.id), '--shards', '1', '--log-level', 'info'];
  if (n.seeds !== undefined) args.push('--seeds', n.seeds.join(','));
  if (n.rack !== undefined) args.push('--rack', n.rack);
  const p = await spawnBroker(n.dir, [...args, ...(n.extra ?? [])]);
  started.push(p);
  return p;
}

/** Waits for `pred` (polled every POLL_MS, at most WAIT_MS); returns how long it took. */
async function waitFor(what: string, pred: () => Promise<boolean> | boolean, timeoutMs = WAIT_MS): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < Math.ceil(timeoutMs / POLL_MS) + 1; i++) {
    if (await pred()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

const admins = new Map<string, Admin>();
async function metadata(address: string): Promise<ClusterMetadata | null> {
  let a = admins.get(address);
  if (a === undefined) admins.set(address, (a = new Admin({ brokers: address, requestTimeoutMs: 2_000, channelOptions: { 'grpc.use_local_subchannel_pool': 1 } })));
  try {
    return await a.metadata();
  } catch {
    return null;
  }
}

async function stateAt(observer: BrokerProcess, nodeId: number): Promise<{ state?: string; nodeUuid?: string; alive?: boolean } | undefined> {
  return (await metadata(observer.grpcAddress))?.brokers.find((b) => b.nodeId === nodeId);
}

async function readyz(p: BrokerProcess): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${p.httpAddress}/readyz`);
  return { status: res.status, body: await res.text() };
}

const portOf = (p: BrokerProcess): number => Number(p.grpcAddress.split(':').pop());

/** A port on `ip` with nothing listening (bound once to learn it, then released). */
async function freePort(ip: string): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, ip, r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

afterAll(async () => {
  for (const a of admins.values()) a.close();
  for (const p of started) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(started.map((p) => waitExit(p.child)));
});

describe('three nodes gossip membership over gRPC', () => {
  const root = tempDir('sluice-membership-');
  const dirs = [1, 2, 3].map((i) => path.join(root, `n${i}`));
  const nodes: BrokerProcess[] = [];

  it('form one cluster through seeds: every node lists all three, alive, with address and rack, and is ready', async () => {
    // Cluster mode (a controller of voters 1,2,3) on every node, so readiness means the same everywhere.
    const extra = ['--controller-voters', '1,2,3'];
    nodes[0] = await startNode({ id: 1, ip: '127.0.0.1', dir: dirs[0]!, extra });
    const seeds = [nodes[0].grpcAddress];
    nodes[1] = await startNode({ id: 2, ip: '127.0.0.2', dir: dirs[1]!, seeds, extra });
    nodes[2] = await startNode({ id: 3, ip: '127.0.0.3', dir: dirs[2]!, seeds, rack: 'r3', extra });
    for (const n of nodes) {
      await waitFor(`${n.grpcAddress} lists 3 alive nodes`, async () => (await metadata(n.grpcAddress))?.brokers.filter((b) => b.state === 'alive').length === 3);
      await waitFor(`${n.grpcAddress} is ready (joined, controller leader known, registered)`, async () => (await readyz(n)).status === 200);
    }
    const views = await Promise.all(nodes.map((n) => metadata(n.grpcAddress)));
    expect(new Set(views.map((v) => v!.clusterId)).size).toBe(1);
    const byId = new Map(views[1]!.brokers.map((b) => [b.nodeId, b]));
    expect(byId.get(1)?.grpcAddress).toBe(nodes[0].grpcAddress);
    expect(byId.get(3)).toMatchObject({ grpcAddress: nodes[2].grpcAddress, rack: 'r3', alive: true });
    // Each data dir holds the identity: node id, a UUID, the one cluster id; owner-only.
    for (const [i, d] of dirs.entries()) {
      const file = path.join(d, '__cluster', 'node.json');
      const body = JSON.parse(fs.readFileSync(file, 'utf8'));
      expect(body).toMatchObject({ nodeId: i + 1, clusterId: views[0]!.clusterId });
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    }
    // A false suspicion on a loaded machine is refuted within a period or two: wait, don't sample once.
    await waitFor('/metrics counts 3 alive members', async () => /sluice_cluster_members\{state="alive"\} 3/.test(await (await fetch(`http://${nodes[0]!.httpAddress}/metrics`)).text()));
  });

  it('kill -9 of one node: every remaining member marks it dead (time printed)', async () => {
    const victim = nodes[2]!;
    const t0 = performance.now();
    victim.child.kill('SIGKILL');
    await waitExit(victim.child);
    const tookMs = await waitFor('nodes 1 and 2 mark node 3 dead', async () => (await stateAt(nodes[0]!, 3))?.state === 'dead' && (await stateAt(nodes[1]!, 3))?.state === 'dead');
    console.log(`kill -9 -> dead at every remaining member: ${Math.round(performance.now() - t0)} ms (poll ${POLL_MS} ms; wait ${Math.round(tookMs)} ms)`);
    expect((await stateAt(nodes[0]!, 3))?.alive).toBe(false);
    const metrics = await (await fetch(`http://${nodes[0]!.httpAddress}/metrics`)).text();
    expect(metrics).toMatch(/sluice_cluster_members\{state="dead"\} 1/);
  });

  it('a wiped data dir restarted under the same id and address is seen by the others with a new UUID', async () => {
    const oldUuid = (await stateAt(nodes[0]!, 3))!.nodeUuid!;
    fs.rmSync(dirs[2]!, { recursive: true, force: true });
    nodes[2] = await startNode({ id: 3, ip: '127.0.0.3', dir: dirs[2]!, port: portOf(nodes[2]!), seeds: [nodes[0]!.grpcAddress], rack: 'r3' });
    const newUuid = JSON.parse(fs.readFileSync(path.join(dirs[2]!, '__cluster', 'node.json'), 'utf8')).nodeUuid as string;
    expect(newUuid).not.toBe(oldUuid);
    for (const observer of [nodes[0]!, nodes[1]!]) {
      await waitFor(`${observer.grpcAddress} sees node 3 alive with its new UUID`, async () => {
        const s = await stateAt(observer, 3);
        return s?.state === 'alive' && s.nodeUuid === newUuid;
      });
    }
    expect(nodes[0]!.stderr()).toContain('cluster member replaced: same node id, new node UUID');
  });

  it('SIGSTOP of one node for 1.5 s: it is suspected, and after SIGCONT it refutes and is alive at every member, never dead', async () => {
    const paused = nodes[1]!;
    const logLen = nodes.map((n) => n.stderr().length);
    paused.child.kill('SIGSTOP');
    const t0 = performance.now();
    try {
      await waitFor('someone suspects node 2', async () => (await stateAt(nodes[0]!, 2))?.state === 'suspect' || (await stateAt(nodes[2]!, 2))?.state === 'suspect', 1_400);
      // Hold the pause to 1.5 s in all, waiting on the clock only for the pause itself.
      await new Promise((r) => setTimeout(r, Math.max(0, 1_500 - (performance.now() - t0))));
    } finally {
      paused.child.kill('SIGCONT');
    }
    for (const observer of [nodes[0]!, nodes[2]!]) await waitFor(`${observer.grpcAddress} sees node 2 alive again`, async () => (await stateAt(observer, 2))?.state === 'alive');
    const since = (i: number): string => nodes[i]!.stderr().slice(logLen[i]);
    for (const i of [0, 2]) {
      const lines = since(i).split('\n').filter((l) => l.includes('"node":2,'));
      expect(lines.some((l) => l.includes('cluster member suspect')), `node ${i + 1} logged the suspicion`).toBe(true);
      expect(lines.some((l) => l.includes('cluster member dead')), `node ${i + 1} declared node 2 dead:\n${lines.join('\n')}`).toBe(false);
    }
  });

  it('the founder (no seeds) killed -9 and restarted is found again by the others (reconnect to dead members) and sees them', async () => {
    const founder = nodes[0]!;
    founder.child.kill('SIGKILL');
    await waitExit(founder.child);
    await waitFor('nodes 2 and 3 mark node 1 dead', async () => (await stateAt(nodes[1]!, 1))?.state === 'dead' && (await stateAt(nodes[2]!, 1))?.state === 'dead');
    // Restarted as it was started (cluster mode): its data dir holds replicas (`__consumer_offsets`,
    // created by the controller once the cluster formed), which a lone node would refuse to start over.
    nodes[0] = await startNode({ id: 1, ip: '127.0.0.1', dir: dirs[0]!, port: portOf(founder), extra: ['--controller-voters', '1,2,3'] });
    for (const [observer, subject] of [[1, 0], [2, 0], [0, 1], [0, 2]] as const) {
      await waitFor(`node ${observer + 1} sees node ${subject + 1} alive`, async () => (await stateAt(nodes[observer]!, subject + 1))?.state === 'alive');
    }
  });

  it('a second process with a live node\'s id is refused, naming the other\'s address, and exits 1', async () => {
    const dup = await startNode({ id: 2, ip: '127.0.0.4', dir: path.join(root, 'dup'), seeds: [nodes[0]!.grpcAddress] });
    const exit = await waitExit(dup.child);
    expect(exit.code, dup.stderr()).toBe(1);
    expect(dup.stderr()).toContain(`node id 2 is already taken by the live node at ${nodes[1]!.grpcAddress}`);
    expect(dup.stderr()).toContain('DUPLICATE_NODE_ID');
    // The cluster did not take it in.
    expect((await stateAt(nodes[0]!, 2))?.nodeUuid).toBe(JSON.parse(fs.readFileSync(path.join(dirs[1]!, '__cluster', 'node.json'), 'utf8')).nodeUuid);
  });

  it('a node of another cluster (its data dir names another cluster id) is refused and exits 1', async () => {
    const dir = path.join(root, 'other');
    const lone = await startNode({ id: 5, ip: '127.0.0.5', dir });
    await waitFor('the lone node is ready', async () => (await readyz(lone)).status === 200);
    lone.child.kill('SIGTERM');
    expect((await waitExit(lone.child)).code).toBe(0);
    const again = await startNode({ id: 5, ip: '127.0.0.5', dir, seeds: [nodes[0]!.grpcAddress] });
    const exit = await waitExit(again.child);
    expect(exit.code, again.stderr()).toBe(1);
    expect(again.stderr()).toMatch(/CLUSTER_ID_MISMATCH/);
    expect(again.stderr()).toMatch(/belongs to cluster/);
    expect((await stateAt(nodes[0]!, 5))).toBeUndefined();
  });
});

describe('joining through a seed that is not up yet', () => {
  it('retries with backoff, logging each cause, /readyz 503 with the reason, then ready once the seed comes up', async () => {
    const root = tempDir('sluice-membership-seed-');
    const seedPort = await freePort('127.0.0.6');
    const seedAddr = `127.0.0.6:${seedPort}`;
    // The seed is the controller's only voter: once it is up, the joiner registers through it.
    const extra = ['--controller-voters', '6'];
    const joiner = await startNode({ id: 7, ip: '127.0.0.7', dir: path.join(root, 'n7'), seeds: [seedAddr], extra });
    await waitFor('a failed join attempt is logged', () => (joiner.stderr().match(/cannot join the cluster through this seed yet/g) ?? []).length >= 2);
    const r = await readyz(joiner);
    expect(r.status).toBe(503);
    expect(r.body).toContain(`joining the cluster: no seed answered`);
    expect(r.body).toContain(seedAddr);
    expect(joiner.stderr()).toContain(`"seed":"${seedAddr}"`);
    const seed = await startNode({ id: 6, ip: '127.0.0.6', dir: path.join(root, 'n6'), port: seedPort, extra });
    // The first node, with no seeds, has joined at once; its one-voter controller elects itself.
    await waitFor('the seed is ready', async () => (await readyz(seed)).status === 200);
    await waitFor('the joiner becomes ready', async () => (await readyz(joiner)).status === 200);
    await waitFor('the joiner lists both nodes', async () => (await metadata(joiner.grpcAddress))?.brokers.map((b) => b.nodeId).join(',') === '6,7');
  });
});

describe('a StatefulSet-style seed list that names the node itself first', () => {
  it('the first-listed node founds the cluster when no other seed answers its first round; the next one joins it', async () => {
    const root = tempDir('sluice-membership-sts-');
    const [p9, p10] = [await freePort('127.0.0.9'), await freePort('127.0.0.10')];
    const seeds = [`127.0.0.9:${p9}`, `127.0.0.10:${p10}`];
    const extra = ['--controller-voters', '1'];
    const first = await startNode({ id: 1, ip: '127.0.0.9', port: p9, dir: path.join(root, 'n1'), seeds, extra });
    await waitFor('the first-listed node is ready', async () => (await readyz(first)).status === 200);
    // The log arrives through a pipe: it may trail the HTTP answer.
    await waitFor('the founding is logged', () => first.stderr().includes('first in its own seed list, and no other seed answered'));
    const second = await startNode({ id: 2, ip: '127.0.0.10', port: p10, dir: path.join(root, 'n2'), seeds, extra });
    await waitFor('the second node is ready', async () => (await readyz(second)).status === 200);
    await waitFor('both list both', async () => (await metadata(first.grpcAddress))?.brokers.length === 2 && (await metadata(second.grpcAddress))?.brokers.length === 2);
    expect((await metadata(second.grpcAddress))!.clusterId).toBe((await metadata(first.grpcAddress))!.clusterId);
  });
});

describe('serve flags and identity are checked before anything is served', () => {
  const fails = async (args: string[], dir = tempDir('sluice-membership-flags-')): Promise<string> => {
    const err = await spawnBroker(dir, args).then(
      () => {
        throw new Error(`sluice serve ${args.join(' ')} started`);
      },
      (e: Error) => e.message,
    );
    return err;
  };

  it('refuses --node-id 0 and junk, an advertised 0.0.0.0, and a bad --seeds, in one line, exit 1', async () => {
    expect(await fails(['--node-id', '0'])).toMatch(/exited \(1\).*--node-id must be an integer from 1/s);
    expect(await fails(['--node-id', 'abc'])).toMatch(/exited \(1\).*--node-id must be an integer/s);
    expect(await fails(['--advertise-addr', '0.0.0.0:7070'])).toMatch(/exited \(1\).*invalid advertise address "0\.0\.0\.0:7070".*--advertise-addr/s);
    expect(await fails(['--seeds', 'localhost'])).toMatch(/exited \(1\).*--seeds takes HOST:PORT/s);
  });

  it('refuses a data dir that belongs to another node id, naming both', async () => {
    const dir = tempDir('sluice-membership-id-');
    const first = await startNode({ id: 4, ip: '127.0.0.8', dir });
    await waitFor('the node is ready', async () => (await readyz(first)).status === 200);
    first.child.kill('SIGTERM');
    expect((await waitExit(first.child)).code).toBe(0);
    const msg = await fails(['--node-id', '9', '--grpc-addr', '127.0.0.8:0', '--http-addr', '127.0.0.8:0'], dir);
    expect(msg).toMatch(/exited \(1\).*belongs to node 4, but this node was started with --node-id 9/s);
  });
});
