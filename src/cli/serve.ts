/**
 * `sluice serve`: runs a broker until SIGTERM or SIGINT, then (cluster mode) hands the partitions it
 * leads to in-sync peers, drains in-flight requests, flushes,
 * closes the logs and exits 0 (1, with the error logged, when a log could not be flushed or closed). Start-up failures (a taken port, an unwritable or locked data dir) are
 * one line on stderr and exit code 1. On start it prints one line to stdout with the bound addresses
 * (`grpc=HOST:PORT`), so callers that asked for port 0 can find the broker.
 */
import path from 'node:path';
import { pino } from 'pino';
import { startBroker, type RunningBroker } from '../server/index.js';
import { createMetrics, createRaftTransportProbe } from '../metrics/index.js';
import { describeFailure, fail } from './errors.js';

export interface ServeOptions {
  dataDir: string;
  grpcAddr: string;
  httpAddr: string;
  shards?: number;
  logLevel: string;
  /** --max-client-memory, in bytes. */
  maxClientMemory?: number;
  /** --shard-watchdog-ms. */
  shardWatchdogMs?: number;
  /** Cluster membership: --node-id, --advertise-addr, --seeds, --rack. */
  nodeId: number;
  advertiseAddr?: string;
  seeds?: string[];
  rack?: string;
  /** --controller-voters: with it or --seeds, cluster mode. */
  controllerVoters?: number[];
}

export async function serve(options: ServeOptions): Promise<void> {
  const logger = pino({ level: options.logLevel, base: { pid: process.pid } }, pino.destination(2));
  const metrics = createMetrics();
  let running: RunningBroker | undefined;
  // A seed refused this node (another cluster, or its id held by a live node): it must not serve as a
  // member. One line on stderr, a clean close, exit 1.
  const onFatal = (err: Error): void => {
    process.stderr.write(`sluice: error: ${describeFailure(err, { brokers: options.grpcAddr })}\n`);
    const closing = running === undefined ? Promise.resolve() : running.close();
    void closing.catch(() => {}).finally(() => process.exit(1));
  };
  try {
    running = await startBroker({
      dataDir: options.dataDir,
      grpcAddress: options.grpcAddr,
      httpAddress: options.httpAddr,
      shards: options.shards,
      maxClientMemoryBytes: options.maxClientMemory,
      tuning: options.shardWatchdogMs === undefined ? undefined : { watchdogMs: options.shardWatchdogMs },
      probe: metrics.probe,
      metricsHandler: (req, res) => metrics.handler(req, res),
      logger,
      raftTransportProbe: createRaftTransportProbe(metrics),
      nodeId: options.nodeId,
      cluster: {
        advertiseAddress: options.advertiseAddr,
        seeds: options.seeds ?? [],
        rack: options.rack ?? '',
        probe: metrics.membershipProbe,
        controllerVoters: options.controllerVoters,
      },
      onFatal,
    });
  } catch (err) {
    fail(err, { brokers: options.grpcAddr });
  }
  const broker = running;
  // Handlers before the ready line: a supervisor may signal as soon as it reads it.
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting without waiting for the drain');
      process.exit(1);
    }
    stopping = true;
    // Cluster mode: partitions led here move to in-sync peers first (src/server/drain.ts), so their
    // writers wait one transfer, not an election timeout.
    logger.info({ signal }, 'handing off leaderships, then draining and shutting down');
    broker
      .handOffLeaderships()
      .then((r) => {
        if (r !== null) logger.info({ led: r.led, remaining: r.remaining, ms: r.elapsedMs }, r.remaining === 0 ? 'leaderships handed off' : 'some leaderships could not be handed off (no in-sync peer, or time ran out)');
        return broker.close();
      })
      .then(
        () => {
          logger.info({}, 'shut down cleanly');
          process.exit(0);
        },
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`sluice broker ready: grpc=${broker.grpcAddress} http=${broker.httpAddress} data=${path.resolve(options.dataDir)} node=${options.nodeId}\n`);
  logger.info({ grpc: broker.grpcAddress, http: broker.httpAddress, dataDir: path.resolve(options.dataDir) }, 'broker ready');
}
