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
/**
 * TEST-ONLY (src/storage/test-hooks.ts, the chaos harness's ack-before-fsync bug): how long a log must
 * be idle before the fdatasync it was falsely told had happened really runs (a lazy flush). Far above
 * the gap between two writes under the chaos workload, so a kill -9 under load always finds
 * acknowledged bytes not yet synced.
 */
export const TEST_ACK_BEFORE_FSYNC_LAG_MS = 1_000;

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
/**
 * The client redials a broker it lost after MIN growing to MAX (Kafka's reconnect.backoff.max.ms is
 * 1 s too); grpc-js would wait up to 120 s and fail every call meanwhile, long after a restarted broker
 * is back.
 */
export const CLIENT_REDIAL_BACKOFF_MS_MIN = 100;
export const CLIENT_REDIAL_BACKOFF_MS_MAX = 1_000;
/** Retriable failures in a row a Consumer's fetch loop or start-up lookup rides out before it gives up. */
export const CONSUMER_RETRIES_MAX = 20;
/** The longest wait between two tries of a Consumer (the wait doubles from `retryBackoffMs`). */
export const CONSUMER_RETRY_BACKOFF_MS_MAX = 2_000;
/**
 * A GroupConsumer whose stream ends with a retriable error (its coordinator moved or died) rejoins:
 * at the coordinator the error names, else the next broker, backing off from the first to the second
 * value (doubling), and gives up after the third of failing in a row (default of `rejoinTimeoutMs`).
 */
export const CLIENT_GROUP_REJOIN_BACKOFF_MS_MIN = 50;
export const CLIENT_GROUP_REJOIN_BACKOFF_MS_MAX = 1_000;
export const CLIENT_GROUP_REJOIN_TIMEOUT_MS_DEFAULT = 60_000;

assert.ok(BATCH_BYTES_MAX_DEFAULT <= BATCH_BYTES_MAX_LIMIT);
assert.ok(SEGMENT_BYTES_MIN >= BATCH_BYTES_MAX_DEFAULT, 'a segment must hold at least one default max batch');
assert.ok(INDEX_INTERVAL_BYTES < SEGMENT_BYTES_MIN);
assert.ok(SEGMENT_BYTES_MAX + GRPC_RECEIVE_BYTES_MAX < 2 ** 32, 'segment positions must fit the u32 of an index entry');
assert.ok(BATCH_DECOMPRESSED_BYTES_MAX >= BATCH_BYTES_MAX_LIMIT);
assert.ok(GRPC_RECEIVE_BYTES_MAX > BATCH_BYTES_MAX_LIMIT);
assert.ok(FETCH_BYTES_MAX_DEFAULT <= FETCH_BYTES_MAX_LIMIT);
/**
 * Room kept before and after a fetch response's batches when the main thread copies them out of the
 * shard's ring (src/batch/envelope-room.ts), so the FetchResponse encoder writes its field header and
 * trailing fields in place instead of copying the batches again. Head: a tag and a length varint;
 * tail: three tagged uint64 varints (high watermark, log start, next offset).
 */
export const ENVELOPE_HEAD_BYTES = 16;
export const ENVELOPE_TAIL_BYTES = 48;
assert.ok(ENVELOPE_HEAD_BYTES >= 1 + 8 && ENVELOPE_TAIL_BYTES >= 3 * (1 + 10), 'room for a tag and a varint of up to 2^53 per field');
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
/**
 * Produces one ProduceStream may have in flight (received, not yet answered): past it the broker stops
 * reading the stream, so HTTP/2 flow control holds the client back. As many as unary Produce calls one
 * connection may have open.
 */
export const PRODUCE_STREAM_INFLIGHT_MAX = 100;
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
/**
 * Chained fetches (src/shard/fetch-chain.ts) one shard runs at once; a caught-up subscriber or group
 * delivery loop past them long-polls with a fetch op per answer, as before. Each chain may have two
 * answers waiting on the main thread outside the client-memory budget (a Subscribe counts them once its
 * reader takes them), each one caught-up read of at most CLIENT_MEMORY_FETCH_MIN_BYTES (a group's:
 * DELIVERY_CAUGHT_UP_FETCH_BYTES, as large) plus one batch: at most 32 MiB per shard.
 */
