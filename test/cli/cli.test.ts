/**
 * Goal: the `sluice` binary works as a user meets it. Method: run dist/src/cli/main.js as child
 * processes — `serve` on ephemeral ports, then topic/produce/consume/cluster commands against it with
 * SLUICE_BROKERS — checking stdout (tables, --format json, kcat-style -f), exit codes, the one-line
 * start-up failures (taken port, locked or unusable data dir), HTTP health, and a clean SIGTERM exit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { cliPath, spawnBroker, waitExit, type BrokerProcess } from '../../bench/broker-process.js';
import { tempDir } from '../e2e/helpers.js';
import { describeRecommission } from '../../src/cli/moves.js';

let broker: BrokerProcess;
let dataDir: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sluice(args: string[], input?: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [cliPath(), ...args], { env: { ...process.env, SLUICE_BROKERS: broker.grpcAddress, ...env }, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

beforeAll(async () => {
  dataDir = tempDir('sluice-cli-');
  broker = await spawnBroker(dataDir);
});
afterAll(() => {
  if (broker.child.exitCode === null) broker.child.kill('SIGKILL');
});

describe('sluice cluster recommission output', () => {
  // The process test (test/cluster/move-process.test.ts) runs the command against a real cluster; this
  // pins the wording for each state the node can have been in.
  const node = { nodeId: 3, state: 'active' as const, replicas: 2 };
  it('says what it did, then the node now', () => {
    expect(describeRecommission({ previousState: 'decommissioned', node })).toBe(
      'node 3 recommissioned (was decommissioned): new topics, added partitions and `sluice cluster rebalance` may place replicas on it again\nnode 3: active, 2 replica(s)',
    );
    expect(describeRecommission({ previousState: 'decommissioning', node })).toBe(
      'node 3 recommissioned (was decommissioning): it is no longer drained (moves already begun off it finish; no new one starts)\nnode 3: active, 2 replica(s)',
    );
    expect(describeRecommission({ previousState: 'active', node })).toBe('node 3 is already active; nothing to do\nnode 3: active, 2 replica(s)');
  });
});

describe('sluice CLI', () => {
  it('creates, lists and describes topics', async () => {
    expect((await sluice(['topic', 'create', 'tour', '-p', '3', '-c', 'retention.ms=86400000'])).code).toBe(0);
    const list = await sluice(['topic', 'list']);
    expect(list.stdout).toMatch(/NAME\s+PARTITIONS\s+REPLICAS\ntour\s+3\s+1/);
    const json = JSON.parse((await sluice(['topic', 'describe', 'tour', '--format', 'json'])).stdout);
    expect(json.partitions).toHaveLength(3);
    expect(json.configs['retention.ms']).toBe('86400000');
    const grown = await sluice(['topic', 'add-partitions', 'tour', '--num', '1', '--format', 'json']);
    expect(JSON.parse(grown.stdout).partitions).toHaveLength(4);
  });

  it('produces stdin lines and consumes them kcat-style', async () => {
    const produced = await sluice(['produce', 'tour', '-k', ':', '-H', 'src=test'], 'user1:hello\nuser2:world\nuser1:again\n');
    expect(produced.code, produced.stderr).toBe(0);
    const plain = await sluice(['consume', 'tour', '-e']);
    expect(plain.stdout.trim().split('\n').sort()).toEqual(['again', 'hello', 'world']);
    const fmt = await sluice(['consume', 'tour', '-e', '-f', '%k=%s %h\\n']);
    expect(fmt.stdout).toContain('user1=hello src=test\nuser1=again src=test\n');
    const json = await sluice(['consume', 'tour', '-o', 'start', '-n', '1', '--format', 'json']);
    const rec = JSON.parse(json.stdout.trim());
    expect(rec).toMatchObject({ topic: 'tour', offset: 1, headers: { src: 'test' } }); // after the first term's no-op
    const last = await sluice(['consume', 'tour', '-p', String(rec.partition), '-o', '-1', '-e', '-f', '%o\\n']);
    expect(last.stdout.trim().split('\n')).toHaveLength(1);
    const byTime = await sluice(['consume', 'tour', '-o', '@0', '-e']);
    expect(byTime.stdout.trim().split('\n')).toHaveLength(3);
    const future = await sluice(['consume', 'tour', '-o', `@${Date.now() + 3_600_000}`, '-e']);
    expect(future.stdout).toBe('');
  });

  it('reports cluster info', async () => {
    const info = JSON.parse((await sluice(['cluster', 'info', '--format', 'json'])).stdout);
    expect(info.brokers[0].grpcAddress).toBe(broker.grpcAddress);
    expect(info.topics).toBeGreaterThanOrEqual(1);
    // A lone `sluice serve` is a one-node cluster: node 1, alive, with the UUID its data dir keeps.
    expect(info.brokers).toHaveLength(1);
    expect(info.brokers[0]).toMatchObject({ nodeId: 1, state: 'alive', alive: true, rack: '' });
    expect(info.brokers[0].nodeUuid).toMatch(/^[0-9a-f-]{36}$/);
    const table = (await sluice(['cluster', 'info'])).stdout;
    // The controller role is '-' here: a lone node runs no controller group.
    expect(table).toMatch(/ID\s+ADDRESS\s+HTTP\s+RACK\s+STATE\s+CONTROLLER\s+LEADERS\s+UUID/);
    expect(info.brokers[0].controllerRole).toBe('');
    expect(table).toContain(`${broker.grpcAddress}`);
  });

  it('cluster recommission on a lone node: one line saying it needs cluster mode, exit 1', async () => {
    const r = await sluice(['cluster', 'recommission', '1']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/recommissioning a node needs cluster mode .*\(INVALID_REQUEST\)/);
  });

  it('fails in one line that says what to do next', async () => {
    const unknown = await sluice(['consume', 'missing', '-e']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toMatch(/UNKNOWN_TOPIC.*sluice topic create/);
    const down = await sluice(['topic', 'list'], undefined, { SLUICE_BROKERS: '127.0.0.1:1' });
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/cannot connect to 127.0.0.1:1.*sluice serve/);
  });

  it('refuses a taken port, a locked data dir and an unusable data dir with exit 1', async () => {
    const port = await sluice(['serve', '--data-dir', tempDir(), '--grpc-addr', broker.grpcAddress, '--http-addr', '127.0.0.1:0']);
    expect(port.code).toBe(1);
    expect(port.stderr.trim().split('\n')).toHaveLength(1);
    expect(port.stderr).toMatch(/address already in use/);
    const locked = await sluice(['serve', '--data-dir', dataDir, '--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0']);
    expect(locked.code).toBe(1);
    expect(locked.stderr).toMatch(/DATA_DIR_LOCKED/);
    const unusable = await sluice(['serve', '--grpc-addr', '127.0.0.1:0', '--http-addr', '127.0.0.1:0'], undefined, { SLUICE_DATA_DIR: '/dev/null/data' });
    expect(unusable.code).toBe(1);
    expect(unusable.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('serves /healthz and /readyz, and exits 0 on SIGTERM', async () => {
    expect((await fetch(`http://${broker.httpAddress}/healthz`)).status).toBe(200);
    expect((await fetch(`http://${broker.httpAddress}/readyz`)).status).toBe(200);
    const metrics = await fetch(`http://${broker.httpAddress}/metrics`);
    expect(metrics.status).toBe(200);
    broker.child.kill('SIGTERM');
    expect((await waitExit(broker.child)).code).toBe(0);
  });
});
