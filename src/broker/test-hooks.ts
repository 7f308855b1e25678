/**
 * TEST ONLY: the simulator's bug modes on a real broker's partition replicas, so the chaos harness
 * (test/chaos, docs/chaos.md "The TEST-ONLY broker hooks") can prove that its checker catches what
 * the simulator's checkers catch. `SLUICE_TEST_REPLICA_BUGS` is a comma list of names from the Raft
 * core's `RAFT_BUGS` (src/raft/config.ts) and the partition driver's `PARTITION_DRIVER_BUGS`
 * (src/partition/partition.ts), e.g. `commit-without-quorum,hw-from-log-end`. `startBroker` reads it
 * once, in cluster mode, and refuses to start on an unknown name; the broker then carries the bugs to
 * every partition replica it opens (the Raft core's `bugs` and the driver's `driverBugs`), and never
 * to the controller group, which the main thread runs without them. An environment variable rather
 * than a `serve` flag, like the storage hooks (src/storage/test-hooks.ts), so nobody finds it in
 * `--help`. Unset (production) it is nothing.
 */
import { SluiceError } from '../errors.js';
import { PARTITION_DRIVER_BUGS, type PartitionDriverBug } from '../partition/driver-bugs.js';
import { RAFT_BUGS, type RaftBug } from '../raft/index.js';

export const TEST_REPLICA_BUGS_ENV = 'SLUICE_TEST_REPLICA_BUGS';

/** Every name the variable accepts: the core's bugs, then the driver's. */
export const REPLICA_BUG_NAMES: readonly string[] = [...RAFT_BUGS, ...PARTITION_DRIVER_BUGS];

/** The bug modes of a node's partition replicas, split by the layer that has the switch. */
export interface ReplicaBugs {
  readonly raft: readonly RaftBug[];
  readonly driver: readonly PartitionDriverBug[];
}

/**
 * Parses a comma list of bug names (blanks around names ignored). Null when the list is empty. An
 * unknown name is an INVALID_CONFIG error naming it and every known one.
 */
export function parseReplicaBugs(raw: string | undefined): ReplicaBugs | null {
  const names = (raw ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) return null;
  const unknown = names.filter((n) => !REPLICA_BUG_NAMES.includes(n));
  if (unknown.length > 0) throw new SluiceError('INVALID_CONFIG', `${TEST_REPLICA_BUGS_ENV}: unknown bug ${unknown.join(', ')}; known: ${REPLICA_BUG_NAMES.join(', ')}`);
  const raft = RAFT_BUGS.filter((b) => names.includes(b));
  const driver = PARTITION_DRIVER_BUGS.filter((b) => names.includes(b));
  return { raft, driver };
}

/** The bugs `env` asks for (default: this process's environment), or null. */
export function replicaBugsFromEnv(env: NodeJS.ProcessEnv = process.env): ReplicaBugs | null {
  return parseReplicaBugs(env[TEST_REPLICA_BUGS_ENV]);
}
