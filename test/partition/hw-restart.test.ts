/**
 * Goal: a replica of a larger group never shows a high watermark lower than one it showed before a
 * restart, and never one above what is committed and durable on it; and that costs no fsync on the
 * produce path. A clean close records the commit, so the replica reopens where it was. After a crash
 * its high watermark restarts lower (the commit learned since its last HardState write is lost) and
 * is provisional: ListOffsets(latest) is UNAVAILABLE (retriable) and a fetch at an offset it showed
 * is not out of range, until the leader's commit brings it back at least as far. The fsyncs of an
 * open and of a replicated produce are counted.
 * Method: three real `Partition`s (voters [1, 2, 3]) in one process, each on its own simulated disk
 * (test/sim's SimFs: in memory, a crash keeps only what was synced), wired by a test network that
 * carries every `send` to the peer's `step`; the shard's end-of-turn persist and the disk's fdatasync
 * completions are played by `settle()`. Every loop is bounded in rounds.
 */
import { describe, expect, it } from 'vitest';
import { encodeBatch } from '../../src/batch/index.js';
import { isSluiceError } from '../../src/errors.js';
import { Partition, type PartitionEffects } from '../../src/partition/index.js';
import type { Message } from '../../src/raft/index.js';
import { defaultLogConfig, type LogConfig } from '../../src/storage/index.js';
import { readHardState } from '../../src/storage/hard-state.js';
import { SimFs } from '../sim/sim-fs.js';
import { rng } from '../storage/helpers.js';

const config: LogConfig = { ...defaultLogConfig(), segmentBytes: 64 * 1024, flush: { kind: 'always' } };
const IDENT = { topic: 'h', topicId: 'hid', partition: 0 };
const VOTERS = [1, 2, 3];
const SETTLE_ROUNDS_MAX = 10_000;
const ELECTION_TICKS_MAX = 300;
const DIR = '/data';

/** fsync-family calls on one disk: the async fdatasync (the log's group commit) and the sync ones (state files, directories). */
interface Syncs {
  fdatasync: number;
  fsyncSync: number;
}

function countedDisk(): { disk: SimFs; syncs: Syncs } {
  const disk = new SimFs();
  const syncs: Syncs = { fdatasync: 0, fsyncSync: 0 };
  const fdatasync = disk.fdatasync;
  const fsyncSync = disk.fsyncSync;
  disk.fdatasync = (fd, cb) => {
    syncs.fdatasync++;
    fdatasync(fd, cb);
  };
  disk.fsyncSync = (fd) => {
    syncs.fsyncSync++;
    fsyncSync(fd);
  };
  disk.fdatasyncSync = disk.fsyncSync;
  return { disk, syncs };
}

interface Node {
  readonly id: number;
  readonly disk: SimFs;
  readonly syncs: Syncs;
  p: Partition | null;
  readonly acked: Set<number>;
  readonly fetched: number[];
}

class Cluster {
  readonly nodes = new Map<number, Node>();
  private wire: Message[] = [];
  private readonly ready = new Set<Partition>();
  /** Links `from * 100 + to` whose messages are dropped. */
  readonly cut = new Set<number>();
  private nextId = 1;

  constructor() {
    for (const id of VOTERS) {
      const { disk, syncs } = countedDisk();
      this.nodes.set(id, { id, disk, syncs, p: null, acked: new Set(), fetched: [] });
    }
  }

  async start(id: number): Promise<Partition> {
    const n = this.nodes.get(id)!;
    const effects: PartitionEffects = {
      produced: (_p, rid) => void n.acked.add(rid),
      failed: () => {},
      serveFetch: (_p, _rid, offset) => void n.fetched.push(offset),
      needPersist: (p) => void this.ready.add(p),
      send: (_p, msg) => void this.wire.push(msg),
    };
    const r = rng(2000 + id);
    const p = await Partition.open(DIR, IDENT, config, false, { fs: n.disk }, effects, undefined, { nodeId: id, voters: VOTERS, raft: { random: () => r.next() } });
    n.p = p;
    return p;
  }

