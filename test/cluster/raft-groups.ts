/**
 * A test driver for many Raft groups on one node over a real RaftTransport: for every group a RaftNode
 * over a MemoryStorage (the node's "disk", kept across a restart), ticked on a timer. Readies are handled
 * at the end of each turn for every group that changed, in the order the core requires: persist
 * (snapshot, entries, hard state) THEN send THEN apply THEN advance.
 */
import { MemoryStorage, RaftNode, bootstrapState, type Entry } from '../../src/raft/index.js';
import type { RaftTransport } from '../../src/cluster/types.js';
import type { NodeId } from '../../src/model/index.js';

export interface GroupState {
  readonly raft: RaftNode;
  readonly storage: MemoryStorage;
  /** Data entries applied, in order. */
  readonly applied: Entry[];
}

/** A seeded xorshift32 in [0, 1) (the tcp-proxy's), so a run's election timeouts replay from its seed. */
export { xorshift } from '../idempotence/tcp-proxy.js';

export class GroupHost {
  readonly groups = new Map<number, GroupState>();
  private readonly dirty = new Set<number>();
  private scheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private unregister: (() => void)[] = [];

  constructor(
    readonly id: NodeId,
    private transport: RaftTransport,
    /** Storages by group: pass the previous host's to restart from the same "disk". */
    readonly storages: Map<number, MemoryStorage>,
    private readonly random: () => number,
  ) {}

  /** Creates (or re-opens, over existing storages) a RaftNode per group and starts ticking. */
  start(groupIds: readonly number[], voters: readonly NodeId[], tickMs: number): void {
    for (const g of groupIds) {
      let storage = this.storages.get(g);
      if (storage === undefined) {
        storage = new MemoryStorage(bootstrapState(voters));
        this.storages.set(g, storage);
      }
      const raft = new RaftNode({ id: this.id, random: this.random }, storage);
      this.groups.set(g, { raft, storage, applied: [] });
      this.unregister.push(
        this.transport.register(g, (m) => {
          raft.step(m);
          this.touch(g);
        }),
      );
    }
    this.timer = setInterval(() => {
      for (const [g, s] of this.groups) {
        s.raft.tick();
        this.dirty.add(g);
      }
      this.process();
    }, tickMs);
  }

  /** Stops ticking and receiving (the transport is closed by the caller). */
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    for (const u of this.unregister.splice(0)) u();
  }

  campaign(g: number): void {
    this.groups.get(g)!.raft.campaign();
    this.touch(g);
  }

  propose(g: number, data: Uint8Array): void {
    this.groups.get(g)!.raft.propose(data);
    this.touch(g);
  }

  private touch(g: number): void {
    this.dirty.add(g);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.process());
    }
  }

  private process(): void {
    this.scheduled = false;
    for (const g of this.dirty) {
      const s = this.groups.get(g);
      if (s === undefined) continue;
      for (let i = 0; i < 100 && s.raft.hasReady(); i++) {
        const rd = s.raft.ready();
        if (rd.snapshot !== null) s.storage.applySnapshot(rd.snapshot);
        s.storage.append(rd.entries);
        if (rd.hardState !== null) s.storage.setHardState(rd.hardState);
        for (const m of rd.messages) this.transport.send(g, m);
        for (const e of rd.committedEntries) if (e.kind === 'data') s.applied.push(e);
        s.raft.advance();
      }
    }
    this.dirty.clear();
  }
}
