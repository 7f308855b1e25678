/**
 * The group coordinator: members, their target assignment (assignor.ts), the cooperative hand-over of
 * partitions, and committed offsets (offsets-store.ts).
 *
 * Protocol (KIP-848 style, broker-side assignment; docs/groups.md):
 * - Any change (join, leave, expiry, new partitions or matching topics) recomputes the group's target
 *   assignment with the sticky assignor, starting from the previous target, and bumps the generation
 *   when the target changed.
 * - Reconciliation: a partition a member owns but should not is REVOKED first (revoke sent, delivery
 *   stopped); the member commits and acknowledges; only then is the partition free, and it is ASSIGNED
 *   to its new owner, starting at the committed offset. Members whose partitions do not move receive
 *   nothing and never pause.
 * - A member that vanishes (its stream breaks, or no traffic for its session timeout) is removed and its
 *   partitions are free at once: the new owners resume from the last commit (at-least-once, no gap).
 *   A static member (instance id) whose stream breaks stays, disconnected, for its session timeout; if
 *   it comes back in time it gets the same member id and partitions, and nobody else notices.
 * - A revoke not acknowledged within the member's session timeout is forced: the partitions are freed
 *   as if acknowledged, and later commits of them by that member fail with PARTITION_NOT_ASSIGNED.
 *
 * All state changes are synchronous (one event-loop turn each), so a change and the messages it causes
 * are never interleaved with another change. I/O is limited to topic metadata and offset commits.
 *
 * Placement: on one node every group belongs to this coordinator (it leads every offsets partition).
 * In cluster mode (a `CoordinatorPlacement`) it serves exactly the groups whose offsets partition this
 * node leads: on gaining one (at a new epoch, once its term's entries are committed) it replays it
 * before serving its groups; on losing it, it fences those groups' members with NOT_COORDINATOR (their
 * streams end; they rejoin the new coordinator) and forgets them. Any other group gets NOT_COORDINATOR
 * naming the coordinator this node knows of.
 */
import { randomUUID } from 'node:crypto';
import { SluiceError, isSluiceError } from '../errors.js';
import type { BrokerApi } from '../broker/types.js';
import type { BrokerProbe } from '../broker/probe.js';
import { assign, type Assignment, type AssignorMember, type TopicPartition } from './assignor.js';
import {
  COMMIT_METADATA_BYTES_MAX,
  COORDINATOR_PLACEMENT_CHECK_MS,
  COMMIT_OFFSETS_MAX,
  GROUP_ID_LENGTH_MAX,
  GROUP_LAG_REPORT_MS,
  INTERNAL_TOPIC_PREFIX,
  GROUP_MEMBERS_MAX,
  GROUP_METADATA_REFRESH_MS,
  GROUP_TICK_MS,
  OFFSETS_EXPIRY_CHECK_MS,
  OFFSETS_REFRESH_CHECK_MS,
  OFFSETS_RETENTION_MS_DEFAULT,
  SESSION_TIMEOUT_MS_DEFAULT,
  SESSION_TIMEOUT_MS_MAX,
  SESSION_TIMEOUT_MS_MIN,
} from './constants.js';
import { OffsetsStore, type OffsetWrite, type OffsetsStoreOptions } from './offsets-store.js';
import { tpKey, type CommittedOffsetEntry } from './offsets-stm.js';
import type {
  AssignedPartition,
  CommitOffset,
  CoordinatorPlacement,
  PlacementSource,
  GroupDescription,
  GroupState,
  GroupSummary,
  JoinInput,
  JoinResult,
  MemberDescription,
  MemberSink,
  PartitionLag,
  ResetPlanEntry,
  ResetSpec,
} from './types.js';

/** What the coordinator reports for metrics (a slice of BrokerProbe, src/broker/probe.ts). */
export type GroupProbe = Pick<BrokerProbe, 'consumerGroupLag' | 'groupDeleted'>;

export interface GroupCoordinatorOptions extends OffsetsStoreOptions {
  /** Receives each group's lag per topic every GROUP_LAG_REPORT_MS, and group deletions. */
  probe?: GroupProbe;
  /** Offsets of a group with no members expire this long after its last commit. -1 keeps them. */
  offsetsRetentionMs?: number;
  /** Run the session/metadata/expiry timers (default true; tests of the pure flow may drive `tick`). */
  timers?: boolean;
  /**
   * Cluster mode: which offsets partitions this node coordinates. Default: the API's internal view's
   * `coordinatorPlacement()` when it has one, else none (this coordinator owns every partition).
   */
  placement?: CoordinatorPlacement | null;
}

interface Owned {
  tp: TopicPartition;
  /** The generation in which this member got the partition: commits from before it are stale. */
  sinceGeneration: number;
}

interface Revoking {
  tp: TopicPartition;
  sinceGeneration: number;
  deadlineMs: number;
}

interface Member {
  memberId: string;
  instanceId: string | null;
  topics: string[] | null;
  pattern: RegExp | null;
  sessionTimeoutMs: number;
  lastSeenMs: number;
  sink: MemberSink | null;
  /** The generation of the last assign or revoke sent to this member. */
  generation: number;
  owned: Map<string, Owned>;
  revoking: Map<string, Revoking>;
}

