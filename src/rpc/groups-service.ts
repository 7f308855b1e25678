/**
 * sluice.v1.Groups: the Consume stream and the unary group RPCs, as thin adapters over src/groups.
 *
 * The coordinator is opened on first use (it replays `__consumer_offsets`, like a Kafka coordinator
 * loading its partitions) and closed when the front-end shuts down: it registers itself as a long call
 * of the ServiceContext, whose shutdown aborts it. Stream messages are handled strictly in order, so a
 * member's final commit is durable before its RevokeAck is processed.
 *
 * Cluster mode: the coordinator here serves only the groups whose offsets partition this node leads.
 * A unary RPC for another group is forwarded once to its coordinator (./forward-groups.ts), or refused
 * with NOT_COORDINATOR naming it; ListGroups asks every live node and merges. A Consume stream is not
 * forwarded: its join is refused with NOT_COORDINATOR and the client joins at the named coordinator.
 */
import type { Metadata, ServerDuplexStream } from '@grpc/grpc-js';
import { SluiceError, isSluiceError, toSluiceError } from '../errors.js';
import {
  GroupCoordinator,
  MemberSession,
  type CommitOffset,
  type GroupCoordinatorOptions,
  type ResetSpec,
  type SessionMessage,
  type SessionTransport,
  type TopicPartition,
} from '../groups/index.js';
import {
  ConsumeResponse as ConsumeResponseCodec,
  GroupsService,
  OffsetReset,
  ResetTo,
  type ConsumeRequest,
  type ConsumeResponse,
  type GroupsServer,
  type TopicPartitionOffset,
  type TopicPartition as PbTopicPartition,
} from './gen/sluice/v1/groups.js';
import { toOffset, toPbRecords, toSafeNumber } from './convert.js';
import { toServiceError } from './errors.js';
import { ServiceContext } from './context.js';
import { isForwarded } from './forward.js';
import { PeerGroups } from './forward-groups.js';

export interface GroupsServiceOptions extends GroupCoordinatorOptions {}

/** `offsets.retention.ms` from the environment (SLUICE_OFFSETS_RETENTION_MS), else the default. */
function retentionFromEnv(): number | undefined {
  const raw = process.env.SLUICE_OFFSETS_RETENTION_MS;
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < -1) throw new SluiceError('INVALID_CONFIG', `SLUICE_OFFSETS_RETENTION_MS must be an integer ≥ -1 (ms; -1 keeps offsets forever), got '${raw}'`);
  return n;
}

function toCommitOffsets(list: TopicPartitionOffset[]): CommitOffset[] {
  return list.map((o) => ({ topic: o.topic, partition: o.partition, offset: toOffset(o.offset), metadata: o.metadata }));
}

const toTps = (list: PbTopicPartition[]): TopicPartition[] => list.map((tp) => ({ topic: tp.topic, partition: tp.partition }));

function toResponse(m: SessionMessage, raw: boolean): ConsumeResponse {
  switch (m.type) {
    case 'joined':
      return {
        response: {
          $case: 'joined',
          value: { memberId: m.result.memberId, generation: BigInt(m.result.generation), sessionTimeoutMs: m.result.sessionTimeoutMs, rejoined: m.result.rejoined },
        },
      };
    case 'assign':
      return {
        response: {
          $case: 'assign',
          value: {
            generation: BigInt(m.generation),
            partitions: m.partitions.map((p) => ({ topic: p.topic, partition: p.partition, offset: BigInt(p.offset), metadata: '' })),
          },
        },
      };
    case 'revoke':
      return { response: { $case: 'revoke', value: { generation: BigInt(m.generation), partitions: m.partitions } } };
    case 'records': {
      const c = m.chunk;
      const batches = Buffer.isBuffer(c.batches) ? c.batches : Buffer.from(c.batches.buffer, c.batches.byteOffset, c.batches.byteLength);
      return {
        response: {
          $case: 'records',
          value: {
            topic: c.topic,
            partition: c.partition,
            records: raw ? [] : toPbRecords(c.batches, c.firstOffset),
            recordBatches: raw ? batches : Buffer.alloc(0),
            firstOffset: BigInt(c.firstOffset),
            nextOffset: BigInt(c.nextOffset),
            highWatermark: BigInt(c.highWatermark),
            generation: BigInt(c.generation),
          },
        },
      };
    }
    case 'commitResult':
      return {
        response: {
          $case: 'commitResult',
          value: { commitId: BigInt(m.commitId), errorCode: m.error?.code ?? '', errorMessage: m.error?.message ?? '' },
        },
      };
  }
}

