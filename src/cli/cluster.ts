/** `sluice cluster info`: the cluster, its controller, topic count, and every node membership knows. */
import { Admin } from '../client/index.js';
import { emit, formatTable } from './output.js';
import { clientOptions, type Common } from './topic.js';

export async function clusterInfo(o: Common): Promise<void> {
  const admin = new Admin(clientOptions(o));
  try {
    const m = await admin.metadata();
    const summary = { clusterId: m.clusterId, controllerId: m.controllerId, brokers: m.brokers, topics: m.topics.length };
    emit(o.format, summary, () =>
      formatTable([{ cluster: m.clusterId, controller: m.controllerId, topics: m.topics.length }], ['cluster', 'controller', 'topics']) +
      '\n' +
      formatTable(
        m.brokers.map((b) => ({ id: b.nodeId, address: b.grpcAddress, http: b.httpAddress || null, rack: b.rack || null, state: b.state ?? 'alive', uuid: b.nodeUuid || null })),
        ['id', 'address', 'http', 'rack', 'state', 'uuid'],
      ),
    );
  } finally {
    admin.close();
  }
}