class Group {
  generation = 0;
  readonly members = new Map<string, Member>();
  readonly byInstance = new Map<string, string>();
  /** tpKey -> memberId of the member that owns or is revoking it. */
  readonly holder = new Map<string, string>();
  target: Assignment = new Map();

  constructor(readonly id: string) {}

  state(): GroupState {
    if (this.members.size === 0) return 'EMPTY';
    for (const m of this.members.values()) {
      if (m.revoking.size > 0) return 'RECONCILING';
      const t = this.target.get(m.memberId) ?? [];
      if (t.length !== m.owned.size) return 'RECONCILING';
      for (const tp of t) if (!m.owned.has(tpKey(tp.topic, tp.partition))) return 'RECONCILING';
    }
    return 'STABLE';
  }
}

const sortTps = (a: TopicPartition, b: TopicPartition): number => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition);

function validateGroupId(groupId: unknown): asserts groupId is string {
  if (typeof groupId !== 'string' || groupId.length === 0) throw new SluiceError('INVALID_REQUEST', 'group id must not be empty');
  if (groupId.length > GROUP_ID_LENGTH_MAX) throw new SluiceError('INVALID_REQUEST', `group id is ${groupId.length} characters; the limit is ${GROUP_ID_LENGTH_MAX}`);
}

export class GroupCoordinator {
  private readonly groups = new Map<string, Group>();
  /** topic -> partition count, for every user topic (refreshed from the broker). */
  private partitionCounts = new Map<string, number>();
  /** Highest high watermark seen per topic\0partition: commits at or below it need no broker round trip. */
  private readonly hwmCache = new Map<string, number>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly now: () => number;
  private readonly retentionMs: number;
  private readonly probe: GroupProbe | null;
  private refreshing: Promise<void> | null = null;
  private closed = false;
  /** Cluster mode: offsets partition -> the leader epoch it was loaded (or is being loaded) at. */
  private readonly loadedEpoch = new Map<number, number>();
  private readonly loadingEpoch = new Map<number, number>();
  /** The replay of each partition being loaded (resolves either way). */
  private readonly loads = new Map<number, Promise<void>>();
  private unsubscribePlacement: (() => void) | null = null;

  private constructor(
    private readonly api: BrokerApi,
    readonly store: OffsetsStore,
    options: GroupCoordinatorOptions,
    private readonly placement: CoordinatorPlacement | null,
  ) {
    this.now = options.now ?? Date.now;
    this.retentionMs = options.offsetsRetentionMs ?? OFFSETS_RETENTION_MS_DEFAULT;
    this.probe = options.probe ?? null;
  }

  /** Opens the offsets store (creating `__consumer_offsets` if needed, replaying it) and starts the timers. */
  static async open(api: BrokerApi, options: GroupCoordinatorOptions = {}): Promise<GroupCoordinator> {
    const internal = (api.internalView?.() ?? api) as BrokerApi & Partial<PlacementSource>;
    const placement = options.placement !== undefined ? options.placement : (internal.coordinatorPlacement?.() ?? null);
    const store = await OffsetsStore.open(api, { ...options, replayAll: placement === null });
    const c = new GroupCoordinator(api, store, options, placement);
    await c.refreshTopics();
    if (placement !== null) {
      c.unsubscribePlacement = placement.onChange(() => c.syncPlacement());
      c.syncPlacement();
    }
    if (options.timers !== false) {
      const every = (ms: number, fn: () => unknown): void => {
        const t = setInterval(() => {
          try {
            const r = fn();
            if (r instanceof Promise) r.catch(() => {});
          } catch {
            // A timer task failing (the broker closing) must not crash the process; the next tick retries.
          }
        }, ms);
        t.unref();
        c.timers.push(t);
      };
      every(GROUP_TICK_MS, () => c.tick());
      if (placement !== null) every(COORDINATOR_PLACEMENT_CHECK_MS, () => c.syncPlacement());
      every(GROUP_METADATA_REFRESH_MS, () => (c.hasMembers() ? c.refreshTopics() : undefined));
      every(OFFSETS_EXPIRY_CHECK_MS, () => c.expireOffsets());
      every(OFFSETS_REFRESH_CHECK_MS, () => (c.closed ? 0 : c.store.refresh()));
      if (c.probe !== null) every(GROUP_LAG_REPORT_MS, () => c.reportLag());
    }
    return c;
  }

  /** Stops the timers and fences every member (their streams end). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    this.unsubscribePlacement?.();
    const err = new SluiceError('SHUTTING_DOWN', 'the broker is shutting down');
    for (const g of this.groups.values()) for (const m of g.members.values()) m.sink?.fenced(err);
    this.groups.clear();
  }

  private checkOpen(): void {
    if (this.closed) throw new SluiceError('SHUTTING_DOWN', 'the group coordinator is shutting down');
  }

  private hasMembers(): boolean {
    for (const g of this.groups.values()) if (g.members.size > 0) return true;
    return false;
  }

  /** The offsets partition whose leader coordinates this group. */
  coordinatorPartition(groupId: string): number {
    return this.store.partitionFor(groupId);
  }

