/**
 * Goal: the pure SWIM core detects failures, lets a paused node refute, sees a wiped node's new UUID,
 * keeps its messages bounded, and is pure. Method: a seeded simulated network (test/cluster/swim-sim.ts)
 * with the production timeouts from src/constants.ts, latency, loss, crashes and pauses; each
 * randomized test prints its seed (SEED=n replays it). One test breaks the protocol's timing on
 * purpose and expects the "never declared dead" checker to catch it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SwimSim } from './swim-sim.js';
import { Swim, supersedes } from '../../src/cluster/membership/swim.js';
import type { NodeInfo } from '../../src/cluster/types.js';
import { asNodeId } from '../../src/model/index.js';
import { GOSSIP_PROBE_INTERVAL_MS, GOSSIP_SUSPICION_TIMEOUT_MS, GOSSIP_UPDATES_PER_MESSAGE_MAX } from '../../src/constants.js';

const baseSeed = Number(process.env.SEED ?? Date.now() % 1_000_000);

function seeded(offset: number): number {
  const seed = baseSeed + offset;
  console.log(`swim sim seed ${seed} (replay with SEED=${baseSeed})`);
  return seed;
}

/** Whether every live node other than `subject` holds `subject` in `state`. */
function everyoneSees(sim: SwimSim, subject: number, pred: (n: NodeInfo | undefined) => boolean): boolean {
  return sim.liveIds().filter((id) => id !== subject).every((id) => pred(sim.view(id, subject)));
}

