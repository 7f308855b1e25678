/**
 * Raft messages across the thread boundary. An entry's `data` is usually a view into a larger buffer
 * (a received transport frame, a log read, Node's Buffer pool), and a structured clone of a view clones
 * its whole buffer. So each entry is copied once into a buffer of its own, and those buffers are
 * transferred, not cloned: one copy per crossing, whatever the source.
 */
import type { Entry, Message } from '../raft/index.js';
import type { RaftEnvelope } from './protocol.js';

/**
 * A copy of `msg` whose entry bytes (and snapshot data) own their buffers, which are added to
 * `transfer`. With `copies` shared across the messages of one postMessage, an entry sent to several
 * followers is copied once (structured clone keeps the shared reference; a buffer may be listed for
 * transfer only once).
 */
export function portableMessage(msg: Message, transfer: ArrayBuffer[], copies: Map<Uint8Array, Uint8Array> = new Map()): Message {
  const snap = msg.snapshot;
  if (msg.entries.length === 0 && (snap === null || snap.data.byteLength === 0)) return msg;
  const own = (d: Uint8Array): Uint8Array => {
    const have = copies.get(d);
    if (have !== undefined) return have;
    const c = new Uint8Array(d.byteLength);
    c.set(d);
    transfer.push(c.buffer);
    copies.set(d, c);
    return c;
  };
  const entries: Entry[] = msg.entries.map((e) => ({ ...e, data: e.data.byteLength === 0 ? new Uint8Array(0) : own(e.data) }));
  const snapshot = snap === null || snap.data.byteLength === 0 ? snap : { ...snap, data: own(snap.data) };
  return { ...msg, entries, snapshot };
}

/** `portableMessage` over a turn's envelopes. */
export function portableEnvelopes(envs: readonly RaftEnvelope[], transfer: ArrayBuffer[]): RaftEnvelope[] {
  const copies = new Map<Uint8Array, Uint8Array>();
  return envs.map((e) => ({ k: e.k, msg: portableMessage(e.msg, transfer, copies) }));
}
