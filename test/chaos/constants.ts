/**
 * The chaos harness's named bounds (test code: the broker's own limits live in src/constants.ts).
 * Units last. The relations between them are asserted at the bottom.
 */
import assert from 'node:assert/strict';
import { CONTROLLER_TICK_MS, RAFT_ELECTION_TICKS_DEFAULT, REPLICA_ELECTION_TICKS, SHARD_TICK_MS } from '../../src/constants.js';

/** How long a partition's leader may be silent before an election starts (ticks x tick length). */
export const ELECTION_TIMEOUT_MS = RAFT_ELECTION_TICKS_DEFAULT * SHARD_TICK_MS;

/**
 * On a cluster: the longest randomized election timeout of a partition replica or of the controller
 * (Raft draws each timeout from [T, 2T)), so a pause longer than this surely lets the others elect.
 */
export const CLUSTER_ELECTION_TIMEOUT_MS_MAX = Math.max(2 * REPLICA_ELECTION_TICKS * SHARD_TICK_MS, 2 * RAFT_ELECTION_TICKS_DEFAULT * CONTROLLER_TICK_MS);

/**
 * Node i of a run listens on 127.0.0.<CHAOS_HOST_BASE + i> unless `--hosts-from` says otherwise; two
 * runs side by side need disjoint blocks (their ports are picked free per address, but only one run
 * at a time knows which it picked).
 */
export const CHAOS_HOST_BASE = 10;
/**
 * The test files' own blocks (node i on 127.0.0.<base + i>), disjoint from each other and from
 * CHAOS_HOST_BASE's block for `npm run chaos`: vitest runs two files at once, and two files on one
 * block could each find the same port free before either binds it (CI failed once on exactly that).
 * Each block has room for 9 nodes.
 */
export const CHAOS_TEST_HOST_BASES = {
  chaos: 20,
  chaosCluster: 30,
  chaosMembership: 40,
  clusterRestart: 50,
  partitionProcess: 60,
  chaosTwins: 120,
} as const;
/** The highest last octet a node may get: 127.0.0.255 is the broadcast-looking end of the block. */
export const CHAOS_HOST_LAST = 254;
/**
 * Nodes' ports come from [MIN, MAX): below Linux's default ephemeral range (32768-60999), so no
 * `listen(0)` or outgoing connection of another process takes one between the pick and the bind.
 */
export const CHAOS_PORT_MIN = 20_000;
export const CHAOS_PORT_MAX = 32_000;
/** Candidates tried per pick, STRIDE apart (a prime, so the walk does not cycle early). */
export const CHAOS_PORT_TRIES = 64;
export const CHAOS_PORT_STRIDE = 7_919;

/**
 * `--net netns` (netns.ts): host block N is the subnet NETNS_SUBNET_PREFIX.N.0/24, node i = .i, the
 * harness's address on the bridge = .NETNS_HARNESS_HOST. Each node has a namespace of its own, so
 * every node listens on the same fixed ports there (no other process can take them).
 */
export const NETNS_SUBNET_PREFIX = '10.211';
export const NETNS_HARNESS_HOST = 254;
export const NETNS_GRPC_PORT = 7070;
export const NETNS_HTTP_PORT = 7071;
/** Bound on one `ip` command (namespace setup, a cut, a heal, teardown). */
export const NETNS_CMD_MS = 10_000;

/** Quiet time at the start of a run (load warms up) and at its end (everything healed, load goes on). */
export const CHAOS_LEAD_IN_MS = 1_500;
export const CHAOS_TAIL_MS = 3_000;
/** Quiet time between two faults, drawn from this range. */
export const CHAOS_GAP_MS_MIN = 500;
export const CHAOS_GAP_MS_MAX = 2_000;
/** How long a fault lasts, drawn per kind from these ranges. */
export const CHAOS_KILL_DOWN_MS_MIN = 200;
export const CHAOS_KILL_DOWN_MS_MAX = 2_500;
/** SIGSTOP lasts longer than an election timeout, so a cluster would elect a new leader meanwhile. */
export const CHAOS_PAUSE_MS_MIN = ELECTION_TIMEOUT_MS + 500;
export const CHAOS_PAUSE_MS_MAX = ELECTION_TIMEOUT_MS + 3_000;
/** On a cluster a pause outlasts the longest randomized election timeout of any group. */
export const CLUSTER_PAUSE_MS_MIN = CLUSTER_ELECTION_TIMEOUT_MS_MAX + 500;
export const CLUSTER_PAUSE_MS_MAX = CLUSTER_ELECTION_TIMEOUT_MS_MAX + 3_000;
export const CHAOS_PARTITION_MS_MIN = 1_000;
export const CHAOS_PARTITION_MS_MAX = 4_000;
export const CHAOS_DISK_MS_MIN = 1_000;
export const CHAOS_DISK_MS_MAX = 4_000;
/**
 * Membership changes (cluster runs): how long the harness follows a move of one partition, or a
 * decommission before it recommissions the node, drawn from these ranges. A move that is not done by
 * then is left to run ("running at heal"); measured on this machine a move takes 3.4-6.8 s and a
 * decommission of a node holding 3 partitions 4-16 s (docs/cluster.md "Moves"); under faults, in a
 * 4-node run (seeds 7001-7010, 3-8 s and 4-10 s bounds), none had completed in its time.
 */
