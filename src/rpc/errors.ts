/**
 * The one place where Sluice error codes meet gRPC status codes (STYLE: "map codes to gRPC status only
 * in src/rpc/"). Server side: `toServiceError` turns any thrown value into a status with a
 * google.rpc.Status in `grpc-status-details-bin` whose single detail is an ErrorInfo{reason: code,
 * domain: "sluice.dev"}. Client side: `fromServiceError` reads it back into a SluiceError, so a client
 * matches on the same stable `code` the broker threw.
 */
import { Metadata, status as GrpcStatus, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { ERROR_CODES, SluiceError, toSluiceError, type ErrorCode } from '../errors.js';
import { Status } from './gen/google/rpc/status.js';
import { ErrorInfo, RetryInfo } from './gen/google/rpc/error_details.js';

export const ERROR_DOMAIN = 'sluice.dev';
export const ERROR_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.ErrorInfo';
export const RETRY_INFO_TYPE_URL = 'type.googleapis.com/google.rpc.RetryInfo';
/** ErrorInfo metadata key carrying the retry hint in milliseconds (the same as RetryInfo, for clients that read only ErrorInfo). */
export const RETRY_DELAY_MS_KEY = 'retry_delay_ms';
export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/**
 * Every code has a status; the `Record<ErrorCode, …>` type makes adding a code without a mapping a
 * compile error. docs/api.md lists the same table.
 */
export const GRPC_STATUS_BY_CODE: Readonly<Record<ErrorCode, GrpcStatus>> = Object.freeze({
  UNKNOWN_TOPIC: GrpcStatus.NOT_FOUND,
  UNKNOWN_PARTITION: GrpcStatus.NOT_FOUND,
  TOPIC_ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  INVALID_TOPIC_NAME: GrpcStatus.INVALID_ARGUMENT,
  INVALID_PARTITIONS: GrpcStatus.INVALID_ARGUMENT,
  INVALID_REPLICATION_FACTOR: GrpcStatus.INVALID_ARGUMENT,
  INVALID_CONFIG: GrpcStatus.INVALID_ARGUMENT,
  INTERNAL_TOPIC: GrpcStatus.PERMISSION_DENIED,
  OFFSET_OUT_OF_RANGE: GrpcStatus.OUT_OF_RANGE,
  INVALID_OFFSET: GrpcStatus.INVALID_ARGUMENT,
  CORRUPT_BATCH: GrpcStatus.INVALID_ARGUMENT,
  UNSUPPORTED_MAGIC: GrpcStatus.INVALID_ARGUMENT,
  UNSUPPORTED_COMPRESSION: GrpcStatus.INVALID_ARGUMENT,
  RECORD_TOO_LARGE: GrpcStatus.RESOURCE_EXHAUSTED,
  TOO_MANY_RECORDS: GrpcStatus.INVALID_ARGUMENT,
  INVALID_RECORD: GrpcStatus.INVALID_ARGUMENT,
  INVALID_TIMESTAMP: GrpcStatus.INVALID_ARGUMENT,
  CONTROL_BATCH_NOT_ALLOWED: GrpcStatus.INVALID_ARGUMENT,
  INVALID_REQUEST: GrpcStatus.INVALID_ARGUMENT,
  MALFORMED_REQUEST: GrpcStatus.INVALID_ARGUMENT,
  LOG_CORRUPT: GrpcStatus.DATA_LOSS,
  LOG_FENCED: GrpcStatus.INTERNAL,
  LOG_CLOSED: GrpcStatus.UNAVAILABLE,
  STORAGE_ERROR: GrpcStatus.INTERNAL,
  DATA_DIR_LOCKED: GrpcStatus.FAILED_PRECONDITION,
  OUT_OF_ORDER_SEQUENCE: GrpcStatus.OUT_OF_RANGE,
  PRODUCER_FENCED: GrpcStatus.FAILED_PRECONDITION,
  DISK_FULL: GrpcStatus.RESOURCE_EXHAUSTED,
  QUEUE_FULL: GrpcStatus.RESOURCE_EXHAUSTED,
  CLIENT_MEMORY_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  SHUTTING_DOWN: GrpcStatus.UNAVAILABLE,
  TIMEOUT: GrpcStatus.UNAVAILABLE,
  NOT_LEADER: GrpcStatus.UNAVAILABLE,
  PROPOSAL_DROPPED: GrpcStatus.UNAVAILABLE,
  METADATA_NOT_READY: GrpcStatus.UNAVAILABLE,
  CLUSTER_ID_MISMATCH: GrpcStatus.FAILED_PRECONDITION,
  DUPLICATE_NODE_ID: GrpcStatus.FAILED_PRECONDITION,
  REPLICATION_FACTOR_TOO_LARGE: GrpcStatus.FAILED_PRECONDITION,
  UNKNOWN_NODE: GrpcStatus.NOT_FOUND,
  REASSIGNMENT_IN_PROGRESS: GrpcStatus.FAILED_PRECONDITION,
  UNSUPPORTED_VERSION: GrpcStatus.FAILED_PRECONDITION,
  UNKNOWN_GROUP: GrpcStatus.NOT_FOUND,
  UNKNOWN_MEMBER: GrpcStatus.NOT_FOUND,
  STALE_GENERATION: GrpcStatus.FAILED_PRECONDITION,
  GROUP_NOT_EMPTY: GrpcStatus.FAILED_PRECONDITION,
  PARTITION_NOT_ASSIGNED: GrpcStatus.FAILED_PRECONDITION,
  NOT_COORDINATOR: GrpcStatus.UNAVAILABLE,
  INTERNAL: GrpcStatus.INTERNAL,
});

const KNOWN_CODES: ReadonlySet<string> = new Set(ERROR_CODES);

/** The gRPC status for a SluiceError: the table above, except that anything retriable is UNAVAILABLE-or-better. */
export function grpcStatusFor(err: SluiceError): GrpcStatus {
  const mapped = GRPC_STATUS_BY_CODE[err.code] ?? GrpcStatus.INTERNAL;
  if (err.retriable && mapped !== GrpcStatus.UNAVAILABLE && mapped !== GrpcStatus.RESOURCE_EXHAUSTED) return GrpcStatus.UNAVAILABLE;
  return mapped;
}

/** The canonical name of a gRPC status code ("NOT_FOUND"), as metrics label it. */
export function statusName(code: GrpcStatus): string {
  return GrpcStatus[code] ?? 'UNKNOWN';
}

/**
 * Encodes the google.rpc.Status carried in `grpc-status-details-bin`: an ErrorInfo, and a RetryInfo
 * when the error carries a retry hint.
 */
export function encodeStatusDetails(code: GrpcStatus, message: string, reason: string, metadata: Record<string, string> = {}, retryAfterMs?: number): Buffer {
  const info = ErrorInfo.encode({ reason, domain: ERROR_DOMAIN, metadata }).finish();
  const details = [{ typeUrl: ERROR_INFO_TYPE_URL, value: Buffer.from(info) }];
  if (retryAfterMs !== undefined) {
    const ms = Math.max(0, Math.round(retryAfterMs));
    const retry = RetryInfo.encode({ retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } }).finish();
    details.push({ typeUrl: RETRY_INFO_TYPE_URL, value: Buffer.from(retry) });
  }
  return Buffer.from(Status.encode({ code, message, details }).finish());
}

