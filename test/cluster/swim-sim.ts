/**
 * A seeded, deterministic network for the pure SWIM core: virtual time, per-message latency and loss,
 * crashed nodes (never answer), paused nodes (take nothing in and tick not; what was sent to them waits
 * and is handled when they resume, as a SIGSTOPped process's socket buffers are). Calls have deadlines
 * like gRPC's: an answer arriving after the caller's deadline is dropped and the caller sees none.
 * Every run is a pure function of its seed.
 */
import { Prng } from '../sim/prng.js';
import { Swim, type AckMessage, type SwimAction, type SwimConfig } from '../../src/cluster/membership/swim.js';
import type { NodeInfo } from '../../src/cluster/types.js';
import { asNodeId, type NodeId } from '../../src/model/index.js';
import {
  GOSSIP_INDIRECT_PROBES,
  GOSSIP_MEMBERS_MAX,
  GOSSIP_PROBE_INTERVAL_MS,
  GOSSIP_PROBE_TIMEOUT_MS,
  GOSSIP_RETRANSMIT_MULT,
  GOSSIP_SUSPICION_TIMEOUT_MS,
  GOSSIP_TICK_MS,
  GOSSIP_UPDATES_PER_MESSAGE_MAX,
} from '../../src/constants.js';

export interface SimOptions {
  seed: number;
  nodes: number;
  /** Probability that one message (request or answer) is lost. */
  loss?: number;
  latencyMsMax?: number;
  config?: Partial<Omit<SwimConfig, 'self' | 'random'>>;
}

interface Event {
  at: number;
  order: number;
  run: () => void;
}

export class SwimSim {
  now = 0;
  readonly rng: Prng;
  readonly nodes = new Map<NodeId, Swim>();
  readonly crashed = new Set<NodeId>();
  readonly paused = new Set<NodeId>();
  /** Work that arrived for a paused node, run when it resumes. */
  private readonly parked = new Map<NodeId, (() => void)[]>();
  private events: Event[] = [];
  private order = 0;
  /** Every state a node showed for another (observer -> subject -> states seen), for checkers. */
  readonly seen = new Map<string, Set<string>>();
  /** Largest piggy-back list any message carried. */
  maxUpdatesInMessage = 0;
  private uuidCounter = 0;

  constructor(readonly options: SimOptions) {
    this.rng = new Prng(options.seed);
    for (let i = 1; i <= options.nodes; i++) this.addNode(i);
    // Everyone joins through node 1, one after another.
    const first = this.nodes.get(asNodeId(1))!;
    for (let i = 2; i <= options.nodes; i++) this.join(asNodeId(i), first);
    for (const n of this.nodes.values()) this.observe(n);
  }

  newUuid(): string {
    const n = ++this.uuidCounter;
    return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
  }

  /** A new node `id`; `uuid` given: the same node restarted with its data dir (its incarnation starts at 0 again). */
  addNode(id: number, uuid = this.newUuid()): Swim {
    const self: NodeInfo = { id: asNodeId(id), uuid, address: `sim:${id}`, rack: '', shards: 1, state: 'alive', incarnation: 0 };
    const swim = new Swim({
      self,
      random: () => this.rng.float(),
      probeIntervalMs: GOSSIP_PROBE_INTERVAL_MS,
      probeTimeoutMs: GOSSIP_PROBE_TIMEOUT_MS,
      suspicionTimeoutMs: GOSSIP_SUSPICION_TIMEOUT_MS,
      indirectProbes: GOSSIP_INDIRECT_PROBES,
      retransmitMult: GOSSIP_RETRANSMIT_MULT,
      updatesPerMessageMax: GOSSIP_UPDATES_PER_MESSAGE_MAX,
      membersMax: GOSSIP_MEMBERS_MAX,
      ...this.options.config,
    });
    this.nodes.set(asNodeId(id), swim);
    this.crashed.delete(asNodeId(id));
    return swim;
  }

  /** A Join through `via`, synchronous (the tests of the driver cover its network side). */
  join(id: NodeId, via: Swim): void {
    const joiner = this.nodes.get(id)!;
    const you = via.admit(joiner.self, joiner.all(), this.now);
    joiner.onJoined(you, via.all(), this.now);
  }

  private at(delayMs: number, run: () => void): void {
    this.events.push({ at: this.now + delayMs, order: this.order++, run });
  }

  private latency(): number {
    return 1 + this.rng.u32() % (this.options.latencyMsMax ?? 5);
  }

  private lost(): boolean {
    return this.rng.float() < (this.options.loss ?? 0);
  }

  /** Runs `work` at node `id` after a network hop, unless the message is lost or the node crashed. */
  private deliver(id: NodeId, work: () => void): void {
    if (this.lost()) return;
    this.at(this.latency(), () => {
      if (this.crashed.has(id)) return;
      if (this.paused.has(id)) {
        const q = this.parked.get(id) ?? [];
        q.push(work);
        this.parked.set(id, q);
        return;
      }
      work();
    });
  }

