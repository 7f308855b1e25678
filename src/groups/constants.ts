/**
 * Named limits and defaults of consumer groups. Units last. The checks at the bottom state how they
 * relate.
 */
import assert from 'node:assert/strict';
import { CLIENT_MEMORY_FETCH_MIN_BYTES } from '../constants.js';

/** The internal topic that stores committed offsets. Its "__" prefix is reserved (src/broker/validate.ts). */
export const OFFSETS_TOPIC = '__consumer_offsets';
/**
 * Topics with this prefix are internal and never consumed by groups. The same reserved prefix as
 * src/broker/validate.ts, repeated here because src/groups does not import the broker core.
 */
export const INTERNAL_TOPIC_PREFIX = '__';
/**
 * Partitions of the offsets topic. Fixed for the life of a cluster: a group's partition is
 * hash(group) mod this, so changing it would move every group's offsets (Kafka's
 * offsets.topic.num.partitions has the same rule).
 */
export const OFFSETS_PARTITIONS = 16;
/** Default `offsets.retention.ms`: offsets of a group with no members expire this long after its last commit (7 days, as Kafka). */
export const OFFSETS_RETENTION_MS_DEFAULT = 7 * 24 * 3600 * 1000;
/**
 * Retention of the offsets topic's log: twice the default offsets.retention.ms. Live keys are
 * re-appended once their last write is older than a quarter of it (OFFSETS_REFRESH_AGE_MS), checked
 * every OFFSETS_REFRESH_CHECK_MS, so a live offset always has a copy far from the retention edge.
 */
export const OFFSETS_LOG_RETENTION_MS = 14 * 24 * 3600 * 1000;
export const OFFSETS_REFRESH_AGE_MS = OFFSETS_LOG_RETENTION_MS / 4;
export const OFFSETS_REFRESH_CHECK_MS = 3600 * 1000;
/** How often the coordinator looks for expired offsets of empty groups. */
export const OFFSETS_EXPIRY_CHECK_MS = 60_000;
/** The most offsets one commit may carry. */
export const COMMIT_OFFSETS_MAX = 10_000;
/** Bytes of metadata stored with one committed offset. */
export const COMMIT_METADATA_BYTES_MAX = 256;

export const SESSION_TIMEOUT_MS_DEFAULT = 10_000;
export const SESSION_TIMEOUT_MS_MIN = 100;
export const SESSION_TIMEOUT_MS_MAX = 300_000;
export const AUTO_COMMIT_INTERVAL_MS_DEFAULT = 5_000;
export const AUTO_COMMIT_INTERVAL_MS_MIN = 10;
/** How often the coordinator checks sessions for expiry and re-reads topic metadata (new partitions, new matching topics). */
export const GROUP_TICK_MS = 50;
export const GROUP_METADATA_REFRESH_MS = 1_000;
/** How often each group's lag per topic goes to the probe (sluice_consumer_group_lag). */
export const GROUP_LAG_REPORT_MS = 5_000;
/** Group and instance id length bounds. */
export const GROUP_ID_LENGTH_MAX = 255;
/** Members of one group. */
export const GROUP_MEMBERS_MAX = 10_000;

/**
 * Cluster mode: how often a coordinator re-reads which offsets partitions it leads (and whether its
 * term's entries are committed yet, which is polled, not an event). Leader changes also trigger it at once.
 */
export const COORDINATOR_PLACEMENT_CHECK_MS = 100;
/** Cluster mode: the offsets topic's replication factor is min(this, nodes that can take a replica). */
export const OFFSETS_REPLICATION_FACTOR_MAX = 3;
/** Cluster mode: how often the controller leader checks whether `__consumer_offsets` must be created. */
export const OFFSETS_TOPIC_CHECK_MS = 1_000;

/** Long-poll wait of a member's partition fetch loop (also bounds how late a stop is noticed). */
export const DELIVERY_FETCH_WAIT_MS = 500;
/** Bytes of one fetch of a delivery loop (a chunk on the stream). */
export const DELIVERY_FETCH_BYTES_MAX = 1024 * 1024;
/**
 * Bytes of a caught-up delivery loop's long-poll, which is a chained fetch (src/shard/fetch-chain.ts):
 * up to two of its answers wait on the main thread outside any budget, so it is small, as a caught-up
 * Subscribe's read (CLIENT_MEMORY_FETCH_MIN_BYTES). What a burst leaves behind is read at the full size.
 */
export const DELIVERY_CAUGHT_UP_FETCH_BYTES = CLIENT_MEMORY_FETCH_MIN_BYTES;
/** Credit granted when the join asks for none. */
export const DELIVERY_CREDIT_RECORDS_DEFAULT = 10_000;
export const DELIVERY_CREDIT_BYTES_DEFAULT = 8 * 1024 * 1024;

assert.ok(SESSION_TIMEOUT_MS_MIN > GROUP_TICK_MS, 'a session must outlive at least one tick');
assert.ok(SESSION_TIMEOUT_MS_DEFAULT >= SESSION_TIMEOUT_MS_MIN && SESSION_TIMEOUT_MS_DEFAULT <= SESSION_TIMEOUT_MS_MAX);
assert.ok(COORDINATOR_PLACEMENT_CHECK_MS <= SESSION_TIMEOUT_MS_MIN, 'a coordinator notices a lost leadership well within a session');
assert.ok(OFFSETS_PARTITIONS > 0 && Number.isInteger(OFFSETS_PARTITIONS));
assert.ok(OFFSETS_REFRESH_CHECK_MS * 10 < OFFSETS_LOG_RETENTION_MS - OFFSETS_REFRESH_AGE_MS, 'a live key must be refreshed long before retention could drop it');
