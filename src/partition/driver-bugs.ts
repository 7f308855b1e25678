/**
 * A leaf module (no imports), so the main thread can name the driver's bug modes (src/broker/
 * test-hooks.ts) without loading the partition code, which runs only in shard workers.
 */
/**
 * TEST ONLY: driver bugs the simulator (test/sim) injects to prove its checkers catch them:
 * acks=all answered at append; a Ready's messages sent before its fdatasync; the high watermark taken
 * from the log end instead of the commit index; a restarted replica's high watermark reported as
 * settled at once (not provisional while it may be below the one it showed before the restart).
 */
export const PARTITION_DRIVER_BUGS = ['ack-before-persist', 'send-before-persist', 'hw-from-log-end', 'hw-restart-settled'] as const;
export type PartitionDriverBug = (typeof PARTITION_DRIVER_BUGS)[number];
