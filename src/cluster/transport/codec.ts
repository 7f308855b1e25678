/**
 * The frame codec of the Raft transport: `sluice.cluster.v1.StreamRequest` / `StreamResponse` (the same
 * layout), hand-written because ts-proto's path copies every entry's bytes several times. Its writer
 * (@bufbuild/protobuf's, one growing buffer) copies an entry's `data` in, shifts it again each time an
 * enclosing message's length prefix needs more than one byte (RaftEntry, then RaftMessage), copies it
 * as the buffer doubles, again in `finish()` and again in the generated serializer's `Buffer.from`:
 * five or six copies to send; decoding copies it once more (`Buffer.from(reader.bytes())`). Here a frame
 * is sized first and written once (each entry's bytes copied once, into the frame), and decoded entries'
 * `data` are views into the received buffer (grpc-js hands each deserializer a fresh buffer that
 * nothing else reuses), so a v2 batch crosses the transport byte for byte, copied once by the codec (on
 * send) and never on receipt (beyond grpc-js assembling the message).
 *
 * The decoder is also the receiver's validator: every bound (frame messages, entries per message,
 * configuration size, safe integers, known enums) is checked here, and a violation throws a
 * `SluiceError('MALFORMED_REQUEST')` naming what was wrong. It never throws anything else.
 * test/cluster/transport-codec.test.ts checks both directions against the generated codec.
 */
import { sizeOfUnsignedVarint, writeUnsignedVarint } from '../../batch/varint.js';
import {
  RAFT_TRANSPORT_CONF_NODES_MAX,
  RAFT_TRANSPORT_FRAME_MESSAGES_MAX,
  RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX,
} from '../../constants.js';
import { SluiceError } from '../../errors.js';
import type { NodeId, Offset, Term } from '../../model/index.js';
import type { ConfChange, ConfChangeType, Entry, EntryKind, Message, MessageType, Snapshot } from '../../raft/index.js';
import type { GroupId } from '../types.js';

/** The first frame of each direction of a stream. */
export interface StreamHello {
  readonly from: NodeId;
  readonly to: NodeId;
  /** Random per process start (a safe integer); a new one means the peer restarted. */
  readonly incarnation: number;
}

/** A decoded frame: `groups[i]` is the group of `messages[i]`. */
export interface DecodedFrame {
  readonly hello: StreamHello | null;
  readonly groups: GroupId[];
  readonly messages: Message[];
}

const KIND_CODE: Readonly<Record<EntryKind, number>> = { data: 1, conf: 2, noop: 3 };
const KIND_BY_CODE: readonly (EntryKind | undefined)[] = [undefined, 'data', 'conf', 'noop'];
const CHANGE_CODE: Readonly<Record<ConfChangeType, number>> = { addVoter: 1, addLearner: 2, remove: 3 };
const CHANGE_BY_CODE: readonly (ConfChangeType | undefined)[] = [undefined, 'addVoter', 'addLearner', 'remove'];
const MESSAGE_TYPE_MAX = 11;

const EMPTY = Buffer.alloc(0);
const NO_ENTRIES: readonly Entry[] = Object.freeze([]);

// --- Sizes ------------------------------------------------------------------------------------------

/** Varint size, with the common small values answered without a loop (heartbeats are mostly these). */
function vsize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : sizeOfUnsignedVarint(v);
}

/**
 * ZigZag (sint64) for log positions: Raft's "nothing" is -1 (a partition's log starts at offset 0, so
 * a prevLogIndex, commit or hint of -1 is normal). Exact for |v| < 2^52.
 */
function zz(v: number): number {
  return v >= 0 ? v * 2 : -v * 2 - 1;
}

function unzz(v: number): number {
  return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
}

/** A varint field (tag byte + value), 0 when the value is the proto3 default. */
function u(v: number): number {
  return v === 0 ? 0 : 1 + vsize(v);
}

/** A length-delimited field of `n` bytes (always present: sub-messages and non-empty bytes). */
function ld(n: number): number {
  return 1 + vsize(n) + n;
}

function changeSize(c: ConfChange): number {
  return u(CHANGE_CODE[c.type]) + u(c.node);
}

function entrySize(e: Entry): number {
  let n = u(e.index) + u(e.count) + u(e.term) + u(KIND_CODE[e.kind]);
  if (e.data.byteLength > 0) n += ld(e.data.byteLength);
  if (e.change !== null) n += ld(changeSize(e.change));
  return n;
}

function packedSize(ids: readonly number[]): number {
  let n = 0;
  for (const id of ids) n += vsize(id);
  return n;
}

