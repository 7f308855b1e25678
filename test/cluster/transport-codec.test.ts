/**
 * Goal: the Raft transport's hand-written frame codec (src/cluster/transport/codec.ts) writes exactly
 * what the generated ts-proto code writes, reads back what it wrote (entry bytes identical, as views),
 * and refuses bad frames with MALFORMED_REQUEST. Method: fast-check properties over random frames of
 * every message type, compared byte for byte with the generated StreamRequest codec; hand-made bad
 * frames for the bounds.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { StreamRequest, RaftEntryKind, ConfChangeType, type RaftMessage as PbMessage } from '../../src/rpc/gen/sluice/cluster/v1/raft.js';
import { decodeFrame, encodeFrame, messageSize, type StreamHello } from '../../src/cluster/transport/codec.js';
import type { Entry, Message, MessageType, Snapshot } from '../../src/raft/index.js';
import { RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX } from '../../src/constants.js';
import { isSluiceError } from '../../src/errors.js';

const KIND = { data: RaftEntryKind.RAFT_ENTRY_KIND_DATA, conf: RaftEntryKind.RAFT_ENTRY_KIND_CONF, noop: RaftEntryKind.RAFT_ENTRY_KIND_NOOP } as const;
const CHANGE = { addVoter: ConfChangeType.CONF_CHANGE_TYPE_ADD_VOTER, addLearner: ConfChangeType.CONF_CHANGE_TYPE_ADD_LEARNER, remove: ConfChangeType.CONF_CHANGE_TYPE_REMOVE } as const;

/** Our Message as the generated type, for the generated encoder. */
function toPb(group: number, m: Message): PbMessage {
  return {
    group: BigInt(group), type: m.type, from: m.from, to: m.to, term: BigInt(m.term), logTerm: BigInt(m.logTerm), index: BigInt(m.index),
    entries: m.entries.map((e) => ({
      index: BigInt(e.index), count: e.count, term: BigInt(e.term), kind: KIND[e.kind], data: Buffer.from(e.data),
      change: e.change === null ? undefined : { type: CHANGE[e.change.type], node: e.change.node },
    })),
    commit: BigInt(m.commit), reject: m.reject, rejectHint: BigInt(m.rejectHint),
    snapshot: m.snapshot === null ? undefined : { index: BigInt(m.snapshot.index), term: BigInt(m.snapshot.term), voters: [...m.snapshot.conf.voters], learners: [...m.snapshot.conf.learners], data: Buffer.from(m.snapshot.data) },
    context: BigInt(m.context),
  };
}

const safe = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER - 200_000 }));
const node = fc.integer({ min: 1, max: 2 ** 32 - 1 });
/** Log positions: -1 is Raft's "nothing" (a partition's log starts at 0); zigzag is exact below 2^52. */
const position = fc.oneof(fc.constant(-1), fc.constant(0), fc.integer({ min: -1, max: 1000 }), fc.integer({ min: -1, max: 2 ** 52 - 1 }));
const bytes = fc.uint8Array({ maxLength: 200 });
const entry: fc.Arbitrary<Entry> = fc.oneof(
  fc.record({ index: safe, count: fc.integer({ min: 1, max: 100_000 }), term: safe, kind: fc.constant('data' as const), data: bytes, change: fc.constant(null) }),
  fc.record({ index: safe, count: fc.constant(1), term: safe, kind: fc.constant('noop' as const), data: bytes, change: fc.constant(null) }),
  fc.record({ index: safe, count: fc.constant(1), term: safe, kind: fc.constant('conf' as const), data: bytes, change: fc.record({ type: fc.constantFrom('addVoter' as const, 'addLearner' as const, 'remove' as const), node }) }),
) as unknown as fc.Arbitrary<Entry>;
const snapshot: fc.Arbitrary<Snapshot> = fc.record({
  index: position, term: safe, conf: fc.record({ voters: fc.array(node, { maxLength: 5 }), learners: fc.array(node, { maxLength: 3 }) }), data: bytes,
}) as unknown as fc.Arbitrary<Snapshot>;
const message: fc.Arbitrary<Message> = fc.record({
  type: fc.integer({ min: 1, max: 11 }).map((t) => t as MessageType), from: node, to: node, term: safe, logTerm: safe, index: position,
  entries: fc.array(entry, { maxLength: 4 }), commit: position, reject: fc.boolean(), rejectHint: position,
  snapshot: fc.option(snapshot, { nil: null }), context: safe,
}) as unknown as fc.Arbitrary<Message>;
const hello: fc.Arbitrary<StreamHello | null> = fc.option(fc.record({ from: node, to: node, incarnation: safe }) as unknown as fc.Arbitrary<StreamHello>, { nil: null });
const frame = fc.record({ hello, items: fc.array(fc.tuple(safe, message), { maxLength: 6 }) });

function encode(h: StreamHello | null, items: [number, Message][]): Buffer {
  const groups = items.map(([g]) => g);
  const msgs = items.map(([, m]) => m);
  return encodeFrame(h, groups, msgs, items.map(([g, m]) => messageSize(g, m)));
}

