/**
 * Found or join: the question a controller voter whose log is empty (a first start, or a wiped disk)
 * answers before it takes any part in the controller group (docs/controller.md "Bootstrap"). It asks
 * the other voters what their logs hold (`sluice.cluster.v1.Controller/LogState`, answered from their
 * data dirs even before their controllers are open) and applies `emptyLogDecision`: any voter with
 * records means the group exists and this node joins it as a learner (the leader forgets its old
 * voter entry and promotes it back once caught up); a majority of the voters without records means
 * nothing was ever committed, so founding loses nothing; anything else is asked again.
 *
 * A voter with an empty log that founded anyway would vote with no memory of the votes and entries
 * of its earlier life: a candidate lacking records a majority (with that earlier life) had committed
 * could win with its vote, and those records would be gone.
 */
import { CONTROLLER_EMPTY_LOG_POLL_MS, CONTROLLER_LOG_STATE_TIMEOUT_MS } from '../constants.js';
import { SluiceError, toSluiceError } from '../errors.js';
import type { PeerDirectory } from '../cluster/types.js';
import type { NodeId } from '../model/index.js';
import type { BrokerLogger } from '../broker/index.js';
import { EMPTY_LOG_JOIN_MESSAGE, emptyLogDecision, type ControllerLogState } from '../controller/index.js';

export interface EmptyLogDeciderOptions {
  readonly nodeId: NodeId;
  readonly voters: readonly NodeId[];
  /** Gossip: a voter is asked once membership knows its address. */
  readonly peers: PeerDirectory;
  /** Asks voter `node` what its controller log holds (rejects when it cannot be asked). */
  readonly ask: (node: NodeId, timeoutMs: number) => Promise<ControllerLogState>;
  readonly logger?: BrokerLogger;
  readonly pollMs?: number;
}

/** The `decideEmptyLog` of a `sluice serve` node: asks until the rule decides, or the signal aborts. */
export function emptyLogDecider(o: EmptyLogDeciderOptions): (signal: AbortSignal) => Promise<'found' | 'join'> {
  return async (signal) => {
    const heard = new Map<NodeId, ControllerLogState>();
    const others = o.voters.filter((v) => v !== o.nodeId);
    let reported = '';
    o.logger?.info({ nodeId: o.nodeId, voters: o.voters }, 'controller log empty: asking the other controller voters whether the cluster already has metadata before founding or joining the controller group');
    for (;;) {
      if (signal.aborted) throw new SluiceError('SHUTTING_DOWN', 'closed while deciding whether to found or join the controller group');
      const missing: string[] = [];
      await Promise.all(
        others.map(async (v) => {
          if (o.peers.get(v) === undefined) {
            missing.push(`node ${v}: not known to cluster membership yet`);
            return;
          }
          try {
            heard.set(v, await o.ask(v, CONTROLLER_LOG_STATE_TIMEOUT_MS));
          } catch (err) {
            missing.push(`node ${v}: ${toSluiceError(err).message.split('\n')[0]}`);
          }
        }),
      );
      const answers = Object.fromEntries(heard);
      const choice = emptyLogDecision(o.nodeId, o.voters, heard);
      if (choice === 'join') {
        o.logger?.warn({ nodeId: o.nodeId, answers }, EMPTY_LOG_JOIN_MESSAGE);
        return choice;
      }
      if (choice === 'found') {
        o.logger?.info({ nodeId: o.nodeId, answers }, 'controller log empty and a majority of the controller voters hold no metadata: founding the controller group');
        return choice;
      }
      // Logged when what is missing changes, not every poll.
      const status = missing.join('; ');
      if (status !== reported) {
        reported = status;
        o.logger?.info({ nodeId: o.nodeId, answers, missing }, 'controller log empty: waiting to hear from a majority of the controller voters (it neither founds nor joins the group before)');
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, o.pollMs ?? CONTROLLER_EMPTY_LOG_POLL_MS);
        signal.addEventListener('abort', done, { once: true });
        function done(): void {
          clearTimeout(t);
          signal.removeEventListener('abort', done);
          resolve();
        }
      });
    }
  };
}
