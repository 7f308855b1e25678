/**
 * Goal: a process-wide pause (SIGSTOP of the whole broker, a VM pause) does not make the shard
 * watchdog replace a healthy worker (issue 9 section 3). Method: the real `sluice serve` as a child
 * process with a 2 s watchdog and one shard; a long-poll Fetch parked in the shard; SIGSTOP for three
 * watchdog periods while a Produce is sent into the stopped process; SIGCONT. The in-flight Produce and
 * the parked Fetch must succeed, new requests too, `sluice_shard_restarts_total` must stay absent and
 * the broker must log that its watchdog re-armed. (The opposite case, a worker that really hangs while
 * the main thread runs, is test/broker/resilience.test.ts: it is still replaced.)
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { spawnBroker, waitExit } from '../../bench/broker-process.js';
import { call, dynamicClients, tempDir } from './helpers.js';

const WATCHDOG_MS = 2_000;
const PAUSE_MS = 3 * WATCHDOG_MS;

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function metrics(httpAddress: string): Promise<string> {
  const res = await fetch(`http://${httpAddress}/metrics`);
  return res.text();
}

describe('process-wide pause', () => {
  it('re-arms the watchdog instead of replacing a healthy shard', async () => {
    const broker = await spawnBroker(tempDir('sluice-pause-'), ['--shards', '1', '--shard-watchdog-ms', String(WATCHDOG_MS)]);
    children.push(broker.child);
    const c = dynamicClients(broker.grpcAddress);
    try {
      await call(c.admin, 'CreateTopic', { name: 'p', partitions: 1 });
      await call(c.broker, 'Produce', { topic: 'p', partition: 0, records: [{ value: Buffer.from('before') }] });
      // A long-poll parked in the shard across the pause, answered by the produce sent during it.
      // 'before' is at 1 (0 is the first term's no-op): park at 2.
      const parked = call(c.broker, 'Fetch', { topic: 'p', partition: 0, offset: 2, maxWaitMs: 25_000 }, 40_000);
      await call(c.broker, 'GetMetadata', {});

      broker.child.kill('SIGSTOP');
      const stoppedAt = Date.now();
      const inflight = call(c.broker, 'Produce', { topic: 'p', partition: 0, records: [{ value: Buffer.from('during') }] }, 40_000);
      await new Promise((r) => setTimeout(r, PAUSE_MS - (Date.now() - stoppedAt)));
      broker.child.kill('SIGCONT');

      const produced = await inflight;
      expect(BigInt(produced.baseOffset)).toBe(2n);
      const fetched = await parked;
      expect(fetched.records.map((r: { value: Buffer }) => r.value.toString())).toEqual(['during']);
      const after = await call(c.broker, 'Produce', { topic: 'p', partition: 0, records: [{ value: Buffer.from('after') }] });
      expect(BigInt(after.baseOffset)).toBe(3n);

      // Two more watchdog periods of normal running: the re-armed watchdog still has nothing to fire at.
      await new Promise((r) => setTimeout(r, 2 * WATCHDOG_MS));
      await call(c.broker, 'GetMetadata', {});
      expect(await metrics(broker.httpAddress)).not.toMatch(/^sluice_shard_restarts_total\{/m);
      expect(broker.stderr()).toMatch(/watchdog re-armed/);
      expect(broker.stderr()).not.toMatch(/replacing it|worker died/);
    } finally {
      c.close();
    }
    broker.child.kill('SIGTERM');
    expect((await waitExit(broker.child)).code).toBe(0);
  });
});
