/**
 * A minimal RESP2 client over node:net, enough for XADD / XREAD / XRANGE / DEL with explicit pipelining:
 * `send(buf, replies)` writes pre-encoded commands and resolves when that many replies have arrived.
 * No third-party client so the harness controls the pipeline depth exactly (the issue asks for 1,000).
 */
import { connect, type Socket } from 'node:net';

export type RespValue = string | number | null | Buffer | RespValue[] | Error;

/** Encodes one command as a RESP array of bulk strings. */
export function encodeCommand(args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

const INCOMPLETE = Symbol('incomplete');
type Parsed = { value: RespValue; end: number } | typeof INCOMPLETE;

function lineEnd(buf: Buffer, pos: number): number {
  const i = buf.indexOf(13, pos); // '\r'
  return i < 0 || i + 1 >= buf.length ? -1 : i;
}

/** Parses one reply starting at `pos`; INCOMPLETE when more bytes are needed. */
function parse(buf: Buffer, pos: number, depth = 0): Parsed {
  if (pos >= buf.length) return INCOMPLETE;
  if (depth > 32) throw new Error('RESP nesting too deep');
  const end = lineEnd(buf, pos + 1);
  if (end < 0) return INCOMPLETE;
  const type = buf[pos];
  const line = buf.toString('latin1', pos + 1, end);
  const next = end + 2;
  switch (type) {
    case 43: // '+'
      return { value: line, end: next };
    case 45: // '-'
      return { value: new Error(line), end: next };
    case 58: // ':'
      return { value: Number(line), end: next };
    case 36: {
      // '$'
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (next + len + 2 > buf.length) return INCOMPLETE;
      return { value: buf.subarray(next, next + len), end: next + len + 2 };
    }
    case 42: {
      // '*'
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parse(buf, at, depth + 1);
        if (item === INCOMPLETE) return INCOMPLETE;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`RESP: unexpected type byte ${type}`);
  }
}

interface Waiter {
  remaining: number;
  /** Replies are kept only when asked (XREAD); XADD pipelines only count them. */
  keep: boolean;
  replies: RespValue[];
  /** The first error reply; the pipeline still consumes all its replies before rejecting. */
  error?: Error;
  resolve: (replies: RespValue[]) => void;
  reject: (err: Error) => void;
}

export class RespClient {
  private pending: Buffer = Buffer.alloc(0);
  private readonly waiters: Waiter[] = [];
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.failAll(err));
    socket.on('close', () => this.failAll(new Error('redis connection closed')));
  }

  static connect(port: number): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(new RespClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Writes pre-encoded commands (`replies` of them); resolves with their replies (or [] when !keep). */
  send(commands: Buffer, replies: number, keep = false): Promise<RespValue[]> {
    if (this.closed) return Promise.reject(new Error('redis connection closed'));
    return new Promise((resolve, reject) => {
      this.waiters.push({ remaining: replies, keep, replies: [], resolve, reject });
      this.socket.write(commands);
    });
  }

  async command(...args: Array<string | Buffer>): Promise<RespValue> {
    const [reply] = await this.send(encodeCommand(args), 1, true);
    if (reply instanceof Error) throw reply;
    return reply!;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let pos = 0;
    for (;;) {
      const parsed = parse(this.pending, pos);
      if (parsed === INCOMPLETE) break;
      pos = parsed.end;
      const waiter = this.waiters[0];
      if (waiter === undefined) throw new Error('RESP: reply with no request waiting');
      if (parsed.value instanceof Error) waiter.error ??= parsed.value;
      else if (waiter.keep) waiter.replies.push(parsed.value);
      if (--waiter.remaining === 0) {
        this.waiters.shift();
        if (waiter.error !== undefined) waiter.reject(waiter.error);
        else waiter.resolve(waiter.replies);
      }
    }
    this.pending = pos === this.pending.length ? Buffer.alloc(0) : this.pending.subarray(pos);
  }

  private failAll(err: Error): void {
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.reject(err);
  }
}
