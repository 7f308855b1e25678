/**
 * Goal: the controller group (group 0) quiesces when idle (ControllerOptions.quiesce, docs/controller.md
 * "Timing and quiescence"): an idle group of three voters and a learner sends no Raft message at all, a
 * metadata write wakes it, commits on every member and the group quiets again; gossip's view of a
 * member wakes it, so a quiesced group whose leader's node dies elects a new leader once gossip
 * suspects that node, a false suspicion deposes nobody, a paused leader that comes back rejoins as a
 * follower; and a leader whose controller stopped while gossip still holds its node alive is replaced
 * through the quiesced voters' periodic probe.
 * Method: real `Controller`s with real data dirs over the in-memory network (memory-net.ts), which
 * counts every message sent; gossip is a scripted `PeerDirectory` (`ScriptedGossip`) whose changes
 * reach every node at once, as SWIM's would within a period. Waits are on events and a short probe,
 * each bounded in time; the only fixed waits are the idle windows being observed.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSnapshot, type Controller, type ControllerOptions } from '../../src/controller/index.js';
import type { NodeInfo, PeerDirectory } from '../../src/cluster/types.js';
import type { NodeId } from '../../src/model/index.js';
import { isSluiceError } from '../../src/errors.js';
import { MemoryNet, TEST_TICK_MS, agreedLeader, closeNode, openNode, tempDir, waitFor, type TestNode } from './memory-net.js';

const VOTERS = [1, 2, 3] as NodeId[];
const ELECTION_TICKS = 10; // openNode's
/** The longest randomized election timeout of the test timing. */
const ELECTION_MAX_MS = 2 * ELECTION_TICKS * TEST_TICK_MS;
/** An idle window long enough for any election timeout and many heartbeat intervals. */
const IDLE_WINDOW_MS = 3_000;
/** Slack for timers running late on a loaded 2-core machine. */
const SLACK_MS = 1_500;
/** How long the network must have been silent, every member quiesced, before an idle window starts. */
const SETTLED_MS = 25 * TEST_TICK_MS;

/** Gossip as the controllers see it: one table, every change delivered to every node's listeners. */
class ScriptedGossip {
  private readonly table = new Map<NodeId, NodeInfo>();
  private readonly listeners = new Set<(n: NodeInfo) => void>();

  constructor(ids: readonly number[]) {
    for (const id of ids) this.table.set(id as NodeId, { id: id as NodeId, uuid: `uuid-${id}-a`, address: `127.0.0.${id}:7070`, rack: '', shards: 2, state: 'alive', incarnation: 0 });
  }

  directory(self: NodeId): PeerDirectory {
    return {
      self: this.table.get(self)!,
      members: () => [...this.table.values()],
      get: (id) => this.table.get(id),
      onChange: (l) => {
        this.listeners.add(l);
        return () => this.listeners.delete(l);
      },
    };
  }

  set(id: NodeId, state: NodeInfo['state']): void {
    const cur = this.table.get(id)!;
    const next = { ...cur, state, incarnation: state === 'alive' ? cur.incarnation + 1 : cur.incarnation };
    this.table.set(id, next);
    for (const l of this.listeners) l(next);
  }
}

interface Cluster {
  net: MemoryNet;
  gossip: ScriptedGossip;
  nodes: TestNode[];
}

let clusters: Cluster[] = [];

afterEach(async () => {
  for (const { net, nodes } of clusters) {
    for (const n of nodes) await closeNode(net, n);
    for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
  }
  clusters = [];
});

function quiesceOptions(gossip: ScriptedGossip, id: NodeId, extra: Partial<ControllerOptions>): Partial<ControllerOptions> {
  return { peers: gossip.directory(id), quiesce: true, ...extra };
}

/** Three voters (and `learners` more nodes, learners of group 0), all quiescing, registered. */
async function startCluster(learners = 0, extra: Partial<ControllerOptions> = {}): Promise<Cluster> {
  const ids = [...VOTERS, ...Array.from({ length: learners }, (_, i) => VOTERS.length + 1 + i)] as NodeId[];
  const net = new MemoryNet();
  const gossip = new ScriptedGossip(ids);
  const nodes: TestNode[] = ids.map((id) => ({ id, dir: tempDir(`q${id}`), uuid: `uuid-${id}-a`, controller: null }));
  const c: Cluster = { net, gossip, nodes };
  clusters.push(c);
  for (const n of nodes) await openNode(net, n, VOTERS, quiesceOptions(gossip, n.id, extra));
  const cs = running(c);
  await waitFor(cs, () => agreedLeader(cs.filter((x) => VOTERS.includes(x.nodeId))) !== 0, 'one leader that every voter follows');
  await Promise.all(cs.map((x) => x.registered));
  for (const x of cs) expect(x.registrationError).toBeNull();
  await waitFor(cs, () => cs.every((x) => x.state.nodes().length === ids.length && x.membership.learners.length === learners), 'every node registered, the learners admitted');
  return c;
}

