/**
 * Three `Partition`s (voters [1, 2, 3]) in one process over a test "network", as in
 * replication.test.ts (whose harness this is, shared for the chaos fixes' tests): every `send` is
 * carried to the peer's `step`, a node can be cut off, the shard's end-of-turn group commit is played by
 * `settle()`, and each node's fdatasyncs pass through a gate the test can close. Loops are bounded.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as turn } from 'node:timers/promises';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { Partition, type PartitionEffects, type ProduceOk } from '../../src/partition/index.js';
import { defaultLogConfig, type LogConfig, type LogOpenOptions } from '../../src/storage/index.js';
import type { Message, RaftBug } from '../../src/raft/index.js';
import { rng } from '../storage/helpers.js';

export const root = { dir: '' };
export const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 64 * 1024, flush: { kind: 'always' } };
export const IDENT = { topic: 'r', topicId: 'rid', partition: 0 };
export const VOTERS = [1, 2, 3];
const SETTLE_ROUNDS_MAX = 200_000;
const SETTLE_MS_MAX = 20_000;
const ELECTION_TICKS_MAX = 300;

/** A node's fdatasyncs, held while its gate is closed. */
export function gate(): { options: LogOpenOptions; close: () => void; open: () => void; isOpen: () => boolean } {
  let isOpen = true;
  let held: Array<() => void> = [];
  return {
    options: { fdatasync: (fd, cb) => (isOpen ? fs.fdatasync(fd, cb) : held.push(() => fs.fdatasync(fd, cb))) },
    close: () => void (isOpen = false),
    open: () => {
      isOpen = true;
      const q = held;
      held = [];
      for (const f of q) f();
    },
    isOpen: () => isOpen,
  };
}

export interface Node {
  id: number;
  dir: string;
  gate: ReturnType<typeof gate>;
  p: Partition | null;
  acked: Map<number, ProduceOk>;
  failed: Map<number, string>;
}

export class Cluster {
  readonly nodes = new Map<number, Node>();
  private readonly wire: Message[] = [];
  private readonly ready = new Set<Partition>();
  /** Nodes cut off the network: messages from and to them are dropped. */
  readonly cut = new Set<number>();
  private nextId = 1;
  /** Messages put on the wire so far (a quiet group sends none). */
  sent = 0;
  /**
   * When set: the voters in this order (the first is the preferred replica) and
   * `ReplicaOptions.preferredLeaderFirst` on every replica, as cluster replicas open.
   */
  preferredOrder: number[] | null = null;

  constructor(
    readonly name: string,
    private readonly bugs: RaftBug[] = [],
    /** RaftOptions.quiesce for every replica. */
    private readonly quiesce = false,
  ) {
    for (const id of VOTERS) this.nodes.set(id, { id, dir: path.join(root.dir, name, `node-${id}`), gate: gate(), p: null, acked: new Map(), failed: new Map() });
  }

  async start(id: number, fresh: boolean): Promise<Partition> {
    const n = this.nodes.get(id)!;
    const effects: PartitionEffects = {
      produced: (_p, rid, ok) => void n.acked.set(rid, ok),
      failed: (_p, rid, err) => void n.failed.set(rid, err.code),
      serveFetch: () => {},
      needPersist: (p) => void this.ready.add(p),
      send: (_p, msg) => {
        this.sent++;
        this.wire.push(msg);
      },
    };
    const r = rng(1000 + id);
    const voters = this.preferredOrder ?? VOTERS;
    const preferredLeaderFirst = this.preferredOrder !== null;
    n.p = await Partition.open(n.dir, IDENT, config, fresh, n.gate.options, effects, undefined, { nodeId: id, voters, preferredLeaderFirst, raft: { random: () => r.next(), bugs: this.bugs, quiesce: this.quiesce } });
    return n.p;
  }

  async stop(id: number): Promise<void> {
    const n = this.nodes.get(id)!;
    const p = n.p!;
    n.p = null;
    this.ready.delete(p);
    await p.close(false).catch(() => {});
  }

  live(): Partition[] {
    return [...this.nodes.values()].flatMap((n) => (n.p ? [n.p] : []));
  }

  node(id: number): Partition {
    return this.nodes.get(id)!.p!;
  }

  /**
   * Plays shard and network until nothing moves: persists every Ready, lets fdatasyncs complete,
   * delivers every message. A node whose gate is closed may stay persisting; that counts as quiet.
   */
  async settle(): Promise<void> {
    const t0 = Date.now();
    for (let round = 0; round < SETTLE_ROUNDS_MAX && Date.now() - t0 < SETTLE_MS_MAX; round++) {
      const ps = [...this.ready];
      this.ready.clear();
      for (const p of ps) p.persist();
      const msgs = this.wire.splice(0);
      for (const m of msgs) {
        const to = this.nodes.get(m.to)?.p;
        if (to && !this.cut.has(m.from) && !this.cut.has(m.to)) to.step(m);
      }
      const busy = [...this.nodes.values()].some((n) => n.p !== null && n.p.persisting && n.gate.isOpen());
      if (msgs.length === 0 && ps.length === 0 && this.ready.size === 0 && this.wire.length === 0 && !busy) return;
      await turn();
    }
    throw new Error(`${this.name}: the cluster did not settle`);
  }

  async tick(n = 1): Promise<void> {
    for (let i = 0; i < n; i++) {
      for (const p of this.live()) p.tick();
      await this.settle();
    }
  }

  /** Ticks until exactly one live, connected node leads and every connected node knows it. */
  async electLeader(): Promise<Partition> {
    for (let t = 0; t < ELECTION_TICKS_MAX; t++) {
      const up = [...this.nodes.values()].filter((n) => n.p !== null && !this.cut.has(n.id)).map((n) => n.p!);
      const leaders = up.filter((p) => p.role === 'leader');
      if (leaders.length === 1 && up.every((p) => p.leaderId === leaders[0].nodeId) && leaders[0].highWatermark === leaders[0].logEndOffset) return leaders[0];
      await this.tick();
    }
    throw new Error(`${this.name}: no leader after ${ELECTION_TICKS_MAX} ticks`);
  }

  produce(p: Partition, values: string[], acks: 0 | 1 | 2 = 2): number {
    const id = this.nextId++;
    p.produce(id, encodeBatch(values.map((v) => ({ key: null, value: Buffer.from(v) }))), acks);
    return id;
  }
}

/** The committed bytes of a replica, from its log start to its high watermark (offsets, epochs, CRCs and all). */
export function committedBytes(p: Partition): Buffer {
  const parts: Buffer[] = [];
  for (let offset = p.logStartOffset; offset < p.highWatermark; ) {
    const r = p.read(offset, 1 << 20);
    if (r.data.length === 0) break;
    parts.push(Buffer.from(r.data));
    offset = r.nextOffset;
  }
  return Buffer.concat(parts);
}

export function values(p: Partition): string[] {
  return decodeBatches(committedBytes(p))
    .filter((b) => !b.header.isControl)
    .flatMap((b) => b.records.map((r) => Buffer.from(r.value!).toString()));
}

export async function threeNodes(name: string, bugs: RaftBug[] = [], quiesce = false): Promise<{ c: Cluster; leader: Partition }> {
  const c = new Cluster(name, bugs, quiesce);
  for (const id of VOTERS) await c.start(id, true);
  return { c, leader: await c.electLeader() };
}

export async function shutdown(c: Cluster): Promise<void> {
  for (const n of c.nodes.values()) n.gate.open();
  for (const n of c.nodes.values()) if (n.p) await c.stop(n.id);
}

