/**
 * Goal (issue 11 §1): a controller voter whose log is empty (a wiped disk, or a first start) never
 * takes part in the controller group as the voter it may once have been: it founds the group only when
 * a majority of the voters hold no metadata records, and otherwise joins as a learner, is caught up and
 * promoted back. The hazard it closes: a wiped voter that re-founds with an empty log grants its vote
 * to a stale candidate, and records a majority (with its earlier life) had committed are lost.
 * Method: three real `Controller`s with real data dirs over the in-memory transport
 * (test/controller/memory-net.ts); "kill" is close(), a wipe is `rm -rf` of the data dir. The deciding
 * voter asks the others through the same `emptyLogDecider` `sluice serve` uses, over the in-memory
 * net. Waits are on events and on counted campaign messages, bounded in time; nothing sleeps.
 */
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { EMPTY_LOG_JOIN_MESSAGE, MetadataLog, controllerLogStateOnDisk, emptyLogDecision, type Controller, type ControllerLogState, type ControllerOptions } from '../../src/controller/index.js';
import { emptyLogDecider } from '../../src/server/controller-join.js';
import type { NodeInfo, PeerDirectory } from '../../src/cluster/types.js';
import { MessageType, type Snapshot } from '../../src/raft/index.js';
import type { NodeId, Offset, Term } from '../../src/model/index.js';
import { MemoryNet, agreedLeader, closeNode, openNode, tempDir, waitFor, type TestNode } from './memory-net.js';

const VOTERS = [1, 2, 3] as NodeId[];
let live: Array<{ net: MemoryNet; nodes: TestNode[] }> = [];

afterEach(async () => {
  for (const { net, nodes } of live) {
    net.observe = null;
    for (const n of nodes) await closeNode(net, n);
    for (const n of nodes) fs.rmSync(n.dir, { recursive: true, force: true });
  }
  live = [];
});

/** Every voter is known to membership (in `sluice serve` gossip gives the address to ask). */
const ALL_KNOWN: PeerDirectory = {
  self: { id: 0 as NodeId, uuid: '', address: '', rack: '', shards: 1, state: 'alive', incarnation: 0 },
  members: () => [],
  get: (id: NodeId) => ({ id }) as NodeInfo,
  onChange: () => () => {},
};

function deciding(net: MemoryNet, id: NodeId): Partial<ControllerOptions> {
  return { decideEmptyLog: emptyLogDecider({ nodeId: id, voters: VOTERS, peers: ALL_KNOWN, ask: (v) => net.logState(id, v), pollMs: 20 }) };
}

function running(nodes: readonly TestNode[]): Controller[] {
  return nodes.flatMap((n) => (n.controller ? [n.controller] : []));
}

function setup(): { net: MemoryNet; nodes: TestNode[] } {
  const net = new MemoryNet();
  const nodes = VOTERS.map((id) => ({ id, dir: tempDir(`e${id}`), uuid: `uuid-${id}-a`, controller: null }));
  live.push({ net, nodes });
  return { net, nodes };
}

/**
 * Three voters formed and registered; `stale` is then cut off while the leader commits topic 't' with
 * `wiped`, which is killed and wiped; the leader is killed too. Left running: only `stale`, behind.
 */
async function staleAndWiped(net: MemoryNet, nodes: TestNode[]): Promise<{ leader: TestNode; stale: TestNode; wiped: TestNode }> {
  for (const n of nodes) await openNode(net, n, VOTERS, deciding(net, n.id));
  const cs = running(nodes);
  await waitFor(cs, () => agreedLeader(cs) !== 0, 'a leader');
  await Promise.all(cs.map((c) => c.registered));
  await waitFor(cs, () => cs.every((c) => c.state.nodes().length === 3), 'every registration everywhere');
  const leader = nodes.find((n) => n.controller!.isLeader)!;
  const [stale, wiped] = nodes.filter((n) => n !== leader);
  net.setDown(stale.id, true);
  await leader.controller!.createTopic('t', 1, 1);
  await waitFor([wiped.controller!], () => wiped.controller!.state.topic('t') !== undefined, 'the wiped-to-be voter holds t');
  expect(stale.controller!.state.topic('t')).toBeUndefined();
  await closeNode(net, wiped);
  fs.rmSync(wiped.dir, { recursive: true, force: true });
  fs.mkdirSync(wiped.dir);
  wiped.uuid = 'uuid-wiped';
  await closeNode(net, leader);
  net.setDown(stale.id, false);
  return { leader, stale, wiped };
}

