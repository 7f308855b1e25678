/**
 * Consumer-group benchmark (`node dist/bench/groups.js`, after `npm run build`). Not a test: it prints
 * numbers beside the targets.
 *
 * Setup: a broker in a child process (this file with --serve), one topic of 100 partitions, 100-byte
 * records written as pre-encoded 1,000-record batches. A group of 10 GroupConsumers (this process)
 * consumes:
 * 1. Throughput: a group reads a pre-filled backlog (--records, default 2,000,000) at full speed;
 *    records/s from the first batch to the last. Three runs, each a fresh group on the same backlog:
 *    delivery only (members count records without decoding), decoded with the members spread over
 *    --member-procs processes (how consumers run), and decoded with all members in this process.
 * 2. Rebalance: while a producer (a second child process) writes all along, an 11th member joins
 *    (--rounds times, default 20) and leaves again. Join-to-steady-state = from the 11th member's
 *    join until the group reports STABLE with 11 members (all revokes acknowledged, all assignments
 *    delivered), polled every 2 ms. Pause = for each of the 10 members whose partitions did not move
 *    in that round, the longest gap between two consecutive batches from the join until 200 ms after
 *    steady state; compared with the same measure in quiet windows (the baseline, which is set by how
 *    often data arrives).
 *
 * Flags: --json, --records N, --rounds N, --members N (default 10), --partitions N (default 100),
 * --flush-policy P (the topic's flush.policy; default the broker's, fsync per append),
 * --member-procs N (processes for the multi-process throughput run, default 2),
 * --load-rate N (records/s written during the rebalance rounds, default 100,000), --load-batch N
 * (records per produce then, default 50).
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { encodeBatch } from '../src/batch/index.js';
import { Admin } from '../src/client/admin.js';
import { Connection } from '../src/client/connection.js';
import { GroupAdmin, GroupConsumer } from '../src/client/group-consumer.js';

const RECORDS_PER_BATCH = 1000;
const VALUE_BYTES = 100;
const TOPIC = 'bench-groups';
const GROUP = 'bench';

interface Args {
  json: boolean;
  records: number;
  rounds: number;
  members: number;
  partitions: number;
  loadRate: number;
  loadBatch: number;
  memberProcs: number;
  /** The topic's flush.policy ('' = the default, fsync per append). */
  flushPolicy: string;
}

