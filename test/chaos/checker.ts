/**
 * The history checker. Offsets give each partition a total order, so every check is one pass over the
 * history with maps keyed by partition, offset and value (linear in the history, plus a binary search
 * per fault and per committed-offset poll). It reports:
 *  - lost: an acknowledged (ok) write whose value is nowhere in the final read of its partition;
 *  - inconsistent: an offset seen holding two different values (by the write's ack, any reader, the
 *    final read), or a value read that no write produced;
 *  - duplicated: a value at two offsets; `duplicated` counts idempotent producers' values (must be 0),
 *    `duplicatedPlain` the others' (allowed: a retry without idempotence may duplicate);
 *  - phantom: a write that failed definitely (the broker wrote nothing) whose value was read;
 *  - hwBackwards: a high watermark poll below an earlier one, or a final high watermark below one seen;
 *  - committedBackwards: the group's committed offset seen below one committed (ok) or seen before;
 *  - groupGaps: a record of the final read below the group's committed offset that the group was never
 *    delivered;
 *  - unavailability: per fault, time from its heal to the first ok write completing after it, per
 *    partition (the worst partition counts; null = none ever).
 * Unknown outcomes (timeouts, connection losses) may go either way: neither lost nor required.
 */
import type { MembershipOutcome, Op } from './history.js';

export interface Sample {
  key: string;
  offset?: number;
  value?: string;
  why: string;
}

export interface FaultAvailability {
  id: number;
  kind: string;
  detail: string;
  healMs: number;
  /** Heal to the first ok write on the slowest partition; null when some partition never got one. */
  unavailableMs: number | null;
  /** A membership change: how it ended (membership.ts). */
  outcome?: MembershipOutcome;
}

export interface Verdict {
  ok: boolean;
  acked: number;
  unknown: number;
  failed: number;
  reads: number;
  lost: number;
  inconsistent: number;
  duplicated: number;
  duplicatedPlain: number;
  phantom: number;
  hwBackwards: number;
  committedBackwards: number;
  groupGaps: number;
  /** Replica byte comparison after healing (filled by the harness when partitions have replicas). */
  replicaMismatches: number;
  replicasCompared: number;
  /**
   * Directories of a partition left on a node outside its final replica set (a move took it off):
   * reported, not judged (they are not compared; the broker deletes them once the metadata moves on).
   */
  strayReplicas: number;
  /** Membership changes (move, decommission) by outcome. */
  membership: Record<MembershipOutcome, number>;
  /**
   * Filled by the harness: what still moved, or which node was not active, once the bounded wait for
   * the moves to settle ended ("" = settled). Reported, not judged (it is not a data anomaly).
   */
  unsettled: string;
  faults: FaultAvailability[];
  worstUnavailableMs: number | null;
  /** The first few examples of each anomaly, for the report. */
  samples: Sample[];
}

const SAMPLES_MAX_PER_KIND = 5;

class Samples {
  readonly all: Sample[] = [];
  private readonly perKind = new Map<string, number>();
  add(kind: string, s: Omit<Sample, 'why'> & { why: string }): void {
    const n = this.perKind.get(kind) ?? 0;
    this.perKind.set(kind, n + 1);
    if (n < SAMPLES_MAX_PER_KIND) this.all.push({ ...s, why: `${kind}: ${s.why}` });
  }
}

function perKey<V>(m: Map<string, V>, key: string, make: () => V): V {
  let v = m.get(key);
  if (v === undefined) {
    v = make();
    m.set(key, v);
  }
  return v;
}

