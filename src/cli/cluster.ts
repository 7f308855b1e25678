/**
 * `sluice cluster info`: the cluster id, its controller leader, topic count, and every node membership
 * knows with its place in the controller group (voter, learner) and the number of partitions it leads.
 */
import { Admin } from '../client/index.js';
import { emit, formatTable } from './output.js';
import { clientOptions, type Common } from './topic.js';

export async function clusterInfo(o: Common): Promise<void> {
  const admin = new Admin(clientOptions(o));
  try {
    const m = await admin.metadata();
    const leaders = new Map<number, number>();
    let leaderless = 0;
    for (const t of m.topics) {
      for (const p of t.partitions) {
        if (p.leader === 0) leaderless++;
        else leaders.set(p.leader, (leaders.get(p.leader) ?? 0) + 1);
      }
    }
    const brokers = m.brokers.map((b) => ({ ...b, leaders: leaders.get(b.nodeId) ?? 0 }));
    const summary = { clusterId: m.clusterId, controllerId: m.controllerId, brokers, topics: m.topics.length, leaderlessPartitions: leaderless };
    emit(o.format, summary, () =>
      formatTable([{ cluster: m.clusterId, controller: m.controllerId || null, topics: m.topics.length, 'no leader': leaderless }], ['cluster', 'controller', 'topics', 'no leader']) +
      '\n' +
      formatTable(
        brokers.map((b) => ({ id: b.nodeId, address: b.grpcAddress, http: b.httpAddress || null, rack: b.rack || null, state: b.state ?? 'alive', controller: b.controllerRole || null, leaders: b.leaders, uuid: b.nodeUuid || null })),
        ['id', 'address', 'http', 'rack', 'state', 'controller', 'leaders', 'uuid'],
      ),
    );
  } finally {
    admin.close();
  }
}
