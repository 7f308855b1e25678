/** sluice.v1.Admin: a thin adapter from protobuf requests to BrokerApi topic calls. */
import type { AdminServer } from './gen/sluice/v1/admin.js';
import { toPbTopic } from './convert.js';
import type { ServiceContext } from './context.js';
import { isForwarded } from './forward.js';

export function adminService(ctx: ServiceContext): AdminServer {
  return {
    createTopic(call, callback) {
      const r = call.request;
      ctx.unary(
        'CreateTopic',
        async () => ({ topic: toPbTopic(await ctx.api().createTopic(r.name, r.partitions, r.replicationFactor || 1, { ...r.configs })) }),
        callback,
      );
    },
    deleteTopic(call, callback) {
      ctx.unary('DeleteTopic', async () => (await ctx.api().deleteTopic(call.request.name), {}), callback);
    },
    listTopics(_call, callback) {
      ctx.unary('ListTopics', async () => ({ topics: await ctx.api().listTopics() }), callback);
    },
    describeTopic(call, callback) {
      ctx.unary('DescribeTopic', async () => ({ topic: toPbTopic(await ctx.api(isForwarded(call.metadata)).describeTopic(call.request.name)) }), callback);
    },
    alterTopicConfig(call, callback) {
      const r = call.request;
      ctx.unary('AlterTopicConfig', async () => ({ configs: await ctx.api().alterTopicConfig(r.name, { ...r.set }, [...r.remove]) }), callback);
    },
    createPartitions(call, callback) {
      const r = call.request;
      ctx.unary('CreatePartitions', async () => ({ topic: toPbTopic(await ctx.api().createPartitions(r.name, r.totalPartitions)) }), callback);
    },
  };
}
