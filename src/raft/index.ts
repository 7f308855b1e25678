/** Public surface of the Raft core. See docs/raft.md. */
export { RaftNode, bootstrapState, type RaftStatus } from './raft.js';
export { MemoryStorage, type RaftInitialState, type RaftStorage } from './storage.js';
export { RAFT_BUGS, RAFT_DEFAULTS, validateRaftOptions, type ControlDataFn, type FilledRaftOptions, type RaftBug, type RaftOptions } from './config.js';
export { applyConfChange } from './log.js';
export * from './types.js';