function snapshotSize(s: Snapshot): number {
  let n = u(zz(s.index)) + u(s.term);
  if (s.conf.voters.length > 0) n += ld(packedSize(s.conf.voters));
  if (s.conf.learners.length > 0) n += ld(packedSize(s.conf.learners));
  if (s.data.byteLength > 0) n += ld(s.data.byteLength);
  return n;
}

/** Encoded size of one RaftMessage's body (without its own tag and length). */
export function messageSize(group: GroupId, m: Message): number {
  let n = u(group) + u(m.type) + u(m.from) + u(m.to) + u(m.term) + u(m.logTerm) + u(zz(m.index));
  const entries = m.entries;
  for (let i = 0; i < entries.length; i++) n += ld(entrySize(entries[i]));
  n += u(zz(m.commit)) + (m.reject ? 2 : 0) + u(zz(m.rejectHint));
  if (m.snapshot !== null) n += ld(snapshotSize(m.snapshot));
  return n + u(m.context);
}

/** Bytes a message adds to a frame: its tag, length and body. */
export function framedMessageSize(bodyBytes: number): number {
  return ld(bodyBytes);
}

function helloSize(h: StreamHello): number {
  return u(h.from) + u(h.to) + u(h.incarnation);
}

// --- Encoder ----------------------------------------------------------------------------------------

class Writer {
  pos = 0;
  constructor(readonly out: Buffer) {}

  /** Bit operations below 2^31 (the usual case), the generic writer above. */
  varint(v: number): void {
    const out = this.out;
    if (v < 0x80) {
      out[this.pos++] = v;
    } else if (v < 0x80000000) {
      while (v >= 0x80) {
        out[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      out[this.pos++] = v;
    } else {
      this.pos = writeUnsignedVarint(out, this.pos, v);
    }
  }

  /** A varint field, skipped when 0 (proto3 default). */
  field(tag: number, v: number): void {
    if (v === 0) return;
    this.out[this.pos++] = tag;
    this.varint(v);
  }

  bytes(tag: number, b: Uint8Array): void {
    this.out[this.pos++] = tag;
    this.varint(b.byteLength);
    this.out.set(b, this.pos);
    this.pos += b.byteLength;
  }

  header(tag: number, n: number): void {
    this.out[this.pos++] = tag;
    this.varint(n);
  }
}

function writeEntry(w: Writer, e: Entry): void {
  w.field(8, e.index);
  w.field(16, e.count);
  w.field(24, e.term);
  w.field(32, KIND_CODE[e.kind]);
  if (e.data.byteLength > 0) w.bytes(42, e.data);
  if (e.change !== null) {
    w.header(50, changeSize(e.change));
    w.field(8, CHANGE_CODE[e.change.type]);
    w.field(16, e.change.node);
  }
}

function writePacked(w: Writer, tag: number, ids: readonly number[]): void {
  if (ids.length === 0) return;
  w.header(tag, packedSize(ids));
  for (const id of ids) w.varint(id);
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  w.field(8, zz(s.index));
  w.field(16, s.term);
  writePacked(w, 26, s.conf.voters);
  writePacked(w, 34, s.conf.learners);
  if (s.data.byteLength > 0) w.bytes(42, s.data);
}

function writeMessage(w: Writer, group: GroupId, m: Message): void {
  w.field(8, group);
  w.field(16, m.type);
  w.field(24, m.from);
  w.field(32, m.to);
  w.field(40, m.term);
  w.field(48, m.logTerm);
  w.field(56, zz(m.index));
  for (const e of m.entries) {
    w.header(66, entrySize(e));
    writeEntry(w, e);
  }
  w.field(72, zz(m.commit));
  if (m.reject) {
    w.out[w.pos++] = 80;
    w.out[w.pos++] = 1;
  }
  w.field(88, zz(m.rejectHint));
  if (m.snapshot !== null) {
    w.header(98, snapshotSize(m.snapshot));
    writeSnapshot(w, m.snapshot);
  }
  w.field(104, m.context);
}

/**
 * One frame: an optional hello, then `messages[i]` of `groups[i]`, whose body sizes (`messageSize`)
 * the caller already computed in `sizes[i]` (the sender needs them for its budget anyway). The result
 * is a fresh buffer of exactly the frame's length; each entry's bytes are copied into it once.
 */
export function encodeFrame(hello: StreamHello | null, groups: readonly GroupId[], messages: readonly Message[], sizes: readonly number[]): Buffer {
  let size = 0;
  if (hello !== null) size += ld(helloSize(hello));
  for (let i = 0; i < sizes.length; i++) size += ld(sizes[i]);
  const w = new Writer(Buffer.allocUnsafe(size));
  if (hello !== null) {
    w.header(10, helloSize(hello));
    w.field(8, hello.from);
    w.field(16, hello.to);
    w.field(24, hello.incarnation);
  }
  for (let i = 0; i < messages.length; i++) {
    w.header(18, sizes[i]);
    const start = w.pos;
    writeMessage(w, groups[i], messages[i]);
    if (w.pos - start !== sizes[i]) throw new Error(`raft transport: message ${i} sized ${sizes[i]} but wrote ${w.pos - start}`);
  }
  return w.out;
}

// --- Decoder ----------------------------------------------------------------------------------------

function malformed(what: string): SluiceError {
  return new SluiceError('MALFORMED_REQUEST', `raft transport frame: ${what}`);
}

class Reader {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    public end: number,
  ) {}

  /** An unsigned varint up to 2^53 - 1; anything longer or larger is malformed. */
  varint(): number {
    const buf = this.buf;
    if (this.pos < this.end && buf[this.pos] < 0x80) return buf[this.pos++];
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) throw malformed('truncated varint');
      const b = buf[this.pos++];
      result += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw malformed('integer above 2^53');
        return result;
      }
      mul *= 128;
    }
    throw malformed('integer above 2^53');
  }

  /** A uint32 field value. */
  u32(what: string): number {
    const v = this.varint();
    if (v > 0xffffffff) throw malformed(`${what} above 2^32`);
    return v;
  }

  /** The end of a length-delimited field starting here. */
  sub(): number {
    const n = this.varint();
    if (n > this.end - this.pos) throw malformed('length-delimited field runs past its message');
    return this.pos + n;
  }

  /** A view of the bytes of a length-delimited field (no copy). */
  view(): Buffer {
    const end = this.sub();
    const b = this.buf.subarray(this.pos, end);
    this.pos = end;
    return b;
  }

  /** Skips a field of an unknown number (forward compatibility), by wire type. */
  skip(tag: number): void {
    const wire = tag & 7;
    if (wire === 0) this.varint();
    else if (wire === 1) this.advance(8);
    else if (wire === 2) this.pos = this.sub();
    else if (wire === 5) this.advance(4);
    else throw malformed(`unsupported wire type ${wire}`);
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw malformed('field runs past its message');
    this.pos += n;
  }
}