/** The retry delay of a status's google.rpc.RetryInfo, in milliseconds, or null when it has none. */
export function readRetryDelayMs(metadata: Metadata | undefined): number | null {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (raw === undefined || typeof raw === 'string') return null;
  try {
    for (const any of Status.decode(raw).details) {
      if (any.typeUrl !== RETRY_INFO_TYPE_URL) continue;
      const d = RetryInfo.decode(any.value).retryDelay;
      if (d !== undefined) return Number(d.seconds) * 1000 + Math.round(d.nanos / 1_000_000);
    }
  } catch {
    // Malformed details: no hint.
  }
  return null;
}

/** Any thrown value → a grpc-js status with an ErrorInfo detail. Unknown errors become INTERNAL. */
export function toServiceError(thrown: unknown): Partial<StatusObject> & Error & { code: GrpcStatus } {
  const err = toSluiceError(thrown);
  const code = grpcStatusFor(err);
  const metadata = new Metadata();
  const infoMetadata: Record<string, string> = { ...err.info, retriable: String(err.retriable) };
  if (err.retryAfterMs !== undefined) infoMetadata[RETRY_DELAY_MS_KEY] = String(Math.round(err.retryAfterMs));
  metadata.set(STATUS_DETAILS_KEY, encodeStatusDetails(code, err.message, err.code, infoMetadata, err.retryAfterMs));
  return Object.assign(new Error(err.message), { code, details: `${err.code}: ${err.message}`, metadata });
}

