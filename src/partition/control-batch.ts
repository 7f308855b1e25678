/**
 * Raft's own entries in the partition log: one-record CONTROL batches (attributes bit 5), so they
 * occupy an offset as Kafka's transaction markers do, and every reader skips them. The record's key
 * says what it is, in Kafka's control-record layout (int16 version, int16 type); the value of a
 * membership change is its JSON. Types 0 and 1 are Kafka's abort/commit markers; ours start at 100
 * so a Kafka gateway can never confuse them.
 *
 * `controlBatch` has the signature of src/raft's `ControlDataFn`, so the core's no-op and conf runs
 * come out as ready-to-write batches (baseOffset = index, epoch = term).
 */
import { decodeBatch, encodeBatch } from '../batch/index.js';
import { SluiceError } from '../errors.js';
import type { ConfChange } from '../raft/index.js';

const CONTROL_VERSION = 0;
export const CONTROL_TYPE_NOOP = 100;
export const CONTROL_TYPE_CONF = 101;

function key(type: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeInt16BE(CONTROL_VERSION, 0);
  k.writeInt16BE(type, 2);
  return k;
}

export function controlBatch(kind: 'noop' | 'conf', index: number, term: number, change: ConfChange | null): Uint8Array {
  const value = kind === 'conf' ? Buffer.from(JSON.stringify(change)) : null;
  return encodeBatch([{ key: key(kind === 'noop' ? CONTROL_TYPE_NOOP : CONTROL_TYPE_CONF), value, timestampMs: 0 }], {
    baseOffset: index,
    partitionLeaderEpoch: term,
    baseTimestampMs: 0,
    control: true,
  });
}

/** What a control batch holds: a no-op, a membership change, or a marker we do not interpret. */
export function readControl(batch: Uint8Array): { kind: 'noop' | 'conf' | 'other'; change: ConfChange | null } {
  const b = decodeBatch(batch);
  if (!b.header.isControl) throw new SluiceError('INVALID_REQUEST', 'not a control batch');
  const k = b.records[0]?.key;
  const type = k && k.length >= 4 ? Buffer.from(k).readInt16BE(2) : -1;
  if (type === CONTROL_TYPE_NOOP) return { kind: 'noop', change: null };
  if (type === CONTROL_TYPE_CONF) return { kind: 'conf', change: JSON.parse(Buffer.from(b.records[0].value!).toString()) as ConfChange };
  return { kind: 'other', change: null };
}
