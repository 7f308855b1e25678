/**
 * The offsets state machine: an in-memory table fed by the records of `__consumer_offsets`, in log
 * order. Applying a record for a key replaces the previous value (compaction by key); a tombstone
 * removes it. Recovery is replaying every offsets partition through `apply` from its start.
 *
 * Pure: no I/O, no clock. The store (offsets-store.ts) feeds it after each durable append.
 */
import { decodeOffsetKey, decodeOffsetValue, type OffsetValue } from './offsets-codec.js';

export interface CommittedOffsetEntry extends OffsetValue {
  topic: string;
  partition: number;
  /** Timestamp of the record that last wrote this key (a refresh rewrites it; commitTimeMs stays). */
  writeTimeMs: number;
}

export const tpKey = (topic: string, partition: number): string => `${topic}\u0000${partition}`;

export class OffsetsStm {
  /** group -> (topic\0partition -> entry). */
  private readonly groups = new Map<string, Map<string, CommittedOffsetEntry>>();
  /** Records applied (for tests and recovery stats). */
  applied = 0;

  /** Applies one raw record of the offsets topic. Unknown versions are skipped (a newer writer). */
  applyRecord(key: Uint8Array | null, value: Uint8Array | null, writeTimeMs: number): void {
    if (key === null) return;
    const k = decodeOffsetKey(key);
    if (k === null) return;
    this.applied++;
    if (value === null) this.remove(k.group, k.topic, k.partition);
    else this.set(k.group, { topic: k.topic, partition: k.partition, ...decodeOffsetValue(value), writeTimeMs });
  }

  /** Live entries last written before `beforeMs` (to be rewritten before log retention drops them). */
  staleWrites(beforeMs: number): { group: string; entries: CommittedOffsetEntry[] }[] {
    const out: { group: string; entries: CommittedOffsetEntry[] }[] = [];
    for (const [group, g] of this.groups) {
      const entries = [...g.values()].filter((e) => e.writeTimeMs < beforeMs);
      if (entries.length > 0) out.push({ group, entries });
    }
    return out;
  }

  set(group: string, e: CommittedOffsetEntry): void {
    let g = this.groups.get(group);
    if (!g) this.groups.set(group, (g = new Map()));
    g.set(tpKey(e.topic, e.partition), e);
  }

  remove(group: string, topic: string, partition: number): void {
    const g = this.groups.get(group);
    if (!g) return;
    g.delete(tpKey(topic, partition));
    if (g.size === 0) this.groups.delete(group);
  }

  /** Forgets a group's offsets (its offsets partition moved to another coordinator). */
  removeGroup(group: string): void {
    this.groups.delete(group);
  }

  get(group: string, topic: string, partition: number): CommittedOffsetEntry | undefined {
    return this.groups.get(group)?.get(tpKey(topic, partition));
  }

  /** Every committed offset of a group, sorted by topic then partition. */
  list(group: string): CommittedOffsetEntry[] {
    const g = this.groups.get(group);
    if (!g) return [];
    return [...g.values()].sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  }

  groupIds(): string[] {
    return [...this.groups.keys()];
  }

  has(group: string): boolean {
    return this.groups.has(group);
  }

  /** The newest commit time of a group's offsets (for offsets.retention.ms), or -1. */
  lastCommitMs(group: string): number {
    let last = -1;
    for (const e of this.groups.get(group)?.values() ?? []) last = Math.max(last, e.commitTimeMs);
    return last;
  }
}