function toResetSpec(to: ResetTo, timestampMs: bigint, offset: bigint): ResetSpec {
  switch (to) {
    case ResetTo.RESET_TO_EARLIEST:
      return { kind: 'earliest' };
    case ResetTo.RESET_TO_LATEST:
      return { kind: 'latest' };
    case ResetTo.RESET_TO_TIMESTAMP:
      return { kind: 'timestamp', timestampMs: toSafeNumber(timestampMs, 'timestamp_ms') };
    case ResetTo.RESET_TO_OFFSET:
      return { kind: 'offset', offset: toOffset(offset) };
    default:
      throw new SluiceError('INVALID_REQUEST', 'say where to reset to: earliest, latest, timestamp or offset');
  }
}

export function groupsService(ctx: ServiceContext, options: GroupsServiceOptions = {}): GroupsServer {
  let opening: Promise<GroupCoordinator> | null = null;
  const peers = new PeerGroups();

  /** The coordinator, opened on first use; a failed open is retried by the next call. */
  const coordinator = (): Promise<GroupCoordinator> => {
    if (opening === null) {
      const api = ctx.api();
      const { signal, release } = ctx.longCall();
      opening = GroupCoordinator.open(api, { offsetsRetentionMs: retentionFromEnv(), probe: ctx.probe, ...options }).then(
        (c) => {
          const closeAll = (): void => {
            c.close();
            peers.close();
          };
          if (signal.aborted) closeAll();
          else signal.addEventListener('abort', closeAll, { once: true });
          return c;
        },
        (err: unknown) => {
          release();
          opening = null;
          throw err;
        },
      );
    }
    return opening;
  };

  /**
   * Runs `local` on this node's coordinator; a NOT_COORDINATOR naming another node is forwarded there
   * once (unless this request was itself forwarded), so a group RPC works through any node.
   */
  async function onCoordinator<T>(metadata: Metadata, groupId: string, local: (c: GroupCoordinator) => Promise<T>, remote: (address: string) => Promise<T>): Promise<T> {
    const c = await coordinator();
    try {
      await c.settled(groupId);
      return await local(c);
    } catch (err) {
      if (!isSluiceError(err, 'NOT_COORDINATOR') || isForwarded(metadata)) throw err;
      const address = err.info?.coordinator_address ?? '';
      if (address === '' || err.info?.coordinator_id === String(c.clusterNodeId ?? 0)) throw err;
      return remote(address);
    }
  }

  function consume(call: ServerDuplexStream<ConsumeRequest, ConsumeResponse>): void {
    const started = process.hrtime.bigint();
    const { signal, release } = ctx.longCall();
    let session: MemberSession | null = null;
    let raw = false;
    let ended = false;
    let chain: Promise<void> = Promise.resolve();
    // Commits run one after another (so a later commit of a partition lands after an earlier one), but
    // off the main chain: credits and heartbeats are not held up by a commit's fsync. RevokeAck and
    // Leave wait for them, so a final commit is durable before its partitions move.
    let commits: Promise<void> = Promise.resolve();

    const finish = (err: Error | null): void => {
      if (ended) return;
      ended = true;
      release();
      ctx.finished('Consume', 'stream', started, ServiceContext.streamStatus(err, false));
      if (err === null) call.end();
      else call.emit('error', toServiceError(err));
    };
    const transport: SessionTransport = {
      send: (m) => (ended ? true : call.write(toResponse(m, raw))),
      drained: () =>
        new Promise<void>((resolve) => {
          if (ended) return resolve();
          const done = (): void => {
            call.off('drain', done);
            call.off('close', done);
            signal.removeEventListener('abort', done);
            resolve();
          };
          call.on('drain', done);
          call.on('close', done);
          signal.addEventListener('abort', done, { once: true });
        }),
      end: (err) => finish(err),
    };

    const handle = async (req: ConsumeRequest): Promise<void> => {
      const r = req.request;
      if (r === undefined) throw new SluiceError('INVALID_REQUEST', 'empty ConsumeRequest: set one of join, credit, commit, revoke_ack, heartbeat, leave');
      if (r.$case === 'join') {
        if (session !== null) throw new SluiceError('INVALID_REQUEST', 'this stream has already joined; open a new stream to join again');
        const j = r.value;
        raw = j.raw;
        const c = await coordinator();
        await c.settled(j.groupId);
        if (ended) return;
        session = new MemberSession(c, ctx.api(), transport, {
          autoCommit: j.autoCommit,
          autoCommitIntervalMs: j.autoCommitIntervalMs,
          offsetReset: j.offsetReset === OffsetReset.OFFSET_RESET_LATEST ? 'latest' : 'earliest',
          creditRecords: j.creditRecords,
          creditBytes: Number(j.creditBytes),
        });
        await session.start({
          groupId: j.groupId,
          topics: j.topics,
          topicPattern: j.topicPattern,
          instanceId: j.instanceId ?? null,
          sessionTimeoutMs: j.sessionTimeoutMs,
        });
        if (ended) session.closed(); // the stream broke while joining
        return;
      }
      if (session === null) throw new SluiceError('INVALID_REQUEST', `the first message of a Consume stream must be a join, got ${r.$case}`);
      const s: MemberSession = session;
      s.touch();
      switch (r.$case) {
        case 'credit':
          s.grant(r.value.records, Number(r.value.bytes));
          return;
        case 'commit': {
          const commitId = toSafeNumber(r.value.commitId, 'commit_id');
          let offsets: CommitOffset[];
          try {
            offsets = toCommitOffsets(r.value.offsets);
          } catch (err) {
            transport.send({ type: 'commitResult', commitId, error: toSluiceError(err) });
            return;
          }
          const generation = toSafeNumber(r.value.generation, 'generation');
          commits = commits.then(() => s.commit(commitId, generation, offsets)).catch(() => {});
          return;
        }
        case 'revokeAck': {
          const generation = toSafeNumber(r.value.generation, 'generation');
          await commits;
          s.ackRevoke(generation, toTps(r.value.partitions));
          return;
        }
        case 'heartbeat':
          return;
        case 'leave':
          await commits;
          s.leave();
          return;
      }
    };

    const onGone = (): void => {
      // The client cancelled or the connection broke: the member vanishes (a static one waits).
      session?.closed();
      if (!ended) {
        ended = true;
        release();
        ctx.finished('Consume', 'stream', started, 'CANCELLED');
      }
    };
    call.on('data', (req: ConsumeRequest) => {
      chain = chain
        .then(() => (ended ? undefined : handle(req)))
        .catch((err: unknown) => {
          session?.closed();
          finish(toSluiceError(err));
        });
    });
    // The client half-closed (or the call is going away): it will send nothing more. Without a Leave
    // first, that is a vanished member (a static one keeps its place for its session timeout).
    call.on('end', () => {
      chain = chain.then(async () => {
        await commits;
        session?.closed();
        finish(null);
      });
    });
    call.on('cancelled', onGone);
    call.on('close', onGone);
    call.on('error', onGone);
    signal.addEventListener('abort', () => {
      session?.closed();
      finish(toSluiceError(signal.reason));
    }, { once: true });
  }

  return {
    consume,

    commitOffsets(call, callback) {
      ctx.unary('CommitOffsets', () => {
        const r = call.request;
        return onCoordinator(
          call.metadata,
          r.groupId,
          async (c) => {
            await c.commit(r.groupId, r.memberId === '' ? null : r.memberId, toSafeNumber(r.generation, 'generation'), toCommitOffsets(r.offsets));
            return {};
          },
          (address) => peers.call(address, (g) => g.commitOffsets, r),
        );
      }, callback);
    },

    fetchOffsets(call, callback) {
      ctx.unary('FetchOffsets', () =>
        onCoordinator(
          call.metadata,
          call.request.groupId,
          async (c) => {
            const list = c.fetchOffsets(call.request.groupId, call.request.topics);
            return {
              offsets: list.map((e) => ({ topic: e.topic, partition: e.partition, offset: BigInt(e.offset), metadata: e.metadata, commitTimeMs: BigInt(e.commitTimeMs) })),
            };
          },
          (address) => peers.call(address, (g) => g.fetchOffsets, call.request),
        ), callback);
    },

    listGroups(call, callback) {
      ctx.unary('ListGroups', async () => {
        const c = await coordinator();
        await c.settled();
        const groups: { groupId: string; state: string; members: number }[] = c.listGroups().map((g) => ({ groupId: g.groupId, state: g.state, members: g.members }));
        if (c.clusterNodeId === null || isForwarded(call.metadata)) return { groups };
        // Cluster mode: every node coordinates some groups; ask the others (a node that does not answer
        // leaves its groups out, as a node that is down does).
        const brokers = (await ctx.api().metadata()).brokers.filter((b) => b.alive !== false && b.nodeId !== c.clusterNodeId && b.grpcAddress !== '');
        const theirs = await Promise.all(brokers.map((b) => peers.call(b.grpcAddress, (g) => g.listGroups, {}).then((r) => r.groups, () => [])));
        const byId = new Map(groups.map((g) => [g.groupId, g]));
        // A group whose offsets partition is moving may show on two nodes: keep the one with members.
        for (const list of theirs) for (const g of list) if ((byId.get(g.groupId)?.members ?? -1) < g.members) byId.set(g.groupId, g);
        return { groups: [...byId.values()].sort((a, b) => (a.groupId < b.groupId ? -1 : a.groupId > b.groupId ? 1 : 0)) };
      }, callback);
    },

    describeGroup(call, callback) {
      ctx.unary('DescribeGroup', () =>
        onCoordinator(call.metadata, call.request.groupId, async (c) => {
        const d = await c.describeGroup(call.request.groupId);
        return {
          groupId: d.groupId,
          state: d.state,
          generation: BigInt(d.generation),
          coordinatorPartition: d.coordinatorPartition,
          members: d.members.map((m) => ({
            memberId: m.memberId,
            instanceId: m.instanceId ?? '',
            generation: BigInt(m.generation),
            assigned: m.assigned,
            revoking: m.revoking,
            connected: m.connected,
            topics: m.topics,
          })),
          partitions: d.partitions.map((p) => ({
            topic: p.topic,
            partition: p.partition,
            committedOffset: BigInt(p.committedOffset),
            highWatermark: BigInt(p.highWatermark),
            lag: BigInt(p.lag),
            owner: p.owner ?? '',
          })),
        };
        }, (address) => peers.call(address, (g) => g.describeGroup, call.request)), callback);
    },

    deleteGroup(call, callback) {
      ctx.unary('DeleteGroup', () =>
        onCoordinator(
          call.metadata,
          call.request.groupId,
          async (c) => {
            await c.deleteGroup(call.request.groupId);
            return {};
          },
          (address) => peers.call(address, (g) => g.deleteGroup, call.request),
        ), callback);
    },

    resetOffsets(call, callback) {
      ctx.unary('ResetOffsets', () => {
        const r = call.request;
        return onCoordinator(
          call.metadata,
          r.groupId,
          async (c) => {
            const plan = await c.resetOffsets(r.groupId, r.topics, toResetSpec(r.to, r.timestampMs, r.offset), r.execute);
            return {
              executed: r.execute,
              plan: plan.map((p) => ({ topic: p.topic, partition: p.partition, currentOffset: BigInt(p.currentOffset), newOffset: BigInt(p.newOffset) })),
            };
          },
          (address) => peers.call(address, (g) => g.resetOffsets, r),
        );
      }, callback);
    },
  };
}

/**
 * The Groups service as an extra service of the broker's gRPC server (src/server/grpc.ts). It shares
 * the front-end's ServiceContext, so a shutdown ends Consume streams at once instead of holding the drain.
 */
export function groupsExtraService(ctx: ServiceContext, options: GroupsServiceOptions = {}): { definition: typeof GroupsService; implementation: GroupsServer } {
  return { definition: FastGroupsService, implementation: groupsService(ctx, options) };
}

/**
 * The generated definition with Consume's response serializer wrapping ts-proto's output instead of
 * copying it (a records chunk is up to 1 MiB; src/rpc/fast-codec.ts does the same for Fetch).
 */
export const FastGroupsService = {
  ...GroupsService,
  consume: {
    ...GroupsService.consume,
    responseSerialize: (value: ConsumeResponse): Buffer => {
      const u8 = ConsumeResponseCodec.encode(value).finish();
      return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
    },
  },
} as const satisfies typeof GroupsService;
