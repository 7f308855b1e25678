/**
 * The leader's view of one follower (etcd-raft `tracker.Progress`).
 *
 * - probe: at most one append in flight (`probeSent`), used after a rejection or at term start, while
 *   the leader searches for the follower's match point;
 * - replicate: optimistic pipelining, `next` moves ahead on send, bounded by `inflights` (messages and
 *   bytes);
 * - snapshot: a snapshot was sent; nothing else is sent until the follower answers or a heartbeat
 *   response shows it is alive (then the leader probes again).
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** A FIFO of (last index, bytes) per append in flight. */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizes: number[] = [];
  private head = 0;
  bytes = 0;

  constructor(
    private readonly countMax: number,
    private readonly bytesMax: number,
  ) {}

  count(): number {
    return this.lastIndexes.length - this.head;
  }

  full(): boolean {
    return this.count() >= this.countMax || this.bytes >= this.bytesMax;
  }

  add(lastIndex: number, bytes: number): void {
    this.lastIndexes.push(lastIndex);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  /** Frees every append whose last index is <= `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.head < this.lastIndexes.length && this.lastIndexes[this.head] <= index) {
      this.bytes -= this.sizes[this.head];
      this.head++;
    }
    if (this.head > 64 && this.head * 2 > this.lastIndexes.length) this.compactArrays();
  }

  freeFirst(): void {
    if (this.count() > 0) this.freeLE(this.lastIndexes[this.head]);
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizes.length = 0;
    this.head = 0;
    this.bytes = 0;
  }

  private compactArrays(): void {
    this.lastIndexes.splice(0, this.head);
    this.sizes.splice(0, this.head);
    this.head = 0;
  }
}

export class Progress {
  /**
   * The end of the last run known to be held; -1 = nothing known. Not 0: a partition's log starts at
   * offset 0 (its snapshot index is -1), so index 0 is a real entry that a follower may not hold.
   */
  match = -1;
  next: number;
  state: ProgressState = 'probe';
  probeSent = false;
  /** The snapshot index in flight (snapshot state); -1 = none. */
  pendingSnapshot = -1;
  /** Heard from since the last check-quorum round. */
  recentActive = true;
  readonly inflights: Inflights;

  constructor(next: number, inflightMsgsMax: number, inflightBytesMax: number) {
    this.next = next;
    this.inflights = new Inflights(inflightMsgsMax, inflightBytesMax);
  }

  isPaused(): boolean {
    if (this.state === 'probe') return this.probeSent;
    if (this.state === 'replicate') return this.inflights.full();
    return true;
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      this.next = Math.max(this.match + 1, this.pendingSnapshot + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = 'probe';
    this.probeSent = false;
    this.pendingSnapshot = -1;
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflights.reset();
  }

  becomeSnapshot(index: number): void {
    this.state = 'snapshot';
    this.pendingSnapshot = index;
    this.probeSent = false;
    this.inflights.reset();
  }

  /** An acknowledgement up to `n`; false when stale. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** A rejection of the append at `rejected`; false when stale. `matchHint` is the backtracking hint. */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }
}
