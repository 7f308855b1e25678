/**
 * Goal: the core's contract outside the protocol scenarios: option validation, refusals with typed
 * errors, the Ready/advance ordering, restart from persisted state, and purity (src/raft never imports
 * I/O modules, never reads a clock, never uses Math.random).
 * Method: direct calls on single RaftNode instances and a tiny 3-node loop; a source grep for purity.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../src/errors.js';
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import { MESSAGE_TYPE_NAMES, MemoryStorage, type Message, MessageType, RaftNode, type Ready, bootstrapState, validateRaftOptions } from '../../src/raft/index.js';

const id = (n: number): NodeId => n as NodeId;
const srcDir = join(dirname(fileURLToPath(import.meta.url)), '../../src/raft');

describe('options', () => {
  it('fills defaults', () => {
    const f = validateRaftOptions({ id: id(1) });
    expect(f.electionTicks).toBeGreaterThan(f.heartbeatTicks);
    expect(f.preVote).toBe(true);
    expect(f.checkQuorum).toBe(true);
  });

  it.each([
    [{ electionTicks: 2, heartbeatTicks: 2 }, /electionTicks \(2\) must be greater than heartbeatTicks/],
    [{ electionTicks: 0 }, /electionTicks must be a positive integer/],
    [{ inflightMsgsMax: 1.5 }, /inflightMsgsMax/],
    [{ msgBytesMax: 10, inflightBytesMax: 5 }, /msgBytesMax/],
    [{ id: id(0) }, /id must be a positive integer/],
  ])('rejects %j', (o, re) => {
    expect(() => validateRaftOptions({ id: id(1), ...o })).toThrow(re);
    try {
      validateRaftOptions({ id: id(1), ...o });
    } catch (err) {
      expect(isSluiceError(err, 'INVALID_CONFIG')).toBe(true);
    }
  });
});

describe('purity', () => {
  it('src/raft imports no I/O module and uses no clock or Math.random', () => {
    const files = readdirSync(srcDir).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(3);
    for (const f of files) {
      const text = readFileSync(join(srcDir, f), 'utf8');
      const imports = [...text.matchAll(/from\s+'([^']+)'/g)].map((m) => m[1]);
      for (const m of imports) {
        expect(m, `${f} imports ${m}`).not.toMatch(/^(node:)?(fs|net|dgram|http|https|child_process|worker_threads|timers)(\/|$)|grpc/);
      }
      expect(text, f).not.toMatch(/Date\.now|new Date\(|performance\.now|Math\.random|setTimeout|setInterval|process\.hrtime/);
    }
  });
});

const boot = (voters: NodeId[]): MemoryStorage => new MemoryStorage(bootstrapState(voters));

/** The driver's persistence step: snapshot, entries, hard state into storage (before advance). */
function persist(storage: MemoryStorage, rd: Ready): void {
  if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot);
  storage.append(rd.entries);
  if (rd.hardState !== null) storage.setHardState(rd.hardState);
}

/** A minimal synchronous driver: persist (in memory), deliver everything, until quiet. */
function cluster(n: number) {
  const voters = Array.from({ length: n }, (_, i) => id(i + 1));
  const disks = voters.map(() => boot(voters));
  const nodes = voters.map((v, i) => new RaftNode({ id: v, random: () => (v * 0.31) % 1 }, disks[i]));
  const applied = new Map<number, number[]>(voters.map((v) => [v, []]));
  const stabilize = (): void => {
    for (let round = 0; round < 200; round++) {
      const msgs: Message[] = [];
      for (const r of nodes) {
        while (r.hasReady()) {
          const rd = r.ready();
          persist(disks[r.id - 1], rd);
          msgs.push(...rd.messages);
          for (const e of rd.committedEntries) applied.get(r.id)!.push(e.index);
          r.advance();
        }
      }
      if (msgs.length === 0) return;
      for (const m of msgs) nodes[m.to - 1].step(m);
    }
    throw new Error('no convergence');
  };
  return { nodes, applied, stabilize };
}