/** Index of the last element of ascending `xs` that is < x, or -1. */
function lastBelow(xs: number[], x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/** Checks a whole history (ops in completion order, as History writes them). */
export function checkHistory(ops: readonly Op[]): Verdict {
  const samples = new Samples();
  const writes = new Map<string, { idem: boolean; outcome: string; key: string; offset?: number }>();
  const atOffset = new Map<string, Map<number, string>>();
  const badOffsets = new Map<string, Set<number>>();
  const valueOffsets = new Map<string, Set<number>>();
  const finalValues = new Map<string, Set<string>>();
  const finalOffsets = new Map<string, number[]>();
  const groupSeen = new Map<string, Set<number>>();
  const hwMax = new Map<string, number>();
  const committedMax = new Map<string, number>();
  const commitEnds = new Map<string, { end: number[]; prefixMax: number[] }>();
  const okWriteEnds = new Map<string, number[]>();
  const faults: Op[] = [];
  const v: Verdict = {
    ok: true, acked: 0, unknown: 0, failed: 0, reads: 0, lost: 0, inconsistent: 0, duplicated: 0, duplicatedPlain: 0, phantom: 0,
    hwBackwards: 0, committedBackwards: 0, groupGaps: 0, replicaMismatches: 0, replicasCompared: 0, strayReplicas: 0,
    membership: { completed: 0, running: 0, refused: 0, unanswered: 0 }, unsettled: '', faults: [], worstUnavailableMs: null, samples: [],
  };

  /** One observation "offset holds value" from any source. */
  const observe = (key: string, offset: number, value: string, source: string): void => {
    const m = perKey(atOffset, key, () => new Map<number, string>());
    const seen = m.get(offset);
    if (seen === undefined) m.set(offset, value);
    else if (seen !== value) {
      const bad = perKey(badOffsets, key, () => new Set<number>());
      if (!bad.has(offset)) {
        bad.add(offset);
        v.inconsistent++;
        samples.add('inconsistent', { key, offset, value, why: `offset holds '${seen}' and '${value}' (${source})` });
      }
    }
    const w = writes.get(value);
    if (w === undefined || w.key !== key) {
      v.inconsistent++;
      samples.add('inconsistent', { key, offset, value, why: `${source} saw a value no write to this partition produced` });
      return;
    }
    if (w.outcome === 'failed') {
      v.phantom++;
      samples.add('phantom', { key, offset, value, why: `${source} saw a write that failed definitely` });
      w.outcome = 'failed-seen';
    }
    const offs = perKey(valueOffsets, value, () => new Set<number>());
    const before = offs.size;
    offs.add(offset);
    if (before === 1 && offs.size === 2) {
      if (w.idem) v.duplicated++;
      else v.duplicatedPlain++;
      if (w.idem) samples.add('duplicated', { key, offset, value, why: `idempotent value at offsets ${[...offs].join(' and ')}` });
    }
  };

  // Pass 1: what was written (a value read may complete before the write's ack arrives).
  for (const op of ops) {
    if (op.t !== 'produce') continue;
    writes.set(op.value, { idem: op.idem, outcome: op.outcome, key: op.key, offset: op.offset });
    if (op.outcome === 'ok') {
      v.acked++;
      perKey(okWriteEnds, op.key, () => []).push(op.end);
    } else if (op.outcome === 'failed') v.failed++;
    else v.unknown++;
  }

  // Pass 2: every observation, in completion order.
  for (const op of ops) {
    switch (op.t) {
      case 'produce':
        if (op.outcome === 'ok' && op.offset !== undefined) observe(op.key, op.offset, op.value, `ack of ${op.proc}`);
        break;
      case 'read':
      case 'gread':
        v.reads++;
        observe(op.key, op.offset, op.value, `${op.t} by ${op.proc}`);
        if (op.t === 'gread') perKey(groupSeen, op.key, () => new Set<number>()).add(op.offset);
        break;
      case 'final':
        observe(op.key, op.offset, op.value, 'the final read');
        perKey(finalValues, op.key, () => new Set<string>()).add(op.value);
        perKey(finalOffsets, op.key, () => []).push(op.offset);
        break;
      case 'hw':
      case 'final-hw': {
        const max = hwMax.get(op.key) ?? -1;
        if (op.hw < max) {
          v.hwBackwards++;
          samples.add('hw-backwards', { key: op.key, offset: op.hw, why: `${op.t === 'hw' ? 'a poll' : 'the final read'} saw the high watermark at ${op.hw} after ${max}` });
        } else hwMax.set(op.key, op.hw);
        break;
      }
      case 'commit':
        if (op.outcome === 'ok') {
          const c = perKey(commitEnds, op.key, () => ({ end: [] as number[], prefixMax: [] as number[] }));
          c.end.push(op.end);
          c.prefixMax.push(Math.max(op.offset, c.prefixMax.at(-1) ?? -1));
          committedMax.set(op.key, Math.max(committedMax.get(op.key) ?? 0, op.offset));
        }
        break;
      case 'committed': {
        // Must be at least every commit acknowledged before this poll was sent, and every earlier poll.
        const c = commitEnds.get(op.key);
        const i = c === undefined ? -1 : lastBelow(c.end, op.inv);
        const floor = Math.max(i < 0 ? -1 : c!.prefixMax[i], hwMax.get(`committed:${op.key}`) ?? -1);
        if (op.offset < floor) {
          v.committedBackwards++;
          samples.add('committed-backwards', { key: op.key, offset: op.offset, why: `committed offset read as ${op.offset} after ${floor}` });
        } else hwMax.set(`committed:${op.key}`, op.offset);
        committedMax.set(op.key, Math.max(committedMax.get(op.key) ?? 0, op.offset));
        break;
      }
      case 'fault':
        faults.push(op);
        if (op.outcome !== undefined) v.membership[op.outcome]++;
        break;
      default:
        break;
    }
  }

  // Lost: acknowledged, and not in the final read of its partition.
  for (const [value, w] of writes) {
    if (w.outcome !== 'ok') continue;
    if (!finalValues.get(w.key)?.has(value)) {
      v.lost++;
      samples.add('lost', { key: w.key, offset: w.offset, value, why: 'acknowledged, missing from the final read' });
    }
  }

  // Group gaps: below the committed offset, every record of the final read was delivered to the group.
  for (const [key, committed] of committedMax) {
    const delivered = groupSeen.get(key) ?? new Set<number>();
    for (const offset of finalOffsets.get(key) ?? []) {
      if (offset < committed && !delivered.has(offset)) {
        v.groupGaps++;
        samples.add('group-gap', { key, offset, why: `committed ${committed} but the group was never delivered offset ${offset}` });
      }
    }
  }

  // Unavailability: heal -> first ok write completing after it, on the slowest partition.
  for (const op of faults) {
    if (op.t !== 'fault') continue;
    let worst: number | null = 0;
    for (const ends of okWriteEnds.values()) {
      const i = lastBelow(ends, op.heal) + 1;
      if (i >= ends.length) {
        worst = null;
        break;
      }
      worst = Math.max(worst, ends[i] - op.heal);
    }
    if (okWriteEnds.size === 0) worst = null;
    v.faults.push({ id: op.id, kind: op.kind, detail: op.detail, healMs: op.heal, unavailableMs: worst, outcome: op.outcome });
  }
  // Membership changes are recorded when they end, so the history's order is not the schedule's.
  v.faults.sort((a, b) => a.id - b.id);
  const waits = v.faults.map((f) => f.unavailableMs);
  v.worstUnavailableMs = waits.includes(null) ? null : waits.length === 0 ? 0 : Math.max(...(waits as number[]));
  v.samples = samples.all;
  v.ok = isClean(v);
  return v;
}

/** Safety only: unavailability is reported, not judged (a minority of failures may stall a partition). */
export function isClean(v: Verdict): boolean {
  return v.lost === 0 && v.inconsistent === 0 && v.duplicated === 0 && v.phantom === 0 && v.hwBackwards === 0 && v.committedBackwards === 0 && v.groupGaps === 0 && v.replicaMismatches === 0;
}