function expectMalformed(buf: Buffer, pattern: RegExp): void {
  try {
    decodeFrame(buf);
  } catch (err) {
    expect(isSluiceError(err, 'MALFORMED_REQUEST')).toBe(true);
    expect((err as Error).message).toMatch(pattern);
    return;
  }
  expect.fail('decodeFrame accepted a bad frame');
}

describe('raft transport frame codec', () => {
  it('encodes byte for byte like ts-proto, and decodes what it encodes', () => {
    fc.assert(fc.property(frame, ({ hello: h, items }) => {
      const ours = encode(h, items);
      const pb = StreamRequest.encode({
        hello: h === null ? undefined : { from: h.from, to: h.to, incarnation: BigInt(h.incarnation) },
        messages: items.map(([g, m]) => toPb(g, m)),
      }).finish();
      expect(ours.equals(Buffer.from(pb))).toBe(true);
      const back = decodeFrame(ours);
      expect(back.hello).toEqual(h);
      expect(back.groups).toEqual(items.map(([g]) => g));
      expect(back.messages.length).toBe(items.length);
      back.messages.forEach((m, i) => {
        const want = items[i][1];
        expect({ ...m, entries: m.entries.map((e) => ({ ...e, data: Buffer.from(e.data) })), snapshot: m.snapshot === null ? null : { ...m.snapshot, data: Buffer.from(m.snapshot.data) } })
          .toEqual({ ...want, entries: want.entries.map((e) => ({ ...e, data: Buffer.from(e.data) })), snapshot: want.snapshot === null ? null : { ...want.snapshot, data: Buffer.from(want.snapshot.data) } });
      });
    }), { numRuns: 300 });
  });

  it('decodes what ts-proto encodes (including unpacked repeated node ids)', () => {
    fc.assert(fc.property(frame, ({ hello: h, items }) => {
      const pb = Buffer.from(StreamRequest.encode({ hello: h === null ? undefined : { from: h.from, to: h.to, incarnation: BigInt(h.incarnation) }, messages: items.map(([g, m]) => toPb(g, m)) }).finish());
      const back = decodeFrame(pb);
      expect(Buffer.from(encodeFrame(back.hello, back.groups, back.messages, back.messages.map((m, i) => messageSize(back.groups[i], m)))).equals(pb)).toBe(true);
    }), { numRuns: 200 });
    // Unpacked voters (tag 24) are valid protobuf too.
    const snap = Buffer.from([0x08, 5, 0x18, 1, 0x18, 2]);
    const msg = Buffer.concat([Buffer.from([0x10, 9, 0x18, 1, 0x20, 2, 0x62, snap.length]), snap]);
    const f = decodeFrame(Buffer.concat([Buffer.from([0x12, msg.length]), msg]));
    expect(f.messages[0].snapshot?.conf.voters).toEqual([1, 2]);
  });

  it('hands entry bytes over as views of the received buffer, byte for byte', () => {
    const data = Buffer.from('a v2 batch, byte for byte');
    const m: Message = { type: 1, from: 1, to: 2, term: 3, logTerm: 3, index: 9, entries: [{ index: 10, count: 4, term: 3, kind: 'data', data, change: null }], commit: 9, reject: false, rejectHint: 0, snapshot: null, context: 0 } as unknown as Message;
    const wire = encode(null, [[7, m]]);
    const back = decodeFrame(wire);
    const got = back.messages[0].entries[0].data;
    expect(Buffer.from(got).equals(data)).toBe(true);
    expect(got.buffer).toBe(wire.buffer);
  });

  it('refuses malformed frames with MALFORMED_REQUEST', () => {
    expectMalformed(Buffer.from([0x12, 0x05, 0x10]), /runs past/);
    expectMalformed(Buffer.from([0x12, 0x02, 0x10, 0x0c]), /unknown message type 12/);
    expectMalformed(Buffer.from([0x12, 0x04, 0x10, 0x01, 0x18, 0x01]), /node 0/);
    expectMalformed(Buffer.from([0x12, 0x0a, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), /2\^53/);
    expectMalformed(Buffer.from([0x0f]), /wire type 7/);
    // An entry with count 0, and a data entry carrying a conf change.
    expectMalformed(Buffer.from([0x12, 0x0a, 0x10, 1, 0x18, 1, 0x20, 2, 0x42, 2, 0x20, 1]), /count 0/);
    expectMalformed(Buffer.from([0x12, 18, 0x10, 1, 0x18, 1, 0x20, 2, 0x42, 10, 0x10, 1, 0x20, 1, 0x32, 4, 0x08, 1, 0x10, 2]), /conf entries only/);
    // Too many entries in one message.
    const one = Buffer.from([0x42, 4, 0x10, 1, 0x20, 3]);
    const body = Buffer.concat([Buffer.from([0x10, 1, 0x18, 1, 0x20, 2]), ...Array.from({ length: RAFT_TRANSPORT_MESSAGE_ENTRIES_MAX + 1 }, () => one)]);
    const len: number[] = [];
    for (let v = body.length; ; v = Math.floor(v / 128)) { if (v < 128) { len.push(v); break; } len.push((v % 128) | 0x80); }
    expectMalformed(Buffer.concat([Buffer.from([0x12, ...len]), body]), /more than 65536 entries/);
  });
});
