/**
 * A single-producer, single-consumer byte ring over a SharedArrayBuffer, used to move batch bytes
 * between the main thread and a shard worker without copying them through postMessage.
 *
 * Only the producer allocates; only the consumer releases. Releases happen in allocation order (FIFO),
 * which both sides guarantee by handling descriptors synchronously in the order they were posted. That
 * lets the free space be one number: the producer counts bytes it has charged, the consumer counts bytes
 * it has released (an Int32 in shared memory, wrapping), and `capacity - (charged - released)` is the
 * contiguous-modulo-wrap region in front of the head.
 *
 * An allocation that does not fit before the end of the buffer starts at 0 instead; its `charge` then
 * includes the skipped tail, so releasing the charge frees the skipped bytes too. The descriptor that
 * crosses threads is just (offset, length, charge).
 */
import assert from 'node:assert/strict';

/** Index of the released-bytes counter in the control Int32Array. */
const RELEASED = 0;
const CONTROL_INTS = 1;

export interface RingBuffers {
  data: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

export interface RingSlot {
  /** Byte offset of the slot in the ring. */
  offset: number;
  length: number;
  /** Bytes the consumer must release for this slot (length plus any skipped tail). */
  charge: number;
}

export function createRingBuffers(capacityBytes: number): RingBuffers {
  assert.ok(Number.isInteger(capacityBytes) && capacityBytes > 0 && capacityBytes < 2 ** 31, `bad ring capacity ${capacityBytes}`);
  return {
    data: new SharedArrayBuffer(capacityBytes),
    control: new SharedArrayBuffer(CONTROL_INTS * Int32Array.BYTES_PER_ELEMENT),
  };
}

/** The allocating side. Not thread-safe: exactly one thread owns a RingWriter. */
export class RingWriter {
  readonly capacity: number;
  readonly bytes: Buffer;
  private readonly control: Int32Array;
  private head = 0;
  /** Bytes charged so far, modulo 2^32 (compared with the consumer's released count). */
  private charged = 0;

  constructor(buffers: RingBuffers) {
    this.bytes = Buffer.from(buffers.data);
    this.capacity = buffers.data.byteLength;
    this.control = new Int32Array(buffers.control);
  }

  /** Bytes not yet released by the consumer. */
  get usedBytes(): number {
    return (this.charged - Atomics.load(this.control, RELEASED)) | 0;
  }

  get freeBytes(): number {
    return this.capacity - this.usedBytes;
  }

  /** Reserves `length` contiguous bytes, or returns null when the ring has no room now. */
  alloc(length: number): RingSlot | null {
    assert.ok(length >= 0 && length <= this.capacity, `ring allocation of ${length} bytes exceeds capacity ${this.capacity}`);
    let offset = this.head;
    let charge = length;
    if (this.capacity - this.head < length) {
      offset = 0;
      charge = this.capacity - this.head + length;
    }
    if (charge > this.freeBytes) return null;
    this.head = offset + length === this.capacity ? 0 : offset + length;
    this.charged = (this.charged + charge) | 0;
    return { offset, length, charge };
  }

  /** Shrinks the most recent allocation to `length` bytes, giving the rest back at once. */
  shrinkLast(slot: RingSlot, length: number): RingSlot {
    assert.ok(length >= 0 && length <= slot.length);
    const end = slot.offset + slot.length;
    assert.ok(this.head === end || (this.head === 0 && end === this.capacity), 'only the last allocation can shrink');
    const give = slot.length - length;
    this.head = slot.offset + length === this.capacity ? 0 : slot.offset + length;
    this.charged = (this.charged - give) | 0;
    return { offset: slot.offset, length, charge: slot.charge - give };
  }

  /** Undoes the most recent allocation entirely (its charge included), as if it never happened. */
  cancelLast(slot: RingSlot): void {
    const end = slot.offset + slot.length;
    assert.ok(this.head === end || (this.head === 0 && end === this.capacity), 'only the last allocation can be cancelled');
    const skipped = slot.charge - slot.length;
    this.head = skipped > 0 ? this.capacity - skipped : slot.offset;
    this.charged = (this.charged - slot.charge) | 0;
  }

  /** A view of a slot (for writing into it). */
  view(slot: RingSlot): Buffer {
    return this.bytes.subarray(slot.offset, slot.offset + slot.length);
  }
}

/** The releasing side. Not thread-safe: exactly one thread owns a RingReader. */
export class RingReader {
  readonly bytes: Buffer;
  private readonly control: Int32Array;

  constructor(buffers: RingBuffers) {
    this.bytes = Buffer.from(buffers.data);
    this.control = new Int32Array(buffers.control);
  }

  view(offset: number, length: number): Buffer {
    return this.bytes.subarray(offset, offset + length);
  }

  /** Returns a slot's charge to the producer. Must be called in allocation order. */
  release(charge: number): void {
    if (charge !== 0) Atomics.add(this.control, RELEASED, charge);
  }
}