  /** A call from `from` to `to` with a deadline: `answer` gets the result, or null at the deadline. */
  private call<T>(from: NodeId, to: NodeId, timeoutMs: number, handle: () => T, answer: (r: T | null) => void): void {
    const deadline = this.now + timeoutMs;
    let done = false;
    const finish = (r: T | null): void => {
      if (done) return;
      done = true;
      answer(r);
    };
    this.at(timeoutMs, () => {
      if (!this.crashed.has(from)) this.runAt(from, () => finish(null));
    });
    this.deliver(to, () => {
      const result = handle();
      this.deliver(from, () => {
        if (this.now <= deadline) finish(result);
      });
    });
  }

  /** Runs work at a node now, or when it resumes. */
  private runAt(id: NodeId, work: () => void): void {
    if (this.paused.has(id)) {
      const q = this.parked.get(id) ?? [];
      q.push(work);
      this.parked.set(id, q);
    } else work();
  }

  private perform(id: NodeId, a: SwimAction): void {
    const node = (): Swim => this.nodes.get(id)!;
    this.maxUpdatesInMessage = Math.max(this.maxUpdatesInMessage, a.message.updates.length);
    if (a.kind === 'probe') {
      const target = a.target.id;
      this.call<AckMessage>(id, target, a.timeoutMs, () => this.ack(target, a.message), (ack) => node().onProbeAnswer(a.seq, ack, this.now));
    } else {
      const via = a.via.id;
      // The helper's own probe of the target, then its answer to the requester.
      this.deliver(via, () => {
        const helper = this.nodes.get(via)!;
        const probe = helper.onIndirectProbe(a.message, this.now);
        const requesterDeadline = this.now + a.timeoutMs;
        this.call<AckMessage>(via, a.message.target.id, a.message.timeoutMs, () => this.ack(a.message.target.id, probe), (ack) => {
          const answer = helper.onHelperAnswer(a.message.from, a.message.target, ack, this.now);
          this.deliver(id, () => {
            if (this.now <= requesterDeadline) node().onIndirectAnswer(a.seq, answer, this.now);
          });
        });
      });
    }
  }

  private ack(target: NodeId, msg: Parameters<Swim['onProbe']>[0]): AckMessage {
    const t = this.nodes.get(target)!;
    this.maxUpdatesInMessage = Math.max(this.maxUpdatesInMessage, msg.updates.length);
    return t.onProbe(msg, this.now);
  }

  crash(id: number): void {
    this.crashed.add(asNodeId(id));
  }

  pause(id: number): void {
    this.paused.add(asNodeId(id));
  }

  resume(id: number): void {
    const nid = asNodeId(id);
    this.paused.delete(nid);
    // Like a SIGCONT: the timers fire first (one late tick), then the buffered input is read.
    this.tickNode(nid);
    for (const w of this.parked.get(nid) ?? []) w();
    this.parked.delete(nid);
  }

  private tickNode(id: NodeId): void {
    const n = this.nodes.get(id)!;
    for (const a of n.tick(this.now)) this.perform(id, a);
    this.observe(n);
  }

  private observe(n: Swim): void {
    for (const m of n.all()) {
      const key = `${n.self.id}->${m.id}`;
      const set = this.seen.get(key) ?? new Set<string>();
      set.add(m.state);
      this.seen.set(key, set);
    }
  }

  /** Advances virtual time by `ms`, ticking every live, running node every GOSSIP_TICK_MS. */
  run(ms: number, until?: () => boolean): number {
    const end = this.now + ms;
    let nextTick = Math.ceil(this.now / GOSSIP_TICK_MS) * GOSSIP_TICK_MS;
    while (this.now < end) {
      this.events.sort((a, b) => a.at - b.at || a.order - b.order);
      const next = this.events[0];
      if (next !== undefined && next.at <= nextTick && next.at <= end) {
        this.events.shift();
        this.now = next.at;
        next.run();
        for (const n of this.nodes.values()) this.observe(n);
      } else {
        this.now = Math.min(nextTick, end);
        if (this.now === nextTick) {
          for (const [id] of this.nodes) if (!this.crashed.has(id) && !this.paused.has(id)) this.tickNode(id);
          nextTick += GOSSIP_TICK_MS;
        }
      }
      if (until?.()) return this.now;
    }
    return this.now;
  }

  /** The state `observer` holds for `subject`. */
  view(observer: number, subject: number): NodeInfo | undefined {
    return this.nodes.get(asNodeId(observer))!.get(asNodeId(subject));
  }

  liveIds(): number[] {
    return [...this.nodes.keys()].filter((id) => !this.crashed.has(id));
  }
}
