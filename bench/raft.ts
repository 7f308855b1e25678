/**
 * Raft benchmarks (not a timed test): `npm run bench:raft [-- --json] [-- --seconds S]`.
 *
 * 1. throughput: 3 in-memory nodes, the leader proposes 1,000 one-record 100-byte batches per tick
 *    (1,000 runs of 1 entry); every Ready is "persisted" (MemoryStorage), its messages delivered at
 *    once, its entries applied. Counts entries committed and applied on the leader per second.
 *    Target: >= 1,000,000/s. Then the same with one 1,000-record batch (100 KB) per tick: one run of
 *    1,000 entries, the shape a partition proposes; records/s.
 * 2. steps: the same cluster with one entry per round, counting core calls (step + tick) per second.
 *    Target: >= 50,000/s.
 * 3. simulator: seeds of 2,000 steps per second (all faults and checkers on).
 */
import type { NodeId } from '../src/model/index.js';
import { MemoryStorage, type Message, RaftNode, bootstrapState } from '../src/raft/index.js';
import { runSeed } from '../test/sim/sim.js';

interface Row {
  name: string;
  value: number;
  unit: string;
  target: number | null;
}

const args = process.argv.slice(2);
const json = args.includes('--json');
const secondsArg = args.indexOf('--seconds');
const seconds = secondsArg >= 0 ? Number(args[secondsArg + 1]) : 2;

function makeCluster(): { nodes: RaftNode[]; drain: () => { steps: number; applied: number } } {
  const voters = [1, 2, 3].map((n) => n as NodeId);
  const disks = voters.map(() => new MemoryStorage(bootstrapState(voters)));
  const nodes = voters.map((v, i) => new RaftNode({ id: v, random: () => (v * 0.31) % 1 }, disks[i]));
  const drain = (): { steps: number; applied: number } => {
    let steps = 0;
    let applied = 0;
    for (;;) {
      const msgs: Message[] = [];
      for (let i = 0; i < nodes.length; i++) {
        const r = nodes[i];
        if (!r.hasReady()) continue;
        const rd = r.ready();
        disks[i].append(rd.entries); // the in-memory "disk"
        if (rd.hardState !== null) disks[i].setHardState(rd.hardState);
        for (const m of rd.messages) msgs.push(m);
        if (i === 0) for (const e of rd.committedEntries) applied += e.count;
        r.advance();
        // Bound memory like retention would: compact the applied prefix every so often.
        const s = r.status();
        if (s.applied - s.firstIndex > 200_000) disks[i].compact(r.compact(s.applied, new Uint8Array(0)));
      }
      if (msgs.length === 0) return { steps, applied };
      for (const m of msgs) {
        nodes[m.to - 1].step(m);
        steps++;
      }
    }
  };
  nodes[0].campaign();
  drain();
  return { nodes, drain };
}

function throughput(batch: number, recordsPerRun = 1): { entriesPerSec: number; stepsPerSec: number } {
  const { nodes, drain } = makeCluster();
  const leader = nodes[0];
  const runs = batch / recordsPerRun;
  const pool = new Uint8Array(100 * batch);
  const size = 100 * recordsPerRun;
  const payloads = Array.from({ length: runs }, (_, i) => pool.subarray(i * size, (i + 1) * size));
  const counts = payloads.map(() => recordsPerRun);
  let applied = 0;
  let steps = 0;
  const t0 = performance.now();
  let elapsed = 0;
  while (elapsed < seconds * 1000) {
    for (let k = 0; k < 16; k++) {
      leader.proposeBatch(payloads, counts);
      for (const n of nodes) n.tick();
      steps += nodes.length;
      const d = drain();
      applied += d.applied;
      steps += d.steps;
    }
    elapsed = performance.now() - t0;
  }
  if (leader.getRole() !== 'leader') throw new Error('leadership changed during the benchmark');
  return { entriesPerSec: (applied / elapsed) * 1000, stepsPerSec: (steps / elapsed) * 1000 };
}

function simSeeds(): number {
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) runSeed({ seed: 1_000_000 + n++, steps: 2_000 });
  return (n / (performance.now() - t0)) * 1000;
}

const big = throughput(1000);
const run = throughput(1000, 1000);
const one = throughput(1);
const rows: Row[] = [
  { name: 'committed 100-byte entries/s (3 nodes, 1000/tick)', value: big.entriesPerSec, unit: 'entries/s', target: 1_000_000 },
  { name: 'committed records/s (3 nodes, one 1000-record run/tick)', value: run.entriesPerSec, unit: 'records/s', target: null },
  { name: 'core steps/s (3 nodes, 1 entry/tick)', value: one.stepsPerSec, unit: 'steps/s', target: 50_000 },
  { name: 'committed entries/s (1 entry/tick)', value: one.entriesPerSec, unit: 'entries/s', target: null },
  { name: 'simulator seeds/s (2,000 steps each)', value: simSeeds(), unit: 'seeds/s', target: null },
];

if (json) {
  console.log(JSON.stringify({ bench: 'raft', seconds, rows }));
} else {
  const w = Math.max(...rows.map((r) => r.name.length));
  console.log(`${'benchmark'.padEnd(w)}  ${'value'.padStart(14)}  ${'target'.padStart(12)}  ok`);
  for (const r of rows) {
    const ok = r.target === null ? '-' : r.value >= r.target ? 'yes' : 'NO';
    const v = Math.round(r.value).toLocaleString('en-US');
    const t = r.target === null ? '' : r.target.toLocaleString('en-US');
    console.log(`${r.name.padEnd(w)}  ${v.padStart(14)}  ${t.padStart(12)}  ${ok}`);
  }
}