/** Enters a sub-message that ends at `end`; returns the outer end for `leave`. */
function enter(r: Reader, end: number): number {
  const outer = r.end;
  r.end = end;
  return outer;
}

function leave(r: Reader, outer: number): void {
  if (r.pos !== r.end) throw malformed('sub-message overran');
  r.end = outer;
}

function readHello(r: Reader): StreamHello {
  let from = 0;
  let to = 0;
  let incarnation = 0;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) from = r.u32('hello.from');
    else if (tag === 16) to = r.u32('hello.to');
    else if (tag === 24) incarnation = r.varint();
    else r.skip(tag);
  }
  return { from: from as NodeId, to: to as NodeId, incarnation };
}

function readChange(r: Reader): ConfChange {
  let type = 0;
  let node = 0;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) type = r.u32('change.type');
    else if (tag === 16) node = r.u32('change.node');
    else r.skip(tag);
  }
  const t = CHANGE_BY_CODE[type];
  if (t === undefined) throw malformed(`unknown conf change type ${type}`);
  if (node === 0) throw malformed('conf change names node 0');
  return { type: t, node: node as NodeId };
}

function readEntry(r: Reader): Entry {
  let index = 0;
  let count = 0;
  let term = 0;
  let kind = 0;
  let data: Uint8Array = EMPTY;
  let change: ConfChange | null = null;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) index = r.varint();
    else if (tag === 16) count = r.u32('entry.count');
    else if (tag === 24) term = r.varint();
    else if (tag === 32) kind = r.u32('entry.kind');
    else if (tag === 42) data = r.view();
    else if (tag === 50) {
      const outer = enter(r, r.sub());
      change = readChange(r);
      leave(r, outer);
    } else r.skip(tag);
  }
  const k = KIND_BY_CODE[kind];
  if (k === undefined) throw malformed(`unknown entry kind ${kind}`);
  if (count < 1) throw malformed(`entry at ${index} has count ${count}`);
  if (!Number.isSafeInteger(index + count)) throw malformed(`entry at ${index} ends above 2^53`);
  if ((k === 'conf') !== (change !== null)) throw malformed(`entry at ${index}: a change belongs to conf entries only`);
  return { index: index as Offset, count, term: term as Term, kind: k, data, change };
}

