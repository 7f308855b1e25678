/**
 * Safety checkers fed by the simulator as things happen (persist, apply, election, read). Each check is
 * incremental so that it can run after every step of every seed:
 * - election safety: at most one leader per term;
 * - log matching: an (index, term) pair names one run (same content, same count: a term's batch
 *   boundaries are the same on every replica), and that run always follows the same term, so by
 *   induction two logs that agree at (index, term) agree on the whole prefix;
 * - leader completeness: a node that becomes leader holds every entry committed so far;
 * - state machine safety: every node applies the same runs (checked through a hash chain, which also
 *   covers snapshot installs), and no offset is ever applied as part of two different runs (no offset
 *   names two records), checked offset by offset the first time a run is applied anywhere;
 * - commit durability (in sim.ts, at each leader commit): no node lacking the entry could be elected;
 * - no committed entry lost: an applied index is never re-applied differently, and the final leader's
 *   log holds every committed entry;
 * - linearizable ReadIndex: a read's index covers everything committed before it was asked;
 * and, for the driver (test/sim/replica.ts):
 * - no offset with two records, for what readers see: every offset below a replica's high watermark
 *   is committed, and is the same record on every replica, forever (no committed entry lost or changed);
 * - the high watermark never goes back on any replica, across restarts too;
 * - every acked (acks=all) produce is committed, and every later leader holds it.
 */
import { type Entry, type Snapshot, lastIndexOf } from '../../src/raft/index.js';
import type { RaftNode } from '../../src/raft/raft.js';

export class InvariantViolation extends Error {
  constructor(
    readonly checker: string,
    message: string,
  ) {
    super(`${checker}: ${message}`);
  }
}

/** A number that identifies an entry's content (the simulator's payloads carry a unique u32 id). */
export function contentId(e: Entry): number {
  if (e.kind === 'noop') return 1;
  if (e.kind === 'conf') {
    const t = e.change!.type === 'addVoter' ? 0 : e.change!.type === 'addLearner' ? 1 : 2;
    return 2 + e.change!.node * 4 + t;
  }
  return dataContentId(e.data);
}

