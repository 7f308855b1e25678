/**
 * Contract between the broker core (topic table, shards, partition actors: src/broker, src/shard,
 * src/partition) and its front-ends (gRPC services in src/rpc, the embedded API). Everything here is
 * transport-neutral: numbers for offsets, Uint8Array for bytes, SluiceError for failures.
 */
import type { RecordInput } from '../batch/types.js';
import type { FetchChain } from '../shard/index.js';

export type Acks = 'none' | 'leader' | 'all';

export interface PartitionInfo {
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  /** Node id of the leader (the local node on a single-node broker). */
  leader: number;
  replicas: number[];
  sizeBytes: number;
  /** Ranges of the log fenced after corruption was found (reads of them answer LOG_CORRUPT); 0 when healthy. */
  damagedRanges: number;
  /** The leader's epoch (its Raft term); 0 when unknown. Set in cluster mode. */
  leaderEpoch?: number;
  /** The voters within a bound of the leader's log (the leader included); known on the leader. Set in cluster mode. */
  inSyncReplicas?: number[];
}

export interface TopicDescription {
  name: string;
  partitions: PartitionInfo[];
  replicationFactor: number;
  /** Effective configs: explicit values overlaid on defaults. */
  configs: Record<string, string>;
}

export interface TopicSummary {
  name: string;
  partitionCount: number;
  replicationFactor: number;
}

export interface ProduceInput {
  topic: string;
  /** Absent: the broker picks (murmur2 of the first record's key, else sticky round-robin). */
  partition?: number;
  /** One or more pre-encoded Kafka v2 batches (the fast path). Exactly one of batches/records is set. */
  batches?: Uint8Array;
  records?: RecordInput[];
  acks: Acks;
  /**
   * Idempotence for `records` (raw `batches` carry it in their v2 headers): the broker writes these
   * into the header of the batch it builds. `baseSequence` is the first record's sequence.
   */
  producer?: { producerId: bigint; producerEpoch: number; baseSequence: number };
}

export interface ProducerIdentity {
  producerId: bigint;
  producerEpoch: number;
}

export interface ProduceResult {
  partition: number;
  baseOffset: number;
  lastOffset: number;
  appendTimeMs: number;
  logStartOffset: number;
}

export interface FetchInput {
  topic: string;
  partition: number;
  offset: number;
  maxBytes: number;
  /** 0 = answer at once; otherwise wait up to this long for data at `offset`. */
  maxWaitMs: number;
  /**
   * 'batches' (default): whole raw v2 batches. 'pb-records': the records at or after `offset` as the
   * protobuf bytes of FetchResponse's `repeated Record records = 1`, decoded (and decompressed) by the
   * shard, not the caller's thread; `maxBytes` then bounds that output (at least one batch's records).
   */
  format?: 'batches' | 'pb-records';
}

export interface FetchResult {
  /** Whole raw v2 batches; the first may start before `offset` (clients skip records below it). Empty with format 'pb-records'. */
  batches: Uint8Array;
  /** With format 'pb-records': the encoded records. */
  pbRecords?: Uint8Array;
  /**
   * With format 'pb-records': set when the first batch's records encode to more than `maxBytes`; nothing
   * was returned, and the fetch must be asked again with at least this `maxBytes`.
   */
  needBytes?: number;
  highWatermark: number;
  logStartOffset: number;
  nextOffset: number;
}

export type OffsetSpec = { kind: 'earliest' } | { kind: 'latest' } | { kind: 'timestamp'; timestampMs: number };

export interface ListOffsetsResult {
  partition: number;
  /** -1 when a timestamp lookup finds nothing (Kafka's convention). */
  offset: number;
}

export interface BrokerInfo {
  nodeId: number;
  grpcAddress: string;
  httpAddress: string;
  /** Cluster membership (gossip) fills these; a broker without it reports itself only. '' when not configured. */
  rack?: string;
  /** False once gossip declared the node dead. */
  alive?: boolean;
  /** Gossip's view: alive, suspect (missed probes, not yet refuted) or dead. */
  state?: 'alive' | 'suspect' | 'dead';
  /** The node's UUID (new when its data dir was wiped). */
  nodeUuid?: string;
  /** Cluster mode: its place in the controller group as the answering node knows it ('' when none). */
  controllerRole?: 'voter' | 'learner' | '';
}