export const SHARD_FETCH_CHAINS_MAX = 256;
/** How often a shard applies retention to its partitions. */
export const SHARD_RETENTION_CHECK_MS = 5_000;
/** How often a shard sends its stats (queue depth, loop lag, partition sizes, flush times). */
export const SHARD_STATS_INTERVAL_MS = 1_000;
/**
 * A shard's stats message carries only the partitions whose numbers changed since it last sent them,
 * and all of them every this many messages (a safety net; the main thread keeps the last numbers).
 */
export const SHARD_STATS_FULL_INTERVALS = 30;
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
/**
 * Sampling interval of each thread's event-loop delay monitor (perf_hooks.monitorEventLoopDelay): a
 * stall shorter than this can hide between two samples; 10 ms costs ~100 timer wake-ups/s per thread.
 */
export const THREAD_LOOP_DELAY_RESOLUTION_MS = 10;
/** GC pauses a thread keeps between two reports (a stats message, a main-thread roll); more are counted but not timed. */
export const THREAD_GC_SAMPLES_MAX = 2048;
/** How often the main thread rolls its own event-loop delay window and GC pauses into the metrics (as shards do with their stats). */
export const MAIN_THREAD_STATS_INTERVAL_MS = SHARD_STATS_INTERVAL_MS;

assert.ok(SHARD_REQUEST_RING_BYTES >= 2 * GRPC_RECEIVE_BYTES_MAX, 'a request ring must hold two maximal requests');
assert.ok(SHARD_RESPONSE_RING_BYTES >= FETCH_BYTES_MAX_DEFAULT);
assert.ok(SHARD_REQUEST_RING_BYTES < 2 ** 31, 'ring counters are int32');
assert.ok(SHARD_OFFLINE_RETRY_MS_MIN <= SHARD_OFFLINE_RETRY_MS_MAX);
assert.ok(SHARD_WATCHDOG_MS > 10 * SHARD_STATS_INTERVAL_MS, 'the watchdog must not fire between two stats messages');

// --- Raft transport between nodes (src/cluster/transport, docs/cluster.md "Raft transport") ---------
/**
 * Largest frame (one gRPC message carrying many groups' Raft messages) a node sends or accepts: one
 * maximal batch plus its envelope, the same ceiling as a client's request. A larger single message is
 * dropped by the sender (reason `too_large`) and refused by the receiver.
 */
export const RAFT_TRANSPORT_FRAME_BYTES_MAX = GRPC_RECEIVE_BYTES_MAX;
/**
 * Bytes per peer written to its stream and not yet flushed to the socket (write callbacks pending),
 * plus what waits for this turn's frame. App and Snap messages that would pass it are dropped (Raft
 * resends them), so a peer that stops reading costs its sender at most this much.
 */
export const RAFT_TRANSPORT_INFLIGHT_BYTES_MAX = 2 * RAFT_TRANSPORT_FRAME_BYTES_MAX;
/**
 * Extra room per peer, past the data budget, for the small messages (heartbeats, votes, responses), so
 * that a follower busy receiving data still hears the leader's heartbeats and answers them.
 */
export const RAFT_TRANSPORT_CONTROL_BYTES_MAX = 1 * MiB;
/** Messages in one frame, at most (the receiver refuses more; the sender cuts frames there). */
export const RAFT_TRANSPORT_FRAME_MESSAGES_MAX = 100_000;
/** Entry runs in one App message, at most (the receiver refuses more). */
export const RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX = 65_536;
/** Voters plus learners in a snapshot's configuration, at most (the receiver refuses more). */
export const RAFT_TRANSPORT_CONF_NODES_MAX = 1_024;
/**
 * Reconnect backoff to a peer: doubles from the minimum to the maximum, each wait jittered to [d/2, d].
 * The maximum bounds how long a restarted node waits for its leaders' first messages (it cannot learn
 * who leads, nor turn ready, before): at 5 s a restarted node took 7+ s to turn ready in chaos runs; a
 * redial a second to a dead peer costs nothing measurable.
 */
export const RAFT_TRANSPORT_BACKOFF_MS_MIN = 50;
export const RAFT_TRANSPORT_BACKOFF_MS_MAX = 1_000;
/** HTTP/2 pings on a dialed stream's connection, so a peer that vanished without closing it is found. */
export const RAFT_TRANSPORT_KEEPALIVE_MS = 10_000;
/** A ping unanswered this long closes the connection (its stream ends; the next send redials). */
export const RAFT_TRANSPORT_KEEPALIVE_TIMEOUT_MS = 5_000;
/**
 * HTTP/2 flow-control window of a dialed connection and its streams: replication moves megabytes, and
 * the 64 KiB default costs a round trip per 64 KiB.
 */