/** Resolves once `from` has sent `n` more campaign messages (pre-votes or votes) after the call. */
function campaigns(net: MemoryNet, from: NodeId, n: number, timeoutMs = 15_000): Promise<void> {
  let seen = 0;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`node ${from} sent only ${seen} of ${n} campaign messages in ${timeoutMs} ms`)), timeoutMs);
    net.observe = (f, msg) => {
      if (f !== from || (msg.type !== MessageType.PreVote && msg.type !== MessageType.Vote)) return;
      if (++seen < n) return;
      clearTimeout(t);
      net.observe = null;
      resolve();
    };
  });
}

describe('the found-or-join rule', () => {
  const m = (o: Record<number, ControllerLogState>): Map<NodeId, ControllerLogState> => new Map(Object.entries(o).map(([k, v]) => [Number(k) as NodeId, v]));
  it('joins when any voter holds records; founds when a majority (itself counted) holds none; otherwise waits', () => {
    expect(emptyLogDecision(3 as NodeId, VOTERS, m({ 1: 'records' }))).toBe('join');
    expect(emptyLogDecision(3 as NodeId, VOTERS, m({ 1: 'founded', 2: 'records' }))).toBe('join');
    expect(emptyLogDecision(3 as NodeId, VOTERS, m({ 1: 'founded' }))).toBe('found');
    expect(emptyLogDecision(3 as NodeId, VOTERS, m({ 2: 'empty' }))).toBe('found');
    expect(emptyLogDecision(3 as NodeId, VOTERS, m({}))).toBeNull();
    const five = [1, 2, 3, 4, 5] as NodeId[];
    expect(emptyLogDecision(1 as NodeId, five, m({ 2: 'empty' }))).toBeNull();
    expect(emptyLogDecision(1 as NodeId, five, m({ 2: 'empty', 3: 'founded' }))).toBe('found');
    expect(emptyLogDecision(1 as NodeId, five, m({ 2: 'empty', 3: 'founded', 4: 'records' }))).toBe('join');
  });
});

