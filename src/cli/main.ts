#!/usr/bin/env node
/**
 * The `sluice` command (rpk/kcat style): `serve` runs a broker; `topic`, `produce`, `consume` and
 * `cluster` talk to one over gRPC with the TypeScript client. Every client command takes
 * -b/--brokers (SLUICE_BROKERS) and --format table|json. Failures are one line on stderr that says
 * what to do next, and exit code 1.
 */
import { Command, Option } from 'commander';
import { logVerbosity, setLogVerbosity } from '@grpc/grpc-js';
import { DEFAULT_BROKER } from '../client/connection.js';
import { PROTO_INT32_MAX } from '../client/validate.js';
import { CLI_MOVE_WAIT_MS_DEFAULT, CLIENT_REQUEST_TIMEOUT_MS_DEFAULT, TOPIC_PARTITIONS_MAX } from '../constants.js';
import { fail } from './errors.js';
import { parseOutputFormat, type OutputFormat } from './output.js';
import { collectKeyValue, parseBrokers, parseBytesArg, parseDurationMs, parseIntArg, parseSeedList, parseStartOffset, parseControllerVoters } from './parse.js';
import { CLIENT_MEMORY_BYTES_DEFAULT, CLIENT_MEMORY_BYTES_MIN, SHARD_WATCHDOG_MS, SHARD_WATCHDOG_MS_MIN } from '../constants.js';
import { serve, type ServeOptions } from './serve.js';
import { addPartitions, alterConfig, createTopic, deleteTopic, describeTopic, listTopics, type Common } from './topic.js';
import { consume, produce } from './records.js';
import { clusterInfo } from './cluster.js';
import { decommission, listReassignments, moveTopicPartition, parseReplicaList, rebalance, recommission, type WaitOptions } from './moves.js';
import { groupConsume, registerGroupCommands, type GroupConsumeCommand } from './group.js';

/** Adds -b/--brokers, --timeout and --format to a client command. */
function clientCommand(cmd: Command): Command {
  return cmd
    .addOption(new Option('-b, --brokers <host:port,...>', 'broker addresses, comma-separated; any node of a cluster will do (a host alone means port 7070)').env('SLUICE_BROKERS').argParser(parseBrokers).default(DEFAULT_BROKER))
    .addOption(
      new Option('--timeout <duration>', 'how long to wait for the broker to answer one request: 500ms, 10s, or milliseconds')
        .env('SLUICE_TIMEOUT')
        .argParser(parseDurationMs('--timeout'))
        .default(CLIENT_REQUEST_TIMEOUT_MS_DEFAULT, `${CLIENT_REQUEST_TIMEOUT_MS_DEFAULT / 1000}s`),
    )
    .addOption(new Option('--format <format>', 'output: table or json').argParser(parseOutputFormat).default('table' as OutputFormat));
}

/** Whether a move-like command follows its progress, and for how long. */
function waitOptions(cmd: Command): Command {
  return cmd
    .option('--no-wait', 'return once the work is recorded, without following it')
    .option('--wait-timeout <duration>', 'how long to follow the progress before giving up (the work carries on)', parseDurationMs('--wait-timeout'), CLI_MOVE_WAIT_MS_DEFAULT);
}

/** Runs an action; any failure becomes one line on stderr and exit code 1. */
function run<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const opts = args.find((a) => a !== null && typeof a === 'object' && !Array.isArray(a) && !(a instanceof Command)) as Partial<Common> | undefined;
    const cmd = args.find((a): a is Command => a instanceof Command);
    const command = cmd === undefined ? '' : [cmd.parent?.name() === 'sluice' ? '' : cmd.parent?.name(), cmd.name()].filter(Boolean).join(' ');
    try {
      await fn(...args);
    } catch (err) {
      fail(err, { brokers: opts?.brokers ?? DEFAULT_BROKER, command });
    }
  };
}

// grpc-js logs transport errors to stderr itself; the CLI reports failures in one line of its own.
setLogVerbosity(logVerbosity.NONE);

const program = new Command('sluice')
  .description('Sluice: an event-streaming broker (Kafka-format logs, gRPC API)')
  .version('0.1.0')
  // Usage errors (an unknown flag, a bad value) are one line, like every other failure, and exit 1.
  .configureOutput({
    outputError: (text, write) => write(`sluice: ${text.trim().replace(/\s*\n\s*/g, ' ')} (run with --help for usage)\n`),
  });