export const RAFT_TRANSPORT_WINDOW_BYTES = 16 * MiB;

assert.ok(RAFT_TRANSPORT_INFLIGHT_BYTES_MAX >= RAFT_TRANSPORT_FRAME_BYTES_MAX, 'a peer budget must fit the largest frame, or a maximal message could never be sent');
assert.ok(RAFT_TRANSPORT_FRAME_BYTES_MAX > BATCH_BYTES_MAX_LIMIT, 'a frame must carry a maximal batch');
assert.ok(RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX >= RAFT_MSG_ENTRIES_MAX_DEFAULT);
assert.ok(RAFT_TRANSPORT_INFLIGHT_BYTES_MAX >= RAFT_MSG_BYTES_MAX_DEFAULT);
assert.ok(RAFT_TRANSPORT_BACKOFF_MS_MIN <= RAFT_TRANSPORT_BACKOFF_MS_MAX);
// --- Partition as a Raft replica (src/partition) -----------------------------------------------------
/**
 * A voter is in sync (Kafka's ISR, shown per partition and counted by
 * `sluice_under_replicated_partitions`) when its match index is at most this many offsets behind the
 * leader's last index. In offsets, not time: the leader has no clock in its core, and a follower that
 * keeps up under load is within one or two in-flight batches (1,000-record batches here).
 */
export const REPLICA_ISR_LAG_OFFSETS_MAX = 10_000;
/**
 * ...and a voter leaves the in-sync set only after its match index has been past that bound for this
 * many consecutive shard ticks (3 s; Kafka's replica.lag.time.max.ms is the same idea). A new leader
 * learns its followers' match indexes only from their first answers, so it starts with every voter in
 * sync: without this bound each election showed the leader alone in sync for a moment, and
 * `sluice_under_replicated_partitions` blipped on every election (chaos finding D).
 */
export const REPLICA_ISR_LAG_TICKS_MAX = 30;
/**
 * Partition replicas' Raft timing, in shard ticks (SHARD_TICK_MS = 100 ms): a leader heartbeats every
 * tick, and a follower that hears nothing for [10, 20) ticks (1.0 to 2.0 s, randomized per election)
 * campaigns, after a pre-vote (so a partitioned or paused node does not disturb a healthy leader),
 * while check-quorum makes a leader that has not heard from a majority for an election timeout step
 * down. Why these: issue 11 wants a killed leader replaced in 1.5 s at the median and 3 s at worst,
 * which caps the timeout at about [1, 2) s (detection is the timeout; pre-vote and vote are two round
 * trips of a few ms). Against that, a leader must miss 10 heartbeats in a row before anyone moves: on
 * this 2-core machine, loaded (load average 7), a 100 ms timer ran at most 1.3 ms late and a 256 KiB
 * fdatasync took 1.1 ms at the median and 6.3 ms at worst, so only a stall of a whole second (a
 * SIGSTOP, a swap storm, a disk that stops) changes a leader, and that is when one should change.
 * Known risk: a leader does not heartbeat while one of its fdatasyncs is in flight (the partition
 * takes no Raft input between ready and advance), so an fsync slower than the timeout costs a leader.
 */
export const REPLICA_ELECTION_TICKS = 10;
export const REPLICA_HEARTBEAT_TICKS = 1;
/**
 * A brand-new partition group's first election (docs/cluster.md "Election of new groups"): its
 * preferred replica (voters[0]) pre-votes on its first tick and again every this many ticks while no
 * vote has happened yet, for one election timeout; the other voters hold their election clocks for
 * that election timeout first, so they campaign only when the preferred replica did not win (it is
 * down). A pre-vote changes no term, so a retry disturbs nothing; it exists because a peer that has
 * not opened the group yet drops the request (the transport has no handler for it), and the nodes
 * open a new partition when each applies the controller's record, tens to hundreds of ms apart.
 */
