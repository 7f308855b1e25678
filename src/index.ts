/**
 * The `sluice` package: embed a broker (`startBroker`) and talk to one (Producer, Consumer, Admin).
 *
 *   import { startBroker, Producer, Consumer, Admin } from 'sluice';
 */
export { startBroker, StartupError, type StartBrokerOptions, type RunningBroker, type MetricsHandler } from './server/index.js';
export * from './client/index.js';
export { SluiceError, isSluiceError, ERROR_CODES, type ErrorCode } from './errors.js';
export { Compression, encodeBatch, decodeBatch, decodeBatches } from './batch/index.js';
export type { RecordInput, DecodedRecord } from './batch/types.js';
export { partitionForKey, murmur2 } from './model/murmur2.js';
export type { BrokerApi } from './broker/types.js';
export type { BrokerProbe } from './broker/probe.js';
export { createMetrics, type MetricsOptions, type SluiceMetrics } from './metrics/index.js';