program
  .command('serve')
  .description('run a broker')
  .addOption(new Option('--data-dir <dir>', 'where logs live').env('SLUICE_DATA_DIR').default('./data'))
  .addOption(new Option('--grpc-addr <host:port>', 'gRPC listen address (port 0 = any free port)').env('SLUICE_GRPC_ADDR').default('127.0.0.1:7070'))
  .addOption(new Option('--http-addr <host:port>', 'HTTP listen address for /healthz, /readyz, /metrics').env('SLUICE_HTTP_ADDR').default('127.0.0.1:7071'))
  .addOption(new Option('--shards <n>', 'shard worker threads (default: CPUs - 1, at least 1; CPUs capped by the cgroup CPU quota)').env('SLUICE_SHARDS').argParser(parseIntArg('--shards', 1, PROTO_INT32_MAX)))
  .addOption(new Option('--log-level <level>', 'pino log level').env('SLUICE_LOG_LEVEL').default('info'))
  .addOption(
    new Option('--max-client-memory <bytes>', `budget for bytes held on behalf of clients, e.g. 256MiB (default ${CLIENT_MEMORY_BYTES_DEFAULT})`)
      .env('SLUICE_MAX_CLIENT_MEMORY')
      .argParser(parseBytesArg('--max-client-memory', CLIENT_MEMORY_BYTES_MIN)),
  )
  .addOption(
    new Option('--shard-watchdog-ms <ms>', `replace a shard worker silent this long (default ${SHARD_WATCHDOG_MS})`)
      .env('SLUICE_SHARD_WATCHDOG_MS')
      .argParser(parseIntArg('--shard-watchdog-ms', SHARD_WATCHDOG_MS_MIN)),
  )
  // Cluster membership (issue 11): identity and discovery. docs/cluster.md.
  .addOption(new Option('--node-id <n>', 'this node\'s id in the cluster: a positive integer, fixed for the life of its data dir').env('SLUICE_NODE_ID').argParser(parseIntArg('--node-id', 1, PROTO_INT32_MAX)).default(1))
  .addOption(new Option('--advertise-addr <host:port>', 'the address other nodes and clients dial (default: the --grpc-addr; with 0.0.0.0 there, this machine\'s host name)').env('SLUICE_ADVERTISE_ADDR'))
  .addOption(new Option('--seeds <host:port,...>', 'addresses of existing cluster members to join through (none: start or carry on a cluster of its own)').env('SLUICE_SEEDS').argParser(parseSeedList))
  .addOption(new Option('--rack <rack>', 'failure domain of this node (rack, zone), for replica placement').env('SLUICE_RACK'))
  .addOption(
    new Option('--controller-voters <ids>', 'node ids of the controller group\'s voters: 1, 3 or 5, e.g. 1,2,3 (with --seeds and without this: 1,2,3). Given or with --seeds, the node runs in cluster mode')
      .env('SLUICE_CONTROLLER_VOTERS')
      .argParser(parseControllerVoters),
  )
  .action(run((o: ServeOptions) => serve(o)));

const topic = program.command('topic').description('manage topics');
clientCommand(topic.command('create <name>').description('create a topic'))
  .option('-p, --partitions <n>', 'partition count', parseIntArg('--partitions', 1, PROTO_INT32_MAX), 1)
  .option('-r, --replicas <n>', 'replication factor', parseIntArg('--replicas', 1, PROTO_INT32_MAX), 1)
  .option('-c, --config <key=value>', 'topic config (repeatable)', collectKeyValue, [])
  .action(run((name: string, o: Common & { partitions: number; replicas: number; config: [string, string][] }) => createTopic(name, o)));
clientCommand(topic.command('list').alias('ls').description('list topics'))
  .option('--internal', 'also list internal topics (names starting with __, such as __consumer_offsets)', false)
  .action(run((o: Common & { internal: boolean }) => listTopics(o)));
