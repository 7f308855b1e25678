// Quick in-process throughput check of the broker core (not a test, not the benchmark).
// Method: one topic, 8 partitions, 1,000 x 100-byte records per pre-encoded raw batch, acks=all with
// the default flush policy (fsync group commit), a fixed number of produces in flight; then a consume
// pass over everything through fetch. Run after `npx tsc -p tsconfig.build.json`:
//   node test/broker/throughput-check.mjs [seconds=5] [inflight=64] [shards]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Broker } from '../../dist/src/broker/index.js';
import { encodeBatch } from '../../dist/src/batch/index.js';

const seconds = Number(process.argv[2] ?? 5);
const inflight = Number(process.argv[3] ?? 64);
const shards = process.argv[4] ? Number(process.argv[4]) : undefined;
const structured = process.env.STRUCTURED === '1';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-tput-'));
const broker = await Broker.open({ dataDir: dir, shards });
const P = 8;
await broker.createTopic('bench', P, 1, {});
const value = Buffer.alloc(100, 120);
const records = Array.from({ length: 1000 }, () => ({ key: null, value }));
const batch = encodeBatch(records);
let peakRss = 0;
const rssTimer = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage.rss())), 100);
let produced = 0;
let next = 0;
const deadline = performance.now() + seconds * 1000;
const t0 = performance.now();
async function worker() {
  while (performance.now() < deadline) {
    const partition = next++ % P;
    if (structured) await broker.produce({ topic: 'bench', partition, records, acks: 'all' });
    else await broker.produce({ topic: 'bench', partition, batches: batch, acks: 'all' });
    produced += 1000;
  }
}
await Promise.all(Array.from({ length: inflight }, worker));
const secs = (performance.now() - t0) / 1000;
const producePeakRss = peakRss;
console.log(`peak RSS while producing: ${(producePeakRss / 2 ** 20).toFixed(0)} MB`);
console.log(`${structured ? 'structured' : 'raw'} produce: ${(produced / secs).toFixed(0)} records/s, ${((produced * 100) / secs / 1e6).toFixed(1)} MB/s of values (${produced} records, ${secs.toFixed(1)} s, ${inflight} in flight)`);
// Consume everything back through fetch (1 MiB per fetch, partitions in parallel).
const c0 = performance.now();
let consumed = 0;
await Promise.all(
  Array.from({ length: P }, async (_, partition) => {
    let offset = 0;
    for (;;) {
      const r = await broker.fetch({ topic: 'bench', partition, offset, maxBytes: 1 << 20, maxWaitMs: 0 });
      if (r.batches.length === 0) break;
      consumed += r.nextOffset - offset;
      offset = r.nextOffset;
    }
  }),
);
const csecs = (performance.now() - c0) / 1000;
console.log(`fetch: ${(consumed / csecs).toFixed(0)} records/s (${consumed} records, ${csecs.toFixed(1)} s)`);
clearInterval(rssTimer);
console.log(`peak RSS (broker + in-process producer): ${(peakRss / 2 ** 20).toFixed(0)} MB`);
await broker.close();
fs.rmSync(dir, { recursive: true, force: true });
