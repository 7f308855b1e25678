/**
 * Public surface of src/server: embedding a whole broker (core + gRPC + HTTP) in this process.
 * Never handles signals or exits the process: that is the CLI's job.
 */
export { startBroker, type StartBrokerOptions, type RunningBroker, type OpenBrokerOptions } from './broker.js';
export { StartupError } from './errors.js';
export { type ClusterOptions } from './cluster.js';
export { parseHostPort, formatHostPort, type HostPort } from './address.js';
export type { MetricsHandler } from './http.js';
export type { ExtraService } from './grpc.js';