clientCommand(topic.command('describe <name>').description('show partitions, offsets and configs')).action(run((name: string, o: Common) => describeTopic(name, o)));
clientCommand(topic.command('delete <name>').description('delete a topic and its data')).action(run((name: string, o: Common) => deleteTopic(name, o)));
clientCommand(topic.command('alter-config <name>').description('set or remove topic configs'))
  .option('-s, --set <key=value>', 'set a config (repeatable)', collectKeyValue, [])
  .option('-d, --delete <key>', 'remove a config (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .action(run((name: string, o: Common & { set: [string, string][]; delete: string[] }) => alterConfig(name, o)));
waitOptions(clientCommand(topic.command('move <name>').description('move a partition\'s replicas (cluster mode): add, catch up, promote, remove')))
  .option('-p, --partition <n>', 'the partition', parseIntArg('--partition', 0, TOPIC_PARTITIONS_MAX - 1))
  .option('--replicas <ids>', 'the new replica set, first = preferred leader, e.g. 1,2,4', parseReplicaList)
  .action(run((name: string, o: Common & WaitOptions & { partition?: number; replicas?: number[] }) => moveTopicPartition(name, o)));
clientCommand(topic.command('add-partitions <name>').description('grow a topic'))
  .option('-n, --num <n>', 'partitions to add', parseIntArg('--num', 1, PROTO_INT32_MAX))
  .option('-t, --total <n>', 'new total partition count', parseIntArg('--total', 1, PROTO_INT32_MAX))
  .action(run(async (name: string, o: Common & { num?: number; total?: number }) => {
    if (o.num === undefined && o.total === undefined) throw new Error('say how many partitions: --num N (to add) or --total N');
    await addPartitions(name, o);
  }));

clientCommand(program.command('produce <topic>').description('send stdin lines as records'))
  .option('-p, --partition <n>', 'partition (default: by key, else sticky)', parseIntArg('--partition', 0, TOPIC_PARTITIONS_MAX - 1))
  .option('-k, --key-delimiter <sep>', 'split each line at the first SEP into key and value')
  .option('-H, --header <key=value>', 'header on every record (repeatable)', collectKeyValue, [])
  .addOption(new Option('--acks <acks>', 'when a record counts as sent').choices(['all', 'leader', 'none']).default('all'))
  .option('--no-idempotence', 'allow duplicates on retry (idempotence is on by default with --acks all)')
  .option('--producer-name <name>', 'stable producer name: a newer producer with this name fences this one')
  .action(run((t: string, o: Parameters<typeof produce>[1]) => produce(t, o)));

clientCommand(program.command('consume <topic>').description('print records (kcat style)'))
  .option('-p, --partition <n>', 'partition (default: all)', parseIntArg('--partition', 0, TOPIC_PARTITIONS_MAX - 1))
  .addOption(
    new Option('-o, --offset <offset>', 'where to start: start (or earliest), end (or latest), N, -N (N before the end), @timestamp_ms')
      .argParser(parseStartOffset)
      .default('earliest', 'start'),
  )
  .option('-n, --count <n>', 'exit after COUNT records', parseIntArg('--count', 0))
  .option('-e, --exit', 'exit at the end of the partitions', false)
  .option('-f, --record-format <fmt>', 'kcat-style format: %t %p %o %k %s %T %h %K %S (default "%s\\n")')
  .option('-g, --group <group>', 'consume as a member of this consumer group (commits what it printed)')
  .action(run((t: string, o: Parameters<typeof consume>[1] & { group?: string }) => (o.group ? groupConsume(t, o as GroupConsumeCommand) : consume(t, o))));

const cluster = program.command('cluster').description('cluster information');
clientCommand(cluster.command('info').description('nodes, the controller leader, and partition leaders per node')).action(run((o: Common) => clusterInfo(o)));
waitOptions(clientCommand(cluster.command('decommission <node>').description('move every replica off a node; then it may be stopped for good')))
  .action(run((node: string, o: Common & WaitOptions) => decommission(parseIntArg('node', 1, PROTO_INT32_MAX)(node), o)));
clientCommand(cluster.command('recommission <node>').description('make a decommissioning or decommissioned node active again: it takes replicas again'))
  .action(run((node: string, o: Common) => recommission(parseIntArg('node', 1, PROTO_INT32_MAX)(node), o)));
waitOptions(clientCommand(cluster.command('rebalance').description('move replicas until every live node holds about as many (leaders rebalance by themselves)')))
  .action(run((o: Common & WaitOptions) => rebalance(o)));
clientCommand(cluster.command('reassignments').description('moves in progress and node states')).action(run((o: Common) => listReassignments(o)));

registerGroupCommands(program, clientCommand, run);

await program.parseAsync(process.argv);