  // --- Placement (cluster mode) ----------------------------------------------------------------

  /** Cluster mode: this node's id; null on one node (no placement). */
  get clusterNodeId(): number | null {
    return this.placement?.nodeId ?? null;
  }

  /** Whether this coordinator serves the offsets partition now (always, on one node). */
  serves(partition: number): boolean {
    return this.placement === null || this.loadedEpoch.has(partition);
  }

  /**
   * Waits for loads under way: of the group's offsets partition, or (no group) of every partition, so
   * a request that arrives while this node is replaying a partition it just gained is served instead
   * of refused. Bounded by the replays themselves (each ends, loaded or failed).
   */
  async settled(groupId?: string): Promise<void> {
    if (this.placement === null) return;
    if (groupId === undefined) {
      await Promise.all(this.loads.values());
      return;
    }
    if (typeof groupId !== 'string') return; // validation reports it
    await this.loads.get(this.coordinatorPartition(groupId));
  }

  /** NOT_COORDINATOR unless this coordinator serves the group now. */
  private requireCoordinator(groupId: string): void {
    const p = this.coordinatorPartition(groupId);
    if (!this.serves(p)) throw this.notCoordinator(p, groupId);
  }

  private notCoordinator(partition: number, groupId: string | null): SluiceError {
    const placement = this.placement!;
    const loading = this.loadingEpoch.has(partition);
    const c = loading ? { nodeId: placement.nodeId, address: '' } : placement.coordinatorOf(partition);
    const info = { coordinator_id: String(c.nodeId), coordinator_address: c.address, coordinator_partition: String(partition) };
    const what = groupId === null ? `offsets partition ${partition}` : `group '${groupId}' (offsets partition ${partition})`;
    const why =
      loading || c.nodeId === placement.nodeId
        ? `node ${placement.nodeId} leads it but is still loading it (an election just happened); retry shortly`
        : c.nodeId === 0
          ? 'no leader of its offsets partition is known yet (an election is under way); retry shortly'
          : `its coordinator is node ${c.nodeId} at ${c.address || '(address unknown)'}`;
    return new SluiceError('NOT_COORDINATOR', `node ${placement.nodeId} does not coordinate ${what}: ${why}`, { info });
  }

  /**
   * Brings the loaded offsets partitions in line with what this node leads: loads partitions it now
   * leads (at a new epoch: reloads), drops those it no longer leads. Idempotent; called on leader
   * changes and every COORDINATOR_PLACEMENT_CHECK_MS.
   */
  syncPlacement(): void {
    if (this.placement === null || this.closed) return;
    const leaderships = this.placement.leaderships();
    for (let p = 0; p < this.store.partitions; p++) {
      const epoch = leaderships[p] ?? null;
      const held = this.loadedEpoch.get(p) ?? this.loadingEpoch.get(p);
      if (held === epoch) continue;
      if (held !== undefined) this.unload(p);
      if (epoch !== null) this.load(p, epoch);
    }
  }

  private load(partition: number, epoch: number): void {
    this.loadingEpoch.set(partition, epoch);
    const loading = this.store.loadPartition(partition).then(
      () => {
        if (this.loadingEpoch.get(partition) !== epoch || this.closed) return; // lost (or reloading) meanwhile
        this.loadingEpoch.delete(partition);
        this.loadedEpoch.set(partition, epoch);
      },
      () => {
        // A failed replay (the replica closing, the leadership lost): the next sync retries it.
        if (this.loadingEpoch.get(partition) === epoch) this.loadingEpoch.delete(partition);
      },
    );
    this.loads.set(partition, loading);
    void loading.then(() => {
      if (this.loads.get(partition) === loading) this.loads.delete(partition);
    });
  }

  /** This node stopped leading the partition: its groups' members are fenced (they rejoin elsewhere). */
  private unload(partition: number): void {
    this.loadedEpoch.delete(partition);
    this.loadingEpoch.delete(partition);
    const err = this.notCoordinator(partition, null);
    for (const [id, g] of this.groups) {
      if (this.coordinatorPartition(id) !== partition) continue;
      this.groups.delete(id);
      for (const m of g.members.values()) {
        const sink = m.sink;
        m.sink = null;
        sink?.fenced(err);
      }
    }
    this.store.forgetPartition(partition, err);
  }

  // --- Metadata ------------------------------------------------------------------------------