describe('SWIM core in a simulated network', () => {
  it('five nodes with 5% message loss stay all alive for 20 s (false suspicions are refuted, never fatal)', () => {
    const sim = new SwimSim({ seed: seeded(1), nodes: 5, loss: 0.05 });
    sim.run(20_000);
    for (const observer of sim.liveIds()) for (const subject of sim.liveIds()) expect(sim.view(observer, subject)?.state, `${observer} sees ${subject}`).toBe('alive');
    for (const [key, states] of sim.seen) expect(states.has('dead'), key).toBe(false);
    expect(sim.maxUpdatesInMessage).toBeLessThanOrEqual(GOSSIP_UPDATES_PER_MESSAGE_MAX);
  });

  it('a crashed node is declared dead by every member, within 2 probe periods plus the suspicion timeout plus dissemination', () => {
    const sim = new SwimSim({ seed: seeded(2), nodes: 5 });
    sim.run(2_000);
    const t0 = sim.now;
    sim.crash(3);
    const t = sim.run(10_000, () => everyoneSees(sim, 3, (n) => n?.state === 'dead'));
    expect(everyoneSees(sim, 3, (n) => n?.state === 'dead')).toBe(true);
    const took = t - t0;
    console.log(`crash -> dead at every member: ${took} ms (simulated)`);
    // Round-robin probing reaches the node within n-1 periods of one prober; with 4 probers far sooner.
    expect(took).toBeLessThanOrEqual(4 * GOSSIP_PROBE_INTERVAL_MS + GOSSIP_SUSPICION_TIMEOUT_MS + 2 * GOSSIP_PROBE_INTERVAL_MS);
  });

  it('a node paused for 1.5 s is suspected, refutes on resume with a higher incarnation, and is never declared dead', () => {
    const sim = new SwimSim({ seed: seeded(3), nodes: 3 });
    sim.run(2_000);
    const inc = sim.nodes.get(asNodeId(2))!.self.incarnation;
    sim.pause(2);
    sim.run(1_500);
    expect([1, 3].some((o) => sim.view(o, 2)?.state === 'suspect'), 'suspected during the pause').toBe(true);
    sim.resume(2);
    sim.run(3_000, () => everyoneSees(sim, 2, (n) => n?.state === 'alive' && n.incarnation > inc));
    expect(everyoneSees(sim, 2, (n) => n?.state === 'alive' && n.incarnation > inc)).toBe(true);
    for (const o of [1, 3]) expect(sim.seen.get(`${o}->2`)!.has('dead'), `${o} declared 2 dead`).toBe(false);
  });

  it('the checker catches the failure: with a suspicion timeout shorter than the pause, the paused node is declared dead', () => {
    const sim = new SwimSim({ seed: seeded(4), nodes: 3, config: { suspicionTimeoutMs: 600 } });
    sim.run(2_000);
    sim.pause(2);
    sim.run(1_500);
    sim.resume(2);
    sim.run(3_000);
    expect([1, 3].some((o) => sim.seen.get(`${o}->2`)!.has('dead'))).toBe(true);
  });

  it('a node paused past the suspicion timeout is declared dead, then comes back alive by refuting its death', () => {
    const sim = new SwimSim({ seed: seeded(5), nodes: 3 });
    sim.run(2_000);
    sim.pause(2);
    sim.run(5_000);
    expect(everyoneSees(sim, 2, (n) => n?.state === 'dead')).toBe(true);
    const deadAt = sim.view(1, 2)!.incarnation;
    sim.resume(2);
    // Nobody probes a dead node; it learns of its death from the first ack it gets ("tell the accused").
    sim.run(3_000, () => everyoneSees(sim, 2, (n) => n?.state === 'alive'));
    expect(everyoneSees(sim, 2, (n) => n?.state === 'alive' && n.incarnation > deadAt)).toBe(true);
  });

  it('a node that comes back with a wiped disk (new UUID, same id) is seen by every member with its new UUID', () => {
    const sim = new SwimSim({ seed: seeded(6), nodes: 4 });
    sim.run(1_000);
    const oldUuid = sim.nodes.get(asNodeId(3))!.self.uuid;
    sim.crash(3);
    sim.run(500); // restarted before anyone declared it dead
    const reborn = sim.addNode(3);
    expect(reborn.self.uuid).not.toBe(oldUuid);
    sim.join(asNodeId(3), sim.nodes.get(asNodeId(1))!);
    sim.run(5_000, () => everyoneSees(sim, 3, (n) => n?.uuid === reborn.self.uuid && n.state === 'alive'));
    expect(everyoneSees(sim, 3, (n) => n?.uuid === reborn.self.uuid && n.state === 'alive')).toBe(true);
    // The old UUID never wins back: its records carry a lower incarnation.
    sim.run(3_000);
    expect(everyoneSees(sim, 3, (n) => n?.uuid === reborn.self.uuid)).toBe(true);
  });

  it('a node that begins a graceful stop is seen leaving by every member (still alive); restarted with its data dir, it is seen not leaving again', () => {
    const sim = new SwimSim({ seed: seeded(8), nodes: 3 });
    sim.run(1_000);
    const node2 = sim.nodes.get(asNodeId(2))!;
    const uuid = node2.self.uuid;
    node2.updateSelf({ leaving: true });
    sim.run(3_000, () => everyoneSees(sim, 2, (n) => n?.leaving === true));
    expect(everyoneSees(sim, 2, (n) => n?.state === 'alive' && n.leaving === true)).toBe(true);
    const leavingAt = sim.view(1, 2)!.incarnation;
    // It stops, and comes back with the same data dir (same UUID; its incarnation starts at 0 again).
    sim.crash(2);
    sim.run(300);
    const back = sim.addNode(2, uuid);
    sim.join(asNodeId(2), sim.nodes.get(asNodeId(1))!);
    sim.run(5_000, () => everyoneSees(sim, 2, (n) => n?.leaving !== true && n?.state === 'alive'));
    expect(everyoneSees(sim, 2, (n) => n?.state === 'alive' && n.leaving !== true && n.incarnation > leavingAt)).toBe(true);
    expect(back.self.leaving).not.toBe(true);
  });

  it('a forgotten dead member (decommissioned, gone) stays gone while stale records travel, and comes back when it speaks again', () => {
    const sim = new SwimSim({ seed: seeded(8), nodes: 4 });
    sim.run(1_000);
    const uuid4 = sim.nodes.get(asNodeId(4))!.self.uuid;
    sim.crash(4);
    sim.run(10_000, () => everyoneSees(sim, 4, (n) => n?.state === 'dead'));
    expect(everyoneSees(sim, 4, (n) => n?.state === 'dead')).toBe(true);
    // The members forget it one after another (each on its own reconcile): those that have not yet
    // still gossip its dead record, which must not put it back in the tables that forgot it.
    expect(sim.nodes.get(asNodeId(1))!.forget(asNodeId(4))).toBe(true);
    sim.run(2_000);
    expect(sim.view(1, 4)).toBeUndefined();
    for (const o of [2, 3]) sim.nodes.get(asNodeId(o))!.forget(asNodeId(4));
    sim.run(3_000);
    expect(everyoneSees(sim, 4, (n) => n === undefined)).toBe(true);
    // It returns (a StatefulSet scaled up again, same data dir: same UUID) and joins through node 2.
    sim.addNode(4, uuid4);
    sim.join(asNodeId(4), sim.nodes.get(asNodeId(2))!);
    sim.run(5_000, () => everyoneSees(sim, 4, (n) => n?.state === 'alive'));
    expect(everyoneSees(sim, 4, (n) => n?.state === 'alive')).toBe(true);
  });

  it('piggy-backed updates are bounded per message, and pending updates by the member count', () => {
    const sim = new SwimSim({ seed: seeded(7), nodes: 40, loss: 0.02 });
    sim.run(5_000);
    expect(sim.maxUpdatesInMessage).toBeLessThanOrEqual(GOSSIP_UPDATES_PER_MESSAGE_MAX);
    for (const n of sim.nodes.values()) expect(n.pendingBroadcasts()).toBeLessThanOrEqual(40);
    for (const o of sim.liveIds()) expect(sim.nodes.get(asNodeId(o))!.all()).toHaveLength(40);
  });
});

