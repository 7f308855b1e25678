/**
 * The seam to the Broker's replica hosting (src/broker/replicas.ts, owned by the Broker side), and
 * the check that an opened core implements it.
 */
import type { ReplicaHost } from '../broker/replicas.js';

export type { ReplicaConfChange, ReplicaHost, ReplicaMembership, ReplicaRole, ReplicaSpec, ReplicaStatus } from '../broker/replicas.js';

/** Whether an opened core can host replicas (a Broker opened in cluster mode). */
export function isReplicaHost(x: unknown): x is ReplicaHost {
  const h = x as Partial<ReplicaHost> | null;
  return h !== null && typeof h === 'object' && typeof h.openReplicas === 'function' && typeof h.replicaStatus === 'function' && typeof h.onLeaderChange === 'function';
}
