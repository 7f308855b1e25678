/**
 * Goal: a member process killed with SIGKILL loses its partitions within the session timeout, and the
 * group still consumes every record at least once (no gaps): the survivor resumes at the last commit.
 * Method: a real broker in this process; one member in a child process (SIGKILLed mid-stream) and one
 * here; a producer keeps writing. The union of what both processed must cover every offset.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GroupConsumer } from '../../src/client/group-consumer.js';
import { produceTo, startGroupBroker, topicWithRecords, waitFor, type GroupBroker } from './helpers.js';

const SESSION_MS = 3_000;
const PARTITIONS = 6;
let gb: GroupBroker;
let child: ChildProcess | null = null;

beforeAll(async () => {
  gb = await startGroupBroker();
  await topicWithRecords(gb.brokerAddress, 'kill', PARTITIONS, 200);
});
afterAll(async () => {
  child?.kill('SIGKILL');
  await gb?.close();
});

describe('SIGKILL of a member process', () => {
  it('reassigns its partitions within the session timeout and loses no record', async () => {
    // The survivor joins first and reads the backlog; then the slow child joins and takes half.
    const seen = new Set<string>();
    const survivor = new GroupConsumer({ brokers: gb.address, groupId: 'g-kill', sessionTimeoutMs: SESSION_MS }).subscribe(['kill']);
    const done = survivor.run(async (b) => {
      for (const r of b.records) seen.add(`${r.partition}:${r.offset}`);
    });
    await waitFor('backlog read', () => seen.size === PARTITIONS * 200, 10_000);

    const script = path.resolve('test/groups/fixtures/member-process.mjs');
    child = spawn(process.execPath, [script, gb.address, 'g-kill', 'kill', String(SESSION_MS), '20'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const childSeen = new Set<string>();
    let childAssigned = 0;
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith('assigned ')) childAssigned = Number(l.slice(9));
        else if (l.length > 0) childSeen.add(l);
      }
    });
    await waitFor('split 3/3', () => childAssigned === PARTITIONS / 2 && survivor.assignment().length === PARTITIONS / 2, 15_000);

    // New records: the child (20 ms per 10 records) is still busy with its share when it dies.
    await produceTo(gb.brokerAddress, 'kill', PARTITIONS, 100, 200);
    await waitFor('child processing', () => childSeen.size >= 20, 10_000);
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const childAtKill = childSeen.size;
    await waitFor('survivor owns all', () => survivor.assignment().length === PARTITIONS, SESSION_MS + 1_000);
    const reassignMs = Date.now() - killedAt;
    expect(reassignMs).toBeLessThan(SESSION_MS);
    expect(childAtKill).toBeLessThan((PARTITIONS / 2) * 100);

    const total = PARTITIONS * 300;
    const covered = (): number => {
      let n = 0;
      // Records are at offsets 1-300 (0 is the first term's no-op).
      for (let p = 0; p < PARTITIONS; p++) for (let o = 1; o <= 300; o++) if (seen.has(`${p}:${o}`) || childSeen.has(`${p}:${o}`)) n++;
      return n;
    };
    await waitFor('every record consumed at least once', () => covered() === total, 20_000);
    await survivor.stop();
    await done;
  });
});
