/**
 * Named limits. Units last (`Bytes`, `Ms`, `Count`). Every bound on a size, a count or a queue lives
 * here, so reviewers can see them side by side; the checks at the bottom state how they relate.
 */
import assert from 'node:assert/strict';

const KiB = 1024;
const MiB = 1024 * KiB;

// --- Batches -------------------------------------------------------------------------------------
/** Default per-topic `max.message.bytes`: the largest single record batch accepted. */
export const BATCH_BYTES_MAX_DEFAULT = 1 * MiB;
/** Hard ceiling for a topic's `max.message.bytes`. */
export const BATCH_BYTES_MAX_LIMIT = 16 * MiB;
/** The most records one batch may declare. */
export const BATCH_RECORDS_MAX = 100_000;
/** The most bytes a compressed batch may inflate to when decoded (a bound against decompression bombs). */
export const BATCH_DECOMPRESSED_BYTES_MAX = 64 * MiB;

// --- Segments and retention ----------------------------------------------------------------------
export const SEGMENT_BYTES_DEFAULT = 128 * MiB;
export const SEGMENT_BYTES_MIN = 1 * MiB;
/** Largest `segment.bytes`: index positions are u32, and one append may overshoot a segment by a request. */
export const SEGMENT_BYTES_MAX = 1024 * MiB;
/** Default `segment.ms`: 7 days, as Kafka. */
export const SEGMENT_MS_DEFAULT = 7 * 24 * 3600 * 1000;
/** Bytes of log between two sparse offset-index entries (Kafka's `index.interval.bytes`). */
export const INDEX_INTERVAL_BYTES = 4 * KiB;
/** Default `retention.ms`: 7 days. -1 means keep forever. */
export const RETENTION_MS_DEFAULT = 7 * 24 * 3600 * 1000;
/** Default `retention.bytes`: -1, unlimited. */
export const RETENTION_BYTES_DEFAULT = -1;
/** Default `flush.interval.ms` used by the `interval` flush policy. */
export const FLUSH_INTERVAL_MS_DEFAULT = 1000;
/**
 * Default `message.timestamp.after.max.ms`: a record stamped more than an hour ahead of the broker is
 * refused (Kafka 4.0's default), so one record stamped 2100 cannot pin a topic's segments forever.
 */
export const MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT = 3600 * 1000;
/** Default `message.timestamp.before.max.ms`: unbounded, so old data can be replayed (Kafka's default). */
export const MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT = Number.MAX_SAFE_INTEGER;
/** Size of the reusable buffer the storage engine reads headers and recovery scans through. */
export const STORAGE_SCAN_CHUNK_BYTES = 1 * MiB;

// --- Topics --------------------------------------------------------------------------------------
export const TOPIC_NAME_LENGTH_MAX = 249;
/**
 * The most partitions one topic may have. Creating a partition costs a directory, three files and two
 * directory fsyncs (measured here: 1,000 partitions in about 7 s on a busy 2-core machine, so 10,000
 * would outlast any client deadline), and each open partition keeps three file descriptors: 10,000
 * partitions need 30,000 fds, above common `ulimit -n` values (20,000 here, where a 10,000-partition
 * create killed the shard worker). Larger requests are refused up front, before anything is created.
 */
export const TOPIC_PARTITIONS_MAX = 1_000;
/** The most partitions (all topics, internal ones included) one broker holds: 12,000 open fds. */
export const BROKER_PARTITIONS_MAX = 4_000;
/**
 * Sanity bound on one topic's partitions when reading a persisted topic table. Not a policy (that is
 * TOPIC_PARTITIONS_MAX, applied when creating): tables written under an older, higher limit still load.
 */
export const TOPIC_TABLE_PARTITIONS_MAX = 100_000;
export const TOPIC_REPLICATION_FACTOR_MAX = 7;