/** The content id of a data payload: 1,000,000 + the u32 the simulator wrote in it. */
export function dataContentId(d: Uint8Array): number {
  return 1_000_000 + ((d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0);
}

export function chainHash(h: number, index: number, id: number): number {
  let x = Math.imul(h ^ id, 0x01000193);
  x = Math.imul(x ^ index ^ (x >>> 15), 0x85ebca6b);
  return (x ^ (x >>> 13)) >>> 0;
}

/** Snapshot data in the simulator: (applied index, hash chain at that index). */
export function encodeApp(index: number, hash: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setFloat64(0, index, true);
  v.setUint32(8, hash, true);
  return b;
}

/** The state-machine image in a snapshot; the bootstrap snapshot (no data) is the empty state at its index. */
export function snapshotApp(snap: Snapshot): { index: number; hash: number } {
  return snap.data.length === 0 ? { index: snap.index, hash: 0 } : decodeApp(snap.data);
}

export function decodeApp(data: Uint8Array): { index: number; hash: number } {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { index: v.getFloat64(0, true), hash: v.getUint32(8, true) };
}

/** The identity of an applied run, shared by every offset it covers. */
interface AppliedRun {
  readonly index: number;
  readonly count: number;
  readonly term: number;
  readonly id: number;
}

function sameRun(r: AppliedRun, e: Entry, id: number): boolean {
  return r.index === e.index && r.count === e.count && r.term === e.term && r.id === id;
}

export class Checkers {
  private readonly leaders = new Map<number, number>();
  /** key index*2^20+term -> [contentId, prevTerm] */
  private readonly logEntries = new Map<number, number>();
  private readonly logPrev = new Map<number, number>();
  /** Applied (somewhere) offset -> the run it was applied in. */
  private readonly offsetRun = new Map<number, AppliedRun>();
  /** Applied (somewhere) run end -> hash chain at that index. */
  readonly committedHash = new Map<number, number>();
  /** Index -> term of the entry, and the (lowest) term of a leader that committed it. */
  private readonly committedTerm = new Map<number, number>();
  private readonly committedIn = new Map<number, number>();
  maxCommitted = 0;
  private maxLeaderCommit = 0;
  private readonly reads = new Map<number, number>();
  private readonly hws = new Map<number, number>();
  private readonly acked: { index: number; count: number; term: number; id: number }[] = [];

  ackedCount(): number {
    return this.acked.length;
  }

  leaderCount(): number {
    return this.leaders.size;
  }

  onLeader(node: RaftNode, term: number): void {
    const prev = this.leaders.get(term);
    if (prev === node.id) return;
    if (prev !== undefined) throw new InvariantViolation('election safety', `nodes ${prev} and ${node.id} both lead term ${term}`);
    this.leaders.set(term, node.id);
    this.checkComplete(node, 'leader completeness');
    this.checkAcked(node, 'every acked produce present');
  }

  /** A leader advanced its commit index from `from` to `to` in `term`. */
  onLeaderCommit(node: RaftNode, from: number, to: number): void {
    const term = node.getTerm();
    for (let i = from + 1; i <= to; i++) {
      const prev = this.committedTerm.get(i);
      const t = node.log.term(i);
      if (prev === undefined) {
        this.committedTerm.set(i, t);
        this.committedIn.set(i, term);
      } else if (prev !== t) throw new InvariantViolation('state machine safety', `leader ${node.id} committed ${i}@${t}, but ${i}@${prev} was committed`);
      else if (term < this.committedIn.get(i)!) this.committedIn.set(i, term);
    }
    if (to > this.maxLeaderCommit) this.maxLeaderCommit = to;
  }

  /**
   * Every entry committed in a term before `beforeTerm` is in `node`'s log (or covered by its snapshot
   * with the same state hash). Leader completeness says exactly this for a leader of `beforeTerm`.
   */
  checkComplete(node: RaftNode, checker: string, beforeTerm = node.getTerm()): void {
    const log = node.log;
    const s = log.snapshotForSend();
    const sh = this.committedHash.get(s.index);
    if (sh !== undefined && snapshotApp(s).hash !== sh) {
      throw new InvariantViolation(checker, `node ${node.id} snapshot at ${s.index} differs from the committed state`);
    }
    for (let i = s.index + 1; i <= this.maxLeaderCommit; i++) {
      const t = this.committedTerm.get(i);
      if (t === undefined || this.committedIn.get(i)! >= beforeTerm) continue;
      if (log.term(i) !== t) {
        throw new InvariantViolation(checker, `node ${node.id} (term ${node.getTerm()}) lacks committed entry ${i}@${t} (has term ${log.term(i)})`);
      }
    }
  }

  onPersist(node: number, entries: readonly Entry[], prevTerm: number): void {
    let prev = prevTerm;
    for (const e of entries) {
      if (e.term < prev) throw new InvariantViolation('log matching', `node ${node}: term goes down at ${e.index}`);
      const key = e.index * 1048576 + e.term;
      const id = contentId(e) * 4096 + e.count;
      const known = this.logEntries.get(key);
      if (known === undefined) {
        this.logEntries.set(key, id);
        this.logPrev.set(key, prev);
      } else if (known !== id || this.logPrev.get(key) !== prev) {
        throw new InvariantViolation('log matching', `node ${node}: entry ${e.index}@${e.term} differs from another log's`);
      }
      prev = e.term;
    }
  }

  /**
   * Claims every offset of run `e` as shown (applied, or below a high watermark) by `node`: an offset
   * is claimed by one run forever. Checked offset by offset the first time a run is claimed anywhere.
   */
  private claim(node: number, e: Entry, what: string): void {
    const end = lastIndexOf(e);
    const id = contentId(e);
    const known = this.offsetRun.get(e.index);
    if (known !== undefined && sameRun(known, e, id)) return;
    const run: AppliedRun = { index: e.index, count: e.count, term: e.term, id };
    for (let i = e.index; i <= end; i++) {
      const k = this.offsetRun.get(i);
      if (k === undefined) this.offsetRun.set(i, run);
      else if (!sameRun(k, e, id)) {
        throw new InvariantViolation('no offset with two records', `node ${node} ${what} offset ${i} in run ${e.index}+${e.count}@${e.term}, but it was shown in run ${k.index}+${k.count}@${k.term}`);
      }
      const c = this.committedTerm.get(i);
      if (c !== undefined && c !== e.term) throw new InvariantViolation('no committed entry lost or changed', `node ${node} ${what} ${i}@${e.term}, but ${i}@${c} was committed`);
    }
  }

  /** `node` exposes run `e` to readers (it lies below its high watermark). */
  onVisible(node: number, e: Entry): void {
    this.claim(node, e, 'shows readers');
    const end = lastIndexOf(e);
    if (end > this.maxCommitted) this.maxCommitted = end;
  }

  /** A replica's high watermark (one past the last offset readers may see) is now `hw`. */
  onHighWatermark(node: number, hw: number, restart: boolean): void {
    const prev = this.hws.get(node) ?? 0;
    if (hw < prev) throw new InvariantViolation('high watermark monotonic', `node ${node} high watermark went from ${prev} to ${hw}${restart ? ' across a restart' : ''}`);
    this.hws.set(node, hw);
  }

  /**
   * An acks=all produce of run `index`+`count` in `term` was answered by `node`: it must be the
   * committed run at `index` (a leader's commit is recorded before anyone can learn of it).
   */
  onAcked(node: number, index: number, count: number, term: number, id: number): void {
    const c = this.committedTerm.get(index);
    if (c !== term) throw new InvariantViolation('every acked produce present', `node ${node} acked ${index}+${count}@${term}, but ${c === undefined ? 'it is not committed' : `${index}@${c} was committed`}`);
    this.acked.push({ index, count, term, id });
  }

  /**
   * A restarted replica's first high watermark, when the replica is allowed to restart lower than it
   * was (the real partition re-learns its commit index from the leader: see docs/raft.md). It becomes
   * the new floor for the monotonic check; returns true when it went back.
   */
  onHighWatermarkRestartLenient(node: number, hw: number): boolean {
    const prev = this.hws.get(node) ?? 0;
    this.hws.set(node, hw);
    return hw < prev;
  }

  /**
   * An acks=all produce of `count` records with content id `id` was answered by `node` at `index`, as
   * the real partition reports it: it must be the run shown there (committed: below some replica's
   * high watermark). The partition is observed only through its reads and acks, so "committed" is what
   * a replica showed readers.
   */
  onAckedShown(node: number, index: number, count: number, id: number): void {
    const run = this.offsetRun.get(index);
    if (run === undefined || run.index !== index || run.count !== count || run.id !== id) {
      const shown = run === undefined ? 'no replica shows it (not committed)' : `offset ${index} shows run ${run.index}+${run.count}@${run.term} #${run.id}`;
      throw new InvariantViolation('every acked produce present', `node ${node} acked ${index}+${count} #${id}, but ${shown}`);
    }
    this.acked.push({ index, count, term: run.term, id });
  }

  /**
   * The final leader's log as read back through the partition (`runs`, every run below its high
   * watermark): each is claimed (the same record at every offset, forever), and every acked produce
   * at or after its log start is there, unchanged.
   */
  checkReadLog(node: number, runs: readonly Entry[], logStart: number): void {
    const byIndex = new Map<number, Entry>();
    for (const e of runs) {
      this.claim(node, e, 'shows readers (final read)');
      byIndex.set(e.index, e);
    }
    for (const a of this.acked) {
      if (a.index < logStart) continue;
      const e = byIndex.get(a.index);
      if (e === undefined || e.count !== a.count || e.term !== a.term || contentId(e) !== a.id) {
        throw new InvariantViolation('every acked produce present', `node ${node} (final leader) lacks acked produce ${a.index}+${a.count}@${a.term} #${a.id}`);
      }
    }
  }

  /**
   * Every acked produce committed in a term before `beforeTerm` is in `node`'s log (or compacted into
   * its snapshot): what leader completeness promises a client that got an ack.
   */
  checkAcked(node: RaftNode, checker: string, beforeTerm = node.getTerm()): void {
    const first = node.log.firstIndex();
    for (const a of this.acked) {
      if (a.index < first || this.committedIn.get(a.index)! >= beforeTerm) continue;
      const t = node.log.term(a.index);
      if (t !== a.term) throw new InvariantViolation(checker, `node ${node.id} (term ${node.getTerm()}) lacks acked produce ${a.index}+${a.count}@${a.term} (has term ${t})`);
    }
  }

  /** `node` applied run `e`; `hash` is its hash chain after it. */
  onApply(node: number, e: Entry, hash: number): void {
    const end = lastIndexOf(e);
    this.claim(node, e, 'applied');
    const h = this.committedHash.get(end);
    if (h === undefined) {
      this.committedHash.set(end, hash);
      if (end > this.maxCommitted) this.maxCommitted = end;
    } else if (h !== hash) {
      throw new InvariantViolation('state machine safety', `node ${node} applied a different run (or history) ending at ${end}`);
    }
  }

  onSnapshotInstall(node: number, snap: Snapshot): void {
    const { index, hash } = snapshotApp(snap);
    const h = this.committedHash.get(index);
    if (h !== undefined && h !== hash) {
      throw new InvariantViolation('state machine safety', `node ${node} installed a snapshot at ${index} that differs`);
    }
  }

  onReadRequested(context: number): void {
    this.reads.set(context, this.maxCommitted);
  }

  onReadState(node: number, context: number, index: number): void {
    const need = this.reads.get(context);
    if (need !== undefined && index < need) {
      throw new InvariantViolation('linearizable read', `node ${node} read at ${index} but ${need} was committed before the read`);
    }
  }
}
