/**
 * One error base for every expected failure in Sluice.
 *
 * `code` is a stable reason string from the `ErrorCode` union below: it is what clients match on, what
 * `src/rpc/` maps to a gRPC status (and puts in a google.rpc.ErrorInfo `reason`), and what the docs list.
 * Programmer bugs are not SluiceErrors: they are `node:assert/strict` failures and crash loudly.
 *
 * Errors must survive a trip through `postMessage` (shard worker -> main thread), so `toWire`/`fromWire`
 * carry code, message and retriable as plain data.
 */
export const ERROR_CODES = [
  // Topics and partitions
  'UNKNOWN_TOPIC',
  'UNKNOWN_PARTITION',
  'TOPIC_ALREADY_EXISTS',
  'INVALID_TOPIC_NAME',
  'INVALID_PARTITIONS',
  'INVALID_REPLICATION_FACTOR',
  'INVALID_CONFIG',
  /** A client tried to change an internal (`__`-prefixed) topic; only the broker writes there. */
  'INTERNAL_TOPIC',
  // Offsets and reads
  'OFFSET_OUT_OF_RANGE',
  'INVALID_OFFSET',
  // Batches and records
  'CORRUPT_BATCH',
  'UNSUPPORTED_MAGIC',
  'UNSUPPORTED_COMPRESSION',
  'RECORD_TOO_LARGE',
  'TOO_MANY_RECORDS',
  'INVALID_RECORD',
  'INVALID_TIMESTAMP',
  'CONTROL_BATCH_NOT_ALLOWED',
  'INVALID_REQUEST',
  /** The request's bytes are not a valid protobuf message of the method's type. */
  'MALFORMED_REQUEST',
  // Storage
  'LOG_CORRUPT',
  'LOG_FENCED',
  'LOG_CLOSED',
  'STORAGE_ERROR',
  'DATA_DIR_LOCKED',
  // Idempotent producers
  'OUT_OF_ORDER_SEQUENCE',
  'PRODUCER_FENCED',
  /** The disk holding the data dir is full (ENOSPC/EDQUOT); nothing was written. Retry after space is freed. */
  'DISK_FULL',
  // Flow control and availability
  'QUEUE_FULL',
  'CLIENT_MEMORY_EXHAUSTED',
  'UNAVAILABLE',
  'SHUTTING_DOWN',
  'TIMEOUT',
  // Raft and cluster
  'NOT_LEADER',
  'PROPOSAL_DROPPED',
  /**
   * (Clusters) this node has not caught up with the controller's metadata since it started (its
   * registration is not applied here yet), so it cannot tell an unknown topic from one it has not
   * learnt of. Retriable: never UNKNOWN_TOPIC from a node that does not know yet.
   */
  'METADATA_NOT_READY',
  /** A node of another cluster (its data dir names another cluster id) tried to join or gossip. */
  'CLUSTER_ID_MISMATCH',
  /** A node tried to join under a node id that a live member with another node UUID holds. */
  'DUPLICATE_NODE_ID',
  // Controller (issue 11 §3)
  /** A replication factor above the number of live nodes that can take a replica. */
  'REPLICATION_FACTOR_TOO_LARGE',
  /** A node id the controller has never registered. */
  'UNKNOWN_NODE',
  /** The partition is being moved already; one move at a time per partition. */
  'REASSIGNMENT_IN_PROGRESS',
  /** A metadata record or snapshot of a layout version this node does not know (written by a newer node). */
  'UNSUPPORTED_VERSION',
  // Groups
  'UNKNOWN_GROUP',
  'UNKNOWN_MEMBER',
  'STALE_GENERATION',
  'GROUP_NOT_EMPTY',
  'PARTITION_NOT_ASSIGNED',
  /**
   * This node does not coordinate the group (cluster mode: it does not lead the group's offsets
   * partition, or is still loading it). ErrorInfo names the coordinator (`coordinator_id`,
   * `coordinator_address`) when known; retry there, or here shortly.
   */
  'NOT_COORDINATOR',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Codes whose failure a client may retry unchanged and expect to succeed later. */
const RETRIABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'QUEUE_FULL',
  'CLIENT_MEMORY_EXHAUSTED',
  'UNAVAILABLE',
  'SHUTTING_DOWN',
  'TIMEOUT',
  'NOT_LEADER',
  'PROPOSAL_DROPPED',
  'METADATA_NOT_READY',
  'DISK_FULL',
  'NOT_COORDINATOR',
]);

export interface SluiceErrorWire {
  readonly code: ErrorCode;
  readonly message: string;
  readonly retriable: boolean;
  readonly retryAfterMs?: number;
}

export class SluiceError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  /** A hint for retriable errors: how long to wait before retrying (gRPC: google.rpc.RetryInfo). */
  readonly retryAfterMs: number | undefined;
  /**
   * Machine-readable facts about the failure (gRPC: the ErrorInfo `metadata` map), e.g. NOT_LEADER's
   * `leader_id`, `leader_address`, `leader_epoch`. Keys are snake_case; values strings.
   */
  readonly info: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retriable?: boolean; retryAfterMs?: number; info?: Record<string, string> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SluiceError';
    this.code = code;
    this.retriable = options?.retriable ?? RETRIABLE.has(code);
    this.retryAfterMs = options?.retryAfterMs;
    this.info = options?.info;
  }

  toWire(): SluiceErrorWire {
    const wire: SluiceErrorWire = { code: this.code, message: this.message, retriable: this.retriable };
    return this.retryAfterMs === undefined ? wire : { ...wire, retryAfterMs: this.retryAfterMs };
  }

  static fromWire(wire: SluiceErrorWire): SluiceError {
    return new SluiceError(wire.code, wire.message, { retriable: wire.retriable, retryAfterMs: wire.retryAfterMs });
  }
}

export function isSluiceError(err: unknown, code?: ErrorCode): err is SluiceError {
  return err instanceof SluiceError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a SluiceError, keeping SluiceErrors as they are. */
export function toSluiceError(err: unknown): SluiceError {
  if (err instanceof SluiceError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SluiceError('INTERNAL', message, { cause: err });
}