function running(c: Cluster): Controller[] {
  return c.nodes.flatMap((n) => (n.controller ? [n.controller] : []));
}

function leaderOf(cs: readonly Controller[]): Controller {
  const l = cs.find((x) => x.isLeader);
  expect(l).toBeDefined();
  return l!;
}

async function allQuiesced(cs: readonly Controller[], what = 'every member quiesced'): Promise<void> {
  await waitFor(cs, () => cs.every((x) => x.quiesced), what, 10_000);
}

/**
 * Every member quiesced and nothing sent for SETTLED_MS. Members can all report quiesced a moment
 * before the last round settles: the append answers to the commit of the last write may reach the
 * leader after its Quiesce (a follower answers once its Ready is persisted), wake it, and it sends
 * one more Quiesce round (six messages with three others) before it is silent.
 */
async function settledQuiet(c: Cluster, cs: readonly Controller[]): Promise<void> {
  let seen = -1;
  let since = Date.now();
  await waitFor(
    cs,
    () => {
      if (c.net.sent !== seen) {
        seen = c.net.sent;
        since = Date.now();
      }
      return cs.every((x) => x.quiesced) && Date.now() - since >= SETTLED_MS;
    },
    `every member quiesced and nothing sent for ${SETTLED_MS} ms`,
    10_000,
  );
}

async function sameMetadata(cs: readonly Controller[]): Promise<void> {
  const image = (x: Controller): Buffer => Buffer.from(encodeSnapshot(x.state));
  await waitFor(cs, () => cs.every((x) => x.appliedIndex === cs[0].appliedIndex && image(x).equals(image(cs[0]))), 'every member applied the same metadata');
}

const idle = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A create retried while the group is between leaders (its request deadline bounds each try). */
async function createEventually(c: Controller, name: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await c.createTopic(name, 1, 3);
      return;
    } catch (err) {
      if (Date.now() > deadline || !(isSluiceError(err) && err.retriable)) throw err;
    }
  }
}

