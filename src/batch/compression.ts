/**
 * Record-set compression for v2 batches (attributes bits 0-2), using maintained native packages:
 * gzip from node:zlib, lz4 as the LZ4 *frame* format (what Kafka's KafkaLZ4BlockOutputStream writes for
 * magic 2), snappy in xerial's framed format (what Kafka's Java client writes; raw snappy is also read,
 * as xerial's SnappyInputStream does). zstd is not supported on Node 20 and is rejected with
 * UNSUPPORTED_COMPRESSION, so nothing unreadable ever enters a log.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { compressFrameSync, decompressFrameSync } from 'lz4-napi';
import snappy from 'snappy';
import { SluiceError } from '../errors.js';
import { BATCH_DECOMPRESSED_BYTES_MAX } from '../constants.js';
import { Compression } from './types.js';

/** xerial snappy-java stream header: magic, version 1, compatible version 1. */
const XERIAL_MAGIC = Buffer.from([0x82, 0x53, 0x4e, 0x41, 0x50, 0x50, 0x59, 0x00]);
const XERIAL_HEADER_BYTES = 16;
const XERIAL_BLOCK_BYTES = 32 * 1024;
const LZ4_FRAME_MAGIC = 0x184d2204;
/** LZ4 frame block maximum by the BD byte's size id (4..7). */
const LZ4_BLOCK_MAX_BYTES: Record<number, number> = { 4: 64 * 1024, 5: 256 * 1024, 6: 1024 * 1024, 7: 4 * 1024 * 1024 };

export function isSupportedCompression(codec: number): boolean {
  return codec === Compression.None || codec === Compression.Gzip || codec === Compression.Lz4 || codec === Compression.Snappy;
}

export function compressionName(codec: number): string {
  return ['none', 'gzip', 'snappy', 'lz4', 'zstd'][codec] ?? `codec ${codec}`;
}

function unsupported(codec: number): SluiceError {
  return new SluiceError('UNSUPPORTED_COMPRESSION', `compression ${compressionName(codec)} is not supported`);
}

export function compress(codec: Compression, data: Buffer): Buffer {
  switch (codec) {
    case Compression.None:
      return data;
    case Compression.Gzip:
      return gzipSync(data);
    case Compression.Lz4:
      return compressFrameSync(data);
    case Compression.Snappy:
      return snappyXerialCompress(data);
    default:
      throw unsupported(codec);
  }
}

