/** `sluice produce` (stdin lines → records) and `sluice consume` (records → stdout, kcat style). */
import { createInterface } from 'node:readline';
import { Consumer, Producer } from '../client/index.js';
import type { ConsumedRecord, RecordMetadata, StartOffset } from '../client/types.js';
import { compileFormat, recordJson } from './parse.js';
import { clientOptions, type Common } from './topic.js';

/** Records awaiting acknowledgement before produce stops reading stdin (bounds memory on big inputs). */
const PRODUCE_PENDING_MAX = 10_000;

export interface ProduceCommand extends Common {
  partition?: number;
  keyDelimiter?: string;
  header: [string, string][];
  acks: 'all' | 'leader' | 'none';
  /** commander's `--no-idempotence`: true unless given. */
  idempotence: boolean;
  producerName?: string;
}

export async function produce(topic: string, o: ProduceCommand): Promise<void> {
  // Idempotent by default (acks all); --no-idempotence, or acks other than all, turns it off.
  const producer = new Producer({ ...clientOptions(o), acks: o.acks, idempotent: o.idempotence && o.acks === 'all' ? undefined : false, producerName: o.producerName });
  const headers = o.header.map(([key, value]) => ({ key, value: Buffer.from(value) }));
  const pending = new Set<Promise<RecordMetadata>>();
  let failure: unknown = null;
  let count = 0;
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (failure !== null) break;
    let key: string | null = null;
    let value = line;
    if (o.keyDelimiter !== undefined) {
      const at = line.indexOf(o.keyDelimiter);
      if (at >= 0) {
        key = line.slice(0, at);
        value = line.slice(at + o.keyDelimiter.length);
      }
    }
    const p = producer.send(topic, { key, value, headers, partition: o.partition });
    pending.add(p);
    count++;
    p.then(() => pending.delete(p), (err: unknown) => {
      pending.delete(p);
      failure ??= err;
    });
    if (pending.size >= PRODUCE_PENDING_MAX) await Promise.race(pending).catch(() => {});
  }
  await Promise.allSettled(pending);
  await producer.close().catch(() => {});
  if (failure !== null) throw failure;
  if (o.format === 'json') process.stdout.write(JSON.stringify({ topic, records: count }) + '\n');
  else process.stderr.write(`produced ${count} record${count === 1 ? '' : 's'} to ${topic}\n`);
}

export interface ConsumeCommand extends Common {
  partition?: number;
  offset: StartOffset;
  count?: number;
  exit: boolean;
  recordFormat?: string;
}

function write(text: string): Promise<void> | void {
  if (!process.stdout.write(text)) return new Promise((resolve) => process.stdout.once('drain', resolve));
}

export async function consume(topic: string, o: ConsumeCommand): Promise<void> {
  const render: (r: ConsumedRecord) => string =
    o.format === 'json' ? (r) => recordJson(r) + '\n' : compileFormat(o.recordFormat ?? '%s\\n');
  const consumer = new Consumer({
    ...clientOptions(o),
    topic,
    partitions: o.partition === undefined ? undefined : [o.partition],
    from: o.offset,
    stopAtEnd: o.exit,
  });
  const stop = (): void => consumer.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // `sluice consume ... | head` closes stdout early: that is a normal way to stop.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') {
      consumer.close();
      process.exit(0);
    }
  });
  let n = 0;
  try {
    if (o.count === 0) return;
    for await (const r of consumer) {
      await write(render(r));
      if (o.count !== undefined && ++n >= o.count) break;
    }
  } finally {
    consumer.close();
  }
}