describe('a controller voter with an empty log', () => {
  // Retried once: in 1 of about 20 runs (CI on 2026-12-03) the stale node and the re-founded one did not
  // agree on a leader within 30 s on this old, unsafe path (usually 0.5 s). The rule's path (next test)
  // has not shown it. Not yet understood; in the session note. A second miss in a row fails the test.
  it('the hazard, on the old path: a wiped voter that re-founds votes for a stale candidate, and committed metadata is lost', { retry: 1 }, async () => {
    const { net, nodes } = setup();
    const { stale, wiped } = await staleAndWiped(net, nodes);
    // Founding again (what every empty voter did before it asked the others): term 1, no vote, an empty log.
    const back = await openNode(net, wiped, VOTERS);
    const pair = [stale.controller!, back];
    await waitFor(pair, () => agreedLeader(pair) !== 0, 'the stale node and the wiped one elect a leader', 30_000);
    // A leader of the controller group that never saw topic t, which a majority had committed.
    expect(pair.every((c) => c.state.topic('t') === undefined)).toBe(true);
  });

  it('with the rule, a wiped voter joins instead: the stale node cannot win, and once the leader is back every node has t and the wiped node is a voter again', async () => {
    const { net, nodes } = setup();
    const { leader, stale, wiped } = await staleAndWiped(net, nodes);
    const back = await openNode(net, wiped, VOTERS, deciding(net, wiped.id));
    await waitFor([back], () => back.rejoinStatus === EMPTY_LOG_JOIN_MESSAGE, 'the wiped voter decided to join (the stale node has records)');
    expect(back.membership).toEqual({ voters: [], learners: [] });
    expect(back.logState).toBe('empty');
    // The stale node campaigns again and again; the wiped one takes no Raft message yet, so none wins.
    const leaders: NodeId[] = [];
    stale.controller!.onLeaderChange((l) => l !== 0 && leaders.push(l));
    await campaigns(net, stale.id, 8);
    expect(leaders).toEqual([]);
    expect(stale.controller!.leaderId).toBe(0);
    // The node with the full log comes back: it leads, admits the wiped node, which catches up and votes again.
    await openNode(net, leader, VOTERS, deciding(net, leader.id));
    const cs = running(nodes);
    await waitFor(cs, () => agreedLeader(cs) !== 0, 'a leader of all three', 20_000);
    await waitFor(cs, () => cs.every((c) => c.membership.voters.includes(wiped.id) && c.state.topic('t') !== undefined), 'the wiped node is a voter again everywhere, and every node has t', 20_000);
    expect(back.rejoinStatus).toBeNull();
    expect(back.state.node(wiped.id)?.uuid).toBe('uuid-wiped');
    expect(back.logState).toBe('records');
    // Its log on disk is an ordinary member's now: a restart neither asks nor joins again.
    await closeNode(net, wiped);
    expect(controllerLogStateOnDisk(wiped.dir)).toBe('records');
  });

  it('a joiner stopped after its first (founding) snapshot and before anything after it restarts empty, never as a founding voter', async () => {
    const dir = tempDir('joiner');
    try {
      const log = await MetadataLog.open(dir, VOTERS, true);
      expect(log.state).toBe('empty');
      // The leader's first message to a joiner: the founding snapshot (index 1, voters 1,2,3).
      const founding: Snapshot = { index: 1 as Offset, term: 1 as Term, conf: { voters: VOTERS, learners: [] }, data: new Uint8Array(0) };
      log.installSnapshot(founding);
      log.writeHardState({ term: 4 as Term, vote: 0 as NodeId, commit: 1 as Offset });
      expect(log.state).toBe('empty');
      await log.close();
      // Stopped here: the configuration changes that make it a learner never arrived.
      expect(controllerLogStateOnDisk(dir)).toBe('empty');
      const again = await MetadataLog.open(dir, VOTERS, true);
      expect(again.snapshotIndex).toBe(0);
      expect(again.state).toBe('empty');
      expect(again.hardState.term).toBe(4);
      await again.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('at a first formation, two fresh voters found the group without the third; the late third joins it and becomes a voter', async () => {
    const { net, nodes } = setup();
    const [a, b, late] = nodes;
    await openNode(net, a, VOTERS, deciding(net, a.id));
    await openNode(net, b, VOTERS, deciding(net, b.id));
    const pair = running(nodes);
    await waitFor(pair, () => agreedLeader(pair) !== 0, 'a leader of the two founders');
    await Promise.all(pair.map((c) => c.registered));
    await pair[0].createTopic('early', 1, 1);
    const third = await openNode(net, late, VOTERS, deciding(net, late.id));
    const cs = running(nodes);
    await third.registered;
    expect(third.registrationError).toBeNull();
    await waitFor(cs, () => cs.every((c) => c.membership.voters.length === 3) && third.state.topic('early') !== undefined, 'the late voter is a voter with the metadata', 20_000);
    expect(third.rejoinStatus).toBeNull();
  });

  it('a lone empty voter whose peers are all down neither founds nor joins: it waits, saying so, and decides again after a restart', async () => {
    const { net, nodes } = setup();
    const n = nodes[0];
    let asked = 0;
    let enough: () => void = () => {};
    const askedEnough = new Promise<void>((resolve) => (enough = resolve));
    const decideEmptyLog = emptyLogDecider({
      nodeId: n.id,
      voters: VOTERS,
      peers: ALL_KNOWN,
      ask: (v) => {
        if (++asked >= 10) enough();
        return net.logState(n.id, v);
      },
      pollMs: 20,
    });
    const lone = await openNode(net, n, VOTERS, { decideEmptyLog });
    await askedEnough;
    // Asked both peers five times without an answer: still deciding, with no configuration and no vote.
    expect(lone.rejoinStatus).toMatch(/^controller log empty: asking the other controller voters \(2, 3\)/);
    expect(lone.membership).toEqual({ voters: [], learners: [] });
    expect(lone.logState).toBe('empty');
    await closeNode(net, n);
    // A restart while deciding decides again (the log is still empty); with a peer up, it founds.
    await openNode(net, nodes[1], VOTERS, deciding(net, nodes[1].id));
    const again = await openNode(net, n, VOTERS, deciding(net, n.id));
    const cs = running(nodes);
    await waitFor(cs, () => agreedLeader(cs) !== 0, 'the two found the group and elect');
    expect(again.logState).toBe('records');
  });
});
