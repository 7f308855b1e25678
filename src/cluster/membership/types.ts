/** Options and contracts of the membership subsystem (the shared seams are in ../types.ts). */
import type { NodeInfo } from '../types.js';

export interface MembershipLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Metrics of membership; src/metrics implements it (only src/metrics imports prom-client). */
export interface MembershipProbe {
  /** The member count per state, after any change. */
  membersChanged(counts: Readonly<Record<NodeInfo['state'], number>>): void;
}

export const NOOP_MEMBERSHIP_PROBE: MembershipProbe = { membersChanged() {} };

/** Protocol timing, defaults in src/constants.ts (tests shorten none of them: the process tests use the real ones). */
export interface GossipTiming {
  tickMs: number;
  probeIntervalMs: number;
  probeTimeoutMs: number;
  suspicionTimeoutMs: number;
  indirectProbes: number;
  retransmitMult: number;
  joinTimeoutMs: number;
  joinRetryMsMin: number;
  joinRetryMsMax: number;
  reconnectIntervalMs: number;
}
