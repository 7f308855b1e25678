/**
 * Messages between the main thread (ShardHost) and a shard worker, over one MessagePort per worker
 * life. Everything here is structured-clone data: small descriptors, never batch bytes on the hot
 * path (those sit in the rings, see ./ring.ts).
 *
 * Both sides coalesce: all ops bound for a shard in one event-loop turn travel in one `ToWorker`
 * message, and all replies a worker produces in one turn travel in one `ToMain` message.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Message, RaftBug } from '../raft/index.js';
import type { PartitionDriverBug, PartitionMembership } from '../partition/index.js';
import type { SluiceErrorWire } from '../errors.js';
import type { LogConfig } from '../storage/types.js';
import type { RecoveryReport } from '../storage/recovery.js';
import type { RingBuffers } from './ring.js';
import type { ThreadStats } from './thread-stats.js';

/**
 * A partition's number on the hot path: assigned by the broker when it learns of a topic (created or
 * loaded), `base + partition`, never reused within a broker's life, so a re-created topic's
 * partitions never meet the old ones' ops. No strings are built or parsed per request.
 */
export type PartitionKey = number;

export type AcksCode = 0 | 1 | 2; // none, leader, all

export interface ServeTask {
  kind: 'serve';
  shard: number;
  dataDir: string;
  port: MessagePort;
  requestRing: RingBuffers;
  responseRing: RingBuffers;
  retentionCheckMs: number;
  statsIntervalMs: number;
  fetchWaitersMax: number;
  /** The chained fetches' claim counters (./fetch-chain.ts), shared with the main thread. */
  chainCounters: SharedArrayBuffer;
  /** Idle time after which a partition forgets an idempotent producer. */
  producerIdleExpiryMs: number;
}

export interface PartitionSpec {
  k: PartitionKey;
  topic: string;
  partition: number;
  /** New at every creation of the topic; the partition directory records it and must match. */
  topicId: string;
  config: LogConfig;
  /** Remove any leftover directory first (a new partition must start empty). */
  fresh: boolean;
  /**
   * Cluster mode: the partition's Raft group (cluster-unique), this node's id and the group's bootstrap
   * members (used only when the replica is created; afterwards its configuration comes from its Raft
   * state). Absent outside cluster mode: a one-voter group of this node. `bugs`: TEST ONLY, the
   * simulator's bug modes on this replica (src/broker/test-hooks.ts); absent in production.
   */
  replica?: { group: number; nodeId: number; voters: number[]; learners: number[]; quiesce?: boolean; bugs?: { raft: readonly RaftBug[]; driver: readonly PartitionDriverBug[] } };
}

/**
 * A Raft message of one partition across the thread boundary. Entry bytes travel by structured clone
 * of a compact copy whose buffer is transferred: one copy per crossing (zero-copy through the rings is
 * a later step).
 */
export interface RaftEnvelope {
  k: PartitionKey;
  msg: Message;
}

export type Op =
  /** Produce: bytes at [off, off+len) of the request ring; release `charge` once appended. */
  | { t: 'p'; id: number; k: PartitionKey; off: number; len: number; charge: number; acks: AcksCode }
  /** Fetch; with `pb`, the reply's data is protobuf `records` built on the shard (./structured-read.ts), not raw batches. */
  | {
      t: 'f';
      id: number;
      k: PartitionKey;
      offset: number;
      maxBytes: number;
      maxWaitMs: number;
      pb?: boolean;
      /** A chained fetch (./fetch-chain.ts) on this slot of the claim counters: answered again and again under this id. */
      chain?: number;
    }
  /** Cancel a parked fetch (its caller aborted), or end a chained one. */
  | { t: 'cancel'; id: number }
  /** A stalled chained fetch may go on: its reader took the answers it was waiting for. No reply of its own. */
  | { t: 'resume'; id: number }
  | { t: 'open'; id: number; parts: PartitionSpec[] }
  /** Close the partitions and, with `remove`, delete their directories. */
  | { t: 'drop'; id: number; parts: Array<{ k: PartitionKey; topic: string; partition: number }>; remove: boolean }
  | { t: 'config'; id: number; keys: PartitionKey[]; config: LogConfig }
  | { t: 'stat'; id: number; keys: PartitionKey[] }
  | { t: 'offsets'; id: number; k: PartitionKey; spec: 'earliest' | 'latest' | number }
  /** Flush and close everything; the serve task then resolves. */
  | { t: 'close'; id: number }
  /** Leader only: hand the partition's leadership to node `to` (replies once the core took it). */
  | { t: 'transfer'; id: number; k: PartitionKey; to: number }
  /** Leader only: propose one membership change of the partition's group (replies once the core took it). */
  | { t: 'conf'; id: number; k: PartitionKey; change: { type: 'addVoter' | 'addLearner' | 'remove'; node: number } }
  /** The Raft membership and members' progress of the partitions (reply `members`). */
  | { t: 'members'; id: number; keys: PartitionKey[] }
  /** Raft messages from peers (every one that arrived in one main-thread turn); no reply. */
  | { t: 'raft'; msgs: RaftEnvelope[] }
  /** The failure detector's view of these nodes changed: quiesced replicas of their groups wake; no reply. */
  | { t: 'wake'; nodes: number[]; down: boolean }
  /** Test hook: the worker exits abruptly, as a crash would. */
  | { t: 'crash' }
  /** Test hook: the worker blocks its thread for `ms` (a stuck disk, a long GC). */
  | { t: 'stall'; ms: number };

