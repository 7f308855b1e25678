/** sluice.v1.Admin: a thin adapter from protobuf requests to BrokerApi topic calls. */
import type { AdminServer } from './gen/sluice/v1/admin.js';
import { toPbTopic } from './convert.js';
import type { ServiceContext } from './context.js';
import { isForwarded } from './forward.js';
import { SluiceError } from '../errors.js';

/**
 * A call's deadline as wall-clock ms (Infinity: none), handed to the metadata-changing calls so the
 * controller stops re-sending them once the client has given up (BrokerApi).
 */
function deadlineOf(call: { getDeadline(): Date | number }): number {
  const d = call.getDeadline();
  return d instanceof Date ? d.getTime() : Number(d);
}

/** A cluster-only call, or a function that refuses it clearly on a single node. */
function clusterOnly<A extends unknown[], R>(f: ((...a: A) => Promise<R>) | undefined, what: string): (...a: A) => Promise<R> {
  if (f !== undefined) return f;
  return () => Promise.reject(new SluiceError('INVALID_REQUEST', `${what} needs cluster mode (sluice serve with --seeds or --controller-voters); this node runs alone`));
}

export function adminService(ctx: ServiceContext): AdminServer {
  return {
    createTopic(call, callback) {
      const r = call.request;
      ctx.unary(
        'CreateTopic',
        async () => ({ topic: toPbTopic(await ctx.api().createTopic(r.name, r.partitions, r.replicationFactor || 1, { ...r.configs }, deadlineOf(call))) }),
        callback,
      );
    },
    deleteTopic(call, callback) {
      ctx.unary('DeleteTopic', async () => (await ctx.api().deleteTopic(call.request.name, deadlineOf(call)), {}), callback);
    },
    listTopics(_call, callback) {
      ctx.unary('ListTopics', async () => ({ topics: await ctx.api().listTopics() }), callback);
    },
    describeTopic(call, callback) {
      ctx.unary('DescribeTopic', async () => ({ topic: toPbTopic(await ctx.api(isForwarded(call.metadata)).describeTopic(call.request.name)) }), callback);
    },
    alterTopicConfig(call, callback) {
      const r = call.request;
      ctx.unary('AlterTopicConfig', async () => ({ configs: await ctx.api().alterTopicConfig(r.name, { ...r.set }, [...r.remove], deadlineOf(call)) }), callback);
    },
    createPartitions(call, callback) {
      const r = call.request;
      ctx.unary('CreatePartitions', async () => ({ topic: toPbTopic(await ctx.api().createPartitions(r.name, r.totalPartitions, deadlineOf(call))) }), callback);
    },
    movePartition(call, callback) {
      const r = call.request;
      ctx.unary('MovePartition', async () => (await clusterOnly(ctx.api().movePartition?.bind(ctx.api()), 'moving a partition')(r.topic, r.partition, [...r.replicas], deadlineOf(call)), {}), callback);
    },
    decommissionNode(call, callback) {
      ctx.unary('DecommissionNode', async () => (await clusterOnly(ctx.api().decommissionNode?.bind(ctx.api()), 'decommissioning a node')(call.request.nodeId, deadlineOf(call)), {}), callback);
    },
    recommissionNode(call, callback) {
      ctx.unary('RecommissionNode', () => clusterOnly(ctx.api().recommissionNode?.bind(ctx.api()), 'recommissioning a node')(call.request.nodeId, deadlineOf(call)), callback);
    },
    rebalance(call, callback) {
      ctx.unary('Rebalance', async () => ({ moves: await clusterOnly(ctx.api().rebalance?.bind(ctx.api()), 'rebalancing')(deadlineOf(call)) }), callback);
    },
    listReassignments(_call, callback) {
      ctx.unary('ListReassignments', async () => clusterOnly(ctx.api().reassignments?.bind(ctx.api()), 'listing reassignments')(), callback);
    },
  };
}
