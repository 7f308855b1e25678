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
 *   --json                   print a JSON summary line
 * Defaults: 20,000 seeds of 2,000 steps.
 */
import { RAFT_BUGS, type RaftBug } from '../../src/raft/index.js';
import { DRIVER_BUGS, type DriverBug } from './replica.js';
import { type SimOptions, type SimResult, runSeed } from './sim.js';

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
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = { seeds: 20_000, first: 1, steps: 2_000, seed: null, traceHash: false, bug: null, json: false };
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

function printFailure(r: SimResult, steps: number, bug: Bug | null): void {
  // Re-run the failing seed with the text trace on: replay is exact, so this is the same execution.
  const full = runSeed({ seed: r.seed, steps, ...bugOptions(bug), fullTrace: true });
  console.log(`FAIL seed ${r.seed}: ${r.failure}`);
  console.log(`replay: npm run sim -- --seed ${r.seed} --steps ${steps}${bug ? ` --bug ${bug}` : ''} --trace-hash`);
  console.log('--- last events ---');
  for (const line of full.trace) console.log(line);
}

function main(): number {
  const args = parseArgs(process.argv.slice(2));
  const bugs = bugOptions(args.bug);
  if (args.seed !== null) {
    const r = runSeed({ seed: args.seed, steps: args.steps, ...bugs, fullTrace: !args.traceHash });
    if (!r.ok) printFailure(r, args.steps, args.bug);
    else console.log(`seed ${r.seed} ok: ${JSON.stringify(r.stats)}`);
    if (args.traceHash) console.log(r.traceHash);
    return r.ok ? 0 : 1;
  }
  const tty = process.stdout.isTTY === true;
  const t0 = performance.now();
  let passed = 0;
  let waived = 0;
  let failed: SimResult | null = null;
  for (let s = args.first; s < args.first + args.seeds; s++) {
    const r = runSeed({ seed: s, steps: args.steps, ...bugs });
    if (!r.ok) {
      failed = r;
      break;
    }
    passed++;
    waived += r.stats.livenessWaived;
    if (tty && passed % 50 === 0) {
      const rate = passed / ((performance.now() - t0) / 1000);
      process.stdout.write(`\r${passed}/${args.seeds} seeds ok (${rate.toFixed(0)} seeds/s)   `);
    }
  }
  if (tty) process.stdout.write('\r\x1b[K');
  const secs = (performance.now() - t0) / 1000;
  if (failed !== null) {
    printFailure(failed, args.steps, args.bug);
    if (args.bug !== null) console.log(`bug ${args.bug} caught by "${failed.checker}" at seed ${failed.seed} after ${passed} clean seeds`);
  } else {
    console.log(`${passed} seeds x ${args.steps} steps ok in ${secs.toFixed(1)} s (${(passed / secs).toFixed(1)} seeds/s)`);
    if (waived > 0) console.log(`liveness bound waived in ${waived} seeds (pre-vote and check-quorum off, an unaware removed voter)`);
    if (args.bug !== null) console.log(`bug ${args.bug} NOT caught in ${passed} seeds`);
  }
  if (args.json) {
    console.log(JSON.stringify({ seeds: passed + (failed ? 1 : 0), passed, livenessWaived: waived, failedSeed: failed?.seed ?? null, checker: failed?.checker ?? null, bug: args.bug, secs }));
  }
  return failed === null ? 0 : 1;
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 2;
}
