/**
 * The topic table: every topic's partition count, replication factor, explicit configs and the
 * placement of each partition on a shard. It lives in memory on the main thread and is persisted as
 * one JSON file, `<data-dir>/__cluster/topics.json`, replaced atomically (write temp, fsync, rename,
 * fsync dir), so a crash leaves either the old table or the new one.
 *
 * The table is the source of truth for what exists: partition directories not named by it are leftovers
 * (a delete interrupted by a crash) and are removed when a partition of that name is created again.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';

export const CLUSTER_DIR = '__cluster';
export const TOPICS_FILE = 'topics.json';
const FORMAT_VERSION = 1;

export interface TopicEntry {
  name: string;
  /**
   * New at every creation (a UUID), so a deleted and re-created topic is never confused with the old
   * one; each partition directory records it. Tables written before topic ids get one at load.
   */
  topicId: string;
  replicationFactor: number;
  /** Explicit configs only (defaults are overlaid when describing). */
  configs: Record<string, string>;
  /** placement[p] = the shard that owns partition p. */
  placement: number[];
  createdMs: number;
}

interface TableFile {
  version: number;
  clusterId: string;
  topics: TopicEntry[];
}

export class TopicTable {
  private readonly topics = new Map<string, TopicEntry>();

  private constructor(
    readonly file: string,
    readonly clusterId: string,
  ) {}

  /** Loads the table, or starts an empty one (with a new cluster id) on a fresh data dir. */
  static load(dataDir: string): TopicTable {
    const dir = path.join(dataDir, CLUSTER_DIR);
    const file = path.join(dir, TOPICS_FILE);
    let raw: string | null = null;
    try {
      raw = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new SluiceError('STORAGE_ERROR', `cannot read the topic table ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    if (raw === null) {
      const table = new TopicTable(file, crypto.randomUUID());
      table.persist();
      return table;
    }
    let parsed: TableFile;
    try {
      parsed = JSON.parse(raw) as TableFile;
    } catch (err) {
      throw new SluiceError('LOG_CORRUPT', `the topic table ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (parsed.version !== FORMAT_VERSION || !Array.isArray(parsed.topics) || typeof parsed.clusterId !== 'string') {
      throw new SluiceError('LOG_CORRUPT', `the topic table ${file} has an unknown format (version ${String(parsed.version)})`);
    }
    const table = new TopicTable(file, parsed.clusterId);
    let upgraded = false;
    for (const t of parsed.topics) {
      if (typeof t.topicId !== 'string' || t.topicId === '') {
        t.topicId = crypto.randomUUID();
        upgraded = true;
      }
      table.topics.set(t.name, t);
    }
    if (upgraded) table.persist();
    return table;
  }

  get(name: string): TopicEntry | undefined {
    return this.topics.get(name);
  }

  all(): TopicEntry[] {
    return [...this.topics.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Applies a change and persists it; on a failed write the in-memory table is rolled back. */
  update(name: string, entry: TopicEntry | null): void {
    const before = this.topics.get(name);
    if (entry) this.topics.set(name, entry);
    else this.topics.delete(name);
    try {
      this.persist();
    } catch (err) {
      if (before) this.topics.set(name, before);
      else this.topics.delete(name);
      throw err;
    }
  }

  /** Partitions per shard, for placing new ones on the least loaded shard. */
  load(shards: number): number[] {
    const counts = new Array<number>(shards).fill(0);
    for (const t of this.topics.values()) for (const s of t.placement) if (s < shards) counts[s]++;
    return counts;
  }

  private persist(): void {
    const dir = path.dirname(this.file);
    const body: TableFile = { version: FORMAT_VERSION, clusterId: this.clusterId, topics: this.all() };
    const tmp = `${this.file}.tmp`;
    try {
      fs.mkdirSync(dir, { recursive: true });
      const fd = fs.openSync(tmp, 'w', 0o644);
      try {
        fs.writeSync(fd, JSON.stringify(body, null, 1));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, this.file);
      const dfd = fs.openSync(dir, 'r');
      try {
        fs.fsyncSync(dfd);
      } finally {
        fs.closeSync(dfd);
      }
    } catch (err) {
      throw new SluiceError('STORAGE_ERROR', `cannot write the topic table ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }
}
