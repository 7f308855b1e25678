/**
 * The pure SWIM core (Das, Gupta, Motivala 2002, with the suspicion mechanism): no timers, no I/O, no
 * clock, randomness only from the injected source. Time comes in as `nowMs` arguments; messages go out
 * as actions the driver performs (src/cluster/membership/gossip.ts) and whose answers it feeds back.
 *
 * Protocol, per node:
 * - Every probe interval it probes one member (round-robin over a list reshuffled each round). If no
 *   ack arrives within the probe timeout, it asks up to `indirectProbes` other members to probe the
 *   target for it. If neither answered by the end of the period, the target becomes *suspect*.
 * - A suspect that is not refuted within the suspicion timeout is declared *dead*. Each member runs
 *   its own timer from the moment it learned of the suspicion.
 * - Only a node raises its own incarnation: when it hears it is suspect or dead at its current
 *   incarnation (or higher), it refutes with an alive record one higher. Whoever sends a message to a
 *   suspect or dead node includes that node's record, so a paused node learns of its suspicion from
 *   the first message it sees ("tell the accused").
 * - Updates (a member's record that changed) are piggy-backed on probes and acks, fewest-sent first,
 *   each at most `retransmitMult * ceil(log2(n + 1))` times.
 * - Precedence for one node id: a higher incarnation wins; at equal incarnation dead > suspect > alive.
 *   A different UUID under a known id (a wiped disk) wins only with a higher incarnation: the member
 *   that admits such a joiner gives it one (see `admit`).
 * - A dead member is kept (and a reconnect tried now and then) until the driver `forget`s it, which
 *   the cluster does only for a node the controller has decommissioned (it left for good). A forgotten
 *   member's record is kept as a tombstone: hearsay about it at or below the tombstone's incarnation
 *   (a stale record still travelling) does not bring it back; the node itself speaking, a higher
 *   incarnation, or another UUID (a new life) does.
 *
 * Gossip informs, Raft decides (DESIGN.md decision 4): nothing here elects or moves anything.
 */
import assert from 'node:assert/strict';
import type { NodeId } from '../../model/index.js';
import type { NodeInfo } from '../types.js';

export type MemberState = NodeInfo['state'];

export interface SwimConfig {
  /** This node as it starts (state alive). Its incarnation may be raised later by `adoptIncarnation`. */
  self: NodeInfo;
  /** Injected randomness in [0, 1): probe order and the choice of indirect helpers. */
  random: () => number;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  suspicionTimeoutMs: number;
  indirectProbes: number;
  retransmitMult: number;
  updatesPerMessageMax: number;
  /** Members the table holds at most; records about further node ids are ignored (bounded memory). */
  membersMax: number;
}

/** A direct probe (ping) as the core builds it; the driver adds the cluster id. */
export interface ProbeMessage {
  from: NodeInfo;
  targetId: NodeId;
  targetUuid: string;
  updates: NodeInfo[];
}

/** The answer to a probe (ack). */
export interface AckMessage {
  from: NodeInfo;
  updates: NodeInfo[];
}

export interface IndirectProbeMessage {
  from: NodeInfo;
  target: NodeInfo;
  updates: NodeInfo[];
  timeoutMs: number;
}

export interface IndirectAckMessage {
  acked: boolean;
  from: NodeInfo;
  updates: NodeInfo[];
}

/**
 * What the driver must send. Answers (or null for no answer in time / a failed call) come back through
 * `onProbeAnswer(seq, …)` and `onIndirectAnswer(seq, …)`; late answers are harmless.
 */
export type SwimAction =
  | { kind: 'probe'; seq: number; target: NodeInfo; message: ProbeMessage; timeoutMs: number }
  | { kind: 'indirect'; seq: number; via: NodeInfo; message: IndirectProbeMessage; timeoutMs: number };

/** A change the core made to its table, for PeerDirectory listeners; `previous` is undefined on first sight. */
export interface MemberChange {
  node: NodeInfo;
  previous: NodeInfo | undefined;
}

interface Probe {
  seq: number;
  target: NodeInfo;
  startedMs: number;
  indirectSent: boolean;
  acked: boolean;
}

const STATE_RANK: Record<MemberState, number> = { alive: 0, suspect: 1, dead: 2 };

export class Swim {
  private selfInfo: NodeInfo;
  private readonly members = new Map<NodeId, NodeInfo>();
  /** When this node learned that each current suspect is suspect. */
  private readonly suspectSince = new Map<NodeId, number>();
  /** Pending piggy-back updates by node id, with how many times each was sent. */
  private readonly broadcasts = new Map<NodeId, { info: NodeInfo; transmits: number }>();
  private readonly changes: MemberChange[] = [];
  /** Forgotten members' last records (bounded by membersMax, oldest dropped first). */
  private readonly forgotten = new Map<NodeId, NodeInfo>();
  /** A member with another UUID claiming this node's id (two processes with one --node-id). */
  private readonly conflicts: NodeInfo[] = [];
  private probeOrder: NodeId[] = [];
  private probeIndex = 0;
  private probe: Probe | null = null;
  private nextProbeMs = -Infinity;
  private seq = 0;
  private lastTickMs: number | null = null;

