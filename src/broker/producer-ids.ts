/**
 * Producer ids for idempotent producers (InitProducer): cluster-unique ids and, for named producers,
 * the current epoch. Persisted in `<data-dir>/__cluster/producer-ids.json`, replaced atomically (write
 * temp, fsync, rename, fsync dir) BEFORE an id or epoch is returned, so a restart never hands out an id
 * or a (name, epoch) twice.
 *
 * Ids come in blocks of PRODUCER_ID_BLOCK_COUNT: the file records the end of the reserved block, and
 * anonymous ids are handed out from memory until the block runs out (a restart skips the rest of the
 * block). `reserveBlock` is the one place that decides where a block starts: on one node it is this
 * file; in a cluster the controller will hand out blocks there instead, so ids stay unique across brokers.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SluiceError } from '../errors.js';
import { PRODUCER_EPOCH_MAX, PRODUCER_ID_BLOCK_COUNT, PRODUCER_NAME_LENGTH_MAX, PRODUCER_NAMES_MAX } from '../constants.js';
import { CLUSTER_DIR } from './topic-table.js';
import { mkdirOwnerOnly, replaceFileAtomically } from '../storage/index.js';

export const PRODUCER_IDS_FILE = 'producer-ids.json';
const FORMAT_VERSION = 1;

export interface ProducerIdentity {
  producerId: bigint;
  producerEpoch: number;
}

interface IdsFile {
  version: number;
  /** Ids below this are reserved (handed out or skipped); the next block starts here. */
  blockEnd: number;
  names: Record<string, { id: number; epoch: number }>;
}

export class ProducerIdTable {
  private next: number;
  private blockEnd: number;
  private readonly names = new Map<string, { id: number; epoch: number }>();
  /** Current epoch of every named producer's id, for fencing at the broker's edge. */
  private readonly epochById = new Map<number, number>();

  private constructor(
    readonly file: string,
    blockEnd: number,
  ) {
    this.next = blockEnd;
    this.blockEnd = blockEnd;
  }

  /** Loads the table, or starts an empty one on a fresh data dir (nothing is written until first use). */
  static load(dataDir: string): ProducerIdTable {
    const file = path.join(dataDir, CLUSTER_DIR, PRODUCER_IDS_FILE);
    let raw: string;
    try {
      raw = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new ProducerIdTable(file, 0);
      throw new SluiceError('STORAGE_ERROR', `cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
    let parsed: IdsFile;
    try {
      parsed = JSON.parse(raw) as IdsFile;
    } catch (err) {
      throw new SluiceError('LOG_CORRUPT', `${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    if (parsed?.version !== FORMAT_VERSION || !Number.isSafeInteger(parsed.blockEnd) || typeof parsed.names !== 'object' || parsed.names === null) {
      throw new SluiceError('LOG_CORRUPT', `${file} has an unknown format (version ${String(parsed?.version)})`);
    }
    const table = new ProducerIdTable(file, parsed.blockEnd);
    for (const [name, e] of Object.entries(parsed.names)) {
      table.names.set(name, { id: e.id, epoch: e.epoch });
      table.epochById.set(e.id, e.epoch);
    }
    return table;
  }

  /**
   * A new identity: a fresh id with epoch 0, or for a known `name` its id with the next epoch (which
   * fences the previous holder). Persisted before it returns.
   */
  init(name?: string): ProducerIdentity {
    if (name === undefined) {
      const id = this.take();
      return { producerId: BigInt(id), producerEpoch: 0 };
    }
    if (name.length === 0 || name.length > PRODUCER_NAME_LENGTH_MAX) {
      throw new SluiceError('INVALID_REQUEST', `producer_name must be 1 to ${PRODUCER_NAME_LENGTH_MAX} characters (got ${name.length})`);
    }
    const before = this.names.get(name);
    const ids = { next: this.next, blockEnd: this.blockEnd };
    if (before === undefined && this.names.size >= PRODUCER_NAMES_MAX) {
      throw new SluiceError('QUEUE_FULL', `the broker already tracks ${PRODUCER_NAMES_MAX} producer names`, { retriable: false });
    }
    // Past the int16 epoch of the v2 header a name moves to a new id, starting at epoch 0 again.
    const after = before !== undefined && before.epoch < PRODUCER_EPOCH_MAX ? { id: before.id, epoch: before.epoch + 1 } : { id: this.take(false), epoch: 0 };
    this.names.set(name, after);
    try {
      this.persist();
    } catch (err) {
      if (before) this.names.set(name, before);
      else this.names.delete(name);
      this.next = ids.next;
      this.blockEnd = ids.blockEnd;
      throw err;
    }
    if (before !== undefined && before.id !== after.id) this.epochById.set(before.id, PRODUCER_EPOCH_MAX + 1);
    this.epochById.set(after.id, after.epoch);
    return { producerId: BigInt(after.id), producerEpoch: after.epoch };
  }

  /** The current epoch of a named producer's id; undefined for anonymous or unknown ids. */
  currentEpoch(producerId: bigint): number | undefined {
    return producerId >= 0n && producerId <= BigInt(Number.MAX_SAFE_INTEGER) ? this.epochById.get(Number(producerId)) : undefined;
  }

  /** The next id, reserving (and persisting) a new block first when the current one is used up. */
  private take(persistNow = true): number {
    if (this.next >= this.blockEnd) this.reserveBlock(persistNow);
    return this.next++;
  }

  /** Reserves the next block; `persistNow` false when the caller persists right after (a named init). */
  private reserveBlock(persistNow: boolean): void {
    const before = this.blockEnd;
    this.blockEnd = this.next + PRODUCER_ID_BLOCK_COUNT;
    if (!persistNow) return;
    try {
      this.persist();
    } catch (err) {
      this.blockEnd = before;
      throw err;
    }
  }

  private persist(): void {
    const dir = path.dirname(this.file);
    const body: IdsFile = { version: FORMAT_VERSION, blockEnd: this.blockEnd, names: Object.fromEntries(this.names) };
    try {
      mkdirOwnerOnly(dir);
      replaceFileAtomically(this.file, JSON.stringify(body));
    } catch (err) {
      throw new SluiceError('STORAGE_ERROR', `cannot write ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }
}
