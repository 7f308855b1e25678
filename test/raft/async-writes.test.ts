/**
 * Goal: the core's asynchronous storage writes (`RaftOptions.asyncStorageWrites`, docs/raft.md): it
 * takes input and hands out further Readies while earlier ones are being persisted, each run exactly
 * once; a leader counts itself only for what the driver acknowledged; a replica applies only what is
 * committed AND durable; an acknowledgement whose runs were cut since is ignored.
 * Method: single RaftNode instances fed hand-built messages; storage is a MemoryStorage written at
 * ready() time (as the partition writes the page cache at once), acknowledged later.
 */
import { describe, expect, it } from 'vitest';
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import { MemoryStorage, type Entry, type Message, MessageType, RaftNode, type Ready, bootstrapState } from '../../src/raft/index.js';

const id = (n: number): NodeId => n as NodeId;
const VOTERS = [id(1), id(2), id(3)];
const EMPTY = new Uint8Array(0);

function msg(type: MessageType, from: number, to: number, term: number, fields: Partial<Message> = {}): Message {
  return { type, from: id(from), to: id(to), term: term as Term, logTerm: 0 as Term, index: 0 as Offset, entries: [], commit: 0 as Offset, reject: false, rejectHint: 0 as Offset, snapshot: null, context: 0, ...fields };
}

function run(index: number, term: number, count = 1): Entry {
  return { index: index as Offset, count, term: term as Term, kind: 'data', data: new Uint8Array(count), change: null };
}

/** A node in async mode over a MemoryStorage, and the driver's write side (done at ready() time). */
function node(n: number) {
  const disk = new MemoryStorage(bootstrapState(VOTERS));
  const r = new RaftNode({ id: id(n), preVote: false, asyncStorageWrites: true }, disk);
  const take = (): Ready => {
    expect(r.hasReady()).toBe(true);
    const rd = r.ready();
    if (rd.snapshot !== null) disk.applySnapshot(rd.snapshot);
    disk.append(rd.entries);
    if (rd.hardState !== null) disk.setHardState(rd.hardState);
    return rd;
  };
  return { r, disk, take };
}

describe('asynchronous storage writes', () => {
  it('a leader pipelines Readies, each run handed out once, and counts itself only once acknowledged', () => {
    const { r, take } = node(1);
    r.campaign();
    const vote = take();
    expect(vote.ack).toBeNull();
    r.step(msg(MessageType.VoteResp, 2, 1, 2));
    expect(r.getRole()).toBe('leader');
    const noop = take();
    expect(noop.entries.map((e) => e.index)).toEqual([2]);
    // The core takes a proposal while the no-op is still being written, and hands out only the new run.
    expect(r.proposeBatch([new Uint8Array(5)], [5])).toBe(3);
    const batch = take();
    expect(batch.entries.map((e) => [e.index, e.count])).toEqual([[3, 5]]);
    expect(batch.ack).toMatchObject({ index: 7, term: 2, snapshot: false });
    // Node 2 holds everything; without the leader's own write that is one of three: no commit.
    r.step(msg(MessageType.AppResp, 2, 1, 2, { index: 7 as Offset }));
    expect(r.getCommit()).toBe(1);
    r.persisted(noop.ack!);
    expect(r.getCommit()).toBe(2);
    r.persisted(batch.ack!);
    expect(r.getCommit()).toBe(7);
    expect(r.log.stableIndex()).toBe(7);
    const applied = take();
    expect([applied.committedFrom, applied.committedTo]).toEqual([2, 7]);
  });

  it('a follower applies only what is committed and durable here', () => {
    const { r, take } = node(2);
    r.step(msg(MessageType.App, 1, 2, 2, { index: 1 as Offset, logTerm: 1 as Term, entries: [run(2, 2), run(3, 2, 4)], commit: 6 as Offset }));
    expect(r.getCommit()).toBe(6);
    const rd = take();
    expect(rd.committedTo).toBe(1);
    expect(rd.messages.map((m) => [m.type, m.index])).toEqual([[MessageType.AppResp, 6]]);
    expect(r.hasReady()).toBe(false);
    r.persisted(rd.ack!);
    const next = take();
    expect([next.committedFrom, next.committedTo]).toEqual([2, 6]);
    expect(next.entries).toEqual([]);
  });

  it('an acknowledgement for runs cut since is ignored; the next one covers what stayed', () => {
    const { r, take } = node(2);
    r.step(msg(MessageType.App, 1, 2, 2, { index: 1 as Offset, logTerm: 1 as Term, entries: [run(2, 2), run(3, 2, 2)], commit: 1 as Offset }));
    const first = take();
    expect(first.ack).toMatchObject({ index: 4, term: 2 });
    // A leader of term 3 replaces the run at 3 while the first write is in flight.
    r.step(msg(MessageType.App, 3, 2, 3, { index: 2 as Offset, logTerm: 2 as Term, entries: [run(3, 3)], commit: 1 as Offset }));
    const second = take();
    expect(second.entries.map((e) => [e.index, e.term])).toEqual([[3, 3]]);
    expect(second.ack!.gen).not.toBe(first.ack!.gen);
    r.persisted(first.ack!);
    expect(r.log.stableIndex()).toBe(1);
    r.persisted(second.ack!);
    expect(r.log.stableIndex()).toBe(3);
    expect(r.log.unstable).toEqual([]);
  });

  it('a leader that never hears its write acknowledged never commits alone', () => {
    const disk = new MemoryStorage(bootstrapState([id(1)]));
    const r = new RaftNode({ id: id(1), asyncStorageWrites: true }, disk);
    r.campaign();
    const rd = r.ready();
    disk.append(rd.entries);
    if (rd.hardState !== null) disk.setHardState(rd.hardState);
    r.proposeBatch([EMPTY], [1]);
    const rd2 = r.ready();
    disk.append(rd2.entries);
    expect(r.getCommit()).toBe(1);
    r.persisted(rd2.ack!);
    // Everything up to the later ack is durable: the driver persists Readies in order.
    expect(r.getCommit()).toBe(3);
  });

  it('each mode refuses the other mode’s acknowledgement call', () => {
    const { r } = node(1);
    expect(() => r.advance()).toThrow(/synchronous/);
    const sync = new RaftNode({ id: id(1) }, new MemoryStorage(bootstrapState(VOTERS)));
    expect(() => sync.persisted({ gen: 0, snapshot: false, index: 1 as Offset, term: 1 as Term })).toThrow(/asynchronous/);
  });
});
