/**
 * Network partitions between the nodes of a chaos cluster, on one machine and on 127.0.0.0/8: a TCP
 * proxy the harness owns on every directed node-to-node link (`i>j`: node i dials node j through a
 * proxy on node i's address), and each node started with the TEST-ONLY peer address map
 * (src/cluster/test-peer-map.ts) that sends every dial of a peer (Raft transport, gossip, controller
 * forwarding, request forwarding) through its link. Clients and the harness still reach each node
 * directly. The proxies live for the whole run, so a restarted node finds its links where they were.
 *
 * A gRPC connection carries both directions, and either node of a pair may have dialed it, so a
 * link fault sets both proxies of the pair: "i cannot reach j" drops i>j's requests and j>i's
 * responses.
 */
import type { LinkMode, LinkProxy } from '../idempotence/tcp-proxy.js';
import { startLinkProxy } from '../idempotence/tcp-proxy.js';
import { TEST_PEER_ADDRESS_MAP_ENV } from '../../src/cluster/test-peer-map.js';

/** The shapes of a partition fault (issue 13 §1). */
export const PARTITION_SHAPES = ['minority', 'bridge', 'one-way'] as const;
export type PartitionShape = (typeof PARTITION_SHAPES)[number];

/** One directed proxy's mode during a fault. */
export interface LinkSetting {
  from: number;
  to: number;
  mode: LinkMode;
}

/**
 * The proxy settings of a partition among nodes 1..n:
 *  - `minority`: `nodes` (a minority) and the others cannot reach each other at all;
 *  - `bridge`: `nodes` and the others except `bridge` cannot reach each other; `bridge` reaches both;
 *  - `one-way`: whatever `nodes` send to the others is lost; what the others send them arrives.
 */
export function linkSettings(shape: PartitionShape, nodes: readonly number[], n: number, bridge = 0): LinkSetting[] {
  const all = Array.from({ length: n }, (_, i) => i + 1);
  const side = new Set(nodes);
  const others = all.filter((id) => !side.has(id) && id !== bridge);
  const out: LinkSetting[] = [];
  for (const a of side) {
    for (const b of others) {
      if (shape === 'one-way') {
        // a's bytes to b are lost on both connections of the pair.
        out.push({ from: a, to: b, mode: 'drop-requests' }, { from: b, to: a, mode: 'drop-responses' });
      } else {
        out.push({ from: a, to: b, mode: 'drop' }, { from: b, to: a, mode: 'drop' });
      }
    }
  }
  return out;
}

export class LinkTable {
  private constructor(
    private readonly proxies: Map<string, LinkProxy>,
    /** Node id -> its real gRPC address. */
    private readonly addresses: readonly string[],
  ) {}

  /** Proxies for every directed pair of nodes 1..addresses.length; `hosts[i-1]` is node i's address to listen on. */
  static async create(hosts: readonly string[], addresses: readonly string[]): Promise<LinkTable> {
    const proxies = new Map<string, LinkProxy>();
    for (let i = 1; i <= addresses.length; i++) {
      for (let j = 1; j <= addresses.length; j++) {
        if (i !== j) proxies.set(`${i}>${j}`, await startLinkProxy(addresses[j - 1], { listenHost: hosts[i - 1] }));
      }
    }
    return new LinkTable(proxies, addresses);
  }

  /** The environment for node `id`: its peer address map through its links. */
  envFor(id: number): NodeJS.ProcessEnv {
    const map: Record<string, string> = {};
    this.addresses.forEach((address, k) => {
      if (k + 1 !== id) map[address] = this.proxies.get(`${id}>${k + 1}`)!.address;
    });
    return { [TEST_PEER_ADDRESS_MAP_ENV]: JSON.stringify(map) };
  }

  apply(settings: readonly LinkSetting[]): void {
    for (const s of settings) this.proxies.get(`${s.from}>${s.to}`)!.setMode(s.mode);
  }

  /** Every link passes again; connections that lost bytes are cut (their peers reconnect). */
  healAll(): void {
    for (const p of this.proxies.values()) p.setMode('pass');
  }

  /** Bytes the links dropped so far (a fault that dropped nothing did not happen). */
  get droppedBytes(): number {
    let n = 0;
    for (const p of this.proxies.values()) n += p.droppedBytes;
    return n;
  }

  async close(): Promise<void> {
    await Promise.all([...this.proxies.values()].map((p) => p.close()));
  }
}
