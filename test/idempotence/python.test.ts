/**
 * Goal: a client in another language is idempotent with nothing but proto/ and gRPC, using the
 * structured-request fields (no Kafka codec). Method: compile proto/ to a descriptor set (buf, from
 * npm); run test/idempotence/fixtures/py_idempotent.py with /usr/bin/python3 against an in-process
 * broker: a retry of the same request returns the original offsets and writes nothing, a gap answers
 * OUT_OF_RANGE / OUT_OF_ORDER_SEQUENCE, the next sequence appends. Skipped (with a message) when
 * python3-grpcio is not installed.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '../../src/server/index.js';
import { Admin } from '../../src/client/index.js';
import { tempDir } from '../e2e/helpers.js';

const PYTHON = '/usr/bin/python3';
const hasGrpc = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;
if (!hasGrpc) console.warn('skipping the Python idempotent-producer test: install python3-grpcio (apt-get install -y python3-grpcio)');

let running: RunningBroker;
beforeAll(async () => {
  if (!hasGrpc) return;
  running = await startBroker({ dataDir: tempDir('sluice-idem-py-'), shards: 1, httpAddress: null });
  const admin = new Admin({ brokers: running.grpcAddress });
  await admin.createTopic('py-idem', { partitions: 1 });
  admin.close();
});
afterAll(async () => {
  await running?.close();
});

describe.skipIf(!hasGrpc)('Python idempotent producer', () => {
  it('retries without duplicates and is told about a gap', async () => {
    const descriptors = path.join(tempDir('sluice-idem-py-'), 'sluice.binpb');
    execFileSync(path.resolve('node_modules/.bin/buf'), ['build', 'proto', '-o', descriptors, '--exclude-source-info'], { stdio: 'inherit' });
    // Asynchronously: the broker runs in this process and must keep serving meanwhile.
    const { stdout: out } = await promisify(execFile)(PYTHON, [path.resolve('test/idempotence/fixtures/py_idempotent.py'), descriptors, running.grpcAddress, 'py-idem'], { encoding: 'utf8', timeout: 60_000 });
    // Offsets follow the first term's no-op at 0.
    expect(JSON.parse(out)).toEqual({ epoch: 0, first: [1, 3], retry: [1, 3], gap: ['OUT_OF_RANGE', 'OUT_OF_ORDER_SEQUENCE'], next: [4, 4] });
    const admin = new Admin({ brokers: running.grpcAddress });
    const end = await admin.listOffsets('py-idem', 'latest');
    admin.close();
    expect([...end.values()]).toEqual([5]);
  });
});
