/**
 * Goal: the TEST-ONLY `SLUICE_TEST_REPLICA_BUGS` (src/broker/test-hooks.ts) takes exactly the
 * simulator's bug names, split between the Raft core and the partition driver; an unknown name or a
 * single-node broker refuses the start with a message naming the variable; a cluster node started
 * with it says so loudly. Method: the parser directly, then `sluice serve` processes (a one-voter
 * cluster on 127.0.0.1 and ephemeral ports). That the bugs reach the replicas and the chaos checker
 * catches them is test/chaos/chaos-twins.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnBroker, waitExit, type BrokerProcess } from '../../bench/broker-process.js';
import { parseReplicaBugs, REPLICA_BUG_NAMES, TEST_REPLICA_BUGS_ENV } from '../../src/broker/test-hooks.js';
import { isSluiceError } from '../../src/errors.js';
import { RAFT_BUGS } from '../../src/raft/index.js';
import { PARTITION_DRIVER_BUGS } from '../../src/partition/index.js';
import { DRIVER_BUGS } from '../sim/replica.js';

const dirs: string[] = [];
const brokers: BrokerProcess[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) {
    b.child.kill('SIGKILL');
    await waitExit(b.child);
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-replica-bugs-'));
  dirs.push(d);
  return d;
}

describe('SLUICE_TEST_REPLICA_BUGS', () => {
  it('is nothing when unset or blank', () => {
    expect(parseReplicaBugs(undefined)).toBeNull();
    expect(parseReplicaBugs('')).toBeNull();
    expect(parseReplicaBugs(' , ')).toBeNull();
  });

  it('splits the names between the Raft core and the partition driver', () => {
    expect(parseReplicaBugs('commit-without-quorum')).toEqual({ raft: ['commit-without-quorum'], driver: [] });
    expect(parseReplicaBugs(' hw-from-log-end , commit-without-quorum ')).toEqual({ raft: ['commit-without-quorum'], driver: ['hw-from-log-end'] });
    const all = parseReplicaBugs(REPLICA_BUG_NAMES.join(','))!;
    expect(all.raft).toEqual([...RAFT_BUGS]);
    expect(all.driver).toEqual([...PARTITION_DRIVER_BUGS]);
  });

  it('knows the same driver bugs as the simulator', () => {
    expect([...PARTITION_DRIVER_BUGS].sort()).toEqual([...DRIVER_BUGS].sort());
  });

  it('refuses an unknown name with INVALID_CONFIG naming it and the known ones', () => {
    let err: unknown;
    try {
      parseReplicaBugs('hw-from-log-end,commit-without-quorom');
    } catch (e) {
      err = e;
    }
    expect(isSluiceError(err, 'INVALID_CONFIG')).toBe(true);
    expect((err as Error).message).toMatch(/SLUICE_TEST_REPLICA_BUGS: unknown bug commit-without-quorom; known: commit-without-quorum, .*hw-from-log-end/);
  });

  it('a node given an unknown name does not start, and says why', async () => {
    const start = spawnBroker(tmpDir(), ['--node-id', '1', '--controller-voters', '1'], { [TEST_REPLICA_BUGS_ENV]: 'commit-whenever' });
    await expect(start).rejects.toThrow(/broker exited \(1\) before it was ready: .*SLUICE_TEST_REPLICA_BUGS: unknown bug commit-whenever/);
  });

  it('a single-node broker refuses it (it would do nothing there)', async () => {
    const start = spawnBroker(tmpDir(), [], { [TEST_REPLICA_BUGS_ENV]: 'hw-from-log-end' });
    await expect(start).rejects.toThrow(/SLUICE_TEST_REPLICA_BUGS needs cluster mode/);
  });

  it('a cluster node started with it serves, and warns loudly that it will lose data', async () => {
    const b = await spawnBroker(tmpDir(), ['--node-id', '1', '--controller-voters', '1'], { [TEST_REPLICA_BUGS_ENV]: 'hw-from-log-end' });
    brokers.push(b);
    expect(b.stderr()).toMatch(/TEST ONLY: SLUICE_TEST_REPLICA_BUGS=hw-from-log-end: every partition replica of this node runs with deliberate bugs and WILL lose or corrupt data/);
  });
});