  constructor(private readonly config: SwimConfig) {
    assert.ok(config.self.id > 0, 'a node id is positive');
    assert.equal(config.self.state, 'alive');
    assert.ok(config.probeTimeoutMs < config.probeIntervalMs);
    this.selfInfo = config.self;
    this.members.set(config.self.id, config.self);
  }

  get self(): NodeInfo {
    return this.selfInfo;
  }

  get(id: NodeId): NodeInfo | undefined {
    return this.members.get(id);
  }

  all(): NodeInfo[] {
    return [...this.members.values()].sort((a, b) => a.id - b.id);
  }

  /**
   * Removes a dead member from the table (the cluster decided it left for good: a decommissioned
   * node). Returns whether it was removed: only a dead member other than this node is.
   */
  forget(id: NodeId): boolean {
    const cur = this.members.get(id);
    if (cur === undefined || cur.state !== 'dead' || id === this.selfInfo.id) return false;
    this.members.delete(id);
    this.suspectSince.delete(id);
    this.broadcasts.delete(id);
    if (this.probe?.target.id === id) this.probe = null;
    this.forgotten.delete(id);
    if (this.forgotten.size >= this.config.membersMax) this.forgotten.delete(this.forgotten.keys().next().value!);
    this.forgotten.set(id, cur);
    return true;
  }

  /** Changes since the last call, in the order they happened. */
  drainChanges(): MemberChange[] {
    return this.changes.splice(0);
  }

  /** Records claiming this node's id under another UUID, seen since the last call. */
  drainConflicts(): NodeInfo[] {
    return this.conflicts.splice(0);
  }

  /** Advances time: judges the current probe, starts the next, declares overdue suspects dead. */
  tick(nowMs: number): SwimAction[] {
    const actions: SwimAction[] = [];
    if (this.lastTickMs !== null && nowMs - this.lastTickMs > this.config.probeIntervalMs) {
      // This node did not run for a while (stopped, VM paused, loop starved): answers may be waiting
      // unread, so judge nobody for the gap. Suspicion timers skip it; the current probe starts over.
      const gap = nowMs - this.lastTickMs;
      for (const [id, since] of this.suspectSince) this.suspectSince.set(id, since + gap);
      this.probe = null;
      this.nextProbeMs = nowMs;
    }
    this.lastTickMs = nowMs;
    this.expireSuspects(nowMs);
    const p = this.probe;
    if (p !== null && !p.acked) {
      if (nowMs >= p.startedMs + this.config.probeIntervalMs) {
        this.suspect(p.target.id, nowMs);
        this.probe = null;
      } else if (!p.indirectSent && nowMs >= p.startedMs + this.config.probeTimeoutMs) {
        p.indirectSent = true;
        actions.push(...this.indirectProbes(p, nowMs));
      }
    }
    if (nowMs >= this.nextProbeMs) {
      this.probe = null;
      const target = this.nextTarget();
      if (target !== undefined) {
        const seq = ++this.seq;
        this.probe = { seq, target, startedMs: nowMs, indirectSent: false, acked: false };
        actions.push({ kind: 'probe', seq, target, message: this.probeMessage(target), timeoutMs: this.config.probeTimeoutMs });
      }
      this.nextProbeMs = nowMs + this.config.probeIntervalMs;
    }
    return actions;
  }

  /** A probe to `target` (also what a helper sends for an indirect probe). */
  probeMessage(target: NodeInfo): ProbeMessage {
    return { from: this.selfInfo, targetId: target.id, targetUuid: target.uuid, updates: this.piggyback(target.id) };
  }

  /** Another node probed us: learn what it carries, answer with our own news. */
  onProbe(msg: ProbeMessage, nowMs: number): AckMessage {
    this.learn(msg.from, msg.updates, nowMs);
    return { from: this.selfInfo, updates: this.piggyback(msg.from.id) };
  }

  /** The answer to our probe `seq` (null: none in time). */
  onProbeAnswer(seq: number, ack: AckMessage | null, nowMs: number): void {
    if (ack === null) return;
    this.learn(ack.from, ack.updates, nowMs);
    const p = this.probe;
    if (p !== null && p.seq === seq && ack.from.id === p.target.id && ack.from.uuid === p.target.uuid) p.acked = true;
  }