  /** A power loss on node `id`: its partition is gone without a close, its disk keeps what was synced. */
  crash(id: number): void {
    const n = this.nodes.get(id)!;
    this.ready.delete(n.p!);
    n.p = null;
    this.wire = this.wire.filter((m) => m.from !== id);
    n.disk.crash();
  }

  async close(id: number): Promise<void> {
    const n = this.nodes.get(id)!;
    const p = n.p!;
    n.p = null;
    this.ready.delete(p);
    const closing = p.close(false);
    for (let i = 0; i < SETTLE_ROUNDS_MAX; i++) {
      n.disk.completeSyncs();
      const done = await Promise.race([closing.then(() => true), new Promise<boolean>((res) => setImmediate(() => res(false)))]);
      if (done) return;
    }
    throw new Error('close did not finish');
  }

  node(id: number): Partition {
    return this.nodes.get(id)!.p!;
  }

  /** One round: persists every Ready, completes every fdatasync, delivers every message. False when nothing moved. */
  async round(): Promise<boolean> {
    const ps = [...this.ready];
    this.ready.clear();
    for (const p of ps) p.persist();
    await new Promise((res) => setImmediate(res));
    let synced = 0;
    for (const n of this.nodes.values()) synced += n.disk.completeSyncs();
    await new Promise((res) => setImmediate(res));
    const msgs = this.wire.splice(0);
    for (const m of msgs) if (!this.cut.has(m.from * 100 + m.to)) this.nodes.get(m.to)?.p?.step(m);
    return !(ps.length === 0 && synced === 0 && msgs.length === 0 && this.ready.size === 0 && this.wire.length === 0);
  }

  async settle(): Promise<void> {
    for (let round = 0; round < SETTLE_ROUNDS_MAX; round++) if (!(await this.round())) return;
    throw new Error('the cluster did not settle');
  }

  async tick(): Promise<void> {
    for (const n of this.nodes.values()) n.p?.tick();
    await this.settle();
  }

  async electLeader(): Promise<Partition> {
    for (let t = 0; t < ELECTION_TICKS_MAX; t++) {
      const up = [...this.nodes.values()].flatMap((n) => (n.p ? [n.p] : []));
      const leaders = up.filter((p) => p.role === 'leader');
      if (leaders.length === 1 && up.every((p) => p.leaderId === leaders[0].nodeId && p.highWatermark === leaders[0].highWatermark)) return leaders[0];
      await this.tick();
    }
    throw new Error(`no leader after ${ELECTION_TICKS_MAX} ticks`);
  }

  produce(p: Partition, values: string[]): number {
    const id = this.nextId++;
    p.produce(id, encodeBatch(values.map((v) => ({ key: null, value: Buffer.from(v) }))), 2);
    return id;
  }

  syncs(): Syncs[] {
    return VOTERS.map((id) => ({ ...this.nodes.get(id)!.syncs }));
  }
}

async function started(): Promise<{ c: Cluster; leader: Partition; follower: number }> {
  const c = new Cluster();
  for (const id of VOTERS) await c.start(id);
  const leader = await c.electLeader();
  for (let i = 0; i < 5; i++) c.produce(leader, [`v${i}`, `w${i}`]);
  await c.settle();
  await c.tick(); // the followers learn the last commit
  const follower = VOTERS.find((id) => id !== leader.nodeId)!;
  expect(c.node(follower).highWatermark).toBe(leader.highWatermark);
  return { c, leader, follower };
}