export interface ClusterMetadata {
  clusterId: string;
  controllerId: number;
  brokers: BrokerInfo[];
  topics: TopicDescription[];
}

/**
 * The metadata-changing calls take `deadlineMs`, the deadline of the client call they serve (wall-clock
 * ms; absent, Infinity or NaN: none). In cluster mode the controller stops re-sending a request once it
 * passes, so a request the client gave up on cannot land after the client's next one; a single node
 * has nothing to re-send and ignores it.
 */
export interface BrokerApi {
  createTopic(name: string, partitions: number, replicationFactor: number, configs: Record<string, string>, deadlineMs?: number): Promise<TopicDescription>;
  deleteTopic(name: string, deadlineMs?: number): Promise<void>;
  listTopics(): Promise<TopicSummary[]>;
  describeTopic(name: string): Promise<TopicDescription>;
  /** Sets the given keys and removes `remove`; returns the effective configs. */
  alterTopicConfig(name: string, set: Record<string, string>, remove: string[], deadlineMs?: number): Promise<Record<string, string>>;
  /** Grows the topic to `totalPartitions` (grow only). */
  createPartitions(name: string, totalPartitions: number, deadlineMs?: number): Promise<TopicDescription>;

  produce(input: ProduceInput): Promise<ProduceResult>;
  /**
   * `chain`: the reader's chained fetch (one per caught-up reader, closed when it stops). Its
   * long-polls are renewed by the shard itself, so a reader that keeps up costs no message to the shard
   * per answer. Honoured for a replica on this node; otherwise ignored.
   */
  fetch(input: FetchInput, signal?: AbortSignal, chain?: FetchChain): Promise<FetchResult>;
  listOffsets(topic: string, partition: number, spec: OffsetSpec): Promise<ListOffsetsResult>;
  metadata(topics?: string[]): Promise<ClusterMetadata>;
  /** A cluster-unique producer id; with a `name`, that name's id and its next epoch (fencing the older one). */
  initProducer(name?: string): Promise<ProducerIdentity>;

  /** Stops intake, drains in-flight work, flushes and closes every log. */
  close(): Promise<void>;

  /**
   * The view the broker's own subsystems (consumer groups) use: like this API, but allowed to change
   * internal `__` topics, which the client-facing methods refuse with INTERNAL_TOPIC. Never hand it to
   * a client. Optional so that test fakes need not implement it.
   */
  internalView?(): BrokerApi;

  /** Partitions that are offline (`topic/partition`); readiness requires none. Optional for fakes. */
  offlinePartitions?(): string[];

  /**
   * Cluster mode only (absent elsewhere: the RPC answers that it needs a cluster). Replica moves,
   * decommission and rebalance go to the controller; docs/cluster.md "Moves".
   */
  movePartition?(topic: string, partition: number, replicas: number[], deadlineMs?: number): Promise<void>;
  decommissionNode?(nodeId: number, deadlineMs?: number): Promise<void>;
  /** Makes a decommissioning or decommissioned node active again; an active one: nothing to do. */
  recommissionNode?(nodeId: number, deadlineMs?: number): Promise<RecommissionView>;
  /** Starts moves that even out replica counts; resolves with how many started. */
  rebalance?(deadlineMs?: number): Promise<number>;
  reassignments?(): Promise<ReassignmentsView>;
}

/** A recommission's answer: the node's state before (as the node asked had it) and the node now. */
export interface RecommissionView {
  previousState: 'active' | 'decommissioning' | 'decommissioned';
  node: ReassignmentsView['nodes'][number];
}

/** Moves in progress and node lifecycles (cluster mode). */
export interface ReassignmentsView {
  reassignments: Array<{ topic: string; partition: number; replicas: number[]; learners: number[]; target: number[]; lost: number[]; leader: number }>;
  nodes: Array<{ nodeId: number; state: 'active' | 'decommissioning' | 'decommissioned'; replicas: number }>;
}