// --- Requests ------------------------------------------------------------------------------------
/** Slack over one max batch for the protobuf envelope of a request. */
export const REQUEST_ENVELOPE_BYTES_MAX = 64 * KiB;
/** The largest gRPC message accepted: one max batch (at the hard ceiling) plus envelope. */
export const GRPC_RECEIVE_BYTES_MAX = BATCH_BYTES_MAX_LIMIT + REQUEST_ENVELOPE_BYTES_MAX;
/** Default and maximum `max_bytes` of one Fetch. */
export const FETCH_BYTES_MAX_DEFAULT = 1 * MiB;
export const FETCH_BYTES_MAX_LIMIT = 16 * MiB;
/**
 * Largest structured (decoded) read: one batch inflated to the decompression bound, plus protobuf
 * framing for each of its records. Only a read whose first batch needs it is granted this much.
 */
export const STRUCTURED_READ_BYTES_MAX = BATCH_DECOMPRESSED_BYTES_MAX + BATCH_RECORDS_MAX * 32;
/** Longest long-poll a Fetch may ask for. */
export const FETCH_WAIT_MS_MAX = 30_000;

// --- Client and CLI ------------------------------------------------------------------------------
/** The broker's gRPC port when an address names only a host (`-b localhost`), as `sluice serve`'s default. */
export const CLIENT_BROKER_PORT_DEFAULT = 7070;
/** Default deadline of one unary call from the TypeScript client and the CLI (`--timeout`). */
export const CLIENT_REQUEST_TIMEOUT_MS_DEFAULT = 30_000;

assert.ok(BATCH_BYTES_MAX_DEFAULT <= BATCH_BYTES_MAX_LIMIT);
assert.ok(SEGMENT_BYTES_MIN >= BATCH_BYTES_MAX_DEFAULT, 'a segment must hold at least one default max batch');
assert.ok(INDEX_INTERVAL_BYTES < SEGMENT_BYTES_MIN);
assert.ok(SEGMENT_BYTES_MAX + GRPC_RECEIVE_BYTES_MAX < 2 ** 32, 'segment positions must fit the u32 of an index entry');
assert.ok(BATCH_DECOMPRESSED_BYTES_MAX >= BATCH_BYTES_MAX_LIMIT);
assert.ok(GRPC_RECEIVE_BYTES_MAX > BATCH_BYTES_MAX_LIMIT);
assert.ok(FETCH_BYTES_MAX_DEFAULT <= FETCH_BYTES_MAX_LIMIT);
assert.ok(TOPIC_PARTITIONS_MAX <= BROKER_PARTITIONS_MAX && BROKER_PARTITIONS_MAX <= TOPIC_TABLE_PARTITIONS_MAX);

// --- Idempotent producers (src/partition/producer-state.ts, src/broker/producer-ids.ts) ------------
/** Batches remembered per producer and partition for deduplication (Kafka's 5); also the client's in-flight bound. */
export const PRODUCER_BATCHES_CACHED = 5;
/** Default for how long a producer may be idle before a partition forgets it (Kafka's producer.id.expiration.ms). */
export const PRODUCER_IDLE_EXPIRY_MS_DEFAULT = 7 * 24 * 3600 * 1000;
/**
 * Producers one partition remembers; past it the least recently seen is forgotten (as if expired), so
 * memory stays bounded when clients churn through producer ids. Kafka has no such bound.
 */
export const PRODUCER_STATE_PRODUCERS_MAX = 2_000;
/** Log bytes appended after which a partition rewrites its producer-state snapshot (bounds the replay on recovery). */
export const PRODUCER_SNAPSHOT_INTERVAL_BYTES = 64 * MiB;
/** Producer ids a node reserves (persisted, fsynced) at a time; a controller can later hand out blocks of this size. */
export const PRODUCER_ID_BLOCK_COUNT = 1000;
/** Named producers whose epoch the broker keeps; InitProducer for more new names fails with QUEUE_FULL. */
export const PRODUCER_NAMES_MAX = 100_000;
/** Longest producer_name accepted. */
export const PRODUCER_NAME_LENGTH_MAX = 249;
/** The largest producer epoch (int16 in the v2 header); past it a name gets a new producer id. */
export const PRODUCER_EPOCH_MAX = 32_767;

assert.ok(PRODUCER_SNAPSHOT_INTERVAL_BYTES >= BATCH_BYTES_MAX_LIMIT);

