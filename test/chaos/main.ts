/**
 * `npm run chaos -- [--nodes N] [--schedules N] [--duration S] [--seed X] [--faults kill,pause,...]
 *                   [--out DIR] [--bug ack-before-fsync|commit-without-quorum|hw-from-log-end] [--keep-data [--node-logs LEVEL]] [--idempotent] [--preset kill-all]
 *                   [--hosts-from N] [--net proxy|netns]`
 *
 * Runs N schedules with seeds X, X+1, ... (default: X from the clock, printed), each writing
 * chaos/out/<seed>/, and prints a summary table. `--seed X --schedules 1` replays one run (same
 * faults, same times). On a cluster (--nodes 3+) the default faults include the membership changes
 * `move` and `decommission` (the latter drawn only with 4+ nodes). Exit 0 when every run is clean, 1
 * when the checker found an anomaly (expected with --bug), 2 on a usage error. `--net netns` (root on
 * Linux, a cluster) puts each node in a network namespace of its own and cuts partitions in the kernel
 * (netns.ts); its namespaces, veths and bridge are removed at the end, on an error and on Ctrl-C.
 * See docs/chaos.md.
 */
import path from 'node:path';
import { CHAOS_HOST_BASE, CHAOS_HOST_LAST } from './constants.js';
import { NET_MODES, netnsUnavailable, teardownAllNetns, type NetMode } from './netns.js';
import { canMountTmpfs } from './nodes.js';
import { runSchedule, type RunResult } from './run.js';
import { CLUSTER_FAULT_KINDS, drawableKinds, FAULT_KINDS, isMembership, killAllSchedule, parseFaultKinds, type FaultKind } from './schedule.js';

/**
 * The deliberate bugs a run can put on its brokers: the storage hook (any node count), and the
 * simulator's bug modes that have a twin on a cluster (SLUICE_TEST_REPLICA_BUGS; docs/chaos.md says
 * which have one and why the others do not).
 */
const BUGS = ['ack-before-fsync', 'commit-without-quorum', 'hw-from-log-end'] as const;
type Bug = (typeof BUGS)[number];
const REPLICA_TWINS: readonly Bug[] = ['commit-without-quorum', 'hw-from-log-end'];
/** --node-logs: the broker's pino levels. */
const NODE_LOG_LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error'];

interface Args {
  nodes: number;
  schedules: number;
  durationS: number;
  seed: number;
  kinds: FaultKind[];
  out: string;
  bug: Bug | null;
  keepData: boolean;
  idempotent: boolean;
  nodeLogLevel: string | undefined;
  preset: 'kill-all' | null;
  hostBase: number;
  net: NetMode;
}