  /** A member asks us to probe `msg.target` for it: learn, and build the probe to send. */
  onIndirectProbe(msg: IndirectProbeMessage, nowMs: number): ProbeMessage {
    this.learn(msg.from, msg.updates, nowMs);
    return this.probeMessage(msg.target);
  }

  /** What the target answered our probe on a member's behalf; builds the answer to that member. */
  onHelperAnswer(requester: NodeInfo, target: NodeInfo, ack: AckMessage | null, nowMs: number): IndirectAckMessage {
    const acked = ack !== null && ack.from.id === target.id && ack.from.uuid === target.uuid;
    if (ack !== null) this.learn(ack.from, ack.updates, nowMs);
    return { acked, from: this.selfInfo, updates: this.piggyback(requester.id) };
  }

  /** A helper's answer to our indirect probe `seq` (null: none in time). */
  onIndirectAnswer(seq: number, answer: IndirectAckMessage | null, nowMs: number): void {
    if (answer === null) return;
    this.learn(answer.from, answer.updates, nowMs);
    const p = this.probe;
    if (p !== null && p.seq === seq && answer.acked) p.acked = true;
  }

  /**
   * Admits a joiner (the driver has already refused a duplicate id held by a live node). Its record is
   * stored alive with an incarnation above any this node held for its id, so the joiner's record
   * supersedes an old one everywhere, whether dead, suspect or under another (wiped) UUID. The joiner
   * adopts that incarnation. Then merges the joiner's own table (push-pull).
   */
  admit(joiner: NodeInfo, table: readonly NodeInfo[], nowMs: number): NodeInfo {
    const old = this.members.get(joiner.id) ?? this.forgotten.get(joiner.id);
    let incarnation = joiner.incarnation;
    if (old !== undefined && (old.uuid !== joiner.uuid || old.state !== 'alive' || old.incarnation > joiner.incarnation)) {
      incarnation = Math.max(joiner.incarnation, old.incarnation + 1);
    }
    const you: NodeInfo = { ...joiner, state: 'alive', incarnation };
    assert.ok(old !== undefined || this.members.size < this.config.membersMax, 'the driver refuses joiners beyond membersMax');
    if (joiner.id !== this.selfInfo.id) this.apply(you, nowMs);
    for (const m of table) if (m.id !== joiner.id) this.merge(m, nowMs);
    return you;
  }

  /** The joiner's side of a Join answer: adopt the incarnation the cluster gave us, learn the table. */
  onJoined(you: NodeInfo, table: readonly NodeInfo[], nowMs: number): void {
    if (you.uuid === this.selfInfo.uuid) this.adoptIncarnation(you.incarnation);
    for (const m of table) this.merge(m, nowMs);
  }

  /** Raises our incarnation to at least `n` and announces it. */
  adoptIncarnation(n: number): void {
    if (n <= this.selfInfo.incarnation) return;
    this.setSelf({ ...this.selfInfo, incarnation: n });
  }

  /** Changes what we advertise about ourselves (address, rack, shards, leaving) with a new incarnation. */
  updateSelf(patch: Partial<Pick<NodeInfo, 'address' | 'rack' | 'shards' | 'leaving'>>): void {
    this.setSelf({ ...this.selfInfo, ...patch, incarnation: this.selfInfo.incarnation + 1 });
  }

  /**
   * Merges one record by SWIM precedence. Returns whether the table changed. `direct`: the record is
   * its node speaking for itself (a message's sender), not hearsay, so it revives a forgotten member.
   */
  merge(u: NodeInfo, nowMs: number, direct = false): boolean {
    if (u.id === this.selfInfo.id) return this.mergeAboutSelf(u);
    const cur = this.members.get(u.id);
    if (cur !== undefined && !supersedes(u, cur)) return false;
    if (cur === undefined) {
      const gone = this.forgotten.get(u.id);
      if (gone !== undefined && !direct && u.uuid === gone.uuid && u.incarnation <= gone.incarnation) return false;
      if (this.members.size >= this.config.membersMax) return false;
    }
    this.apply(u, nowMs);
    return true;
  }

  private learn(from: NodeInfo, updates: readonly NodeInfo[], nowMs: number): void {
    // A sender speaks for itself as alive; precedence still applies (it cannot clear its own suspicion
    // without a higher incarnation).
    this.merge({ ...from, state: 'alive' }, nowMs, true);
    for (const u of updates) this.merge(u, nowMs);
  }

  private mergeAboutSelf(u: NodeInfo): boolean {
    const me = this.selfInfo;
    if (u.uuid !== me.uuid) {
      // Another process claims our id. Never give the id up silently; the driver reports it loudly.
      if (u.state === 'alive' && u.incarnation >= me.incarnation) this.conflicts.push(u);
      return false;
    }
    if (u.state !== 'alive' ? u.incarnation >= me.incarnation : u.incarnation > me.incarnation) {
      // Suspected or declared dead (or an older life of ours is known at a higher incarnation): refute.
      this.setSelf({ ...me, incarnation: u.incarnation + 1 });
      return true;
    }
    return false;
  }