export interface ToWorker {
  ops: Op[];
}

export interface PartitionStat {
  k: PartitionKey;
  topic: string;
  partition: number;
  logStartOffset: number;
  highWatermark: number;
  sizeBytes: number;
  /** Fenced (corrupt) ranges of the log; 0 on a healthy partition. */
  damagedRanges: number;
  /** The replica's Raft state: role (RaftNode's, or 'learner'), the leader it knows (0 = none), its term. */
  role: 'leader' | 'follower' | 'candidate' | 'precandidate' | 'learner';
  leader: number;
  epoch: number;
  logEndOffset: number;
  /** Leader only: the voters within REPLICA_ISR_LAG_OFFSETS_MAX of its log end, itself included; else empty. */
  inSync: number[];
  /** The group's voters (its Raft configuration). */
  voters: number;
  /**
   * The group is quiesced here. On a follower that means its leader saw it hold the whole log before
   * going quiet (any later write wakes the group first), so it is in sync without asking the leader.
   */
  quiesced: boolean;
}

export type Reply =
  /** `leader`/`epoch`: a NOT_LEADER answer's leader (0 = none known) and the replica's term. */
  | { id: number; err: SluiceErrorWire; leader?: number; epoch?: number }
  | { id: number; t: 'p'; baseOffset: number; lastOffset: number; appendTimeMs: number; logStartOffset: number }
  | {
      id: number;
      t: 'f';
      /** Ring slot of the data (when `data` is absent). */
      off: number;
      len: number;
      charge: number;
      /** Data that did not fit the response ring, copied through postMessage instead. */
      data?: Uint8Array;
      /** Structured read only: nothing was returned; ask again with at least this many bytes. */
      need?: number;
      records: number;
      highWatermark: number;
      logStartOffset: number;
      nextOffset: number;
      /** A chained fetch: another answer under this id follows (the chain goes on). */
      more?: boolean;
    }
  | { id: number; t: 'stat'; stats: PartitionStat[] }
  | { id: number; t: 'offsets'; offset: number }
  /** Per key asked for that is open here: its membership (see Partition.membership()). */
  | { id: number; t: 'members'; members: Array<{ k: PartitionKey } & PartitionMembership> }
  | { id: number; t: 'done' }
  /** Open: the partitions that could not be opened (they stay offline, answering with their error). */
  | {
      id: number;
      t: 'opened';
      failed: Array<{ k: PartitionKey; err: SluiceErrorWire }>;
      /** What recovery found in each partition that did open (the worker has no logger; the host logs it). */
      recovered: Array<{ k: PartitionKey; report: RecoveryReport }>;
    };

export interface ShardStatsMessage {
  queueDepth: number;
  /** Partitions of this shard that are offline (could not be opened), at most BROKER_PARTITIONS_MAX. */
  offline: PartitionKey[];
  eventLoopLagSeconds: number;
  /** Partitions whose numbers changed since the last message that carried them (all, every SHARD_STATS_FULL_INTERVALS). */
  partitions: PartitionStat[];
  flushSeconds: number[];
  /** The worker thread's event-loop delay and GC pauses since the last stats message. */
  thread?: ThreadStats;
}

export interface ToMain {
  replies?: Reply[];
  stats?: ShardStatsMessage;
  /** Raft messages the worker's partitions send to peers, everything of one worker turn (after persist). */
  raft?: RaftEnvelope[];
  /** Partitions whose role, leader or term changed since the last report (checked every tick). */
  leaders?: PartitionStat[];
}
