/**
 * The partition's typed errors. `NotLeaderError` carries the id of the leader this replica knows, so a
 * router (the cluster issue's forwarding, or a client refreshing its metadata) can go there directly.
 * Across the shard boundary only the code and message travel (`SluiceError.toWire`); the message names
 * the leader too.
 */
import { SluiceError, type SluiceErrorWire } from '../errors.js';

export class NotLeaderError extends SluiceError {
  /** The leader this replica knows of in its current term; 0 when it knows none (an election is on). */
  readonly leaderId: number;
  /** The replica's term (leader epoch) when it answered; 0 when unknown (a partition not held here). */
  readonly epoch: number;

  constructor(partition: string, nodeId: number, leaderId: number, epoch = 0) {
    const known = leaderId > 0 ? `the leader is node ${leaderId}` : 'no leader is known yet (an election is under way)';
    super('NOT_LEADER', `node ${nodeId} does not lead ${partition}: ${known}`);
    this.leaderId = leaderId;
    this.epoch = epoch;
  }

  /** Rebuilt on the main thread from a shard's answer (the message as the replica wrote it). */
  static fromShard(wire: SluiceErrorWire, leaderId: number, epoch: number): NotLeaderError {
    const e = new NotLeaderError('', 0, leaderId, epoch);
    Object.defineProperty(e, 'message', { value: wire.message, enumerable: false, writable: true, configurable: true });
    return e;
  }
}
