/** Public surface of the Raft core. See docs/raft.md. */
export { RaftNode, bootstrapState, type RaftStatus } from './raft.js';
export { RAFT_BUGS, RAFT_DEFAULTS, validateRaftOptions, type FilledRaftOptions, type RaftBug, type RaftOptions } from './config.js';
export { applyConfChange } from './log.js';
export * from './types.js';
