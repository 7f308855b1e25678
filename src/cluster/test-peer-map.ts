import { PEER_REDIAL_BACKOFF_MS_MAX, PEER_REDIAL_BACKOFF_MS_MIN } from '../constants.js';

/**
 * TEST ONLY: where this node dials a peer. `SLUICE_TEST_PEER_ADDRESS_MAP` is a JSON object from a
 * peer's address (as gossip advertises it, or as --seeds names it) to the address to dial instead:
 * the chaos harness (test/chaos) puts a TCP proxy of its own on every directed node-to-node link, so
 * it can cut, or let through one way only, the links between chosen nodes (network partitions on one
 * machine, all on 127.0.0.0/8). Read once, when first needed; unset (production) it is the identity.
 * An environment variable rather than a `serve` flag, like the storage hooks
 * (src/storage/test-hooks.ts), so nobody finds it in `--help`. Only loopback addresses are accepted.
 */
export const TEST_PEER_ADDRESS_MAP_ENV = 'SLUICE_TEST_PEER_ADDRESS_MAP';

let map: ReadonlyMap<string, string> | null = null;

function load(): ReadonlyMap<string, string> {
  const raw = process.env[TEST_PEER_ADDRESS_MAP_ENV];
  if (raw === undefined || raw === '') return new Map();
  const parsed = JSON.parse(raw) as unknown;
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${TEST_PEER_ADDRESS_MAP_ENV} must be a JSON object of "host:port" to "host:port"`);
  const out = new Map<string, string>();
  for (const [from, to] of Object.entries(parsed)) {
    if (typeof to !== 'string' || !from.startsWith('127.') || !to.startsWith('127.')) throw new Error(`${TEST_PEER_ADDRESS_MAP_ENV}: only loopback addresses, got ${from} -> ${String(to)}`);
    out.set(from, to);
  }
  return out;
}

/** The address to dial for the peer at `address` (itself unless the test map names it). */
export function peerDialAddress(address: string): string {
  map ??= load();
  return map.get(address) ?? address;
}

/**
 * Options of every channel one node opens to another: grpc-js redials a failed channel after 1 s growing
 * to 120 s by default and fails calls at once meanwhile, so a restarted peer would stay unreachable
 * from here for up to two minutes.
 */
export const PEER_CHANNEL_OPTIONS: Readonly<Record<string, number>> = {
  'grpc.initial_reconnect_backoff_ms': PEER_REDIAL_BACKOFF_MS_MIN,
  'grpc.min_reconnect_backoff_ms': PEER_REDIAL_BACKOFF_MS_MIN,
  'grpc.max_reconnect_backoff_ms': PEER_REDIAL_BACKOFF_MS_MAX,
};
