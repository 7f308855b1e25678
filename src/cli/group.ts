/**
 * `sluice group list|describe|delete|reset-offsets` and `sluice consume TOPIC -g GROUP`.
 *
 * reset-offsets follows Kafka's kafka-consumer-groups tool: without --execute it is a dry run that
 * prints the plan (current and new offset per partition) and changes nothing.
 */
import { Command, Option } from 'commander';
import { GroupAdmin, GroupConsumer, type GroupDescription, type ResetTarget } from '../client/group-consumer.js';
import type { ConsumedRecord } from '../client/types.js';
import { emit, formatTable } from './output.js';
import { UsageError, compileFormat, parseIntArg, recordJson } from './parse.js';
import { clientOptions, type Common } from './topic.js';

async function withGroupAdmin<T>(o: Common, fn: (admin: GroupAdmin) => Promise<T>): Promise<T> {
  const admin = new GroupAdmin(clientOptions(o));
  try {
    return await fn(admin);
  } finally {
    admin.close();
  }
}

export function listGroups(o: Common): Promise<void> {
  return withGroupAdmin(o, async (admin) => {
    const groups = await admin.listGroups();
    emit(o.format, groups, () => formatTable(groups.map((g) => ({ group: g.groupId, state: g.state, members: g.members })), ['group', 'state', 'members']));
  });
}

function describeTable(d: GroupDescription): string {
  const summary = formatTable(
    [{ group: d.groupId, state: d.state, generation: d.generation, members: d.members.length, 'offsets-partition': d.coordinatorPartition }],
    ['group', 'state', 'generation', 'members', 'offsets-partition'],
  );
  const short = (id: string | null): string => (id === null ? '-' : id.slice(0, 8));
  const members =
    d.members.length === 0
      ? ''
      : '\n' +
        formatTable(
          d.members.map((m) => ({
            member: m.memberId,
            instance: m.instanceId ?? '-',
            connected: m.connected ? 'yes' : 'no',
            partitions: m.assigned.length,
            revoking: m.revoking.length,
            topics: m.topics,
          })),
          ['member', 'instance', 'connected', 'partitions', 'revoking', 'topics'],
        );
  const totalLag = d.partitions.reduce((n, p) => n + p.lag, 0);
  const parts = formatTable(
    d.partitions.map((p) => ({
      topic: p.topic,
      partition: p.partition,
      'committed-offset': p.committedOffset < 0 ? '-' : p.committedOffset,
      'high-watermark': p.highWatermark,
      lag: p.lag,
      owner: short(p.owner),
    })),
    ['topic', 'partition', 'committed-offset', 'high-watermark', 'lag', 'owner'],
  );
  return `${summary}${members}\n${parts}TOTAL LAG ${totalLag}\n`;
}

export function describeGroup(groupId: string, o: Common): Promise<void> {
  return withGroupAdmin(o, async (admin) => {
    const d = await admin.describeGroup(groupId);
    emit(o.format, d, () => describeTable(d));
  });
}

export function deleteGroup(groupId: string, o: Common): Promise<void> {
  return withGroupAdmin(o, async (admin) => {
    await admin.deleteGroup(groupId);
    emit(o.format, { group: groupId, deleted: true }, () => formatTable([{ group: groupId, status: 'deleted' }], ['group', 'status']));
  });
}

export interface ResetCommand extends Common {
  topic: string[];
  toEarliest?: boolean;
  toLatest?: boolean;
  toOffset?: number;
  toDatetime?: string;
  execute: boolean;
}

/** ISO 8601 (2026-11-22T04:00:00Z) or milliseconds since the epoch. */
export function parseDatetime(value: string): number {
  const v = value.trim();
  if (/^\d+$/.test(v)) {
    if (!Number.isSafeInteger(Number(v))) throw new UsageError(`invalid --to-datetime "${value}": milliseconds since the epoch must be at most ${Number.MAX_SAFE_INTEGER}`);
    return Number(v);
  }
  const ms = Date.parse(v);
  if (Number.isNaN(ms)) throw new UsageError(`invalid --to-datetime "${value}": use ISO 8601 (e.g. 2026-11-22T04:00:00Z) or milliseconds since the epoch`);
  return ms;
}

