/**
 * The partition actor: one partition's log and its parked long-poll fetches, living inside exactly one
 * shard worker for its whole life. Nothing else touches the log, so there are no locks.
 *
 * Serialization: every operation on the actor (append, read, offsets, config) is synchronous, so two
 * requests can never interleave inside one; only open and close are asynchronous, and the shard keeps
 * an actor out of its table until it is open and takes it out before closing it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';
import { PartitionLog, type LogOpenOptions } from '../storage/index.js';
import type { AppendOptions, AppendResult, LogConfig } from '../storage/types.js';

const PRODUCED: AppendOptions = Object.freeze({ produced: true });

/** A fetch waiting for data at `offset` (the log end when it parked). */
export interface ParkedFetch {
  id: number;
  offset: number;
  maxBytes: number;
  timer: NodeJS.Timeout;
}

/** `<data-dir>/<topic>-<partition>`, the storage layout (as Kafka). */
export function partitionDir(dataDir: string, topic: string, partition: number): string {
  return path.join(dataDir, `${topic}-${partition}`);
}

export class PartitionActor {
  private readonly parked = new Map<number, ParkedFetch>();
  private closed = false;

  private constructor(
    readonly topic: string,
    readonly partition: number,
    readonly log: PartitionLog,
  ) {}

  /** Opens (recovering) the log; with `fresh`, first removes whatever a deleted namesake left behind. */
  static async open(
    dataDir: string,
    topic: string,
    partition: number,
    config: LogConfig,
    fresh: boolean,
    options: LogOpenOptions,
  ): Promise<PartitionActor> {
    const dir = partitionDir(dataDir, topic, partition);
    if (fresh) await fs.promises.rm(dir, { recursive: true, force: true });
    const log = await PartitionLog.open(dir, config, options);
    return new PartitionActor(topic, partition, log);
  }

  get parkedCount(): number {
    return this.parked.size;
  }

  append(bytes: Uint8Array): AppendResult {
    if (this.closed) throw new SluiceError('UNKNOWN_PARTITION', `partition ${this.topic}/${this.partition} is being deleted`);
    // A client's produce: every record is validated on this (shard) thread before anything is written.
    return this.log.append(bytes, 0, PRODUCED);
  }

  park(fetch: ParkedFetch): void {
    this.parked.set(fetch.id, fetch);
  }

  /** Removes a parked fetch (timeout or cancel); returns it if it was still parked. */
  unpark(id: number): ParkedFetch | undefined {
    const f = this.parked.get(id);
    if (f) {
      this.parked.delete(id);
      clearTimeout(f.timer);
    }
    return f;
  }

  /** Takes every parked fetch whose offset now has data (called after an append). */
  takeReady(): ParkedFetch[] {
    if (this.parked.size === 0) return [];
    const end = this.log.nextOffset;
    const ready: ParkedFetch[] = [];
    for (const f of this.parked.values()) {
      if (f.offset < end) ready.push(f);
    }
    for (const f of ready) this.unpark(f.id);
    return ready;
  }

  /** Takes every parked fetch (close): the caller answers them. */
  takeAll(): ParkedFetch[] {
    const all = [...this.parked.values()];
    for (const f of all) this.unpark(f.id);
    return all;
  }

  enforceRetention(nowMs: number): number {
    return this.closed ? 0 : this.log.enforceRetention(nowMs);
  }

  async close(remove: boolean): Promise<void> {
    this.closed = true;
    try {
      await this.log.close();
    } finally {
      if (remove) await fs.promises.rm(this.log.dir, { recursive: true, force: true });
    }
  }
}