// --- Client memory (src/rpc, src/server) --------------------------------------------------------
/**
 * Default budget for bytes the broker holds on behalf of clients: produce bodies until answered, fetch
 * and subscribe responses until flushed to the socket (`--max-client-memory`).
 */
export const CLIENT_MEMORY_BYTES_DEFAULT = 256 * MiB;
/** Smallest budget accepted: at least one default fetch must fit. */
export const CLIENT_MEMORY_BYTES_MIN = 1 * MiB;
/** A fetch is answered smaller when the budget is short, but never below this: it waits instead. */
export const CLIENT_MEMORY_FETCH_MIN_BYTES = 64 * KiB;
/** How long a fetch waits for budget before it fails with CLIENT_MEMORY_EXHAUSTED. */
export const CLIENT_MEMORY_WAIT_MS_MAX = 5_000;
/** The retry hint sent with CLIENT_MEMORY_EXHAUSTED (google.rpc.RetryInfo). */
export const CLIENT_MEMORY_RETRY_MS = 200;
/**
 * Bytes one Subscribe stream may have handed to HTTP/2 and not yet flushed to the socket: a subscriber
 * that stops reading stops being fed once this much is queued for it.
 */
export const SUBSCRIBE_WINDOW_BYTES = 4 * MiB;
/**
 * Messages one Subscribe stream may have handed to HTTP/2 and not yet flushed. With the slow start of
 * its read sizes (from CLIENT_MEMORY_FETCH_MIN_BYTES, doubling per flushed message), a subscriber that
 * never reads holds about two minimal messages, not a window of big ones.
 */
export const SUBSCRIBE_MESSAGES_UNFLUSHED_MAX = 2;
/** Concurrent streams (calls) per HTTP/2 connection (grpc.max_concurrent_streams). */
export const GRPC_STREAMS_PER_CONNECTION_MAX = 100;
/** Open client connections to the gRPC port; more are closed as they arrive. */
export const GRPC_CONNECTIONS_MAX = 1024;

assert.ok(CLIENT_MEMORY_FETCH_MIN_BYTES <= CLIENT_MEMORY_BYTES_MIN);
assert.ok(CLIENT_MEMORY_BYTES_MIN <= CLIENT_MEMORY_BYTES_DEFAULT);
assert.ok(SUBSCRIBE_WINDOW_BYTES >= CLIENT_MEMORY_FETCH_MIN_BYTES);

// --- Raft (src/raft) -----------------------------------------------------------------------------
/** Ticks without hearing from a leader before a follower campaigns (randomized in [n, 2n)). */
export const RAFT_ELECTION_TICKS_DEFAULT = 10;
/** Ticks between a leader's heartbeats. Must be well below the election ticks. */
export const RAFT_HEARTBEAT_TICKS_DEFAULT = 1;
/** Append messages a leader may have in flight to one follower (pipelining bound). */
export const RAFT_INFLIGHT_MSGS_MAX_DEFAULT = 256;
/** Entry bytes a leader may have in flight to one follower. */
export const RAFT_INFLIGHT_BYTES_MAX_DEFAULT = 32 * MiB;
/** Payload bytes in one append message (at least one run is always sent, whatever its size). */
export const RAFT_MSG_BYTES_MAX_DEFAULT = 1 * MiB;
/** Runs (batches, each one entry per record) in one append message. */
export const RAFT_MSG_ENTRIES_MAX_DEFAULT = 4096;
/** Pending ReadIndex requests on a leader; more are refused with QUEUE_FULL. */
export const RAFT_READ_INDEX_PENDING_MAX = 4096;

assert.ok(RAFT_ELECTION_TICKS_DEFAULT > RAFT_HEARTBEAT_TICKS_DEFAULT);
assert.ok(RAFT_MSG_BYTES_MAX_DEFAULT <= RAFT_INFLIGHT_BYTES_MAX_DEFAULT);

// --- Shards (src/shard, src/broker) --------------------------------------------------------------
/** The most shards a broker runs (one thread each); placements in the topic table are below it. */
export const SHARDS_MAX = 256;
/**
 * Bytes of one shard's request ring (main -> worker produce data). It must hold the largest request
 * twice over, so one maximal request can wait for space while another is being appended.
 */