function resetTarget(o: ResetCommand): ResetTarget {
  const chosen: ResetTarget[] = [];
  if (o.toEarliest) chosen.push('earliest');
  if (o.toLatest) chosen.push('latest');
  if (o.toOffset !== undefined) chosen.push({ offset: o.toOffset });
  if (o.toDatetime !== undefined) chosen.push({ timestampMs: parseDatetime(o.toDatetime) });
  if (chosen.length !== 1) throw new UsageError('say where to reset to with exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime T');
  return chosen[0];
}

export function resetOffsets(groupId: string, o: ResetCommand): Promise<void> {
  const to = resetTarget(o);
  return withGroupAdmin(o, async (admin) => {
    const plan = await admin.resetOffsets(groupId, o.topic, to, o.execute);
    emit(o.format, { group: groupId, executed: o.execute, plan }, () =>
      formatTable(
        plan.map((p) => ({ topic: p.topic, partition: p.partition, 'current-offset': p.currentOffset < 0 ? '-' : p.currentOffset, 'new-offset': p.newOffset })),
        ['topic', 'partition', 'current-offset', 'new-offset'],
      ),
    );
    if (o.format !== 'json') {
      process.stderr.write(o.execute ? `reset ${plan.length} partition offsets of group ${groupId}\n` : 'dry run: nothing changed; add --execute to apply this plan\n');
    }
  });
}

export interface GroupConsumeCommand extends Common {
  group: string;
  partition?: number;
  count?: number;
  exit?: boolean;
  recordFormat?: string;
  instanceId?: string;
}

function write(text: string): Promise<void> | void {
  if (!process.stdout.write(text)) return new Promise((resolve) => process.stdout.once('drain', resolve));
}

/** `sluice consume TOPIC -g GROUP`: a group member printing records; commits after each batch is printed. */
export async function groupConsume(topic: string, o: GroupConsumeCommand): Promise<void> {
  if (o.exit) throw new UsageError('-e/--exit is not supported with -g (a group member consumes until stopped); use -n COUNT');
  if (o.partition !== undefined) throw new UsageError('-p/--partition does not go with -g: the group assigns partitions (use `sluice group reset-offsets` to move its start)');
  const render: (r: ConsumedRecord) => string = o.format === 'json' ? (r) => recordJson(r) + '\n' : compileFormat(o.recordFormat ?? '%s\\n');
  const consumer = new GroupConsumer({ ...clientOptions(o), groupId: o.group, instanceId: o.instanceId }).subscribe(topic.split(','));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => (stopping ??= consumer.stop());
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') void stop().then(() => process.exit(0));
  });
  if (o.count === 0) return;
  let n = 0;
  await consumer.run(async (batch) => {
    for (const r of batch.records) {
      if (stopping !== null) return;
      await write(render(r));
      if (o.count !== undefined && ++n >= o.count) {
        // Commit exactly what was printed, then leave.
        await consumer.commit([{ topic: r.topic, partition: r.partition, offset: r.offset + 1 }]);
        void stop();
        return;
      }
    }
  });
}

type ClientCommand = (cmd: Command) => Command;
type Runner = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => Promise<void>;

/** Adds `sluice group ...` to the program (called from src/cli/main.ts). */
export function registerGroupCommands(program: Command, clientCommand: ClientCommand, run: Runner): void {
  const group = program.command('group').description('manage consumer groups');
  clientCommand(group.command('list').alias('ls').description('list consumer groups')).action(run((o: Common) => listGroups(o)));
  clientCommand(group.command('describe <group>').description('members, assignment and per-partition lag')).action(
    run((g: string, o: Common) => describeGroup(g, o)),
  );
  clientCommand(group.command('delete <group>').description("delete a group's committed offsets (the group must have no members)")).action(
    run((g: string, o: Common) => deleteGroup(g, o)),
  );
  clientCommand(group.command('reset-offsets <group>').description('move committed offsets (dry run unless --execute)'))
    .option('-t, --topic <topic>', 'topic to reset (repeatable; default: every topic the group has offsets for)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--to-earliest', 'reset to the log start')
    .option('--to-latest', 'reset to the high watermark')
    .addOption(new Option('--to-offset <n>', 'reset to offset N').argParser(parseIntArg('--to-offset', 0)))
    .option('--to-datetime <t>', 'reset to the first offset at or after T (ISO 8601 or epoch ms)')
    .option('--execute', 'apply the plan (without it: a dry run)', false)
    .action(run((g: string, o: ResetCommand) => resetOffsets(g, o)));
}