export const CHAOS_MOVE_MS_MIN = 4_000;
export const CHAOS_MOVE_MS_MAX = 12_000;
export const CHAOS_DECOMMISSION_MS_MIN = 6_000;
export const CHAOS_DECOMMISSION_MS_MAX = 14_000;
/**
 * A membership change runs while other faults run: the next fault starts this long after the change
 * started (drawn), while the next membership change waits for this one's end and a quiet gap.
 */
export const CHAOS_MEMBERSHIP_OVERLAP_MS_MIN = 300;
export const CHAOS_MEMBERSHIP_OVERLAP_MS_MAX = 2_000;
/** Chance that a move takes back a partition an earlier move of the schedule moved. */
export const CHAOS_MOVE_BACK_CHANCE = 0.5;
/** How often the harness asks ListReassignments while it follows a move or a decommission. */
export const CHAOS_MEMBERSHIP_POLL_MS = 250;
/** Bound on a recommission getting through after a decommission's time ended (the cluster must return to full size). */
export const CHAOS_RECOMMISSION_MS = 30_000;
/** After the faults: bound on every move in progress completing before the final read and the replica comparison. */
export const CLUSTER_MOVES_SETTLE_MS = 60_000;
/** A slow disk delays each fdatasync by this much. */
export const CHAOS_SLOW_FSYNC_MS_MIN = 50;
export const CHAOS_SLOW_FSYNC_MS_MAX = 400;
/** Size of a node's tmpfs data dir when disk-full faults run (root only). */
export const CHAOS_TMPFS_BYTES = 256 * 1024 * 1024;

/** Workload: partitions per topic, producers per target, and each producer's pace and window. */
export const WORKLOAD_PARTITIONS = 4;
export const WORKLOAD_PRODUCERS_IDEMPOTENT = 2;
export const WORKLOAD_PRODUCERS_PLAIN = 1;
export const WORKLOAD_WRITES_PER_SECOND = 100;
export const WORKLOAD_IN_FLIGHT_MAX = 32;
/** Deadline of one client call: past it the outcome is unknown. Short, so faults show up as unknowns quickly. */
export const WORKLOAD_REQUEST_TIMEOUT_MS = 3_000;
/** How often the pollers ask for the high watermarks, committed group offsets and leaders. */
export const WORKLOAD_POLL_MS = 250;
/** Back-off before a reader or group member that failed starts again. */
export const WORKLOAD_RESTART_MS = 200;
/** Bound on waiting for in-flight writes and for readers to catch up once the run ends. */
export const WORKLOAD_DRAIN_MS = 15_000;

/** Cluster runs: the workload topic's replication factor (capped at the node count). */
export const CLUSTER_REPLICATION_FACTOR = 3;
/** Controller voters: the first nodes, an odd number, at most this many (3 of 3, 3 of 4, 5 of 5). */
export const CLUSTER_CONTROLLER_VOTERS_MAX = 5;
/** Deadline of one probe of the cluster (metadata, a replica's high watermark). */
export const CLUSTER_PROBE_TIMEOUT_MS = 2_000;
/** Bound on the cluster forming (every node ready, every partition led) and on a node's readiness after a restart. */
export const CLUSTER_READY_MS = 60_000;
/** A restarted node slower than this to turn ready gets a note with the last reason /readyz gave. */
export const SLOW_READY_NOTE_MS = 5_000;
/** Bound on every replica reaching the leader's high watermark after the writes stop. */
export const CLUSTER_CONVERGE_MS = 30_000;

/** Bound on a broker's start (recovery included) and on its clean stop. */
export const NODE_START_MS = 60_000;
export const NODE_STOP_MS = 15_000;

assert.ok(CHAOS_PAUSE_MS_MIN > ELECTION_TIMEOUT_MS, 'a pause must outlast an election timeout');
assert.ok(CLUSTER_PAUSE_MS_MIN > CLUSTER_ELECTION_TIMEOUT_MS_MAX, 'a pause on a cluster must outlast every randomized election timeout');
assert.ok(CHAOS_GAP_MS_MIN <= CHAOS_GAP_MS_MAX && CHAOS_KILL_DOWN_MS_MIN <= CHAOS_KILL_DOWN_MS_MAX);
assert.ok(WORKLOAD_DRAIN_MS > WORKLOAD_REQUEST_TIMEOUT_MS, 'draining must outlast one call');
assert.ok(CHAOS_MEMBERSHIP_OVERLAP_MS_MAX < Math.min(CHAOS_MOVE_MS_MIN, CHAOS_DECOMMISSION_MS_MIN), 'the fault after a membership change starts while the change still runs');
assert.ok(CHAOS_MOVE_MS_MIN <= CHAOS_MOVE_MS_MAX && CHAOS_DECOMMISSION_MS_MIN <= CHAOS_DECOMMISSION_MS_MAX);
