/**
 * The metadata snapshot: the whole state at an applied index, as one protobuf `MetadataSnapshot`
 * (proto/sluice/cluster/v1/controller.proto). It is what `topics.json` becomes: the Raft snapshot's
 * data for the controller group, sent to a node too far behind the leader's log start.
 */
import { SluiceError } from '../errors.js';
import type { NodeId } from '../model/index.js';
import { MetadataSnapshot } from '../rpc/gen/sluice/cluster/v1/controller.js';
import { METADATA_RECORD_VERSION, MetadataStm, fromAssignment, lifecycleOf, nodeStateOf, toAssignment, type MetadataImage } from './metadata-stm.js';
import type { NodeRecordState, PartitionState, TopicState } from './types.js';

export function encodeSnapshot(stm: MetadataStm): Uint8Array {
  const im = stm.image();
  return MetadataSnapshot.encode({
    version: METADATA_RECORD_VERSION,
    appliedIndex: BigInt(im.appliedIndex),
    clusterId: im.clusterId,
    nextGroupId: im.nextGroupId,
    imported: im.imported,
    nodes: im.nodes.map((n) => ({ nodeId: n.id, uuid: n.uuid, address: n.address, rack: n.rack, shards: n.shards, state: nodeStateOf(n.state), incarnation: n.incarnation })),
    topics: im.topics.map((t) => ({
      name: t.name,
      topicId: t.topicId,
      replicationFactor: t.replicationFactor,
      configs: { ...t.configs },
      createdMs: BigInt(t.createdMs),
      partitions: t.partitions.map((p) => ({
        groupId: p.group,
        voters: fromAssignment(p.voters),
        learners: fromAssignment(p.learners),
        lost: [...p.lost],
        leader: p.leader,
        leaderEpoch: p.leaderEpoch,
        target: p.target === null ? undefined : fromAssignment(p.target),
      })),
    })),
  }).finish();
}

/** Decodes a snapshot, as untrusted bytes: a damaged one is LOG_CORRUPT, a newer one UNSUPPORTED_VERSION. */
export function decodeSnapshot(bytes: Uint8Array): MetadataStm {
  let s: MetadataSnapshot;
  try {
    s = MetadataSnapshot.decode(bytes);
  } catch (err) {
    throw new SluiceError('LOG_CORRUPT', `the metadata snapshot does not decode: ${(err as Error).message}`, { cause: err });
  }
  if (s.version !== METADATA_RECORD_VERSION) {
    throw new SluiceError('UNSUPPORTED_VERSION', `the metadata snapshot has version ${s.version}; this node reads version ${METADATA_RECORD_VERSION}`);
  }
  const nodes: NodeRecordState[] = s.nodes.map((n) => {
    const state = lifecycleOf(n.state);
    if (state === null) throw new SluiceError('LOG_CORRUPT', `the metadata snapshot gives node ${n.nodeId} an unknown state ${n.state}`);
    return { id: n.nodeId as NodeId, uuid: n.uuid, address: n.address, rack: n.rack, shards: n.shards, state, incarnation: n.incarnation };
  });
  const topics: TopicState[] = s.topics.map((t) => ({
    name: t.name,
    topicId: t.topicId,
    replicationFactor: t.replicationFactor,
    configs: { ...t.configs },
    createdMs: Number(t.createdMs),
    partitions: t.partitions.map(
      (p, i): PartitionState => ({
        topic: t.name,
        topicId: t.topicId,
        partition: i,
        group: p.groupId,
        voters: toAssignment(p.voters),
        learners: toAssignment(p.learners),
        lost: p.lost.map((n) => n as NodeId),
        leader: p.leader as NodeId,
        leaderEpoch: p.leaderEpoch,
        target: p.target === undefined ? null : toAssignment(p.target),
      }),
    ),
  }));
  const image: MetadataImage = { appliedIndex: Number(s.appliedIndex), clusterId: s.clusterId, nextGroupId: s.nextGroupId, imported: s.imported, nodes, topics };
  return MetadataStm.fromImage(image);
}