describe('quiescence of the controller group', () => {
  it('an idle group of 3 voters and a learner goes silent; a create wakes it, commits on every member, and it quiets again', async () => {
    const c = await startCluster(1, { quiesceProbeMs: 60_000 });
    const cs = running(c);
    await settledQuiet(c, cs);
    const leader = leaderOf(cs);
    const term = leader.term;
    const before = c.net.sent;
    await idle(IDLE_WINDOW_MS);
    expect(c.net.sent - before).toBe(0);
    for (const x of cs) {
      expect(x.quiesced).toBe(true);
      expect(x.leaderId).toBe(leader.nodeId);
      expect(x.term).toBe(term);
    }

    // From a follower: forwarded to the leader, whose proposal wakes the group.
    const follower = cs.find((x) => x !== leader && VOTERS.includes(x.nodeId))!;
    await follower.createTopic('woke', 3, 3);
    await waitFor(cs, () => cs.every((x) => x.state.topic('woke') !== undefined), 'every member applied the create');
    expect(c.net.sent).toBeGreaterThan(before);
    await settledQuiet(c, cs);
    await sameMetadata(cs);
    const after = c.net.sent;
    await idle(IDLE_WINDOW_MS / 2);
    expect(c.net.sent - after).toBe(0);
    expect(leader.isLeader).toBe(true);
    expect(leader.term).toBe(term);
  });

  it('a quiesced group whose leader node dies elects a new leader once gossip suspects it, and metadata writes resume', async () => {
    const c = await startCluster(0, { quiesceProbeMs: 60_000 });
    const cs = running(c);
    await allQuiesced(cs);
    const dead = leaderOf(cs);
    const rest = cs.filter((x) => x !== dead);
    c.net.setDown(dead.nodeId, true);
    // Without word from gossip a quiesced follower never campaigns (which is why quiescence needs it).
    await idle(2 * ELECTION_MAX_MS);
    for (const x of rest) {
      expect(x.leaderId).toBe(dead.nodeId);
      expect(x.quiesced).toBe(true);
    }
    const detected = Date.now();
    c.gossip.set(dead.nodeId, 'suspect');
    await waitFor(rest, () => agreedLeader(rest) !== 0, 'a new leader among the survivors', 10_000);
    const electedMs = Date.now() - detected;
    // Woken with half the lease spent: a campaign 0.5 to 1.5 election timeouts after the suspicion.
    expect(electedMs).toBeLessThan(2 * ELECTION_MAX_MS + SLACK_MS);
    process.stderr.write(`controller quiesce: new leader ${electedMs} ms after gossip suspected the dead one\n`);
    // Placement counts only nodes gossip holds alive or suspect.
    c.gossip.set(dead.nodeId, 'dead');
    const next = leaderOf(rest);
    await next.createTopic('after-failover', 1, 2);
    await waitFor(rest, () => rest.every((x) => x.state.topic('after-failover') !== undefined), 'the survivors applied the create');

    // The old leader's node comes back: it follows the new leader and catches up; all quiesce again.
    c.net.setDown(dead.nodeId, false);
    c.gossip.set(dead.nodeId, 'alive');
    await waitFor(cs, () => agreedLeader(cs) === next.nodeId && dead.state.topic('after-failover') !== undefined, 'the old leader follows and caught up');
    await allQuiesced(cs, 'the group quiesced again');
    await sameMetadata(cs);
  });

  it('a false suspicion of a live leader deposes nobody, and the group quiets again', async () => {
    const c = await startCluster(0, { quiesceProbeMs: 60_000 });
    const cs = running(c);
    await allQuiesced(cs);
    const leader = leaderOf(cs);
    const term = leader.term;
    const woken = c.net.sent;
    // Gossip suspects the leader's node, though it runs: its followers wake with half their lease
    // spent and tell it, and it heartbeats them long before they would campaign.
    c.gossip.set(leader.nodeId, 'suspect');
    await idle(2 * ELECTION_MAX_MS);
    expect(c.net.sent).toBeGreaterThan(woken);
    c.gossip.set(leader.nodeId, 'alive');
    await allQuiesced(cs, 'the group quiesced again');
    for (const x of cs) {
      expect(x.leaderId).toBe(leader.nodeId);
      expect(x.term).toBe(term);
    }
  });

  it('a paused leader (suspected, then alive again) rejoins as a follower; writes go on and the group quiets again', async () => {
    const c = await startCluster(0, { quiesceProbeMs: 60_000 });
    const cs = running(c);
    await allQuiesced(cs);
    const paused = leaderOf(cs);
    const rest = cs.filter((x) => x !== paused);
    c.net.setDown(paused.nodeId, true);
    c.gossip.set(paused.nodeId, 'suspect');
    await waitFor(rest, () => agreedLeader(rest) !== 0, 'a new leader among the others', 10_000);
    // The pause ends and gossip clears the suspicion: the old leader learns the new term from its
    // first message and steps down; nothing it did while cut off was committed.
    c.net.setDown(paused.nodeId, false);
    c.gossip.set(paused.nodeId, 'alive');
    await waitFor(cs, () => agreedLeader(cs) !== 0, 'one leader that all three follow');
    await createEventually(paused, 'after-pause');
    await waitFor(cs, () => cs.every((x) => x.state.topic('after-pause') !== undefined), 'every member applied the create');
    await allQuiesced(cs, 'the group quiesced again');
    await sameMetadata(cs);
  });

  it('a leader whose controller stopped while gossip holds its node alive is replaced after the quiesced probe', async () => {
    const probeMs = 500;
    const c = await startCluster(0, { quiesceProbeMs: probeMs });
    const cs = running(c);
    await allQuiesced(cs);
    const stopped = leaderOf(cs);
    const rest = cs.filter((x) => x !== stopped);
    const since = Date.now();
    // Its process (and gossip) would live on; only the controller stops (as on a metadata-log failure).
    await closeNode(c.net, c.nodes.find((n) => n.id === stopped.nodeId)!);
    await waitFor(rest, () => agreedLeader(rest) !== 0, 'a new leader among the others', 10_000);
    // The probe, then an election timeout; a voter woken by the other's pre-vote starts its own clock.
    const replacedMs = Date.now() - since;
    process.stderr.write(`controller quiesce: leader with a stopped controller replaced after ${replacedMs} ms (probe ${probeMs} ms)\n`);
    expect(replacedMs).toBeLessThan(probeMs + 3 * ELECTION_MAX_MS + SLACK_MS);
    await createEventually(rest[0], 'after-stop');
    await waitFor(rest, () => rest.every((x) => x.state.topic('after-stop') !== undefined), 'the others applied the create');
  });

  it('is refused without a failure detector, and off by default', async () => {
    const net = new MemoryNet();
    const n: TestNode = { id: 1 as NodeId, dir: tempDir('q-refused'), uuid: 'uuid-1-a', controller: null };
    clusters.push({ net, gossip: new ScriptedGossip([1]), nodes: [n] });
    await expect(openNode(net, n, VOTERS, { quiesce: true })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });

    const plain = new MemoryNet();
    const nodes: TestNode[] = VOTERS.map((id) => ({ id, dir: tempDir(`q-off${id}`), uuid: `uuid-${id}-a`, controller: null }));
    clusters.push({ net: plain, gossip: new ScriptedGossip(VOTERS), nodes });
    for (const x of nodes) await openNode(plain, x, VOTERS);
    const off = nodes.map((x) => x.controller!);
    await waitFor(off, () => agreedLeader(off) !== 0, 'a leader without quiescence');
    const before = plain.sent;
    await idle(ELECTION_MAX_MS);
    expect(plain.sent - before).toBeGreaterThan(0);
    for (const x of off) expect(x.quiesced).toBe(false);
  });
});