export const REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS = 2;
/**
 * Partition replicas quiesce when idle (docs/raft.md "Quiescence"): a leader whose followers hold its
 * whole log stops heartbeating and its followers stop their election clocks, until any message,
 * proposal or a change in gossip's view of a member wakes the group. At idle, per-partition
 * heartbeats were most of a cluster's CPU (1,000 RF-3 partitions: 20,000 messages a second between
 * three nodes). A quiesced follower of a killed leader campaigns half an election timeout to one and a
 * half after gossip suspects the leader's node (GOSSIP_PROBE_INTERVAL_MS to 2x that), which the
 * failover target allows.
 * Only `sluice serve` turns it on (BrokerClusterOptions.quiesce): it needs gossip to wake the groups.
 */
export const REPLICA_QUIESCE = true;

/**
 * Raft messages from peers the main thread holds for one shard within one event-loop turn (they travel
 * to the worker in one message at the end of it); more are dropped, and Raft's retries resend.
 */
export const SHARD_RAFT_INBOX_MESSAGES_MAX = 65_536;
/**
 * Readies a partition has taken from its Raft core and not yet completed (their fdatasyncs in flight;
 * storage writes are asynchronous). The log's group commit folds them into at most two fdatasync
 * rounds, so this is reached only on a stalled disk; further Readies then wait in the core (whose
 * own bounds, and the client memory budget, hold its input) until one completes.
 */
export const PARTITION_READIES_IN_FLIGHT_MAX = 256;
/**
 * A fetch this close below the high watermark is checked for holding only control batches (each
 * term's no-op); if so it parks as a fetch at the high watermark would, instead of returning at
 * once with no records. Control batches are one record each, so a longer range holds data.
 */
export const PARTITION_CONTROL_TAIL_OFFSETS_MAX = 8;
// ---- Cluster membership (SWIM gossip, src/cluster/membership; docs/cluster.md says why these values) ----
/** How often the driver ticks the pure SWIM core (which judges every deadline below at tick granularity). */
export const GOSSIP_TICK_MS = 20;
/** One SWIM protocol period: each node probes one member per period, round-robin over a shuffled list. */
export const GOSSIP_PROBE_INTERVAL_MS = 200;
/** How long a direct probe waits for its ack before asking GOSSIP_INDIRECT_PROBES members to try. */
export const GOSSIP_PROBE_TIMEOUT_MS = 80;
/** Members asked to probe a silent target on the prober's behalf (SWIM's k). */
export const GOSSIP_INDIRECT_PROBES = 3;
/**
 * A suspect not refuted within this long is declared dead. Long enough for a ~1.5 s pause to be
 * refuted (the paused node learns it is suspected from the first message it sees), short enough that
 * a killed node is dead everywhere in under 3 s (suspected within about two periods, then this).
 */
export const GOSSIP_SUSPICION_TIMEOUT_MS = 1_800;
/** Each update is piggy-backed this many times x ceil(log2(members + 1)) before it is dropped. */
export const GOSSIP_RETRANSMIT_MULT = 3;
/** Updates piggy-backed on one Probe, ack or IndirectProbe; more are refused as malformed. */
export const GOSSIP_UPDATES_PER_MESSAGE_MAX = 32;
/** Members in one Join answer (the whole table) and in the table itself; beyond it joins are refused. */
export const GOSSIP_MEMBERS_MAX = 1_024;
/** Bounds of one Member record on the wire. */
export const GOSSIP_ADDRESS_BYTES_MAX = 255;
export const GOSSIP_RACK_BYTES_MAX = 64;
/** How long a Join may take; a seed that does not answer in this long counts as unreachable. */
export const GOSSIP_JOIN_TIMEOUT_MS = 2_000;
/** Backoff between join attempts while no seed answers: doubles from MIN up to MAX. */
export const GOSSIP_JOIN_RETRY_MS_MIN = 250;
export const GOSSIP_JOIN_RETRY_MS_MAX = 5_000;
/**
 * grpc-js redials a failed channel after 1 s growing to 120 s by default, and fails calls at once
 * while it waits; every channel one node opens to another (gossip, forwarding, the controller, the
 * executor, groups) redials after MIN growing to MAX, so a restarted peer is reachable again at once.
 */
export const PEER_REDIAL_BACKOFF_MS_MIN = 100;
export const PEER_REDIAL_BACKOFF_MS_MAX = 1_000;
/** How often a member tries a full-state sync with one member it holds as dead (a restarted node rejoins). */
export const GOSSIP_RECONNECT_INTERVAL_MS = 1_000;

