/**
 * CLI of the deterministic simulator (`npm run sim -- ...`).
 *
 *   --seeds N --steps M      run seeds 1..N (or from --first), exit 0 when all pass; on a failure print
 *                            the seed and a shortened trace and exit 1
 *   --seed S --steps M --trace-hash
 *                            replay one seed; the last line is the trace hash (the same on every run)
 *   --bug NAME               enable a deliberately broken code path in every node (a core bug from
 *                            RAFT_BUGS or a driver bug from DRIVER_BUGS); a failure is expected
 *                            (exit 1 = the checkers caught it)
 *   --replica KIND           the replica under test: `reference` (the reference driver around the bare
 *                            core, the default: fast) or `partition` (the real src/partition Partition
 *                            on the simulated disk SimFs, with 1-4 groups per node)
 *   --groups G               Raft groups per simulated node (1-4; default: the seed chooses)
 *   --lenient-hw-restart     (partition) a restarted replica's high watermark may come back lower than
 *                            before the crash (only counted). By default it may not: it is not
 *                            checked while the partition says it is provisional, and the first
 *                            settled one must be at least the one before (--strict-hw-restart, the
 *                            default, is still accepted)
 *   --log-from-zero          (reference) logs start at index 0 under a snapshot at -1, as a partition's
 *                            do, instead of at index 1
 *   --conf-changes           (partition) membership changes too: add a learner, promote it, remove a
 *                            learner or a voter, through Partition.proposeConfChange (the reference
 *                            replicas always do)
 *   --keep-going             run every seed even after a failure; print one line per failing seed
 *                            (seed, checker, message) and the count (exit 1 if any failed)
 *   --json                   print a JSON summary line
 * Defaults: 20,000 seeds of 2,000 steps.
 */
import { RAFT_BUGS, type RaftBug } from '../../src/raft/index.js';
import { DRIVER_BUGS, type DriverBug } from './replica.js';
import { REPLICA_KINDS, type ReplicaKind, SIM_GROUPS_MAX, type SimOptions, type SimResult, runSeedAsync } from './sim.js';

type Bug = RaftBug | DriverBug;
const ALL_BUGS: readonly string[] = [...RAFT_BUGS, ...DRIVER_BUGS];

/** The options that turn `bug` on, core or driver. */
function bugOptions(bug: Bug | null): Pick<SimOptions, 'bugs' | 'driverBugs'> {
  if (bug === null) return {};
  return (RAFT_BUGS as readonly string[]).includes(bug) ? { bugs: [bug as RaftBug] } : { driverBugs: [bug as DriverBug] };
}

interface Args {
  seeds: number;
  first: number;
  steps: number;
  seed: number | null;
  traceHash: boolean;
  bug: Bug | null;
  json: boolean;
  replica: ReplicaKind;
  groups: number | undefined;
  lenientHwRestart: boolean;
  keepGoing: boolean;
  logFromZero: boolean;
  confChanges: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { seeds: 20_000, first: 1, steps: 2_000, seed: null, traceHash: false, bug: null, json: false, replica: 'reference', groups: undefined, lenientHwRestart: false, keepGoing: false, logFromZero: false, confChanges: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--seeds') a.seeds = Number(v());
    else if (k === '--first') a.first = Number(v());
    else if (k === '--steps') a.steps = Number(v());
    else if (k === '--seed') a.seed = Number(v());
    else if (k === '--trace-hash') a.traceHash = true;
    else if (k === '--json') a.json = true;
    else if (k === '--strict-hw-restart') a.lenientHwRestart = false;
    else if (k === '--lenient-hw-restart') a.lenientHwRestart = true;
    else if (k === '--keep-going') a.keepGoing = true;
    else if (k === '--log-from-zero') a.logFromZero = true;
    else if (k === '--conf-changes') a.confChanges = true;
    else if (k === '--groups') {
      a.groups = Number(v());
      if (!Number.isSafeInteger(a.groups) || a.groups < 1 || a.groups > SIM_GROUPS_MAX) throw new Error(`--groups must be 1..${SIM_GROUPS_MAX}`);
    } else if (k === '--replica') {
      const r = v();
      if (!(REPLICA_KINDS as readonly string[]).includes(r)) throw new Error(`unknown replica ${r}; known: ${REPLICA_KINDS.join(', ')}`);
      a.replica = r as ReplicaKind;
    }
    else if (k === '--bug') {
      const b = v();
      if (!ALL_BUGS.includes(b)) throw new Error(`unknown bug ${b}; known: ${ALL_BUGS.join(', ')}`);
      a.bug = b as Bug;
    } else throw new Error(`unknown argument ${k}`);
  }
  for (const [name, n] of [['--seeds', a.seeds], ['--steps', a.steps], ['--first', a.first]] as const) {
    if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  }
  return a;
}

