/**
 * Public surface of src/storage: the segmented partition log. Owns files under one partition
 * directory; imports src/batch for the format and nothing from the broker, shards or RPC layers.
 */
export { PartitionLog, type LogOpenOptions } from './log.js';
export { defaultLogConfig, logConfigFromTopicConfigs, logConfigToTopicConfigs, validateLogConfig, LOG_CONFIG_KEYS } from './config.js';
export { CLEAN_SHUTDOWN_FILE, type RecoveryReport } from './recovery.js';
export { segmentFileName, parseSegmentFileName, storageError, isDiskFull, mkdirOwnerOnly, replaceFileAtomically, FILE_MODE, DIR_MODE, NODE_FS, type StorageFs } from './io.js';
export type { AppendOptions, AppendResult, DamagedRange, FlushPolicy, LogConfig, PartitionLogApi, ReadResult } from './types.js';
