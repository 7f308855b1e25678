/** `sluice cluster info`: brokers, controller and topic count. */
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
      formatTable(m.brokers.map((b) => ({ id: b.nodeId, grpc: b.grpcAddress, http: b.httpAddress })), ['id', 'grpc', 'http']),
    );
  } finally {
    admin.close();
  }
}