describe('SWIM rules', () => {
  const rec = (state: NodeInfo['state'], incarnation: number, uuid = '00000000-0000-4000-8000-000000000001'): NodeInfo => ({ id: asNodeId(2), uuid, address: 'a:1', rack: '', shards: 1, state, incarnation });

  it('precedence: higher incarnation wins; at equal incarnation dead > suspect > alive; another UUID only with a higher incarnation', () => {
    expect(supersedes(rec('alive', 2), rec('dead', 1))).toBe(true);
    expect(supersedes(rec('suspect', 1), rec('alive', 1))).toBe(true);
    expect(supersedes(rec('alive', 1), rec('suspect', 1))).toBe(false);
    expect(supersedes(rec('dead', 1), rec('suspect', 1))).toBe(true);
    expect(supersedes(rec('suspect', 1), rec('dead', 1))).toBe(false);
    expect(supersedes(rec('alive', 1), rec('alive', 1))).toBe(false);
    const other = '00000000-0000-4000-8000-0000000000ff';
    expect(supersedes(rec('alive', 1, other), rec('dead', 1))).toBe(false);
    expect(supersedes(rec('alive', 2, other), rec('alive', 1))).toBe(true);
  });

  function core(id: number): Swim {
    return new Swim({
      self: { ...rec('alive', 0, `00000000-0000-4000-8000-00000000000${id}`), id: asNodeId(id) },
      random: () => 0.5,
      probeIntervalMs: 200,
      probeTimeoutMs: 80,
      suspicionTimeoutMs: 1000,
      indirectProbes: 3,
      retransmitMult: 3,
      updatesPerMessageMax: 8,
      membersMax: 4,
    });
  }

  it('refutes a suspicion (and a death) about itself with a higher incarnation; reports another UUID claiming its id', () => {
    const a = core(1);
    a.merge({ ...a.self, state: 'suspect', incarnation: 0 }, 0);
    expect(a.self).toMatchObject({ state: 'alive', incarnation: 1 });
    a.merge({ ...a.self, state: 'dead', incarnation: 4 }, 0);
    expect(a.self.incarnation).toBe(5);
    a.merge({ ...a.self, uuid: '00000000-0000-4000-8000-0000000000aa', incarnation: 9 }, 0);
    expect(a.self.incarnation).toBe(5);
    expect(a.drainConflicts().map((c) => c.uuid)).toEqual(['00000000-0000-4000-8000-0000000000aa']);
  });

  it('admit gives a joiner that replaces a known id an incarnation above the old one', () => {
    const a = core(1);
    a.merge({ ...rec('alive', 7), id: asNodeId(2) }, 0);
    const you = a.admit({ ...rec('alive', 0, '00000000-0000-4000-8000-0000000000bb') }, [], 0);
    expect(you.incarnation).toBe(8);
    expect(a.get(asNodeId(2))?.uuid).toBe('00000000-0000-4000-8000-0000000000bb');
  });

  it('forget: only a dead member; hearsay at or below its last incarnation is ignored, its own voice, a higher incarnation or a new UUID is not', () => {
    const a = core(1);
    a.merge({ ...rec('alive', 3) }, 0);
    expect(a.forget(asNodeId(2))).toBe(false); // alive: never dropped
    expect(a.forget(asNodeId(1))).toBe(false); // itself
    a.merge({ ...rec('dead', 3) }, 0);
    expect(a.forget(asNodeId(2))).toBe(true);
    expect(a.get(asNodeId(2))).toBeUndefined();
    expect(a.merge(rec('dead', 3), 0)).toBe(false);
    expect(a.merge(rec('alive', 3), 0)).toBe(false);
    expect(a.merge(rec('suspect', 2), 0)).toBe(false);
    expect(a.get(asNodeId(2))).toBeUndefined();
    // A higher incarnation is news.
    expect(a.merge(rec('alive', 4), 0)).toBe(true);
    a.merge(rec('dead', 4), 0);
    expect(a.forget(asNodeId(2))).toBe(true);
    // Another UUID under the id: a new life.
    expect(a.merge(rec('alive', 0, '00000000-0000-4000-8000-0000000000cc'), 0)).toBe(true);
    a.merge(rec('dead', 0, '00000000-0000-4000-8000-0000000000cc'), 0);
    expect(a.forget(asNodeId(2))).toBe(true);
    // The node itself probing us, even at an old incarnation.
    a.onProbe({ from: rec('alive', 0, '00000000-0000-4000-8000-0000000000cc'), targetId: asNodeId(1), targetUuid: a.self.uuid, updates: [] }, 0);
    expect(a.get(asNodeId(2))?.state).toBe('alive');
    // A joiner admitted after a forget gets an incarnation above the forgotten record's.
    a.merge(rec('dead', 0, '00000000-0000-4000-8000-0000000000cc'), 0);
    a.merge(rec('dead', 6, '00000000-0000-4000-8000-0000000000cc'), 0);
    expect(a.forget(asNodeId(2))).toBe(true);
    expect(a.admit(rec('alive', 0, '00000000-0000-4000-8000-0000000000cc'), [], 0).incarnation).toBe(7);
  });

  it('the table is bounded: records about node ids beyond membersMax are ignored', () => {
    const a = core(1);
    for (let id = 2; id <= 10; id++) a.merge({ ...rec('alive', 0, `00000000-0000-4000-8000-0000000000${String(id).padStart(2, '0')}`), id: asNodeId(id) }, 0);
    expect(a.all().map((m) => m.id)).toEqual([1, 2, 3, 4]);
    // Known members still change.
    expect(a.merge({ ...a.get(asNodeId(2))!, state: 'suspect' }, 0)).toBe(true);
  });

  it('a pause of the node itself (a late tick) judges nobody for the gap', () => {
    const a = core(1);
    a.merge({ ...rec('alive', 0), id: asNodeId(2) }, 0);
    const [probe] = a.tick(0);
    expect(probe?.kind).toBe('probe');
    // No ack; the process is stopped for 5 s, then its timer fires.
    a.tick(5_000);
    expect(a.get(asNodeId(2))?.state).toBe('alive');
  });
});

describe('purity', () => {
  it('swim.ts imports no I/O module and uses no clock, timer or Math.random', () => {
    const text = readFileSync(join(import.meta.dirname, '../../src/cluster/membership/swim.ts'), 'utf8');
    const imports = [...text.matchAll(/from\s+'([^']+)'/g)].map((m) => m[1]!);
    for (const m of imports) expect(m).toMatch(/^(node:assert\/strict|\.\.?\/.*)$/);
    for (const m of imports) expect(m).not.toMatch(/grpc|gossip|identity/);
    expect(text).not.toMatch(/Date\.now|new Date\(|performance\.now|Math\.random|setTimeout|setInterval|process\.hrtime/);
  });
});
