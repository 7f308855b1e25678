/**
 * Conversion between the wire's `Member` (sluice.cluster.v1) and `NodeInfo`, with the checks every
 * received record goes through: gossip comes from the network, so it is untrusted input.
 */
import { SluiceError } from '../../errors.js';
import { GOSSIP_ADDRESS_BYTES_MAX, GOSSIP_RACK_BYTES_MAX, GOSSIP_UPDATES_PER_MESSAGE_MAX } from '../../constants.js';
import { asNodeId } from '../../model/index.js';
import { MemberState, type Member } from '../../rpc/gen/sluice/cluster/v1/membership.js';
import type { NodeInfo } from '../types.js';
import { isUuid } from './identity.js';

const TO_WIRE: Record<NodeInfo['state'], MemberState> = {
  alive: MemberState.MEMBER_STATE_ALIVE,
  suspect: MemberState.MEMBER_STATE_SUSPECT,
  dead: MemberState.MEMBER_STATE_DEAD,
};

export function toMember(n: NodeInfo): Member {
  return { nodeId: n.id, nodeUuid: n.uuid, address: n.address, rack: n.rack, shards: n.shards, state: TO_WIRE[n.state], incarnation: BigInt(n.incarnation), leaving: n.leaving === true };
}

function invalid(what: string): SluiceError {
  return new SluiceError('INVALID_REQUEST', `invalid membership message: ${what}`);
}

/** A received record; throws INVALID_REQUEST for anything out of bounds. */
export function fromMember(m: Member | undefined, what: string): NodeInfo {
  if (m === undefined) throw invalid(`${what} is missing`);
  if (!Number.isSafeInteger(m.nodeId) || m.nodeId < 1 || m.nodeId > 2 ** 31 - 1) throw invalid(`${what}.node_id must be a positive int32 (got ${m.nodeId})`);
  if (!isUuid(m.nodeUuid)) throw invalid(`${what}.node_uuid must be a UUID`);
  if (m.address.length === 0 || Buffer.byteLength(m.address) > GOSSIP_ADDRESS_BYTES_MAX) throw invalid(`${what}.address must be 1-${GOSSIP_ADDRESS_BYTES_MAX} bytes`);
  if (Buffer.byteLength(m.rack) > GOSSIP_RACK_BYTES_MAX) throw invalid(`${what}.rack must be at most ${GOSSIP_RACK_BYTES_MAX} bytes`);
  if (m.incarnation < 0n || m.incarnation > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what}.incarnation out of range`);
  let state: NodeInfo['state'];
  if (m.state === MemberState.MEMBER_STATE_ALIVE) state = 'alive';
  else if (m.state === MemberState.MEMBER_STATE_SUSPECT) state = 'suspect';
  else if (m.state === MemberState.MEMBER_STATE_DEAD) state = 'dead';
  else throw invalid(`${what}.state must be ALIVE, SUSPECT or DEAD`);
  const info: NodeInfo = { id: asNodeId(m.nodeId), uuid: m.nodeUuid, address: m.address, rack: m.rack, shards: m.shards, state, incarnation: Number(m.incarnation) };
  return m.leaving ? { ...info, leaving: true } : info;
}

export function fromMembers(list: Member[], what: string, max = GOSSIP_UPDATES_PER_MESSAGE_MAX): NodeInfo[] {
  if (list.length > max) throw invalid(`${what} carries ${list.length} members; at most ${max}`);
  return list.map((m, i) => fromMember(m, `${what}[${i}]`));
}