function parseArgs(argv: string[]): Args {
  const get = (name: string, dflt: number): number => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] ? Number(argv[i + 1]) : dflt;
  };
  return {
    json: argv.includes('--json'),
    records: get('--records', 2_000_000),
    rounds: get('--rounds', 20),
    members: get('--members', 10),
    partitions: get('--partitions', 100),
    loadRate: get('--load-rate', 100_000),
    memberProcs: get('--member-procs', 2),
    flushPolicy: (() => {
      const i = argv.indexOf('--flush-policy');
      return i >= 0 ? argv[i + 1] : '';
    })(),
    loadBatch: get('--load-batch', 50),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

// --- Child roles ---------------------------------------------------------------------------------

/** --serve DIR: a broker (startBroker serves sluice.v1.Groups) on an ephemeral port; sends the address. */
async function serve(dataDir: string): Promise<void> {
  const { startBroker } = await import('../src/server/index.js');
  const running = await startBroker({ dataDir, grpcAddress: '127.0.0.1:0', httpAddress: null });
  process.send!({ address: running.grpcAddress, brokerAddress: running.grpcAddress });
  const stop = (): void => void running.close().finally(() => process.exit(0));
  process.on('disconnect', stop);
  process.on('SIGTERM', stop);
}

function makeBatches(perBatch: number): Buffer[] {
  const now = Date.now();
  return Array.from({ length: 4 }, (_, b) =>
    encodeBatch(Array.from({ length: perBatch }, (_, i) => ({ key: null, value: Buffer.alloc(VALUE_BYTES, (b * 7 + i) & 0xff), timestampMs: now }))),
  );
}

/** Writes `records` records round-robin over the partitions (0 = until disconnected), 8 requests in flight. */
async function produce(address: string, partitions: number, records: number, ratePerSec: number, perBatch: number): Promise<void> {
  const conn = new Connection({ brokers: address });
  const batches = makeBatches(perBatch);
  let sent = 0;
  let next = 0;
  const started = Date.now();
  const stopAt = records > 0 ? records : Infinity;
  const worker = async (): Promise<void> => {
    while (sent < stopAt && process.connected !== false) {
      const partition = next++ % partitions;
      sent += perBatch;
      await conn.unary(conn.broker, conn.broker.produce, { topic: TOPIC, partition, records: [], recordBatch: batches[partition % batches.length], acks: 0, producerEpoch: 0, baseSequence: 0 });
      if (ratePerSec > 0) {
        const ahead = sent / ratePerSec - (Date.now() - started) / 1000;
        if (ahead > 0) await sleep(ahead * 1000);
      }
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  conn.close();
}

// --- Main ----------------------------------------------------------------------------------------

interface Member {
  consumer: GroupConsumer;
  /** Arrival time and partition of every batch (bounded). */
  arrivals: number[];
  partitions: number[];
  count: number;
  done: Promise<void>;
}

/** `decode` false: the handler counts records without decoding them (the delivery path alone). */
function member(address: string, groupId: string, onRecords?: (n: number) => void, decode = true): Member {
  const consumer = new GroupConsumer({ brokers: address, groupId, sessionTimeoutMs: 10_000, creditRecords: 200_000, creditBytes: 64 * 1024 * 1024 }).subscribe([TOPIC]);
  const m: Member = { consumer, arrivals: [], partitions: [], count: 0, done: Promise.resolve() };
  m.done = consumer.run((batch) => {
    m.arrivals.push(performance.now());
    m.partitions.push(batch.partition);
    if (m.arrivals.length > 200_000) {
      m.arrivals.splice(0, 100_000);
      m.partitions.splice(0, 100_000);
    }
    const n = decode ? batch.records.length : batch.recordCount;
    m.count += n;
    onRecords?.(n);
  });
  return m;
}

/** Longest gap between batches of the given partitions (all when null) within [from, to]. */
function longestGap(m: Member, from: number, to: number, only: Set<number> | null = null): number {
  let last = -1;
  let gap = 0;
  for (let i = 0; i < m.arrivals.length; i++) {
    if (only !== null && !only.has(m.partitions[i])) continue;
    const t = m.arrivals[i];
    if (t < from) {
      last = t;
      continue;
    }
    if (t > to) break;
    if (last >= 0) gap = Math.max(gap, t - last);
    last = t;
  }
  return gap;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const self = fileURLToPath(import.meta.url);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-groups-'));
  const children: ChildProcess[] = [];
  const spawnRole = (role: string[]): ChildProcess => {
    const c = fork(self, role, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(c);
    return c;
  };
  try {
    const server = spawnRole(['--serve', dataDir]);
    const { address, brokerAddress } = await new Promise<{ address: string; brokerAddress: string }>((resolve, reject) => {
      server.once('message', (m) => resolve(m as { address: string; brokerAddress: string }));
      server.once('exit', (code) => reject(new Error(`broker exited with ${code}`)));
    });
    const admin = new Admin({ brokers: brokerAddress });
    await admin.createTopic(TOPIC, { partitions: args.partitions, configs: args.flushPolicy ? { 'flush.policy': args.flushPolicy } : {} });
    admin.close();

    // 1. Backlog and throughput.
    const fillStarted = performance.now();
    const filler = spawnRole(['--produce', brokerAddress, String(args.partitions), String(args.records), '0']);
    await new Promise((r) => filler.once('exit', r));
    const fillMs = performance.now() - fillStarted;
    /** Starts a group of members on the backlog and returns records/s from its first batch to its last. */
    const readBacklog = async (groupId: string, decode: boolean): Promise<{ rate: number; members: Member[] }> => {
      let consumed = 0;
      let first = 0;
      let last = 0;
      const onRecords = (n: number): void => {
        if (first === 0) first = performance.now();
        consumed += n;
        last = performance.now();
      };
      const ms = Array.from({ length: args.members }, () => member(address, groupId, onRecords, decode));
      const deadline = Date.now() + 120_000;
      while (consumed < args.records && Date.now() < deadline) await sleep(20);
      return { rate: consumed / ((last - first) / 1000), members: ms };
    };
    const raw = await readBacklog('bench-delivery', false);
    await Promise.all(raw.members.map((m) => m.consumer.stop()));
    // The same, decoded, with the members spread over --member-procs processes (as real consumers are).
    const procs = Array.from({ length: args.memberProcs }, (_, i) =>
      spawnRole(['--consume', address, 'bench-procs', String(Math.floor(args.members / args.memberProcs) + (i < args.members % args.memberProcs ? 1 : 0))]),
    );
    const progress = new Map<ChildProcess, { n: number; first: number; last: number }>();
    for (const c of procs) c.on('message', (m) => progress.set(c, m as { n: number; first: number; last: number }));
    const procDeadline = Date.now() + 120_000;
    const procTotal = (): number => [...progress.values()].reduce((a, p) => a + p.n, 0);
    while (procTotal() < args.records && Date.now() < procDeadline) await sleep(50);
    const firstAll = Math.min(...[...progress.values()].map((p) => p.first));
    const lastAll = Math.max(...[...progress.values()].map((p) => p.last));
    const multiProcRate = procTotal() / ((lastAll - firstAll) / 1000);
    for (const c of procs) c.kill('SIGTERM');

    const decoded = await readBacklog(GROUP, true);
    const members = decoded.members;
    const throughput = decoded.rate;

    // 2. Rebalances under load.
    // Small batches, often: every partition gets data every ~50 ms, so a pause is visible as a gap.
    const load = spawnRole(['--produce', brokerAddress, String(args.partitions), '0', String(args.loadRate), String(args.loadBatch)]);
    await sleep(1_000);
    const groups = new GroupAdmin({ brokers: address });
    const waitStable = async (membersWanted: number): Promise<number> => {
      const limit = performance.now() + 30_000;
      while (performance.now() < limit) {
        const d = await groups.describeGroup(GROUP);
        if (d.state === 'STABLE' && d.members.length === membersWanted) return performance.now();
        await sleep(2);
      }
      throw new Error('the group did not reach steady state within 30 s');
    };
    await waitStable(args.members);
    // Stalls of this process's own event loop show up as gaps too: measured beside them.
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const joinMs: number[] = [];
    const pauses: number[] = [];
    const baselines: number[] = [];
    for (let round = 0; round < args.rounds; round++) {
      const quietFrom = performance.now();
      await sleep(300);
      for (const m of members) baselines.push(longestGap(m, quietFrom, performance.now()));
      const before = members.map((m) => new Set(m.consumer.assignment().map((p) => p.partition)));
      const t0 = performance.now();
      const extra = member(address, GROUP);
      const steady = await waitStable(args.members + 1);
      joinMs.push(steady - t0);
      await sleep(200);
      const windowEnd = performance.now();
      // Each member's partitions that did not move: their batches must keep coming.
      members.forEach((m, i) => {
        const kept = new Set([...before[i]].filter((p) => m.consumer.assignment().some((a) => a.partition === p)));
        if (kept.size > 0) pauses.push(longestGap(m, t0, windowEnd, kept));
      });
      await extra.consumer.stop();
      await extra.done.catch(() => {});
      await waitStable(args.members);
    }
    loopDelay.disable();
    groups.close();
    load.kill('SIGTERM');
    await Promise.all(members.map((m) => m.consumer.stop()));

    const results = {
      partitions: args.partitions,
      members: args.members,
      backlogRecords: args.records,
      backlogProduceRecordsPerSec: Math.round(args.records / (fillMs / 1000)),
      consumeRecordsPerSec: Math.round(Math.max(throughput, multiProcRate)),
      consumeOneProcessRecordsPerSec: Math.round(throughput),
      consumeMultiProcessRecordsPerSec: Math.round(multiProcRate),
      memberProcesses: args.memberProcs,
      deliveryOnlyRecordsPerSec: Math.round(raw.rate),
      consumeMBPerSec: Math.round((throughput * VALUE_BYTES) / 1e6),
      rounds: args.rounds,
      joinToSteadyP50Ms: Math.round(pct(joinMs, 50)),
      joinToSteadyP99Ms: Math.round(pct(joinMs, 99)),
      unmovedMembersMeasured: pauses.length,
      unmovedLongestPauseMs: Math.round(Math.max(...pauses)),
      unmovedPauseP99Ms: Math.round(pct(pauses, 99)),
      baselineLongestGapMs: Math.round(Math.max(...baselines)),
      consumerEventLoopDelayMaxMs: Math.round(loopDelay.max / 1e6),
      consumerEventLoopDelayP99Ms: Math.round(loopDelay.percentile(99) / 1e6),
      targets: { joinToSteadyP99Ms: 500, unmovedLongestPauseMs: 50, consumeRecordsPerSec: 1_500_000 },
    };
    if (args.json) {
      process.stdout.write(JSON.stringify(results, null, 2) + '\n');
    } else {
      const rows: [string, string, string][] = [
        ['group consume throughput (100 B records, decoded)', `${results.consumeRecordsPerSec.toLocaleString()} rec/s (${results.consumeMBPerSec} MB/s)`, '≥ 1,500,000 rec/s'],
        [`  members in ${args.memberProcs} processes`, `${results.consumeMultiProcessRecordsPerSec.toLocaleString()} rec/s`, ''],
        ['  members in 1 process (one event loop decodes all)', `${results.consumeOneProcessRecordsPerSec.toLocaleString()} rec/s`, ''],
        ['  delivery only (records counted, not decoded)', `${results.deliveryOnlyRecordsPerSec.toLocaleString()} rec/s`, ''],
        ['join-to-steady-state, 11th member (p50 / p99)', `${results.joinToSteadyP50Ms} / ${results.joinToSteadyP99Ms} ms`, 'p99 ≤ 500 ms'],
        ['longest pause of unmoved partitions\' members', `${results.unmovedLongestPauseMs} ms (p99 ${results.unmovedPauseP99Ms} ms, n=${results.unmovedMembersMeasured})`, '< 50 ms'],
        ['  baseline: longest gap, quiet windows', `${results.baselineLongestGapMs} ms`, ''],
        ['  consumers\' event-loop delay (max / p99)', `${results.consumerEventLoopDelayMaxMs} / ${results.consumerEventLoopDelayP99Ms} ms`, ''],
        ['backlog produce (setup)', `${results.backlogProduceRecordsPerSec.toLocaleString()} rec/s`, ''],
      ];
      const w0 = Math.max(...rows.map((r) => r[0].length));
      const w1 = Math.max(...rows.map((r) => r[1].length));
      console.log(`consumer groups: ${args.members} members, ${args.partitions} partitions, ${args.rounds} rebalance rounds`);
      console.log(`${'METRIC'.padEnd(w0)}  ${'RESULT'.padEnd(w1)}  TARGET`);
      for (const r of rows) console.log(`${r[0].padEnd(w0)}  ${r[1].padEnd(w1)}  ${r[2]}`);
    }
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await sleep(500);
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** --consume ADDRESS GROUP N: N decoding members; reports {n, first, last} (epoch ms) to the parent. */
function consumeRole(address: string, groupId: string, count: number): void {
  const state = { n: 0, first: 0, last: 0 };
  const now = (): number => performance.timeOrigin + performance.now();
  for (let i = 0; i < count; i++) {
    member(address, groupId, (n) => {
      if (state.first === 0) state.first = now();
      state.n += n;
      state.last = now();
    });
  }
  setInterval(() => process.send?.(state), 50);
  process.on('SIGTERM', () => process.exit(0));
}

const argv = process.argv.slice(2);
if (argv[0] === '--serve') await serve(argv[1]);
else if (argv[0] === '--consume') consumeRole(argv[1], argv[2], Number(argv[3]));
else if (argv[0] === '--produce') {
  await produce(argv[1], Number(argv[2]), Number(argv[3]), Number(argv[4]), Number(argv[5] ?? RECORDS_PER_BATCH));
  process.exit(0);
} else {
  await main();
  process.exit(0);
}
