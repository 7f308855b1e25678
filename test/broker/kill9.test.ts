/**
 * Goal: an acks=all produce that was acknowledged survives kill -9 of the broker process, and the
 * broker reopens the data dir after it (stale lock, unclean logs).
 * Method: a child process runs a Broker and produces acks=all batches on 4 partitions, printing each
 * acknowledgement; the parent kills it with SIGKILL mid-stream, reopens the data dir in-process and
 * checks that every acknowledged batch is there at its acknowledged offset, with nothing reordered.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { decodeBatches } from '../../src/batch/index.js';
import { openBroker, tempDir } from './helpers.js';

const child = fileURLToPath(new URL('./fixtures/acked-producer.mjs', import.meta.url));

it('keeps every acknowledged acks=all record across kill -9', async () => {
  const dir = tempDir();
  const proc = spawn(process.execPath, [child, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const acked: Array<{ partition: number; lastOffset: number; tag: string }> = [];
  let buffered = '';
  await new Promise<void>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`child exited early: ${code}`))));
    proc.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line === 'ready') continue;
        const [p, off, tag] = line.split(' ');
        acked.push({ partition: Number(p), lastOffset: Number(off), tag });
        if (acked.length === 200) proc.kill('SIGKILL');
      }
    });
  });
  expect(acked.length).toBeGreaterThanOrEqual(200);
  const broker = await openBroker({ dataDir: dir });
  try {
    for (let partition = 0; partition < 4; partition++) {
      const byOffset = new Map<number, string>();
      let offset = 0;
      for (;;) {
        const r = await broker.fetch({ topic: 'k', partition, offset, maxBytes: 1 << 20, maxWaitMs: 0 });
        if (r.batches.length === 0) break;
        for (const b of decodeBatches(r.batches)) if (!b.header.isControl) for (const rec of b.records) byOffset.set(rec.offset, Buffer.from(rec.value!).toString());
        offset = r.nextOffset;
      }
      for (const a of acked.filter((x) => x.partition === partition)) {
        expect(byOffset.get(a.lastOffset), `partition ${partition} offset ${a.lastOffset}`).toBe(`${a.tag}-19`);
      }
      // Records are dense from 1 (0 is the first term's no-op): nothing torn in the middle.
      expect([...byOffset.keys()]).toEqual(Array.from({ length: byOffset.size }, (_, i) => i + 1));
    }
  } finally {
    await broker.close();
  }
});
