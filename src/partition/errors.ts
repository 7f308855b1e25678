/**
 * The partition's typed errors. `NotLeaderError` carries the id of the leader this replica knows, so a
 * router (the cluster issue's forwarding, or a client refreshing its metadata) can go there directly.
 * Across the shard boundary only the code and message travel (`SluiceError.toWire`); the message names
 * the leader too.
 */
import { SluiceError } from '../errors.js';

export class NotLeaderError extends SluiceError {
  /** The leader this replica knows of in its current term; 0 when it knows none (an election is on). */
  readonly leaderId: number;

  constructor(partition: string, nodeId: number, leaderId: number) {
    const known = leaderId > 0 ? `the leader is node ${leaderId}` : 'no leader is known yet (an election is under way)';
    super('NOT_LEADER', `node ${nodeId} does not lead ${partition}: ${known}`);
    this.leaderId = leaderId;
  }
}
