/**
 * RaftTransportProbe (src/cluster/transport/probe.ts) implemented with prom-client: frames, messages and
 * bytes per peer in each direction, drops by peer and reason. Label children are cached per peer, so a
 * frame costs a Map lookup and three adds.
 */
import { Counter, type Registry } from 'prom-client';
import type { RaftTransportDropReason, RaftTransportProbe } from '../cluster/transport/probe.js';
import type { NodeId } from '../model/index.js';

type Child = ReturnType<Counter<'peer'>['labels']>;

interface Direction {
  frames: Counter<'peer'>;
  messages: Counter<'peer'>;
  bytes: Counter<'peer'>;
  children: Map<number, [Child, Child, Child]>;
}

function direction(registry: Registry, dir: 'sent' | 'received', verb: string): Direction {
  const registers = [registry];
  return {
    frames: new Counter({ name: `sluice_raft_transport_frames_${dir}_total`, help: `Raft transport frames ${verb}, by peer node id.`, labelNames: ['peer'], registers }),
    messages: new Counter({ name: `sluice_raft_transport_messages_${dir}_total`, help: `Raft messages ${verb} in those frames, by peer node id.`, labelNames: ['peer'], registers }),
    bytes: new Counter({ name: `sluice_raft_transport_bytes_${dir}_total`, help: `Bytes of Raft transport frames ${verb}, by peer node id.`, labelNames: ['peer'], registers }),
    children: new Map(),
  };
}

function count(d: Direction, peer: NodeId, bytes: number, messages: number): void {
  let c = d.children.get(peer);
  if (c === undefined) {
    const label = String(peer);
    c = [d.frames.labels(label), d.messages.labels(label), d.bytes.labels(label)];
    d.children.set(peer, c);
  }
  c[0].inc();
  c[1].inc(messages);
  c[2].inc(bytes);
}

export class PromRaftTransportProbe implements RaftTransportProbe {
  private readonly sent: Direction;
  private readonly received: Direction;
  private readonly drops: Counter<'peer' | 'reason'>;
  private readonly streams: Counter<'peer'>;
  private readonly rejected: Counter<'peer'>;

  constructor(registry: Registry) {
    this.sent = direction(registry, 'sent', 'written to peers');
    this.received = direction(registry, 'received', 'received from peers');
    const registers = [registry];
    this.drops = new Counter({
      name: 'sluice_raft_transport_dropped_messages_total',
      help: 'Raft messages not sent or not delivered, by peer and reason (backpressure, unreachable, too_large, unknown_group, closed); Raft resends.',
      labelNames: ['peer', 'reason'],
      registers,
    });
    this.streams = new Counter({ name: 'sluice_raft_transport_streams_opened_total', help: 'Streams that became the stream of a node pair (dialed or accepted), by peer.', labelNames: ['peer'], registers });
    this.rejected = new Counter({ name: 'sluice_raft_transport_streams_rejected_total', help: 'Streams closed because the peer sent a bad frame or hello, by peer (0 = before its hello).', labelNames: ['peer'], registers });
  }

  frameSent(peer: NodeId, bytes: number, messages: number): void {
    count(this.sent, peer, bytes, messages);
  }

  frameReceived(peer: NodeId, bytes: number, messages: number): void {
    count(this.received, peer, bytes, messages);
  }

  dropped(peer: NodeId, reason: RaftTransportDropReason, messages: number): void {
    this.drops.labels(String(peer), reason).inc(messages);
  }

  streamOpened(peer: NodeId): void {
    this.streams.labels(String(peer)).inc();
  }

  streamRejected(peer: NodeId): void {
    this.rejected.labels(String(peer)).inc();
  }
}
