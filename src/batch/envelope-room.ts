/**
 * Bytes with spare room before and after them, so an envelope (the protobuf field header in front,
 * a few small fields behind) can be written around them in place instead of copying them into a new
 * buffer. The broker's fetch path is the user: the main thread must copy a response's batches out of
 * the shard's ring (to free the slot), and copying them into such a buffer lets the FetchResponse
 * encoder (src/rpc/fast-codec.ts) hand grpc-js a view rather than a second copy of up to a MiB.
 *
 * The room belongs to the buffer's owner alone: `withEnvelopeRoom` allocates it fresh, and only bytes
 * registered here are written around. Pure: no I/O.
 */
import { ENVELOPE_HEAD_BYTES, ENVELOPE_TAIL_BYTES } from '../constants.js';

const roomy = new WeakSet<Uint8Array>();

/** `length` uninitialised bytes with ENVELOPE_HEAD_BYTES free before them and ENVELOPE_TAIL_BYTES after. */
export function withEnvelopeRoom(length: number): Buffer {
  const whole = Buffer.allocUnsafe(ENVELOPE_HEAD_BYTES + length + ENVELOPE_TAIL_BYTES);
  const body = whole.subarray(ENVELOPE_HEAD_BYTES, ENVELOPE_HEAD_BYTES + length);
  roomy.add(body);
  return body;
}

/** True when `bytes` came from `withEnvelopeRoom`, so the room around them may be written. */
export function hasEnvelopeRoom(bytes: Uint8Array): boolean {
  return roomy.has(bytes);
}
