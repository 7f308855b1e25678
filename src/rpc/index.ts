/**
 * Public surface of src/rpc: the gRPC front-end. Thin adapters (decode, route, map errors) over
 * BrokerApi; the only place SluiceError codes become gRPC statuses. Never imports src/shard,
 * src/partition or src/storage: it sees the core only through src/broker/types.ts.
 */
export { adminService } from './admin-service.js';
export { brokerService, MEMORY_HOLDING_PATHS, SUBSCRIBE_POLL_MS } from './broker-service.js';
export { callEndInterceptor, onCallEnd } from './call-end.js';
export { ClientMemoryBudget, ClientMemoryHold } from './client-memory.js';
export { ServiceContext } from './context.js';
export { loadSluiceDefinition, protoRoot, protoFiles, descriptorSetPaths, loadFileDescriptors, reflectionFiles } from './descriptors.js';
export {
  ERROR_DOMAIN,
  GRPC_STATUS_BY_CODE,
  fromServiceError,
  fromStatusMessage,
  grpcStatusFor,
  readErrorInfo,
  readRetryDelayMs,
  toServiceError,
} from './errors.js';
export { AdminService, AdminClient } from './gen/sluice/v1/admin.js';
export { BrokerService, BrokerClient } from './gen/sluice/v1/broker.js';
export { FastBrokerService, FastBrokerClient, decodeFetchResponse, decodeProduceRequest } from './fast-codec.js';
export { controllerService, GrpcControllerForwarder, type ControllerSubmitHandler } from './controller-service.js';
export { PeerBrokers, FORWARDED_METADATA_KEY, isForwarded } from './forward.js';