assert.ok(GOSSIP_PROBE_TIMEOUT_MS < GOSSIP_PROBE_INTERVAL_MS, 'the indirect probes need the rest of the period');
assert.ok(GOSSIP_TICK_MS <= GOSSIP_PROBE_TIMEOUT_MS / 2, 'deadlines are judged at tick granularity');
assert.ok(GOSSIP_SUSPICION_TIMEOUT_MS >= 5 * GOSSIP_PROBE_INTERVAL_MS, 'a suspect needs a few periods to learn of it and refute');
assert.ok(GOSSIP_JOIN_RETRY_MS_MIN <= GOSSIP_JOIN_RETRY_MS_MAX);

// --- Controller (src/controller; issue 11 §3) -----------------------------------------------------
/** Voters of the controller group: 1, 3 or 5 (KRaft's advice; more only slows commits). */
export const CONTROLLER_VOTERS_MAX = 5;
/** One logical Raft tick of the controller group (its election and heartbeat ticks count these). */
export const CONTROLLER_TICK_MS = 100;
/** Raft messages waiting for the controller's driver; more are dropped (Raft retries them). */
export const CONTROLLER_INBOX_MESSAGES_MAX = 10_000;
/** Admin requests queued on (or waiting for) the controller of one node; more fail with QUEUE_FULL. */
export const CONTROLLER_REQUESTS_PENDING_MAX = 1_000;
/** How long an admin request may wait for a controller leader and its record's commit before TIMEOUT. */
export const CONTROLLER_REQUEST_TIMEOUT_MS = 15_000;
/** Largest metadata log segment (the log is small: a topic costs about a hundred bytes per partition). */
export const CONTROLLER_LOG_SEGMENT_BYTES = 16 * MiB;
/** Leadership transfers the leader balancer asks for at a time (Redpanda and Kafka move a few per round). */
export const CONTROLLER_LEADER_TRANSFERS_MAX = 3;
/**
 * Entries applied since the last snapshot after which a node snapshots its metadata and compacts the
 * controller log (bounds the replay on restart; a node further behind gets the snapshot).
 */
export const CONTROLLER_SNAPSHOT_INTERVAL_ENTRIES = 4_096;
/** How often the controller leader's executor looks at moves, decommissions and leader balance. */
export const CONTROLLER_EXECUTOR_INTERVAL_MS = 500;
/** Partition moves the executor advances at once; more wait their turn (each move copies a replica). */
export const CONTROLLER_MOVES_MAX = 8;
/** How often `sluice topic move` / `cluster decommission` / `cluster rebalance` poll the progress. */
export const CLI_MOVE_POLL_MS = 500;
/** How long they follow it by default (`--wait-timeout`); the move carries on without them. */
export const CLI_MOVE_WAIT_MS_DEFAULT = 10 * 60_000;
/** Moves one `sluice cluster rebalance` starts at most (asked again, it plans the rest). */
export const CONTROLLER_REBALANCE_MOVES_MAX = 256;
/** A node re-tries its registration with the controller after this long, doubling up to the max. */
export const CONTROLLER_REGISTER_RETRY_MS_MIN = 100;
export const CONTROLLER_REGISTER_RETRY_MS_MAX = 5_000;
/**
 * A controller voter whose log is empty asks the other voters what their logs hold (found or join,
 * docs/controller.md "Bootstrap") this often until a majority has answered, each ask bounded by the
 * timeout. Short: at a cluster's first formation every voter waits on this before the first election.
 */
export const CONTROLLER_EMPTY_LOG_POLL_MS = 250;
export const CONTROLLER_LOG_STATE_TIMEOUT_MS = 1_000;
/**
 * The controller group quiesces when idle, as partition replicas do (REPLICA_QUIESCE; docs/raft.md
 * "Quiescence", docs/controller.md "Timing and quiescence"): its leader heartbeated every voter and
 * learner every tick forever, two messages per member per 100 ms on every node's main thread. Only
 * where gossip wakes the group (ClusterNode: `sluice serve` in cluster mode); Controllers built
 * without a failure detector (tests) keep heartbeating.
 */