  /** Re-reads the topic list; a change in partitions or topics rebalances the groups that care. */
  refreshTopics(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const topics = await this.api.listTopics();
        const next = new Map<string, number>();
        for (const t of topics) if (!t.name.startsWith(INTERNAL_TOPIC_PREFIX)) next.set(t.name, t.partitionCount);
        const changed = next.size !== this.partitionCounts.size || [...next].some(([t, n]) => this.partitionCounts.get(t) !== n);
        this.partitionCounts = next;
        if (changed) for (const g of this.groups.values()) if (g.members.size > 0) this.rebalance(g);
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  private subscribed(m: Member): Set<string> {
    const out = new Set<string>();
    if (m.topics !== null) {
      for (const t of m.topics) if (this.partitionCounts.has(t)) out.add(t);
    } else if (m.pattern !== null) {
      for (const t of this.partitionCounts.keys()) if (m.pattern.test(t)) out.add(t);
    }
    return out;
  }

  // --- Membership ----------------------------------------------------------------------------

  /**
   * Adds a member (or takes back a static member's place). Calls `sink.joined` and then, in the same
   * turn, the assign/revoke messages the change causes.
   */
  async join(input: JoinInput, sink: MemberSink): Promise<JoinResult> {
    this.checkOpen();
    validateGroupId(input.groupId);
    this.requireCoordinator(input.groupId);
    const sessionTimeoutMs = input.sessionTimeoutMs === undefined || input.sessionTimeoutMs === 0 ? SESSION_TIMEOUT_MS_DEFAULT : input.sessionTimeoutMs;
    if (!Number.isInteger(sessionTimeoutMs) || sessionTimeoutMs < SESSION_TIMEOUT_MS_MIN || sessionTimeoutMs > SESSION_TIMEOUT_MS_MAX) {
      throw new SluiceError('INVALID_REQUEST', `session timeout must be from ${SESSION_TIMEOUT_MS_MIN} to ${SESSION_TIMEOUT_MS_MAX} ms, got ${String(input.sessionTimeoutMs)}`);
    }
    const topics = input.topics && input.topics.length > 0 ? [...new Set(input.topics)] : null;
    const patternSource = input.topicPattern && input.topicPattern.length > 0 ? input.topicPattern : null;
    if ((topics === null) === (patternSource === null)) {
      throw new SluiceError('INVALID_REQUEST', 'a join names either a list of topics or a topic pattern (exactly one)');
    }
    let pattern: RegExp | null = null;
    if (patternSource !== null) {
      try {
        pattern = new RegExp(`^(?:${patternSource})$`);
      } catch (err) {
        throw new SluiceError('INVALID_REQUEST', `topic pattern '${patternSource}' is not a valid regular expression: ${(err as Error).message}`);
      }
    }
    const instanceId = input.instanceId === undefined || input.instanceId === null || input.instanceId === '' ? null : input.instanceId;
    if (instanceId !== null && instanceId.length > GROUP_ID_LENGTH_MAX) throw new SluiceError('INVALID_REQUEST', `instance id is longer than ${GROUP_ID_LENGTH_MAX} characters`);
    if (topics !== null) {
      await this.refreshTopics();
      const missing = topics.filter((t) => !this.partitionCounts.has(t));
      if (missing.length > 0) throw new SluiceError('UNKNOWN_TOPIC', `cannot join group '${input.groupId}': topic${missing.length > 1 ? 's' : ''} '${missing.join("', '")}' do${missing.length > 1 ? '' : 'es'} not exist`);
    }
    this.checkOpen();
    this.requireCoordinator(input.groupId); // the leadership may have moved while topics were read

    let group = this.groups.get(input.groupId);
    if (!group) this.groups.set(input.groupId, (group = new Group(input.groupId)));

    if (instanceId !== null) {
      const existingId = group.byInstance.get(instanceId);
      const existing = existingId === undefined ? undefined : group.members.get(existingId);
      if (existing) return this.rejoinStatic(group, existing, topics, pattern, sessionTimeoutMs, sink);
    }
    if (group.members.size >= GROUP_MEMBERS_MAX) throw new SluiceError('QUEUE_FULL', `group '${group.id}' has ${GROUP_MEMBERS_MAX} members, the most allowed`, { retriable: false });
    const member: Member = {
      memberId: randomUUID(),
      instanceId,
      topics,
      pattern,
      sessionTimeoutMs,
      lastSeenMs: this.now(),
      sink,
      generation: group.generation,
      owned: new Map(),
      revoking: new Map(),
    };
    group.members.set(member.memberId, member);
    if (instanceId !== null) group.byInstance.set(instanceId, member.memberId);
    const result: JoinResult = { memberId: member.memberId, generation: group.generation, sessionTimeoutMs, rejoined: false };
    sink.joined(result);
    this.rebalance(group);
    return { ...result, generation: member.generation };
  }

  /**
   * A static member is back. Same subscription: it takes the same member id and owned partitions, with
   * no rebalance. An older stream still open for the same instance is fenced first.
   */
  private rejoinStatic(group: Group, m: Member, topics: string[] | null, pattern: RegExp | null, sessionTimeoutMs: number, sink: MemberSink): JoinResult {
    const old = m.sink;
    m.sink = null;
    old?.fenced(new SluiceError('UNKNOWN_MEMBER', `member ${m.memberId} was replaced by a newer stream with the same instance id`));
    const sameSubscription = String(m.topics) === String(topics) && String(m.pattern) === String(pattern);
    m.topics = topics;
    m.pattern = pattern;
    m.sessionTimeoutMs = sessionTimeoutMs;
    m.lastSeenMs = this.now();
    m.sink = sink;
    // Revokes the previous stream never acknowledged end here: their new owners start from the last commit.
    const pendingRevokes = m.revoking.size > 0;
    for (const [k] of m.revoking) group.holder.delete(k);
    m.revoking.clear();
    const result: JoinResult = { memberId: m.memberId, generation: m.generation, sessionTimeoutMs, rejoined: true };
    sink.joined(result);
    const owned = [...m.owned.values()].map((o) => o.tp).sort(sortTps);
    if (owned.length > 0) sink.assign(m.generation, owned.map((tp) => this.withCommitted(group.id, tp)));
    if (!sameSubscription) this.rebalance(group);
    else if (pendingRevokes) this.reconcile(group);
    return result;
  }

  /** Any message from a member keeps its session alive. */
  touch(groupId: string, memberId: string): void {
    const m = this.groups.get(groupId)?.members.get(memberId);
    if (m) m.lastSeenMs = this.now();
  }

  /**
   * The member's stream ended. A dynamic member leaves at once; a static one stays for its session
   * timeout unless `leave` is true (it said goodbye).
   */
  disconnect(groupId: string, memberId: string, sink: MemberSink, leave: boolean): void {
    const group = this.groups.get(groupId);
    const m = group?.members.get(memberId);
    if (!group || !m || m.sink !== sink) return; // already replaced or removed
    if (m.instanceId !== null && !leave) {
      m.sink = null;
      return;
    }
    this.remove(group, m);
  }

  private remove(group: Group, m: Member, reason?: Error): void {
    group.members.delete(m.memberId);
    if (m.instanceId !== null && group.byInstance.get(m.instanceId) === m.memberId) group.byInstance.delete(m.instanceId);
    for (const k of m.owned.keys()) group.holder.delete(k);
    for (const k of m.revoking.keys()) group.holder.delete(k);
    group.target.delete(m.memberId);
    const sink = m.sink;
    m.sink = null;
    if (reason) sink?.fenced(reason);
    if (group.members.size > 0) this.rebalance(group);
    // An empty group lives on in its committed offsets (the table); its in-memory state can go.
    else this.groups.delete(group.id);
  }

  /** Session expiry and forced revokes. Runs every GROUP_TICK_MS. */
  tick(): void {
    const now = this.now();
    for (const group of this.groups.values()) {
      let changed = false;
      for (const m of [...group.members.values()]) {
        if (now - m.lastSeenMs > m.sessionTimeoutMs) {
          this.remove(group, m, new SluiceError('UNKNOWN_MEMBER', `member ${m.memberId} sent nothing for its session timeout (${m.sessionTimeoutMs} ms) and was removed from group '${group.id}'`));
          continue;
        }
        for (const [k, r] of m.revoking) {
          if (now < r.deadlineMs) continue;
          m.revoking.delete(k);
          group.holder.delete(k);
          changed = true;
        }
      }
      if (changed) this.reconcile(group);
    }
  }

  // --- Assignment ----------------------------------------------------------------------------

  /** Recomputes the target (sticky from the previous target) and reconciles. */
  private rebalance(group: Group): void {
    const members: AssignorMember[] = [];
    for (const m of group.members.values()) {
      members.push({ memberId: m.memberId, topics: this.subscribed(m), current: group.target.get(m.memberId) ?? [...m.owned.values()].map((o) => o.tp) });
    }
    const counts = new Map<string, number>();
    for (const a of members) for (const t of a.topics) counts.set(t, this.partitionCounts.get(t)!);
    const next = assign(members, counts);
    if (!sameAssignment(group.target, next)) group.generation++;
    group.target = next;
    this.reconcile(group);
  }

  /** Revokes what members hold but should not; assigns free partitions to their target owners. */
  private reconcile(group: Group): void {
    const now = this.now();
    const wanted = new Map<string, string>();
    for (const [memberId, list] of group.target) for (const tp of list) wanted.set(tpKey(tp.topic, tp.partition), memberId);

    for (const m of group.members.values()) {
      const revoke: TopicPartition[] = [];
      for (const [k, o] of m.owned) {
        if (wanted.get(k) === m.memberId) continue;
        m.owned.delete(k);
        if (m.sink === null) {
          // A disconnected static member cannot acknowledge: its partitions are free at once.
          group.holder.delete(k);
          continue;
        }
        m.revoking.set(k, { tp: o.tp, sinceGeneration: o.sinceGeneration, deadlineMs: now + m.sessionTimeoutMs });
        revoke.push(o.tp);
      }
      if (revoke.length > 0) {
        m.generation = group.generation;
        m.sink!.revoke(group.generation, revoke.sort(sortTps));
      }
    }

    for (const m of group.members.values()) {
      const add: AssignedPartition[] = [];
      for (const tp of group.target.get(m.memberId) ?? []) {
        const k = tpKey(tp.topic, tp.partition);
        if (group.holder.has(k)) continue;
        group.holder.set(k, m.memberId);
        m.owned.set(k, { tp, sinceGeneration: group.generation });
        add.push(this.withCommitted(group.id, tp));
      }
      if (add.length > 0) {
        m.generation = group.generation;
        m.sink?.assign(group.generation, add);
      }
    }
  }

  private withCommitted(groupId: string, tp: TopicPartition): AssignedPartition {
    const c = this.store.committed(groupId, tp.topic, tp.partition);
    return { topic: tp.topic, partition: tp.partition, committed: c === undefined ? null : c.offset };
  }

  /** The member is done with revoked partitions (after its final commit): they go to their new owners. */
  ackRevoke(groupId: string, memberId: string, generation: number, partitions: TopicPartition[]): void {
    this.checkOpen();
    this.requireCoordinator(groupId);
    const group = this.groups.get(groupId);
    const m = group?.members.get(memberId);
    if (!group || !m) throw new SluiceError('UNKNOWN_MEMBER', `member ${memberId} is not in group '${groupId}'`);
    m.lastSeenMs = this.now();
    if (generation > group.generation) throw new SluiceError('STALE_GENERATION', `revoke acknowledged for generation ${generation}, but group '${groupId}' is at ${group.generation}`);
    let freed = false;
    for (const tp of partitions) {
      const k = tpKey(tp.topic, tp.partition);
      if (!m.revoking.delete(k)) continue; // already forced, or a duplicate ack: harmless
      if (group.holder.get(k) === m.memberId) group.holder.delete(k);
      freed = true;
    }
    if (freed) this.reconcile(group);
  }

  // --- Offsets -------------------------------------------------------------------------------

  /**
   * Commits offsets of a member (memberId set) or, standalone, of a group with no members. Checks:
   * the member exists, owns (or is revoking) each partition, the generation is not older than its
   * ownership, and no offset is beyond the high watermark. Durable before it resolves.
   */
  async commit(groupId: string, memberId: string | null, generation: number, offsets: CommitOffset[]): Promise<void> {
    this.checkOpen();
    validateGroupId(groupId);
    this.requireCoordinator(groupId);
    if (offsets.length > COMMIT_OFFSETS_MAX) throw new SluiceError('INVALID_REQUEST', `a commit carries at most ${COMMIT_OFFSETS_MAX} offsets, got ${offsets.length}`);
    const group = this.groups.get(groupId);
    for (const o of offsets) {
      if (!Number.isSafeInteger(o.offset) || o.offset < 0) throw new SluiceError('INVALID_OFFSET', `offset must be a non-negative integer, got ${String(o.offset)} for ${o.topic}/${o.partition}`);
      if (o.metadata !== undefined && Buffer.byteLength(o.metadata) > COMMIT_METADATA_BYTES_MAX) {
        throw new SluiceError('INVALID_REQUEST', `commit metadata is limited to ${COMMIT_METADATA_BYTES_MAX} bytes`);
      }
    }
    if (memberId === null || memberId === '') {
      if (group && group.members.size > 0) {
        throw new SluiceError('UNKNOWN_MEMBER', `group '${groupId}' has ${group.members.size} members: commit through a member (member id and generation), or wait until the group is empty`);
      }
    } else {
      const m = group?.members.get(memberId);
      if (!group || !m) throw new SluiceError('UNKNOWN_MEMBER', `member ${memberId} is not in group '${groupId}' (it left or its session expired); rejoin`);
      m.lastSeenMs = this.now();
      if (generation > m.generation) throw new SluiceError('STALE_GENERATION', `commit for generation ${generation}, but member ${memberId} is at generation ${m.generation}`);
      for (const o of offsets) {
        const k = tpKey(o.topic, o.partition);
        const held = m.owned.get(k) ?? m.revoking.get(k);
        if (!held) throw new SluiceError('PARTITION_NOT_ASSIGNED', `partition ${o.topic}/${o.partition} is not assigned to member ${memberId} of group '${groupId}'`);
        if (generation < held.sinceGeneration) {
          throw new SluiceError('STALE_GENERATION', `commit for ${o.topic}/${o.partition} carries generation ${generation}, older than the assignment of that partition (generation ${held.sinceGeneration})`);
        }
      }
    }
    await this.checkHighWatermarks(offsets);
    // The leadership may have moved during the await: a fenced member must not overwrite what its
    // partitions' new owners commit at the new coordinator.
    this.requireCoordinator(groupId);
    if (memberId !== null && memberId !== '' && this.groups.get(groupId)?.members.get(memberId) !== group?.members.get(memberId)) {
      throw new SluiceError('UNKNOWN_MEMBER', `member ${memberId} left group '${groupId}' while its commit was checked; rejoin`);
    }
    const writes: OffsetWrite[] = offsets.map((o) => ({ topic: o.topic, partition: o.partition, value: { offset: o.offset, metadata: o.metadata ?? '' } }));
    await this.store.write(groupId, writes);
  }

  /** A delivery loop reports the high watermarks it sees, so most commits check against memory. */
  noteHighWatermark(topic: string, partition: number, hwm: number): void {
    const k = tpKey(topic, partition);
    if ((this.hwmCache.get(k) ?? -1) < hwm) this.hwmCache.set(k, hwm);
  }

  private async checkHighWatermarks(offsets: CommitOffset[]): Promise<void> {
    const unsure = offsets.filter((o) => o.offset > (this.hwmCache.get(tpKey(o.topic, o.partition)) ?? -1));
    await Promise.all(
      unsure.map(async (o) => {
        const latest = await this.api.listOffsets(o.topic, o.partition, { kind: 'latest' });
        this.noteHighWatermark(o.topic, o.partition, latest.offset);
        if (o.offset > latest.offset) {
          throw new SluiceError('OFFSET_OUT_OF_RANGE', `cannot commit offset ${o.offset} for ${o.topic}/${o.partition}: the high watermark is ${latest.offset}`);
        }
      }),
    );
  }

  fetchOffsets(groupId: string, topics?: string[]): CommittedOffsetEntry[] {
    this.checkOpen();
    validateGroupId(groupId);
    this.requireCoordinator(groupId);
    const all = this.store.stm.list(groupId);
    if (!topics || topics.length === 0) return all;
    const want = new Set(topics);
    return all.filter((e) => want.has(e.topic));
  }

  /** Offsets of groups with no members expire `offsets.retention.ms` after their last commit. */
  async expireOffsets(): Promise<string[]> {
    if (this.retentionMs < 0 || this.closed) return [];
    const now = this.now();
    const expired: string[] = [];
    for (const groupId of this.store.stm.groupIds()) {
      const g = this.groups.get(groupId);
      if (g && g.members.size > 0) continue;
      if (now - this.store.stm.lastCommitMs(groupId) <= this.retentionMs) continue;
      await this.deleteOffsets(groupId);
      if (!this.groups.get(groupId)?.members.size) this.groups.delete(groupId);
      this.probe?.groupDeleted(groupId);
      expired.push(groupId);
    }
    return expired;
  }

  private async deleteOffsets(groupId: string): Promise<void> {
    const writes: OffsetWrite[] = this.store.stm.list(groupId).map((e) => ({ topic: e.topic, partition: e.partition, value: null }));
    await this.store.write(groupId, writes);
  }

  // --- Admin ---------------------------------------------------------------------------------

  listGroups(): GroupSummary[] {
    this.checkOpen();
    const ids = new Set<string>([...this.store.stm.groupIds()]);
    for (const [id, g] of this.groups) if (g.members.size > 0) ids.add(id);
    return [...ids].sort().map((id) => {
      const g = this.groups.get(id);
      return { groupId: id, state: g ? g.state() : 'EMPTY', members: g ? g.members.size : 0 };
    });
  }

  private knownGroup(groupId: string): Group | undefined {
    validateGroupId(groupId);
    this.requireCoordinator(groupId);
    const g = this.groups.get(groupId);
    if ((!g || g.members.size === 0) && !this.store.stm.has(groupId)) throw new SluiceError('UNKNOWN_GROUP', `group '${groupId}' does not exist (no members and no committed offsets)`);
    return g;
  }

  async describeGroup(groupId: string): Promise<GroupDescription> {
    this.checkOpen();
    const g = this.knownGroup(groupId);
    const members: MemberDescription[] = [...(g?.members.values() ?? [])].map((m) => ({
      memberId: m.memberId,
      instanceId: m.instanceId,
      generation: m.generation,
      assigned: [...m.owned.values()].map((o) => o.tp).sort(sortTps),
      revoking: [...m.revoking.values()].map((r) => r.tp).sort(sortTps),
      connected: m.sink !== null,
      topics: m.topics ?? [...this.subscribed(m)].sort(),
    }));
    const owner = new Map<string, string>(g ? [...g.holder] : []);
    const committed = new Map(this.store.stm.list(groupId).map((e) => [tpKey(e.topic, e.partition), e]));
    const topics = new Set<string>();
    for (const e of committed.values()) topics.add(e.topic);
    for (const list of g?.target.values() ?? []) for (const tp of list) topics.add(tp.topic);
    const partitions: PartitionLag[] = [];
    for (const topic of [...topics].sort()) {
      let described;
      try {
        described = await this.api.describeTopic(topic);
      } catch (err) {
        if (isSluiceError(err, 'UNKNOWN_TOPIC')) continue; // deleted since: its offsets are orphans
        throw err;
      }
      for (const p of described.partitions) {
        const k = tpKey(topic, p.partition);
        const c = committed.get(k);
        const hasOwner = owner.get(k);
        const from = c === undefined ? p.logStartOffset : c.offset;
        partitions.push({
          topic,
          partition: p.partition,
          committedOffset: c === undefined ? -1 : c.offset,
          highWatermark: p.highWatermark,
          lag: Math.max(0, p.highWatermark - from),
          owner: hasOwner ?? null,
        });
      }
    }
    return {
      groupId,
      state: g ? g.state() : 'EMPTY',
      generation: g?.generation ?? 0,
      members,
      partitions,
      coordinatorPartition: this.coordinatorPartition(groupId),
    };
  }

  async deleteGroup(groupId: string): Promise<void> {
    this.checkOpen();
    const g = this.knownGroup(groupId);
    if (g && g.members.size > 0) throw new SluiceError('GROUP_NOT_EMPTY', `group '${groupId}' has ${g.members.size} members; stop them before deleting the group`);
    await this.deleteOffsets(groupId);
    this.groups.delete(groupId);
    this.probe?.groupDeleted(groupId);
  }

  /** Reports every group's lag per topic (high watermark minus committed offset, summed over partitions). */
  async reportLag(): Promise<void> {
    if (this.probe === null || this.closed) return;
    const byTopic = new Map<string, { groupId: string; entries: CommittedOffsetEntry[] }[]>();
    for (const groupId of this.store.stm.groupIds()) {
      const perTopic = new Map<string, CommittedOffsetEntry[]>();
      for (const e of this.store.stm.list(groupId)) {
        let l = perTopic.get(e.topic);
        if (!l) perTopic.set(e.topic, (l = []));
        l.push(e);
      }
      for (const [topic, entries] of perTopic) {
        let l = byTopic.get(topic);
        if (!l) byTopic.set(topic, (l = []));
        l.push({ groupId, entries });
      }
    }
    for (const [topic, groups] of byTopic) {
      let hwm: Map<number, number>;
      try {
        hwm = new Map((await this.api.describeTopic(topic)).partitions.map((p) => [p.partition, p.highWatermark]));
      } catch {
        continue; // a deleted topic: its offsets are orphans until the group expires
      }
      for (const g of groups) {
        let lag = 0;
        for (const e of g.entries) lag += Math.max(0, (hwm.get(e.partition) ?? e.offset) - e.offset);
        this.probe.consumerGroupLag(g.groupId, topic, lag);
      }
    }
  }

  /**
   * Plans (and with `execute`, applies) an offset reset. Only while the group has no members: a member
   * would keep reading from where it is, and its next commit would undo the reset.
   */
  async resetOffsets(groupId: string, topics: string[], spec: ResetSpec, execute: boolean): Promise<ResetPlanEntry[]> {
    this.checkOpen();
    validateGroupId(groupId);
    this.requireCoordinator(groupId);
    const g = this.groups.get(groupId);
    if (g && g.members.size > 0) {
      throw new SluiceError('GROUP_NOT_EMPTY', `group '${groupId}' has ${g.members.size} active members; offsets can be reset only while the group has no members (stop its consumers first)`);
    }
    const committed = this.store.stm.list(groupId);
    let names = topics.length > 0 ? [...new Set(topics)] : [...new Set(committed.map((e) => e.topic))];
    if (names.length === 0) throw new SluiceError('UNKNOWN_GROUP', `group '${groupId}' has no committed offsets; name the topics to reset`);
    names = names.sort();
    const plan: ResetPlanEntry[] = [];
    for (const topic of names) {
      const described = await this.api.describeTopic(topic);
      for (const p of described.partitions) {
        const current = this.store.committed(groupId, topic, p.partition);
        let target: number;
        if (spec.kind === 'earliest') target = p.logStartOffset;
        else if (spec.kind === 'latest') target = p.highWatermark;
        else if (spec.kind === 'offset') {
          if (!Number.isSafeInteger(spec.offset) || spec.offset < 0) throw new SluiceError('INVALID_OFFSET', `offset must be a non-negative integer, got ${String(spec.offset)}`);
          if (spec.offset > p.highWatermark || spec.offset < p.logStartOffset) {
            throw new SluiceError('OFFSET_OUT_OF_RANGE', `offset ${spec.offset} is outside ${topic}/${p.partition}'s range ${p.logStartOffset}..${p.highWatermark}`);
          }
          target = spec.offset;
        } else {
          const r = await this.api.listOffsets(topic, p.partition, { kind: 'timestamp', timestampMs: spec.timestampMs });
          target = r.offset < 0 ? p.highWatermark : r.offset;
        }
        plan.push({ topic, partition: p.partition, currentOffset: current === undefined ? -1 : current.offset, newOffset: target });
      }
    }
    if (execute) {
      // Members may have joined while we read the topics.
      const again = this.groups.get(groupId);
      if (again && again.members.size > 0) throw new SluiceError('GROUP_NOT_EMPTY', `group '${groupId}' gained members during the reset; nothing was changed`);
      this.requireCoordinator(groupId);
      await this.store.write(groupId, plan.map((e) => ({ topic: e.topic, partition: e.partition, value: { offset: e.newOffset, metadata: '' } })));
    }
    return plan;
  }

  /** For tests and the bench: the members' current holdings. */
  snapshot(groupId: string): { generation: number; state: GroupState; owned: Map<string, TopicPartition[]>; target: Assignment } | null {
    const g = this.groups.get(groupId);
    if (!g) return null;
    const owned = new Map<string, TopicPartition[]>();
    for (const m of g.members.values()) owned.set(m.memberId, [...m.owned.values()].map((o) => o.tp).sort(sortTps));
    return { generation: g.generation, state: g.state(), owned, target: g.target };
  }
}

function sameAssignment(a: Assignment, b: Assignment): boolean {
  if (a.size !== b.size) return false;
  for (const [m, list] of b) {
    const other = a.get(m);
    if (!other || other.length !== list.length) return false;
    for (let i = 0; i < list.length; i++) if (other[i].topic !== list[i].topic || other[i].partition !== list[i].partition) return false;
  }
  return true;
}