/**
 * The google.rpc.Status of a toServiceError status (what its `grpc-status-details-bin` carries), for
 * an error answered inside a message (ProduceStream) rather than as the call's status.
 */
export function toStatusMessage(err: ReturnType<typeof toServiceError>): Status {
  const raw = err.metadata?.get(STATUS_DETAILS_KEY)[0];
  if (raw !== undefined && typeof raw !== 'string') return Status.decode(raw);
  return { code: err.code, message: err.message, details: [] };
}

/** A google.rpc.Status received in a message, as the SluiceError a call ending with it would give. */
export function fromStatusMessage(status: Status): SluiceError {
  const metadata = new Metadata();
  metadata.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode(status).finish()));
  return fromServiceError(Object.assign(new Error(status.message), { code: status.code, details: status.message, metadata }));
}

/** Reads the ErrorInfo of a status's `grpc-status-details-bin`, if it carries one from our domain. */
export function readErrorInfo(metadata: Metadata | undefined): { reason: string; metadata: Record<string, string> } | null {
  const raw = metadata?.get(STATUS_DETAILS_KEY)[0];
  if (raw === undefined || typeof raw === 'string') return null;
  try {
    const status = Status.decode(raw);
    for (const any of status.details) {
      if (any.typeUrl !== ERROR_INFO_TYPE_URL) continue;
      const info = ErrorInfo.decode(any.value);
      if (info.domain === ERROR_DOMAIN) return { reason: info.reason, metadata: info.metadata };
    }
  } catch {
    // A malformed details blob is not worth failing over: fall back to the status code.
  }
  return null;
}

/** For statuses without our ErrorInfo (transport failures, grpc-js limits), the closest Sluice code. */
const CODE_BY_GRPC_STATUS: Partial<Record<GrpcStatus, ErrorCode>> = {
  [GrpcStatus.NOT_FOUND]: 'UNKNOWN_TOPIC',
  [GrpcStatus.ALREADY_EXISTS]: 'TOPIC_ALREADY_EXISTS',
  [GrpcStatus.INVALID_ARGUMENT]: 'INVALID_REQUEST',
  [GrpcStatus.OUT_OF_RANGE]: 'OFFSET_OUT_OF_RANGE',
  // grpc-js answers an over-long message with RESOURCE_EXHAUSTED and no details.
  [GrpcStatus.RESOURCE_EXHAUSTED]: 'RECORD_TOO_LARGE',
  [GrpcStatus.UNAVAILABLE]: 'UNAVAILABLE',
  [GrpcStatus.DEADLINE_EXCEEDED]: 'TIMEOUT',
  [GrpcStatus.CANCELLED]: 'UNAVAILABLE',
};

/** A failed call's ServiceError → the SluiceError the broker threw (or the closest one). */
export function fromServiceError(err: ServiceError | Error): SluiceError {
  if (err instanceof SluiceError) return err;
  const se = err as Partial<ServiceError>;
  const details = typeof se.details === 'string' && se.details.length > 0 ? se.details : err.message;
  const info = readErrorInfo(se.metadata);
  if (info !== null && KNOWN_CODES.has(info.reason)) {
    const code = info.reason as ErrorCode;
    const message = details.startsWith(`${code}: `) ? details.slice(code.length + 2) : details;
    const retriable = info.metadata.retriable === undefined ? undefined : info.metadata.retriable === 'true';
    const delay = Number(info.metadata[RETRY_DELAY_MS_KEY]);
    const { retriable: _r, [RETRY_DELAY_MS_KEY]: _d, ...rest } = info.metadata;
    const extra = Object.keys(rest).length > 0 ? rest : undefined;
    return new SluiceError(code, message, { cause: err, retriable, retryAfterMs: Number.isFinite(delay) && delay >= 0 ? delay : undefined, info: extra });
  }
  const code = (se.code !== undefined ? CODE_BY_GRPC_STATUS[se.code as GrpcStatus] : undefined) ?? 'INTERNAL';
  return new SluiceError(code, details, { cause: err });
}