/** The simulator options every seed of this invocation shares. */
function simOptions(args: Args): Omit<SimOptions, 'seed'> {
  return { steps: args.steps, ...bugOptions(args.bug), replica: args.replica, groups: args.groups, lenientHwRestart: args.lenientHwRestart, logFromZero: args.logFromZero, confChanges: args.confChanges };
}

/** The flags that replay this invocation's configuration. */
function replayFlags(args: Args): string {
  let f = ` --steps ${args.steps} --replica ${args.replica}`;
  if (args.groups !== undefined) f += ` --groups ${args.groups}`;
  if (args.lenientHwRestart) f += ' --lenient-hw-restart';
  if (args.logFromZero) f += ' --log-from-zero';
  if (args.confChanges) f += ' --conf-changes';
  if (args.bug !== null) f += ` --bug ${args.bug}`;
  return f;
}

async function printFailure(r: SimResult, args: Args): Promise<void> {
  // Re-run the failing seed with the text trace on: replay is exact, so this is the same execution.
  const full = await runSeedAsync({ ...simOptions(args), seed: r.seed, fullTrace: true });
  console.log(`FAIL seed ${r.seed}: ${r.failure}`);
  console.log(`replay: npm run sim -- --seed ${r.seed}${replayFlags(args)} --trace-hash`);
  console.log('--- last events ---');
  for (const line of full.trace) console.log(line);
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const opts = simOptions(args);
  if (args.seed !== null) {
    const r = await runSeedAsync({ ...opts, seed: args.seed, fullTrace: !args.traceHash });
    if (!r.ok) await printFailure(r, args);
    else console.log(`seed ${r.seed} ok: ${JSON.stringify(r.stats)}`);
    if (args.traceHash) console.log(r.traceHash);
    return r.ok ? 0 : 1;
  }
  const tty = process.stdout.isTTY === true;
  const t0 = performance.now();
  let passed = 0;
  let waived = 0;
  let failed: SimResult | null = null;
  const failures: SimResult[] = [];
  for (let s = args.first; s < args.first + args.seeds; s++) {
    const r = await runSeedAsync({ ...opts, seed: s });
    if (!r.ok && args.keepGoing) {
      failures.push(r);
      console.log(`FAIL seed ${r.seed} [${r.checker}]: ${r.failure?.split('\n')[0]}`);
      continue;
    }
    if (!r.ok) {
      failed = r;
      break;
    }
    passed++;
    waived += r.stats.livenessWaived;
    if (tty && passed % (args.replica === 'partition' ? 1 : 50) === 0) {
      const rate = passed / ((performance.now() - t0) / 1000);
      process.stdout.write(`\r${passed}/${args.seeds} seeds ok (${rate.toFixed(0)} seeds/s)   `);
    }
  }
  if (tty) process.stdout.write('\r\x1b[K');
  const secs = (performance.now() - t0) / 1000;
  if (args.keepGoing) {
    console.log(`${args.replica}: ${passed} of ${args.seeds} seeds x ${args.steps} steps ok, ${failures.length} failed, in ${secs.toFixed(1)} s (${(args.seeds / secs).toFixed(2)} seeds/s)`);
    if (args.json) console.log(JSON.stringify({ replica: args.replica, seeds: args.seeds, passed, failedSeeds: failures.map((f) => f.seed), checkers: failures.map((f) => f.checker), secs }));
    return failures.length === 0 ? 0 : 1;
  }
  if (failed !== null) {
    await printFailure(failed, args);
    if (args.bug !== null) console.log(`bug ${args.bug} caught by "${failed.checker}" at seed ${failed.seed} after ${passed} clean seeds`);
  } else {
    console.log(`${args.replica}: ${passed} seeds x ${args.steps} steps ok in ${secs.toFixed(1)} s (${(passed / secs).toFixed(1)} seeds/s)`);
    if (waived > 0) console.log(`liveness bound waived in ${waived} seeds (pre-vote and check-quorum off, an unaware removed voter)`);
    if (args.bug !== null) console.log(`bug ${args.bug} NOT caught in ${passed} seeds`);
  }
  if (args.json) {
    console.log(JSON.stringify({ replica: args.replica, seeds: passed + (failed ? 1 : 0), passed, livenessWaived: waived, failedSeed: failed?.seed ?? null, checker: failed?.checker ?? null, bug: args.bug, secs }));
  }
  return failed === null ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exitCode = 2;
  },
);
