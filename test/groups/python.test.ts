/**
 * Goal: a client in another language joins a group beside a TypeScript member and both consume, with
 * no Sluice code on the Python side: only proto/ and Debian's python3-grpcio.
 * Method: compile proto/ to a descriptor set (buf, from npm) in a temp dir; run
 * test/groups/fixtures/py_member.py with /usr/bin/python3; a GroupConsumer in this process; produce
 * records; both must own half the partitions and together consume every record. Skipped (with a
 * message) when python3-grpcio is not installed.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupConsumer } from '../../src/client/group-consumer.js';
import { produceTo, startGroupBroker, tempDir, topicWithRecords, waitFor, type GroupBroker } from './helpers.js';

const PYTHON = '/usr/bin/python3';
const hasGrpc = spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;
if (!hasGrpc) console.warn('skipping the Python client test: install python3-grpcio (apt-get install -y python3-grpcio)');

let gb: GroupBroker;
let py: ChildProcess | null = null;

beforeAll(async () => {
  if (!hasGrpc) return;
  gb = await startGroupBroker();
  await topicWithRecords(gb.brokerAddress, 'polyglot', 4, 50);
});
afterAll(async () => {
  py?.kill('SIGKILL');
  await gb?.close();
});

describe.skipIf(!hasGrpc)('Python client', () => {
  it('joins beside a TypeScript member and both consume', async () => {
    const descriptors = path.join(tempDir('sluice-py-'), 'sluice.binpb');
    execFileSync(path.resolve('node_modules/.bin/buf'), ['build', 'proto', '-o', descriptors, '--exclude-source-info'], { stdio: 'inherit' });

    const tsSeen = new Set<string>();
    const ts = new GroupConsumer({ brokers: gb.address, groupId: 'g-py', sessionTimeoutMs: 5_000 }).subscribe(['polyglot']);
    const done = ts.run(async (b) => {
      for (const r of b.records) tsSeen.add(`${r.partition}:${r.offset}`);
    });
    await waitFor('ts owns 4', () => ts.assignment().length === 4);

    const pySeen = new Set<string>();
    let pyAssigned = 0;
    let stderr = '';
    py = spawn(PYTHON, [path.resolve('test/groups/fixtures/py_member.py'), descriptors, gb.address, 'g-py', 'polyglot'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let buffered = '';
    py.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith('assigned ')) pyAssigned = Number(l.slice(9));
        else if (/^\d+:\d+$/.test(l)) pySeen.add(l);
      }
    });
    py.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await waitFor('python owns 2, ts owns 2', () => pyAssigned === 2 && ts.assignment().length === 2, 20_000).catch((err) => {
      throw new Error(`${(err as Error).message}; python stderr: ${stderr}`);
    });

    await produceTo(gb.brokerAddress, 'polyglot', 4, 25, 50);
    const pyParts = new Set<number>();
    await waitFor('every record consumed', () => {
      let n = 0;
      // Records are at offsets 1-75 (0 is the first term's no-op).
      for (let p = 0; p < 4; p++) for (let o = 1; o <= 75; o++) if (tsSeen.has(`${p}:${o}`) || pySeen.has(`${p}:${o}`)) n++;
      return n === 300;
    }, 20_000);
    for (const s of pySeen) if (Number(s.split(':')[1]) > 50) pyParts.add(Number(s.split(':')[0]));
    expect(pyParts.size).toBe(2); // Python consumed the new records of its two partitions
    expect([...tsSeen].some((s) => Number(s.split(':')[1]) > 50)).toBe(true);

    // Python leaves (stdin closes): its partitions go back to the TS member.
    py.stdin!.end();
    await waitFor('ts owns 4 again', () => ts.assignment().length === 4, 10_000);
    expect(stderr).toBe('');
    await ts.stop();
    await done;
  });
});