describe('the high watermark of a restarted replica', () => {
  it('a clean close records the high watermark: the replica reopens with it, settled, even with an uncommitted tail', async () => {
    const { c, leader, follower } = await started();
    // One more batch reaches the follower, but not the commit that covers it (the link from the
    // leader is cut right after): a tail above its high watermark, as a follower usually has.
    const f = c.node(follower);
    const hw = f.highWatermark;
    const end = f.logEndOffset;
    c.produce(leader, ['tail']);
    for (let r = 0; r < SETTLE_ROUNDS_MAX && f.logEndOffset === end; r++) await c.round();
    c.cut.add(leader.nodeId * 100 + follower);
    await c.settle();
    expect(leader.highWatermark).toBeGreaterThan(hw);
    expect(f.highWatermark).toBe(hw);
    expect(hw).toBeGreaterThan(5);
    expect(f.logEndOffset).toBeGreaterThan(hw);
    // The HardState was last written at the term change, before these commits.
    expect(readHardState(`${DIR}/h-0`, c.nodes.get(follower)!.disk)!.commit).toBeLessThan(hw - 1);
    await c.close(follower);
    expect(readHardState(`${DIR}/h-0`, c.nodes.get(follower)!.disk)).toMatchObject({ commit: hw - 1, clean: true });
    const back = await c.start(follower);
    // (ListOffsets(latest) is the leader's to answer: a follower refuses it with NOT_LEADER.)
    expect([back.highWatermark, back.highWatermarkProvisional]).toEqual([hw, false]);
    // The mark is for that open only: a crash now (the log's clean-shutdown marker is gone) leaves
    // the next open provisional.
    c.crash(follower);
    const again = await c.start(follower);
    expect([again.highWatermark, again.highWatermarkProvisional]).toEqual([hw, true]);
    c.cut.clear();
    await c.tick();
    expect([again.highWatermarkProvisional, again.highWatermark]).toEqual([false, leader.highWatermark]);
  });

  it('after a crash it is provisional and lower, never shown going back, and settles when the leader speaks', async () => {
    const { c, leader, follower } = await started();
    const hw = c.node(follower).highWatermark;
    c.crash(follower);
    const back = await c.start(follower);
    // The crash lost the commit learned since the term change; the entries are all there.
    expect(back.highWatermark).toBeLessThan(hw);
    expect(back.logEndOffset).toBe(leader.logEndOffset);
    expect(back.highWatermarkProvisional).toBe(true);
    let err: unknown = null;
    try {
      back.offsetFor('latest');
    } catch (e) {
      err = e;
    }
    expect(isSluiceError(err, 'UNAVAILABLE') && (err as { retriable: boolean }).retriable).toBe(true);
    // A consumer that had read up to `hw` is not told it is out of range; past the log end it is.
    expect(back.fetch(1, hw, 1 << 20, 0, false)).toBe(false);
    expect(c.nodes.get(follower)!.fetched).toEqual([hw]);
    expect(() => back.fetch(2, back.logEndOffset + 1, 1 << 20, 0, false)).toThrow(/OFFSET_OUT_OF_RANGE|outside/);
    for (let t = 0; t < ELECTION_TICKS_MAX && back.highWatermarkProvisional; t++) await c.tick();
    expect([back.highWatermarkProvisional, back.highWatermark]).toEqual([false, hw]);
  });

  it('a replicated produce costs one fdatasync per replica and no state-file sync; an open costs the same as before', async () => {
    const c = new Cluster();
    const before = c.syncs();
    for (const id of VOTERS) await c.start(id);
    const opened = c.syncs();
    // Opening a new replica of a larger group writes its small state files (each a temp-file sync
    // and a directory sync): 6 syncs, as before the commit was recorded (measured on both).
    const openCost = opened.map((s, i) => s.fsyncSync - before[i].fsyncSync + s.fdatasync - before[i].fdatasync);
    expect(openCost).toEqual([6, 6, 6]);
    const leader = await c.electLeader();
    c.produce(leader, ['warm']);
    await c.settle();
    await c.tick();
    const s0 = c.syncs();
    const rid = c.produce(leader, ['a', 'b', 'c']);
    await c.settle();
    expect(c.nodes.get(leader.nodeId)!.acked.has(rid)).toBe(true);
    const s1 = c.syncs();
    expect(s1.map((s, i) => [s.fdatasync - s0[i].fdatasync, s.fsyncSync - s0[i].fsyncSync])).toEqual(VOTERS.map(() => [1, 0]));
    console.log(`fsyncs: open of a 3-voter replica ${openCost[0]} (sync ${opened[0].fsyncSync - before[0].fsyncSync}, fdatasync ${opened[0].fdatasync - before[0].fdatasync}); a produce: 1 fdatasync per replica, 0 state-file syncs`);
  });
});
