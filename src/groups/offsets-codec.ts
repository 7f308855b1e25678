/**
 * The record format of `__consumer_offsets` (version 1). Small, fixed and documented (docs/groups.md),
 * so a tool in another language can read the topic.
 *
 *   key   = u16 version (1) | u16 len | group utf8 | u16 len | topic utf8 | i32 partition   (big-endian)
 *   value = u16 version (1) | i64 offset | i64 commitTimeMs | u16 len | metadata utf8
 *   value = null (a tombstone): the offset was deleted (group deleted or expired).
 *
 * The log is compacted by key: a later record for the same key replaces an earlier one, and replay
 * keeps only the last (offsets-stm.ts).
 */
import { SluiceError } from '../errors.js';

export const OFFSETS_FORMAT_VERSION = 1;

export interface OffsetKey {
  group: string;
  topic: string;
  partition: number;
}

export interface OffsetValue {
  offset: number;
  commitTimeMs: number;
  metadata: string;
}

function strBytes(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 0xffff) throw new SluiceError('INVALID_REQUEST', `string of ${b.length} bytes does not fit an offsets record`);
  return b;
}

export function encodeOffsetKey(k: OffsetKey): Buffer {
  const g = strBytes(k.group);
  const t = strBytes(k.topic);
  const out = Buffer.allocUnsafe(2 + 2 + g.length + 2 + t.length + 4);
  let p = out.writeUInt16BE(OFFSETS_FORMAT_VERSION, 0);
  p = out.writeUInt16BE(g.length, p);
  p += g.copy(out, p);
  p = out.writeUInt16BE(t.length, p);
  p += t.copy(out, p);
  out.writeInt32BE(k.partition, p);
  return out;
}

export function encodeOffsetValue(v: OffsetValue): Buffer {
  const m = strBytes(v.metadata);
  const out = Buffer.allocUnsafe(2 + 8 + 8 + 2 + m.length);
  let p = out.writeUInt16BE(OFFSETS_FORMAT_VERSION, 0);
  p = out.writeBigInt64BE(BigInt(v.offset), p);
  p = out.writeBigInt64BE(BigInt(v.commitTimeMs), p);
  p = out.writeUInt16BE(m.length, p);
  m.copy(out, p);
  return out;
}

function asBuf(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

function corrupt(what: string): SluiceError {
  return new SluiceError('LOG_CORRUPT', `malformed ${what} in ${'__consumer_offsets'}`);
}

/** Returns null for a record of an unknown (newer) version, which replay skips. */
export function decodeOffsetKey(u8: Uint8Array): OffsetKey | null {
  const b = asBuf(u8);
  if (b.length < 2) throw corrupt('key');
  if (b.readUInt16BE(0) !== OFFSETS_FORMAT_VERSION) return null;
  let p = 2;
  const read = (): string => {
    if (p + 2 > b.length) throw corrupt('key');
    const n = b.readUInt16BE(p);
    p += 2;
    if (p + n > b.length) throw corrupt('key');
    const s = b.toString('utf8', p, p + n);
    p += n;
    return s;
  };
  const group = read();
  const topic = read();
  if (p + 4 !== b.length) throw corrupt('key');
  return { group, topic, partition: b.readInt32BE(p) };
}

export function decodeOffsetValue(u8: Uint8Array): OffsetValue {
  const b = asBuf(u8);
  if (b.length < 20 || b.readUInt16BE(0) !== OFFSETS_FORMAT_VERSION) throw corrupt('value');
  const offset = Number(b.readBigInt64BE(2));
  const commitTimeMs = Number(b.readBigInt64BE(10));
  const n = b.readUInt16BE(18);
  if (20 + n !== b.length) throw corrupt('value');
  return { offset, commitTimeMs, metadata: b.toString('utf8', 20, 20 + n) };
}
