/**
 * Goal: Raft messages cross the thread boundary with one copy per entry and never clone a whole
 * underlying buffer, and an entry sent to several peers in one turn is copied once. Method: messages
 * whose entries are views into a larger buffer go through `portableEnvelopes` and a real MessageChannel
 * with the transfer list; the bytes arrive equal, the sources stay usable, and every transferred buffer
 * is an entry's own.
 */
import { describe, expect, it } from 'vitest';
import { MessageChannel } from 'node:worker_threads';
import { once } from 'node:events';
import { portableEnvelopes } from '../../src/shard/raft-envelope.js';
import { MessageType, type Entry, type Message } from '../../src/raft/index.js';
import type { RaftEnvelope } from '../../src/shard/protocol.js';

function msg(to: number, entries: Entry[]): Message {
  return { type: MessageType.App, from: 1, to, term: 2, logTerm: 1, index: 9, entries, commit: 5, reject: false, rejectHint: 0, snapshot: null, context: 0 } as unknown as Message;
}

describe('portableEnvelopes', () => {
  it('copies each entry once into its own buffer, shares it across messages, and survives a transfer', async () => {
    const frame = new Uint8Array(1 << 16).map((_, i) => i & 0xff);
    const a: Entry = { index: 10, count: 3, term: 2, kind: 'data', data: frame.subarray(100, 200), change: null } as unknown as Entry;
    const b: Entry = { index: 13, count: 1, term: 2, kind: 'data', data: frame.subarray(300, 340), change: null } as unknown as Entry;
    const heartbeat = { ...msg(3, []), type: MessageType.Heartbeat } as Message;
    const envs: RaftEnvelope[] = [
      { k: 1, msg: msg(2, [a, b]) },
      { k: 1, msg: msg(3, [a, b]) },
      { k: 2, msg: heartbeat },
    ];
    const transfer: ArrayBuffer[] = [];
    const out = portableEnvelopes(envs, transfer);
    expect(transfer).toHaveLength(2);
    expect(new Set(transfer).size).toBe(2);
    expect(transfer.map((t) => t.byteLength).sort((x, y) => x - y)).toEqual([40, 100]);
    expect(out[2].msg).toBe(heartbeat);
    expect(out[0].msg.entries[0].data).toBe(out[1].msg.entries[0].data);
    const { port1, port2 } = new MessageChannel();
    try {
      const got = once(port2, 'message');
      port1.postMessage(out, transfer);
      const [received] = (await got) as [RaftEnvelope[]];
      expect(Buffer.from(received[0].msg.entries[0].data).equals(Buffer.from(frame.subarray(100, 200)))).toBe(true);
      expect(Buffer.from(received[1].msg.entries[1].data).equals(Buffer.from(frame.subarray(300, 340)))).toBe(true);
      expect(received[0].msg.entries[0].data.buffer.byteLength).toBe(100);
      expect(received[0].msg).toMatchObject({ from: 1, to: 2, term: 2, index: 9, commit: 5 });
      // The sources were copied, not transferred: still readable.
      expect(frame.byteLength).toBe(1 << 16);
      expect(a.data[0]).toBe(100);
    } finally {
      port1.close();
      port2.close();
    }
  });
});
