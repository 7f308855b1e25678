/**
 * The history of one chaos run: every operation with its invoke and complete times (ms since the run
 * started) and its outcome, written as JSON lines in completion order (chaos/out/<seed>/history.jsonl).
 * A partition is named by its key "<topic>/<partition>"; a value is "<producer>:<counter>", unique
 * in the run, so a value read anywhere names the one write that made it.
 */
import fs from 'node:fs';

export type Outcome = 'ok' | 'failed' | 'unknown';
/** How a membership change (move, decommission) ended: membership.ts says what each means. */
export type MembershipOutcome = 'completed' | 'running' | 'refused' | 'unanswered';

export type Op =
  /** A write with acks=all. `failed` only where the broker guarantees nothing was written. */
  | { t: 'produce'; proc: string; idem: boolean; key: string; value: string; inv: number; end: number; outcome: Outcome; offset?: number; err?: string }
  /** A record read by offset (`read`) or delivered to the consumer group (`gread`). */
  | { t: 'read' | 'gread'; proc: string; key: string; offset: number; value: string; at: number }
  /** A group offset commit (the offset is the next one to read). */
  | { t: 'commit'; proc: string; key: string; offset: number; inv: number; end: number; outcome: Outcome; err?: string }
  /** A poll of the group's committed offset, of a high watermark, of a partition's leader. */
  | { t: 'committed'; key: string; offset: number; inv: number; end: number }
  | { t: 'hw'; key: string; hw: number; inv: number; end: number }
  | { t: 'leader'; key: string; leader: number; at: number }
  /**
   * A fault: started at `start`, healed at `heal`. A membership change (move, decommission) also has
   * its outcome (membership.ts), and `heal` is when the harness stopped following it (done, or its
   * time ended) or, for a decommission, when the node was recommissioned.
   */
  | { t: 'fault'; id: number; kind: string; nodes: number[]; start: number; heal: number; detail: string; outcome?: MembershipOutcome; reason?: string }
  /** A cluster after the run: the partition's replica set (voters) that the byte comparison used. */
  | { t: 'replicas'; key: string; replicas: number[] }
  /** After healing: every record of a partition (read up to its end) and its final high watermark. */
  | { t: 'final'; key: string; offset: number; value: string }
  | { t: 'final-hw'; key: string; hw: number }
  /** A node's process went down (kill -9), came back ready, was stopped or continued. */
  | { t: 'node'; node: number; state: 'killed' | 'ready' | 'paused' | 'resumed'; at: number }
  /** Free text: what the harness did (restart, convergence), for a person reading the history. */
  | { t: 'note'; at: number; text: string };

/** Collects ops in memory and appends them to a file as they complete. */
export class History {
  readonly ops: Op[] = [];
  private readonly fd: number | null;

  constructor(file: string | null) {
    this.fd = file === null ? null : fs.openSync(file, 'w');
  }

  add(op: Op): void {
    this.ops.push(op);
    if (this.fd !== null) fs.writeSync(this.fd, JSON.stringify(op) + '\n');
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
  }
}

export function readHistory(file: string): Op[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Op);
}