export const CONTROLLER_QUIESCE = true;
/**
 * A quiesced controller voter that follows wakes up this often by itself (an append answer to its
 * leader, which heartbeats once and quiesces again if it is alive). Gossip wakes the group when a
 * member's node turns suspect or dead, but not when only the leader's controller stopped (a storage
 * failure fails the controller and leaves the process, and its gossip, running): without this probe
 * such a group would never elect again. It bounds that case to this plus an election timeout, and
 * costs a heartbeat round per interval instead of ten a second.
 */
export const CONTROLLER_QUIESCE_PROBE_MS = 5_000;

assert.ok(CONTROLLER_LOG_SEGMENT_BYTES >= SEGMENT_BYTES_MIN && CONTROLLER_LOG_SEGMENT_BYTES <= SEGMENT_BYTES_MAX);
assert.ok(REPLICA_ELECTION_TICKS >= 10 * REPLICA_HEARTBEAT_TICKS, 'a leader must miss several heartbeats before a follower campaigns');
assert.ok(2 * REPLICA_ELECTION_TICKS * SHARD_TICK_MS <= 3_000, 'the longest randomized election timeout must fit issue 11\'s 3 s worst-case failover');
assert.ok(REPLICA_PREFERRED_CAMPAIGN_RETRY_TICKS < REPLICA_ELECTION_TICKS, 'the preferred replica of a new group must retry its pre-vote within the head start the others give it');
assert.ok(CONTROLLER_REQUEST_TIMEOUT_MS > 2 * RAFT_ELECTION_TICKS_DEFAULT * CONTROLLER_TICK_MS, 'a request must outlast an election');
assert.ok(CONTROLLER_REGISTER_RETRY_MS_MIN <= CONTROLLER_REGISTER_RETRY_MS_MAX);
assert.ok(CONTROLLER_LOG_STATE_TIMEOUT_MS < CONTROLLER_REQUEST_TIMEOUT_MS, 'a voter deciding found-or-join must hear back faster than a request times out');
assert.ok(CONTROLLER_QUIESCE_PROBE_MS >= 10 * RAFT_HEARTBEAT_TICKS_DEFAULT * CONTROLLER_TICK_MS, 'the probe must cost a small fraction of the heartbeats it replaces');
assert.ok(CONTROLLER_QUIESCE_PROBE_MS + 2 * RAFT_ELECTION_TICKS_DEFAULT * CONTROLLER_TICK_MS < CONTROLLER_REQUEST_TIMEOUT_MS, 'a request must outlast the probe and an election');


// ---- `sluice serve` in cluster mode (src/server/cluster-node.ts, cluster-api.ts; docs/cluster.md) ----
/** The controller voters when --seeds is given and --controller-voters is not: nodes 1, 2 and 3. */
export const CLUSTER_CONTROLLER_VOTERS_DEFAULT: readonly number[] = Object.freeze([1, 2, 3]);
/** How often a node re-checks its replicas against the metadata (failed opens, unreported leaders). */
export const CLUSTER_RECONCILE_INTERVAL_MS = 1_000;
/**
 * How often a partition leader re-checks its Raft membership against the metadata while they differ
 * (a move step not yet proposed, or proposed and not yet committed).
 */
export const CLUSTER_CONF_RECONCILE_INTERVAL_MS = 100;
/** The largest node id the wire carries (int32 in sluice.v1). */
export const NODE_ID_MAX = 2 ** 31 - 1;
/**
 * Deadline of one call the controller's executor makes to a partition leader's node (its Raft
 * membership, a leadership transfer): short, so a dead node stalls a pass only briefly.
 */
export const CLUSTER_REPLICAS_RPC_TIMEOUT_MS = 2_000;
/** Deadline of one request forwarded to a partition's leader (a long-poll fetch adds its wait). */
export const CLUSTER_FORWARD_TIMEOUT_MS = 10_000;
/** How long CreateTopic/CreatePartitions wait for the new partitions' leaders before answering anyway. */
export const CLUSTER_TOPIC_LEADERS_WAIT_MS = 10_000;
/**
 * A node's producer ids are `nodeId << 32 | the id its own allocator handed out`, so ids handed out by
 * different nodes never collide until the controller hands out id blocks.
 */