function parseArgs(argv: readonly string[]): Args {
  const single = FAULT_KINDS.filter((k) => !isMembership(k));
  const rootless = single.filter((k) => k !== 'disk-full');
  const a: Args = { nodes: 1, schedules: 1, durationS: 20, seed: Date.now() % 1_000_000, kinds: canMountTmpfs() ? single : rootless, out: 'chaos/out', bug: null, keepData: false, nodeLogLevel: undefined, idempotent: false, preset: null, hostBase: CHAOS_HOST_BASE, net: 'proxy' };
  let kindsGiven = false;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--nodes') a.nodes = Number(v());
    else if (k === '--schedules') a.schedules = Number(v());
    else if (k === '--duration') a.durationS = Number(v());
    else if (k === '--seed') a.seed = Number(v());
    else if (k === '--faults') {
      a.kinds = parseFaultKinds(v());
      kindsGiven = true;
    }
    else if (k === '--out') a.out = v();
    else if (k === '--keep-data') a.keepData = true;
    else if (k === '--hosts-from') a.hostBase = Number(v());
    else if (k === '--idempotent') a.idempotent = true;
    else if (k === '--node-logs') {
      const level = v();
      if (!NODE_LOG_LEVELS.includes(level)) throw new Error(`--node-logs ${level}: one of ${NODE_LOG_LEVELS.join(', ')}`);
      a.nodeLogLevel = level;
    }
    else if (k === '--net') {
      const m = v();
      if (!(NET_MODES as readonly string[]).includes(m)) throw new Error(`unknown --net ${m}; known: ${NET_MODES.join(', ')}`);
      a.net = m as NetMode;
    }
    else if (k === '--preset') {
      const p = v();
      if (p !== 'kill-all') throw new Error(`unknown preset ${p}; known: kill-all`);
      a.preset = p;
    }
    else if (k === '--bug') {
      const b = v();
      if (!(BUGS as readonly string[]).includes(b)) throw new Error(`unknown bug ${b}; known: ${BUGS.join(', ')}`);
      a.bug = b as Bug;
    } else throw new Error(`unknown argument ${k} (see docs/chaos.md)`);
  }
  for (const [name, n, min] of [['--nodes', a.nodes, 1], ['--schedules', a.schedules, 1], ['--duration', a.durationS, 8], ['--seed', a.seed, 0]] as const) {
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${name} must be an integer ≥ ${min}, got ${n}`);
  }
  if (!Number.isSafeInteger(a.hostBase) || a.hostBase < 1 || a.hostBase + a.nodes > CHAOS_HOST_LAST) throw new Error(`--hosts-from: nodes take 127.0.0.<N+1> to 127.0.0.<N+nodes>, so N must be an integer from 1 to ${CHAOS_HOST_LAST - a.nodes}; got ${a.hostBase}`);
  if (a.bug !== null && REPLICA_TWINS.includes(a.bug) && a.nodes < 3) throw new Error(`--bug ${a.bug} acts on replicated partitions: it needs a cluster (--nodes 3 or more)`);
  if (a.nodeLogLevel !== undefined && !a.keepData) throw new Error('--node-logs writes each node\'s log beside its data dir (chaos/out/<seed>/nodes/nN/node.log): add --keep-data');
  if (a.nodes === 2) throw new Error('--nodes: 1 (a single broker) or 3 and more (a cluster; 2 nodes have no majority to lose one of)');
  if (a.nodes >= 3) {
    // A cluster: disk-full only when asked (it needs root for a tmpfs per node). Membership changes
    // are in by default; a decommission is drawn only with more nodes than the replication factor.
    if (!kindsGiven) a.kinds = ['kill', 'pause', 'partition', 'slow-disk', 'move', 'decommission'];
    const unsupported = a.kinds.filter((k) => !CLUSTER_FAULT_KINDS.includes(k));
    if (unsupported.length > 0) throw new Error(`--faults ${unsupported.join(',')}: not on a cluster yet (cluster faults: ${CLUSTER_FAULT_KINDS.join(', ')})`);
    if (drawableKinds(a.kinds, a.nodes).length === 0) throw new Error(`--faults ${a.kinds.join(',')}: decommission needs more nodes than the replication factor (3); use --nodes 4 or more, or add other kinds`);
  } else {
    const membership = a.kinds.filter(isMembership);
    if (membership.length > 0) throw new Error(`--faults ${membership.join(',')}: membership changes need a cluster (--nodes 3 or more)`);
  }
  if (a.net === 'netns') {
    if (a.nodes < 3) throw new Error('--net netns: a namespace per node is for a cluster (--nodes 3 or more); one node is partitioned through its client proxy');
    const why = netnsUnavailable();
    if (why !== null) throw new Error(why);
  }
  if (a.kinds.includes('disk-full') && !canMountTmpfs()) throw new Error('disk-full faults need a tmpfs per node: run as root on Linux, or leave disk-full out of --faults');
  return a;
}

function table(results: RunResult[]): string {
  const head = ['schedule', 'faults', 'acked', 'unknown', 'lost', 'inconsistent', 'duplicated', 'worst unavail.', 'membership done/run/ref/unans', 'verdict'];
  const rows = results.map((r) => {
    const v = r.verdict;
    const kinds = [...new Set(r.schedule.faults.map((f) => f.kind))].join(',') || '-';
    const m = v.membership;
    const membership = m.completed + m.running + m.refused + m.unanswered === 0 ? '-' : `${m.completed}/${m.running}/${m.refused}/${m.unanswered}${v.unsettled === '' ? '' : ' UNSETTLED'}`;
    return [String(r.seed), `${r.schedule.faults.length} (${kinds})`, String(v.acked), String(v.unknown), String(v.lost), String(v.inconsistent), String(v.duplicated), v.worstUnavailableMs === null ? 'never' : `${Math.round(v.worstUnavailableMs)} ms`, membership, v.ok ? 'clean' : 'FAIL'];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i])).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

async function main(): Promise<number> {
  let a: Args;
  try {
    a = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`chaos: ${(err as Error).message}`);
    return 2;
  }
  // Ctrl-C or a kill: the namespaces, veths and bridge of the run go with the harness (their brokers
  // are killed there); a crash is covered by netns.ts's own 'exit' listener.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      teardownAllNetns();
      console.error(`chaos: ${sig}: stopped`);
      process.exit(130);
    });
  }
  const results: RunResult[] = [];
  const errors: number[] = [];
  console.log(`chaos: ${a.schedules} schedule(s) of ${a.durationS} s on ${a.nodes} node(s), faults ${a.kinds.join(',')}, seeds ${a.seed}..${a.seed + a.schedules - 1}, network ${a.net}${a.bug ? `, BUG ${a.bug}` : ''}`);
  const notDrawn = a.kinds.filter((k) => !drawableKinds(a.kinds, a.nodes).includes(k));
  if (notDrawn.length > 0) console.log(`chaos: ${notDrawn.join(',')} not drawn on ${a.nodes} nodes (a decommission at replication factor 3 needs a 4th node to drain to)`);
  for (let i = 0; i < a.schedules; i++) {
    const seed = a.seed + i;
    console.log(`schedule ${i + 1}/${a.schedules}: seed ${seed}`);
    let r: RunResult;
    try {
      r = await runSchedule({ seed, nodes: a.nodes, durationMs: a.durationS * 1000, kinds: a.kinds, outRoot: path.resolve(a.out), ackBeforeFsync: a.bug === 'ack-before-fsync', replicaBugs: a.bug !== null && REPLICA_TWINS.includes(a.bug) ? [a.bug] : undefined, keepData: a.keepData, nodeLogLevel: a.nodeLogLevel, idempotent: a.idempotent, hostBase: a.hostBase, net: a.net, schedule: a.preset === 'kill-all' ? killAllSchedule(seed, a.nodes) : undefined, log: (l) => console.log(l) });
    } catch (err) {
      // The harness itself failed (a broker that would not start again, say): a failed schedule, not a crash of the whole set.
      console.log(`  HARNESS ERROR: ${(err as Error)?.stack ?? String(err)}`);
      errors.push(seed);
      continue;
    }
    results.push(r);
    console.log(`  ${r.verdict.ok ? 'clean' : 'ANOMALIES'}: ${path.relative(process.cwd(), r.outDir)}/report.html`);
  }
  console.log(`\nnetwork: ${a.net}${a.net === 'netns' ? ' (a namespace per node, partitions cut in the kernel)' : ' (loopback, partitions through TCP proxies)'}\n${table(results)}`);
  const failed = [...results.filter((r) => !r.verdict.ok).map((r) => r.seed), ...errors];
  if (errors.length > 0) console.log(`\nharness errors (no verdict) in seeds ${errors.join(', ')}`);
  for (const r of results.filter((x) => x.verdict.unsettled !== '')) console.log(`\nseed ${r.seed}: membership not settled at the end (not a data anomaly, reported): ${r.verdict.unsettled}`);
  if (failed.length > 0) console.log(`\n${failed.length} schedule(s) failed; replay one with: npm run chaos -- --seed ${failed[0]} --schedules 1 --nodes ${a.nodes} --duration ${a.durationS} --faults ${a.kinds.join(',')}${a.bug ? ` --bug ${a.bug}` : ''}${a.idempotent ? ' --idempotent' : ''}${a.preset ? ` --preset ${a.preset}` : ''}${a.hostBase !== CHAOS_HOST_BASE ? ` --hosts-from ${a.hostBase}` : ''}${a.net !== 'proxy' ? ` --net ${a.net}` : ''} (add --keep-data --node-logs debug for the brokers' own logs)`);
  return failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`chaos: ${(err as Error)?.stack ?? String(err)}`);
    process.exit(1);
  },
);
