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
import { SHARDS_MAX, TOPIC_TABLE_PARTITIONS_MAX, TOPIC_REPLICATION_FACTOR_MAX } from '../constants.js';
import { mkdirOwnerOnly, replaceFileAtomically, storageError } from '../storage/index.js';
import { validateTopicName } from './validate.js';

export const CLUSTER_DIR = '__cluster';
export const TOPICS_FILE = 'topics.json';
const FORMAT_VERSION = 1;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
      // No table: a fresh data dir, unless partition directories say otherwise. Starting empty over
      // them would let a re-created name wipe the old data (creation starts partitions fresh).
      const orphans = partitionDirsIn(dataDir);
      if (orphans.length > 0) {
        const shown = orphans.slice(0, 5).join(', ') + (orphans.length > 5 ? `, … (${orphans.length} in all)` : '');
        throw new SluiceError(
          'LOG_CORRUPT',
          `the topic table ${file} is missing but ${dataDir} holds partition directories (${shown}); refusing to start empty over them. ` +
            `Restore ${TOPICS_FILE} from a backup, or move those directories out of the data dir (they are then forgotten) and start again.`,
        );
      }
      const table = new TopicTable(file, crypto.randomUUID());
      table.persist();
      return table;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (err) {
      throw new SluiceError('LOG_CORRUPT', `the topic table ${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    const body = parseTableFile(file, parsed);
    const table = new TopicTable(file, body.clusterId);
    const ids = new Set<string>();
    for (const t of body.topics) {
      if (table.topics.has(t.name)) throw new SluiceError('LOG_CORRUPT', `the topic table ${file} names topic '${t.name}' twice`);
      if (t.topicId !== '' && ids.has(t.topicId)) throw new SluiceError('LOG_CORRUPT', `the topic table ${file} gives topic id ${t.topicId} to two topics`);
      ids.add(t.topicId);
      table.topics.set(t.name, t);
    }
    // Tables written before topic ids: each topic gets one now, persisted once.
    let upgraded = false;
    for (const t of table.topics.values()) {
      if (t.topicId === '') {
        t.topicId = crypto.randomUUID();
        upgraded = true;
      }
    }
    if (upgraded) table.persist();
    return table;
  }

  /**
   * A table that is never persisted (cluster mode: the controller's metadata is the truth and the
   * broker holds only the topics of the replicas it was given).
   */
  static inMemory(clusterId: string): TopicTable {
    return new TopicTable('', clusterId);
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

  /** Partition directories in `dataDir` that no topic in the table names (leftovers of an interrupted create). */
  unknownPartitionDirs(dataDir: string): string[] {
    const known = new Set<string>();
    for (const t of this.topics.values()) for (let p = 0; p < t.placement.length; p++) known.add(`${t.name}-${p}`);
    return partitionDirsIn(dataDir).filter((d) => !known.has(d));
  }

  /** Partitions of every topic. */
  partitionCount(): number {
    let n = 0;
    for (const t of this.topics.values()) n += t.placement.length;
    return n;
  }

  /** Partitions per shard, for placing new ones on the least loaded shard. */
  load(shards: number): number[] {
    const counts = new Array<number>(shards).fill(0);
    for (const t of this.topics.values()) for (const s of t.placement) if (s >= 0 && s < shards) counts[s]++;
    return counts;
  }

  private persist(): void {
    if (this.file === '') return;
    const dir = path.dirname(this.file);
    const body: TableFile = { version: FORMAT_VERSION, clusterId: this.clusterId, topics: this.all() };
    try {
      mkdirOwnerOnly(dir);
      replaceFileAtomically(this.file, JSON.stringify(body, null, 1));
    } catch (err) {
      throw storageError(`cannot write the topic table ${this.file}`, err);
    }
  }
}

/** `<topic>-<partition>`: the name of a partition directory (the topic part is a valid topic name). */
const PARTITION_DIR_RE = /^([a-zA-Z0-9._-]+)-(0|[1-9][0-9]*)$/;

/** Names of the partition directories directly under `dataDir`. */
function partitionDirsIn(dataDir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dataDir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new SluiceError('STORAGE_ERROR', `cannot list the data dir ${dataDir}: ${(err as Error).message}`, { cause: err });
  }
  return entries
    .filter((e) => e.isDirectory() && e.name !== CLUSTER_DIR && PARTITION_DIR_RE.test(e.name))
    .map((e) => e.name)
    .sort();
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Checks the parsed file as any untrusted input: a hand-edited or damaged table must stop the broker
 * with a message naming the file and the entry, never a TypeError, and never a name that escapes the
 * data dir (a topic name becomes a directory name).
 */
function parseTableFile(file: string, parsed: unknown): TableFile {
  const bad = (what: string): SluiceError => new SluiceError('LOG_CORRUPT', `the topic table ${file} is invalid: ${what}`);
  if (!isPlainObject(parsed)) throw bad('it is not a JSON object');
  if (parsed.version !== FORMAT_VERSION) throw bad(`unknown format version ${JSON.stringify(parsed.version)} (this broker reads ${FORMAT_VERSION})`);
  if (typeof parsed.clusterId !== 'string' || parsed.clusterId.length === 0) throw bad('clusterId must be a non-empty string');
  if (!Array.isArray(parsed.topics)) throw bad('topics must be an array');
  const topics = parsed.topics.map((t: unknown, i: number) => parseEntry(t, (what) => bad(`topics[${i}]${entryName(t)}: ${what}`)));
  return { version: FORMAT_VERSION, clusterId: parsed.clusterId, topics };
}

function entryName(t: unknown): string {
  return isPlainObject(t) && typeof t.name === 'string' ? ` (${JSON.stringify(t.name.slice(0, 300))})` : '';
}

function parseEntry(t: unknown, bad: (what: string) => SluiceError): TopicEntry {
  if (!isPlainObject(t)) throw bad('is not an object');
  try {
    validateTopicName(t.name);
  } catch (err) {
    throw bad(`name: ${(err as Error).message}`);
  }
  const rf = t.replicationFactor;
  if (typeof rf !== 'number' || !Number.isInteger(rf) || rf < 1 || rf > TOPIC_REPLICATION_FACTOR_MAX) {
    throw bad(`replicationFactor must be an integer from 1 to ${TOPIC_REPLICATION_FACTOR_MAX}, got ${JSON.stringify(rf)}`);
  }
  if (!isPlainObject(t.configs)) throw bad('configs must be an object of strings');
  for (const [k, v] of Object.entries(t.configs)) {
    if (typeof v !== 'string') throw bad(`configs[${JSON.stringify(k)}] must be a string, got ${JSON.stringify(v)}`);
  }
  const placement = t.placement;
  if (!Array.isArray(placement) || placement.length < 1 || placement.length > TOPIC_TABLE_PARTITIONS_MAX) {
    throw bad(`placement must be an array of 1 to ${TOPIC_TABLE_PARTITIONS_MAX} shard numbers`);
  }
  placement.forEach((s: unknown, p: number) => {
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0 || s >= SHARDS_MAX) {
      throw bad(`placement[${p}] must be a shard number from 0 to ${SHARDS_MAX - 1}, got ${JSON.stringify(s)}`);
    }
  });
  if (typeof t.createdMs !== 'number' || !Number.isFinite(t.createdMs)) throw bad(`createdMs must be a number, got ${JSON.stringify(t.createdMs)}`);
  // Absent in tables written before topic ids (one is assigned at load); otherwise a UUID.
  if (t.topicId !== undefined && (typeof t.topicId !== 'string' || !UUID.test(t.topicId))) {
    throw bad(`topicId must be a UUID, got ${JSON.stringify(t.topicId).slice(0, 100)}`);
  }
  return {
    name: t.name as string,
    topicId: (t.topicId as string | undefined) ?? '',
    replicationFactor: rf,
    configs: { ...(t.configs as Record<string, string>) },
    placement: [...(placement as number[])],
    createdMs: t.createdMs,
  };
}