export const CLUSTER_PRODUCER_ID_NODE_SHIFT_BITS = 32;
/** How long the cluster API reuses the Broker's replica status list when routing (it is rebuilt on any leader change). */
export const CLUSTER_ROUTE_STATUS_CACHE_MS = 50;
/** How long the TS client trusts a topic's partition leaders before it asks GetMetadata again. */
export const CLIENT_ROUTE_MAX_AGE_MS = 30_000;
assert.ok(CLUSTER_CONTROLLER_VOTERS_DEFAULT.length % 2 === 1 && CLUSTER_CONTROLLER_VOTERS_DEFAULT.length <= CONTROLLER_VOTERS_MAX);

// ---- Readiness and graceful stop in cluster mode (src/server/readiness.ts, drain.ts; docs/kubernetes.md) ----
/**
 * How often a node re-checks that every replica it holds is in its leader's in-sync set (/readyz keeps
 * the last verdict). The leaders' in-sync sets are themselves as old as their shard stats.
 */
export const READINESS_CHECK_INTERVAL_MS = SHARD_STATS_INTERVAL_MS;
/**
 * Every this many readiness rounds the leaders are asked about quiesced followers too; in the rounds
 * between, a quiesced follower counts as in sync (its leader went quiet only once it held the whole
 * log). Bounds how stale that belief can get (a follower cut off from a leader that then took writes
 * stays quiesced) while an idle cluster asks its leaders nothing most seconds.
 */
export const READINESS_QUIESCED_ASK_EVERY_ROUNDS = 10;
/** Deadline of one readiness question to a leader node; a leader that does not answer keeps the node not ready. */
export const READINESS_LEADER_TIMEOUT_MS = 3 * READINESS_CHECK_INTERVAL_MS;
/**
 * On SIGTERM, how long `sluice serve` spends handing its partition leaderships to in-sync peers before
 * it drains and closes anyway. Inside the chart's terminationGracePeriodSeconds with the drain.
 */
export const LEADERSHIP_HANDOFF_TIMEOUT_MS = 10_000;
/**
 * One round of transfers: Raft abandons a transfer that has not completed within an election timeout
 * (at most 2 * REPLICA_ELECTION_TICKS ticks), so leaderships still here after it are asked again.
 */
export const LEADERSHIP_HANDOFF_ROUND_MS = 2 * REPLICA_ELECTION_TICKS * SHARD_TICK_MS;
/** How often a hand-off round looks at the replicas' roles. */
export const LEADERSHIP_HANDOFF_POLL_MS = 50;
/** Times a graceful stop hands off again leaderships that came back to it while it settled (each bounded by the timeout too). */
export const LEADERSHIP_HANDOFF_PASSES_MAX = 3;
assert.ok(LEADERSHIP_HANDOFF_TIMEOUT_MS >= 2 * LEADERSHIP_HANDOFF_ROUND_MS, 'a hand-off must have time to retry a dropped transfer');

/**
 * The node/V8 flags the broker is shipped to run with: `npm start`, the Dockerfile's entrypoint and the
 * Helm chart's command (test/k8s/dockerfile.test.ts keeps the four in step), and the default of every
 * broker process the tests, the chaos harness and the benchmarks spawn (bench/broker-process.ts).
 * `--single-threaded-gc`: V8 collects on the isolate's own thread instead of adding parallel helper
 * threads. A broker already runs an isolate per core (main thread, one shard worker per core), so the
 * helpers only compete with them for the CPUs; on the 2-core machine with three brokers the e2e p99 of
 * bench:cluster was lower in each of four alternated pairs of 3-run sets (medians 25-43 ms against
 * 37-70), with throughput unchanged within the noise (docs/cluster.md).
 * `--initial-old-space-size=64`: no full (mark-compact) GC while the old generation is under 64 MB. Every
 * request's bytes pass through the main thread as short-lived Buffers, and V8 counts their backing
 * stores towards the old generation's limit; after a full GC of a heap with ~20 MB live, V8's own limit
 * can sit a few MB above it, and at 50k records/s the main thread then ran a full GC every ~0.4 s (about
 * 16 ms of marking and a 2-3 ms pause each), which set the e2e p99 at 11-12 ms in about one run in four
 * (docs/metrics.md, "Full GCs at 50k/s"). Scavenges still free the short-lived Buffers as before.
 */
export const BROKER_NODE_FLAGS: readonly string[] = Object.freeze(['--single-threaded-gc', '--initial-old-space-size=64']);
