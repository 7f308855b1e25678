/**
 * Goal: the Raft transport's metrics (src/metrics/raft-transport-probe.ts) count exactly what crossed
 * the wire, per peer, and drops by reason. Method: two transports on 127.0.0.1/.2, each reporting into
 * its own prom-client registry through createRaftTransportProbe; send known messages, scrape the text.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, createRaftTransportProbe } from '../../src/metrics/index.js';
import { MessageType, type Message } from '../../src/raft/index.js';
import { startNode, waitFor, type TestNode } from './transport-helpers.js';

const nodes: TestNode[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.kill();
});

function hb(from: number, to: number): Message {
  return { type: MessageType.Heartbeat, from, to, term: 1, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: null, context: 0 } as unknown as Message;
}

function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('raft transport metrics', () => {
  it('counts frames, messages and bytes per peer, and drops by reason', async () => {
    const m1 = createMetrics({ processMetrics: false });
    const m2 = createMetrics({ processMetrics: false });
    const addresses = new Map<number, string>();
    const a = await startNode(1, addresses, { probe: createRaftTransportProbe(m1) });
    const b = await startNode(2, addresses, { probe: createRaftTransportProbe(m2) });
    nodes.push(a, b);
    let got = 0;
    b.transport.register(1, () => got++);
    a.transport.send(1, hb(1, 2));
    await waitFor('first delivery', () => got === 1);
    for (let i = 0; i < 3; i++) a.transport.send(1, hb(1, 2));
    a.transport.send(42, hb(1, 2));
    await waitFor('all delivered', () => got === 4);
    const sent = await m1.render();
    const received = await m2.render();
    // Frames: the hello, the first heartbeat, then one frame for the four sent in one turn.
    expect(value(sent, 'sluice_raft_transport_frames_sent_total{peer="2"}')).toBe(3);
    expect(value(sent, 'sluice_raft_transport_messages_sent_total{peer="2"}')).toBe(5);
    expect(value(received, 'sluice_raft_transport_messages_received_total{peer="1"}')).toBe(5);
    expect(value(received, 'sluice_raft_transport_bytes_received_total{peer="1"}')).toBe(value(sent, 'sluice_raft_transport_bytes_sent_total{peer="2"}'));
    expect(value(received, 'sluice_raft_transport_dropped_messages_total{peer="1",reason="unknown_group"}')).toBe(1);
    expect(value(received, 'sluice_raft_transport_streams_opened_total{peer="1"}')).toBe(1);
    a.transport.close();
    a.transport.send(1, hb(1, 2));
    expect(value(await m1.render(), 'sluice_raft_transport_dropped_messages_total{peer="2",reason="closed"}')).toBe(1);
  });
});
