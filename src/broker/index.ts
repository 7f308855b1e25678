/**
 * Public surface of src/broker: the single-node broker core. Front-ends (src/rpc, src/server,
 * embedders) use `Broker.open(...)` and the `BrokerApi` contract; they never import src/shard or
 * src/partition.
 */
export { Broker, defaultShardCount, SHARDS_MAX, type BrokerOptions, type BrokerClusterOptions, type BrokerLogger } from './broker.js';
/** NOT_LEADER with the leader (0 = none known) and epoch in structured form, for routing and ErrorInfo. */
export { NotLeaderError } from '../partition/errors.js';
/** A caught-up reader's chained long-poll, passed to every `fetch` of that reader (see BrokerApi.fetch). */
export { FetchChain } from '../shard/index.js';
export { NOOP_PROBE, type BrokerProbe, type ReplicaGauges } from './probe.js';
export { LOCK_FILE } from './data-dir-lock.js';
export { TEST_REPLICA_BUGS_ENV, REPLICA_BUG_NAMES, parseReplicaBugs, replicaBugsFromEnv, type ReplicaBugs } from './test-hooks.js';
export { CLUSTER_DIR, TOPICS_FILE } from './topic-table.js';
export { INTERNAL_TOPIC_PREFIX } from './validate.js';
export type * from './types.js';
export type { ReplicaSpec, ReplicaRole, ReplicaStatus, ReplicaHost, ReplicaConfChange, ReplicaMembership } from './replicas.js';
