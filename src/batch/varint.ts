/**
 * Zig-zag varints as Kafka's v2 records use them (protobuf encoding). `varint` values are 32-bit;
 * `varlong` values (timestamp deltas) are 64-bit in Kafka but must be safe integers here, since Sluice
 * keeps timestamps as JS numbers; anything wider is reported as corrupt rather than silently rounded.
 */
import { SluiceError } from '../errors.js';

/** Mutable cursor shared by the readers so they return values without allocating. */
export interface Cursor {
  pos: number;
  readonly end: number;
}

export function sizeOfVarint(value: number): number {
  let v = ((value << 1) ^ (value >> 31)) >>> 0;
  let n = 1;
  while (v >= 0x80) {
    v >>>= 7;
    n++;
  }
  return n;
}

export function writeVarint(buf: Uint8Array, pos: number, value: number): number {
  let v = ((value << 1) ^ (value >> 31)) >>> 0;
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/**
 * Bytes of `v` (0 <= v < 2^53) as a plain unsigned varint (protobuf's wire varint, no zig-zag): the
 * protobuf encoders of the Produce/Fetch hot paths (src/rpc) and of the shard's structured reads use it.
 */
export function sizeOfUnsignedVarint(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes `v` (0 <= v < 2^53) as a plain unsigned varint at `pos`; returns the position after it. */
export function writeUnsignedVarint(buf: Uint8Array, pos: number, v: number): number {
  while (v >= 128) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

function zigzagLong(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

export function sizeOfVarlong(value: number): number {
  let v = zigzagLong(value);
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

export function writeVarlong(buf: Uint8Array, pos: number, value: number): number {
  let v = zigzagLong(value);
  while (v >= 0x80) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

function pastEnd(what: string): SluiceError {
  return new SluiceError('CORRUPT_BATCH', `${what} runs past the end of the records`);
}

export function readVarint(buf: Uint8Array, c: Cursor): number {
  let result = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (c.pos >= c.end) throw pastEnd('varint');
    const b = buf[c.pos++];
    result |= (b & 0x7f) << shift;
    if (b < 0x80) return (result >>> 1) ^ -(result & 1);
  }
  throw new SluiceError('CORRUPT_BATCH', 'varint longer than 5 bytes');
}

export function readVarlong(buf: Uint8Array, c: Cursor): number {
  let result = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (c.pos >= c.end) throw pastEnd('varlong');
    const b = buf[c.pos++];
    result += (b & 0x7f) * mul;
    if (b < 0x80) {
      if (!Number.isSafeInteger(result)) throw new SluiceError('CORRUPT_BATCH', 'varlong exceeds 2^53');
      return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
    }
    mul *= 128;
  }
  throw new SluiceError('CORRUPT_BATCH', 'varlong longer than 10 bytes');
}