describe('core API', () => {
  it('refuses proposals on a follower with NOT_LEADER', () => {
    const { nodes } = cluster(3);
    try {
      nodes[1].propose(new Uint8Array(1));
      expect.unreachable();
    } catch (err) {
      expect(isSluiceError(err, 'NOT_LEADER')).toBe(true);
    }
  });

  it('elects, commits a batch, and every node applies the same indexes', () => {
    const { nodes, applied, stabilize } = cluster(3);
    nodes[0].campaign();
    stabilize();
    expect(nodes[0].getRole()).toBe('leader');
    const first = nodes[0].proposeBatch([new Uint8Array(10), new Uint8Array(10), new Uint8Array(10)]);
    expect(first).toBe(3);
    stabilize();
    for (const r of nodes) {
      expect(r.getCommit()).toBe(5);
      expect(applied.get(r.id)).toEqual([2, 3, 4, 5]);
    }
  });

  it('persist before send: the vote is in the same Ready as the vote response', () => {
    const voters = [id(1), id(2), id(3)];
    const da = boot(voters);
    const db = boot(voters);
    const a = new RaftNode({ id: id(1), preVote: false }, da);
    const b = new RaftNode({ id: id(2), preVote: false }, db);
    a.campaign();
    const rd = a.ready();
    persist(da, rd);
    a.advance();
    const vote = rd.messages.find((m) => m.to === 2)!;
    b.step(vote);
    const rb = b.ready();
    persist(db, rb);
    expect(rb.hardState).toMatchObject({ term: 2, vote: 1 });
    expect(rb.messages.some((m) => m.to === 1 && !m.reject)).toBe(true);
    b.advance();
  });

  it('restarts from persisted state with its term, vote and log', () => {
    const voters = [id(1)];
    const disk = boot(voters);
    const r = new RaftNode({ id: id(1) }, disk);
    r.campaign();
    for (let i = 0; i < 3; i++) {
      while (r.hasReady()) {
        const rd = r.ready();
        persist(disk, rd);
        r.advance();
      }
      if (i === 0) r.propose(new Uint8Array([7]), 5);
    }
    const again = new RaftNode({ id: id(1) }, disk);
    expect(again.status()).toMatchObject({ term: 2, commit: 7, lastIndex: 7, role: 'follower' });
    const rd = again.ready();
    expect(rd.committedEntries.map((e) => [e.index, e.count])).toEqual([[2, 1], [3, 5]]); // re-applied after a restart
    expect([rd.committedFrom, rd.committedTo]).toEqual([2, 7]);
  });

  it('controlData makes the payload of the core own runs (no-op, conf), which replicas store verbatim', () => {
    const calls: string[] = [];
    const controlData = (kind: 'noop' | 'conf', index: number, term: number, change: { type: string; node: number } | null): Uint8Array => {
      calls.push(`${kind}@${index}/${term}${change ? ` ${change.type} ${change.node}` : ''}`);
      return new TextEncoder().encode(`${kind}-${index}-${term}`);
    };
    const disk = boot([id(1)]);
    const r = new RaftNode({ id: id(1), controlData }, disk);
    r.campaign();
    const drain = (): void => {
      while (r.hasReady()) {
        const rd = r.ready();
        persist(disk, rd);
        r.advance();
      }
    };
    drain();
    r.proposeConfChange({ type: 'addLearner', node: id(2) });
    drain();
    expect(calls).toEqual(['noop@2/2', 'conf@3/2 addLearner 2']);
    const stored = disk.allEntries().map((e) => [e.index, e.count, e.kind, new TextDecoder().decode(e.data)]);
    expect(stored).toEqual([[2, 1, 'noop', 'noop-2-2'], [3, 1, 'conf', 'conf-3-2']]);
  });

  it('advance() before the Ready is in storage is a driver bug, caught by an assertion', () => {
    const r = new RaftNode({ id: id(1) }, boot([id(1)]));
    r.campaign();
    r.ready();
    expect(() => r.advance()).toThrow(/before the Ready was persisted/);
  });

  it('applyEntries: false reports the committed range without reading the entries', () => {
    const disk = boot([id(1)]);
    let reads = 0;
    const counting = Object.assign(Object.create(disk) as MemoryStorage, {
      entries: (lo: number, hi: number, b: number, c: number) => {
        reads++;
        return disk.entries(lo, hi, b, c);
      },
    });
    const r = new RaftNode({ id: id(1), applyEntries: false }, counting);
    r.campaign();
    const ranges: [number, number][] = [];
    for (let i = 0; i < 3; i++) {
      while (r.hasReady()) {
        const rd = r.ready();
        persist(disk, rd);
        expect(rd.committedEntries).toEqual([]);
        if (rd.committedFrom <= rd.committedTo) ranges.push([rd.committedFrom, rd.committedTo]);
        r.advance();
      }
      if (i === 0) r.proposeBatch([new Uint8Array(100), new Uint8Array(100)], [1000, 24]);
    }
    expect(ranges).toEqual([[2, 2], [3, 1026]]);
    expect(reads).toBe(0);
  });
});