export const SHARD_REQUEST_RING_BYTES = 2 * GRPC_RECEIVE_BYTES_MAX;
/** Bytes of one shard's response ring (worker -> main fetch data); larger reads fall back to a copy. */
export const SHARD_RESPONSE_RING_BYTES = 16 * MiB;
/** How long a produce waits for space in a full request ring before failing with QUEUE_FULL. */
export const SHARD_RING_WAIT_MS_MAX = 5_000;
/** Produces that may wait for ring space per shard; more fail at once with QUEUE_FULL. */
export const SHARD_RING_WAITERS_MAX = 1024;
/** Requests in flight to one shard (sent, not yet answered); more fail at once with QUEUE_FULL. */
export const SHARD_INFLIGHT_MAX = 65_536;
/** Long-poll fetches parked in one shard; more are answered at once with whatever is there. */
export const SHARD_FETCH_WAITERS_MAX = 10_000;
/** How often a shard applies retention to its partitions. */
export const SHARD_RETENTION_CHECK_MS = 5_000;
/** How often a shard sends its stats (queue depth, loop lag, partition sizes, flush times). */
export const SHARD_STATS_INTERVAL_MS = 1_000;
/** One logical Raft tick of every partition on a shard (the election and heartbeat ticks count these). */
export const SHARD_TICK_MS = 100;
/**
 * A shard worker silent this long (no reply, no stats) is taken as hung and replaced, failing its
 * in-flight requests with UNAVAILABLE. Far above any legitimate pause (a GC, a burst of fsyncs).
 */
export const SHARD_WATCHDOG_MS = 30_000;
/**
 * A partition that could not be opened for a retriable reason (a full disk) is retried after this long,
 * doubling up to SHARD_OFFLINE_RETRY_MS_MAX, so it comes back on its own once space returns.
 */
export const SHARD_OFFLINE_RETRY_MS_MIN = 500;
export const SHARD_OFFLINE_RETRY_MS_MAX = 10_000;
/** Smallest configurable watchdog: below a few stats intervals a healthy worker would be replaced. */
export const SHARD_WATCHDOG_MS_MIN = 100;
/**
 * A watchdog tick this much later than its interval means the main thread itself did not run (the
 * process was stopped, the VM paused, the loop starved): the watchdog re-arms instead of judging.
 */
export const SHARD_WATCHDOG_PAUSE_MS = 1_000;
/** fsync durations a shard keeps between two stats messages; more are dropped from metrics. */
export const SHARD_FLUSH_SAMPLES_MAX = 4096;

assert.ok(SHARD_REQUEST_RING_BYTES >= 2 * GRPC_RECEIVE_BYTES_MAX, 'a request ring must hold two maximal requests');
assert.ok(SHARD_RESPONSE_RING_BYTES >= FETCH_BYTES_MAX_DEFAULT);
assert.ok(SHARD_REQUEST_RING_BYTES < 2 ** 31, 'ring counters are int32');
assert.ok(SHARD_OFFLINE_RETRY_MS_MIN <= SHARD_OFFLINE_RETRY_MS_MAX);
assert.ok(SHARD_WATCHDOG_MS > 10 * SHARD_STATS_INTERVAL_MS, 'the watchdog must not fire between two stats messages');

// --- Partition as a Raft replica (src/partition) -----------------------------------------------------
/**
 * Peer messages a partition holds while one of its Readys is being persisted (the core takes no input
 * between `ready()` and `advance()`); more are dropped, and Raft's retries resend what mattered.
 */
export const PARTITION_INBOX_MESSAGES_MAX = 4096;
/** Ticks a partition owes its Raft core while a Ready is being persisted; more are not counted. */
export const PARTITION_TICKS_OWED_MAX = RAFT_ELECTION_TICKS_DEFAULT;
/**
 * A fetch this close below the high watermark is checked for holding only control batches (each
 * term's no-op); if so it parks as a fetch at the high watermark would, instead of returning at
 * once with no records. Control batches are one record each, so a longer range holds data.
 */
export const PARTITION_CONTROL_TAIL_OFFSETS_MAX = 8;