export function decompress(codec: Compression, data: Buffer): Buffer {
  try {
    let out: Buffer;
    switch (codec) {
      case Compression.Gzip:
        out = gunzipSync(data, { maxOutputLength: BATCH_DECOMPRESSED_BYTES_MAX });
        break;
      case Compression.Lz4:
        // lz4-napi has no output bound: size the frames first, so a bomb is refused before inflating.
        lz4FrameBoundCheck(data);
        out = decompressFrameSync(data);
        break;
      case Compression.Snappy:
        out = snappyDecompress(data);
        break;
      default:
        throw unsupported(codec);
    }
    if (out.length > BATCH_DECOMPRESSED_BYTES_MAX) {
      throw new SluiceError('CORRUPT_BATCH', `decompressed records exceed ${BATCH_DECOMPRESSED_BYTES_MAX} bytes`);
    }
    return out;
  } catch (err) {
    if (err instanceof SluiceError) throw err;
    throw new SluiceError('CORRUPT_BATCH', `cannot decompress ${compressionName(codec)} records: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

function snappyXerialCompress(data: Buffer): Buffer {
  const parts: Buffer[] = [XERIAL_MAGIC, Buffer.from([0, 0, 0, 1, 0, 0, 0, 1])];
  for (let pos = 0; pos < data.length || pos === 0; pos += XERIAL_BLOCK_BYTES) {
    const block = snappy.compressSync(data.subarray(pos, pos + XERIAL_BLOCK_BYTES));
    const len = Buffer.allocUnsafe(4);
    len.writeInt32BE(block.length, 0);
    parts.push(len, block);
    if (data.length === 0) break;
  }
  return Buffer.concat(parts);
}

/**
 * The most bytes the LZ4 frames in `data` can inflate to (blocks x the frame's block maximum), checked
 * against BATCH_DECOMPRESSED_BYTES_MAX by walking frame and block headers only. Anything that is not a
 * well-formed sequence of LZ4 frames is refused here too.
 */
function lz4FrameBoundCheck(data: Buffer): void {
  const bad = (why: string): SluiceError => new SluiceError('CORRUPT_BATCH', `cannot decompress lz4 records: ${why}`);
  let pos = 0;
  let bound = 0;
  while (pos < data.length) {
    if (pos + 7 > data.length || data.readUInt32LE(pos) !== LZ4_FRAME_MAGIC) throw bad(`no LZ4 frame at byte ${pos}`);
    const flg = data[pos + 4];
    const bd = data[pos + 5];
    const blockMax = LZ4_BLOCK_MAX_BYTES[(bd >> 4) & 0x07];
    if (flg >> 6 !== 1 || blockMax === undefined) throw bad(`unsupported frame descriptor at byte ${pos}`);
    pos += 6 + (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0) + 1;
    for (;;) {
      if (pos + 4 > data.length) throw bad('truncated block');
      const word = data.readUInt32LE(pos);
      pos += 4;
      if (word === 0) break;
      const len = word & 0x7fffffff;
      if (len > blockMax) throw bad(`a block of ${len} bytes exceeds the frame's ${blockMax}`);
      pos += len + (flg & 0x10 ? 4 : 0);
      bound += blockMax;
      if (bound > BATCH_DECOMPRESSED_BYTES_MAX) {
        throw new SluiceError('CORRUPT_BATCH', `lz4 records may inflate past ${BATCH_DECOMPRESSED_BYTES_MAX} bytes (decompression bound)`);
      }
    }
    pos += flg & 0x04 ? 4 : 0;
  }
}

/** The uncompressed length a raw snappy block declares (its varint preamble), or -1 if unreadable. */
function snappyDeclaredLength(b: Buffer): number {
  let result = 0;
  for (let i = 0, mul = 1; i < 5 && i < b.length; i++, mul *= 128) {
    result += (b[i] & 0x7f) * mul;
    if (b[i] < 0x80) return result;
  }
  return -1;
}

function snappyDecompress(data: Buffer): Buffer {
  let declared = 0;
  const raw = (b: Buffer): Buffer => {
    // Bound before inflating: snappy allocates what the block declares.
    const n = snappyDeclaredLength(b);
    declared += n;
    if (n < 0 || declared > BATCH_DECOMPRESSED_BYTES_MAX) {
      throw new SluiceError('CORRUPT_BATCH', `snappy records may inflate past ${BATCH_DECOMPRESSED_BYTES_MAX} bytes (decompression bound)`);
    }
    return snappy.uncompressSync(b, { asBuffer: true }) as Buffer;
  };
  if (data.length < XERIAL_HEADER_BYTES || !data.subarray(0, 8).equals(XERIAL_MAGIC)) return raw(data);
  const blocks: Buffer[] = [];
  let total = 0;
  let pos = XERIAL_HEADER_BYTES;
  while (pos < data.length) {
    if (pos + 4 > data.length) throw new SluiceError('CORRUPT_BATCH', 'truncated snappy block length');
    const len = data.readInt32BE(pos);
    pos += 4;
    if (len < 0 || pos + len > data.length) throw new SluiceError('CORRUPT_BATCH', 'snappy block runs past the end');
    const block = raw(data.subarray(pos, pos + len));
    total += block.length;
    if (total > BATCH_DECOMPRESSED_BYTES_MAX) break;
    blocks.push(block);
    pos += len;
  }
  return blocks.length === 1 ? blocks[0] : Buffer.concat(blocks, total);
}