function readPacked(r: Reader, tag: number, into: NodeId[]): void {
  const wire = tag & 7;
  if (wire === 0) {
    into.push(r.u32('conf node') as NodeId);
  } else {
    const end = r.sub();
    while (r.pos < end) into.push(r.u32('conf node') as NodeId);
    if (r.pos !== end) throw malformed('packed field overran');
  }
  if (into.length > RAFT_TRANSPORT_CONF_NODES_MAX) throw malformed(`snapshot configuration has more than ${RAFT_TRANSPORT_CONF_NODES_MAX} nodes`);
}

function readSnapshot(r: Reader): Snapshot {
  let index = 0;
  let term = 0;
  const voters: NodeId[] = [];
  const learners: NodeId[] = [];
  let data: Uint8Array = EMPTY;
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 8) index = unzz(r.varint());
    else if (tag === 16) term = r.varint();
    else if (tag === 26 || tag === 24) readPacked(r, tag, voters);
    else if (tag === 34 || tag === 32) readPacked(r, tag, learners);
    else if (tag === 42) data = r.view();
    else r.skip(tag);
  }
  if (voters.length + learners.length > RAFT_TRANSPORT_CONF_NODES_MAX) throw malformed(`snapshot configuration has more than ${RAFT_TRANSPORT_CONF_NODES_MAX} nodes`);
  return { index: index as Offset, term: term as Term, conf: { voters, learners }, data };
}

function readMessage(r: Reader, groups: GroupId[], out: Message[]): void {
  let group = 0;
  let type = 0;
  let from = 0;
  let to = 0;
  let term = 0;
  let logTerm = 0;
  let index = 0;
  let entries: Entry[] | null = null;
  let commit = 0;
  let reject = false;
  let rejectHint = 0;
  let snapshot: Snapshot | null = null;
  let context = 0;
  while (r.pos < r.end) {
    const tag = r.varint();
    switch (tag) {
      case 8: group = r.varint(); break;
      case 16: type = r.u32('message.type'); break;
      case 24: from = r.u32('message.from'); break;
      case 32: to = r.u32('message.to'); break;
      case 40: term = r.varint(); break;
      case 48: logTerm = r.varint(); break;
      case 56: index = unzz(r.varint()); break;
      case 66: {
        entries ??= [];
        if (entries.length >= RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX) throw malformed(`a message carries more than ${RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX} entries`);
        const outer = enter(r, r.sub());
        entries.push(readEntry(r));
        leave(r, outer);
        break;
      }
      case 72: commit = unzz(r.varint()); break;
      case 80: reject = r.varint() !== 0; break;
      case 88: rejectHint = unzz(r.varint()); break;
      case 98: {
        const outer = enter(r, r.sub());
        snapshot = readSnapshot(r);
        leave(r, outer);
        break;
      }
      case 104: context = r.varint(); break;
      default: r.skip(tag);
    }
  }
  if (type < 1 || type > MESSAGE_TYPE_MAX) throw malformed(`unknown message type ${type}`);
  if (from === 0 || to === 0) throw malformed('message from or to node 0');
  groups.push(group);
  out.push({
    type: type as MessageType,
    from: from as NodeId,
    to: to as NodeId,
    term: term as Term,
    logTerm: logTerm as Term,
    index: index as Offset,
    entries: entries ?? NO_ENTRIES,
    commit: commit as Offset,
    reject,
    rejectHint: rejectHint as Offset,
    snapshot,
    context,
  });
}

/**
 * Decodes and validates one frame; entries' and snapshots' `data` are views into `buf`. Throws
 * `SluiceError('MALFORMED_REQUEST')` when the bytes are not a valid frame or break a bound.
 */
export function decodeFrame(buf: Buffer): DecodedFrame {
  const r = new Reader(buf, buf.byteLength);
  let hello: StreamHello | null = null;
  const groups: GroupId[] = [];
  const messages: Message[] = [];
  while (r.pos < r.end) {
    const tag = r.varint();
    if (tag === 18) {
      if (messages.length >= RAFT_TRANSPORT_FRAME_MESSAGES_MAX) throw malformed(`more than ${RAFT_TRANSPORT_FRAME_MESSAGES_MAX} messages`);
      const outer = enter(r, r.sub());
      readMessage(r, groups, messages);
      leave(r, outer);
    } else if (tag === 10) {
      const outer = enter(r, r.sub());
      hello = readHello(r);
      leave(r, outer);
    } else {
      r.skip(tag);
    }
  }
  return { hello, groups, messages };
}