describe('a follower answering a stale leader', () => {
  /** A group whose log starts at offset 0, as a partition's does (no bootstrap entry at index 1). */
  const fromOffsetZero = (voters: NodeId[]): MemoryStorage =>
    new MemoryStorage({
      hardState: { term: 0 as Term, vote: 0 as NodeId, commit: -1 as Offset },
      snapshot: { index: -1 as Offset, term: 0 as Term, conf: { voters, learners: [] }, data: new Uint8Array(0) },
      entries: [],
    });

  /** Persists every Ready of `r` into `disk` and returns the messages, in order. */
  const drain = (r: RaftNode, disk: MemoryStorage): Message[] => {
    const out: Message[] = [];
    while (r.hasReady()) {
      const rd = r.ready();
      persist(disk, rd);
      out.push(...rd.messages);
      r.advance();
    }
    return out;
  };

  // Found by the partition simulator (seed 1374): node 3 led term 1, was cut off, and won term 2 with
  // node 1's vote; node 1, whose log was still empty, then answered term-1 appends with a term-2
  // AppResp claiming index 0. Offsets start at 0, so node 3 took it as node 1 holding offset 0: a
  // commit counted on a replica that lacks the entry.
  it('claims no entry, so a leader re-elected in the newer term counts nothing on it', () => {
    const voters = [id(1), id(2), id(3)];
    const d1 = fromOffsetZero(voters);
    const d3 = fromOffsetZero(voters);
    const n1 = new RaftNode({ id: id(1), preVote: false, checkQuorum: true }, d1);
    const n3 = new RaftNode({ id: id(3), preVote: false, checkQuorum: true }, d3);
    n3.campaign(); // term 1 (its votes are lost)
    drain(n3, d3);
    n3.campaign(); // term 2
    const votes = drain(n3, d3).filter((m) => m.type === MessageType.Vote && m.to === 1);
    expect(votes).toHaveLength(1);
    n1.step(votes[0]);
    const granted = drain(n1, d1).filter((m) => m.type === MessageType.VoteResp);
    expect(granted.map((m) => m.reject)).toEqual([false]);
    n3.step(granted[0]);
    drain(n3, d3);
    expect([n3.getRole(), n3.getTerm(), n3.log.lastIndex()]).toEqual(['leader', 2, 0]);
    // An append node 3 sent as term 1's leader, delivered late.
    const noop = { index: 0 as Offset, count: 1, term: 1 as Term, kind: 'noop' as const, data: new Uint8Array(0), change: null };
    const stale: Message = { type: MessageType.App, from: id(3), to: id(1), term: 1 as Term, logTerm: 0 as Term, index: -1 as Offset, entries: [noop], commit: -1 as Offset, reject: false, rejectHint: 0 as Offset, snapshot: null, context: 0 };
    n1.step(stale);
    const answers = drain(n1, d1);
    expect(answers.map((m) => [MESSAGE_TYPE_NAMES[m.type], m.term, m.index, m.reject])).toEqual([['AppResp', 2, -1, false]]);
    expect(d1.lastIndex()).toBe(-1);
    n3.step(answers[0]);
    drain(n3, d3);
    expect(n3.matchOf(id(1))).toBe(-1);
    expect(n3.getCommit()).toBe(-1); // its term-2 no-op is on node 3 alone
  });
});