  private setSelf(info: NodeInfo): void {
    const previous = this.selfInfo;
    this.selfInfo = info;
    this.members.set(info.id, info);
    this.queue(info);
    this.changes.push({ node: info, previous });
  }

  private apply(u: NodeInfo, nowMs: number): void {
    const previous = this.members.get(u.id);
    this.members.set(u.id, u);
    this.forgotten.delete(u.id);
    if (u.state === 'suspect') {
      if (previous?.state !== 'suspect' || previous.incarnation !== u.incarnation || previous.uuid !== u.uuid) this.suspectSince.set(u.id, nowMs);
    } else {
      this.suspectSince.delete(u.id);
    }
    if (u.state === 'dead' && this.probe?.target.id === u.id) this.probe = null;
    this.queue(u);
    this.changes.push({ node: u, previous });
  }

  private suspect(id: NodeId, nowMs: number): void {
    const cur = this.members.get(id);
    if (cur === undefined || cur.state !== 'alive') return;
    this.apply({ ...cur, state: 'suspect' }, nowMs);
  }

  private expireSuspects(nowMs: number): void {
    for (const [id, since] of this.suspectSince) {
      if (nowMs - since < this.config.suspicionTimeoutMs) continue;
      const cur = this.members.get(id);
      assert.ok(cur !== undefined && cur.state === 'suspect', 'a suspicion timer runs only for a current suspect');
      this.apply({ ...cur, state: 'dead' }, nowMs);
    }
  }

  private nextTarget(): NodeInfo | undefined {
    for (let pass = 0; pass < 2; pass++) {
      while (this.probeIndex < this.probeOrder.length) {
        const m = this.members.get(this.probeOrder[this.probeIndex++]!);
        if (m !== undefined && m.id !== this.selfInfo.id && m.state !== 'dead') return m;
      }
      // A new round: every live member once, in a fresh random order (SWIM's bounded detection time).
      this.probeOrder = this.shuffle([...this.members.values()].filter((m) => m.id !== this.selfInfo.id && m.state !== 'dead').map((m) => m.id));
      this.probeIndex = 0;
    }
    return undefined;
  }

  private indirectProbes(p: Probe, nowMs: number): SwimAction[] {
    void nowMs;
    const helpers = this.shuffle([...this.members.values()].filter((m) => m.id !== this.selfInfo.id && m.id !== p.target.id && m.state === 'alive')).slice(0, this.config.indirectProbes);
    const timeoutMs = this.config.probeIntervalMs - this.config.probeTimeoutMs;
    return helpers.map((via) => ({
      kind: 'indirect' as const,
      seq: p.seq,
      via,
      message: { from: this.selfInfo, target: p.target, updates: this.piggyback(via.id), timeoutMs },
      timeoutMs,
    }));
  }

  private queue(info: NodeInfo): void {
    this.broadcasts.set(info.id, { info, transmits: 0 });
  }

  /** Updates for a message to `dest`: its own record first when it is suspect or dead, then the least-sent. */
  private piggyback(dest: NodeId): NodeInfo[] {
    const out: NodeInfo[] = [];
    const accused = this.members.get(dest);
    if (accused !== undefined && accused.state !== 'alive' && dest !== this.selfInfo.id) out.push(accused);
    const limit = this.config.retransmitMult * Math.ceil(Math.log2(this.members.size + 1));
    const pending = [...this.broadcasts.values()].sort((a, b) => a.transmits - b.transmits);
    for (const b of pending) {
      if (out.length >= this.config.updatesPerMessageMax) break;
      if (b.info.id === dest && out.length > 0 && out[0] === accused) continue;
      out.push(b.info);
      if (++b.transmits >= limit) this.broadcasts.delete(b.info.id);
    }
    return out;
  }

  private shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(this.config.random() * (i + 1));
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }

  /** Test hook: pending piggy-back updates (bounded by the member count). */
  pendingBroadcasts(): number {
    return this.broadcasts.size;
  }
}

/** Whether record `u` replaces `cur` (same node id), by SWIM precedence. */
export function supersedes(u: NodeInfo, cur: NodeInfo): boolean {
  if (u.incarnation !== cur.incarnation) return u.incarnation > cur.incarnation;
  if (u.uuid !== cur.uuid) return false;
  if (STATE_RANK[u.state] !== STATE_RANK[cur.state]) return STATE_RANK[u.state] > STATE_RANK[cur.state];
  // Same state and incarnation: only an address or rack change of an alive record is news (it cannot
  // happen without a new incarnation from the node itself, so treat it as no news).
  return false;
}
