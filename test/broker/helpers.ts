/**
 * Shared fixtures for the broker-core tests: temp data dirs, a broker on one, record batches.
 * The shard worker runs the compiled file under dist/ (build first: `npm test` does).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Broker, type BrokerOptions } from '../../src/broker/index.js';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import type { RecordInput } from '../../src/batch/types.js';
import { SluiceError } from '../../src/errors.js';

export function tempDir(prefix = 'sluice-broker-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export async function openBroker(options: Partial<BrokerOptions> = {}): Promise<Broker> {
  return Broker.open({ dataDir: options.dataDir ?? tempDir(), shards: 2, ...options });
}

export function values(n: number, prefix = 'v'): RecordInput[] {
  return Array.from({ length: n }, (_, i) => ({ key: null, value: Buffer.from(`${prefix}${i}`) }));
}

export function batchOf(n: number, prefix = 'v'): Buffer {
  return encodeBatch(values(n, prefix));
}

/** Every record value in fetched batches, skipping records below `from`. */
/** The values of the user records in raw batches (control batches, such as each term's no-op, skipped as every reader does). */
export function valuesIn(batches: Uint8Array, from = 0): string[] {
  const out: string[] = [];
  for (const b of decodeBatches(batches)) if (!b.header.isControl) for (const r of b.records) if (r.offset >= from) out.push(r.value === null ? '<null>' : Buffer.from(r.value).toString());
  return out;
}

/** Reads a whole partition from `from` to its end. */
export async function readAll(broker: Broker, topic: string, partition: number, from = 0): Promise<string[]> {
  const out: string[] = [];
  let offset = from;
  for (;;) {
    const r = await broker.fetch({ topic, partition, offset, maxBytes: 1 << 20, maxWaitMs: 0 });
    if (r.batches.length === 0) return out;
    out.push(...valuesIn(r.batches, offset));
    offset = r.nextOffset;
  }
}

/** Expects `p` to reject with a SluiceError of `code`; returns it. */
export async function expectCode(p: Promise<unknown>, code: string): Promise<SluiceError> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof SluiceError)) throw err;
    if (err.code !== code) throw new Error(`expected ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}

/** Sorted names of the entries of a data dir (partition dirs and bookkeeping). */
export function dirEntries(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}
