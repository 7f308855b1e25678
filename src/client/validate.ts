/**
 * Checks of the numbers an application hands the client, made before anything is sent: a value the
 * wire cannot carry (an int32 field given 2^40, an int64 offset beyond 2^53) would otherwise fail in
 * grpc-js's serializer with an INTERNAL "serialization failure". Each check names the field and the
 * range, as a SluiceError the caller can match on.
 */
import { TOPIC_PARTITIONS_MAX } from '../constants.js';
import { SluiceError, type ErrorCode } from '../errors.js';

/** The largest value of a protobuf int32 field (partition counts, byte and time limits). */
export const PROTO_INT32_MAX = 2 ** 31 - 1;

function integerIn(value: unknown, what: string, min: number, max: number, code: ErrorCode = 'INVALID_REQUEST'): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new SluiceError(code, `${what} must be an integer from ${min} to ${max} (got ${String(value)})`);
  }
  return value;
}

/** A partition id: partitions are numbered from 0, and no topic has more than TOPIC_PARTITIONS_MAX. */
export function checkPartition(value: unknown, what = 'partition'): number {
  return integerIn(value, what, 0, TOPIC_PARTITIONS_MAX - 1);
}

/** An offset: offsets are non-negative and, in this client, JavaScript-safe integers. */
export function checkOffset(value: unknown, what = 'offset'): number {
  return integerIn(value, what, 0, Number.MAX_SAFE_INTEGER, 'INVALID_OFFSET');
}

/** A timestamp in milliseconds since the epoch. */
export function checkTimestampMs(value: unknown, what = 'timestampMs'): number {
  return integerIn(value, what, 0, Number.MAX_SAFE_INTEGER);
}

/** A count, size or duration carried in an int32 field. */
export function checkInt32(value: unknown, what: string, min = 0): number {
  return integerIn(value, what, min, PROTO_INT32_MAX);
}
