/**
 * A tiny interpreter for script-driven Raft scenarios, in the style of etcd-raft's testdata: each line
 * of a test/raft/testdata/*.txt file is a command against an in-memory cluster whose network is a queue
 * the script controls. Readies are persisted (synchronously), sent and applied after every command; the
 * harness checks after every command that no two nodes applied different entries at one index.
 *
 * Commands (ids are node ids; `#` starts a comment):
 *   cluster n=3 [prevote=on|off] [checkquorum=on|off] [entries-max=K] [quiesce=on|off]   founding voters 1..n
 *   tick-stabilize N                    N rounds of: every node ticks once, then stabilize
 *   wake ID [down]                      the driver wakes a quiesced node (its failure detector saw a change;
 *                                       `down`: its leader turned suspect or dead)
 *   expect-queued N                     exactly N messages are in flight (0: the cluster is silent)
 *   add-node ID                         start a joining node (empty log, no configuration)
 *   campaign ID | tick ID [N] | tick-all [N] | tick-election ID (2 x electionTicks ticks)
 *   propose ID [N] [records=K]          N batches of K records each (K=1 default): N runs
 *   read ID CTX | transfer ID TARGET | compact ID
 *   conf ID add-learner|add-voter|remove NODE
 *   deliver [from=ID] [to=ID]          deliver the messages queued now (one round)
 *   drop [from=ID] [to=ID]             lose the messages queued now
 *   stabilize                          deliver until no message and no Ready is left
 *   partition A B | C D | E            groups; messages between groups are lost
 *   isolate ID | cut FROM TO (one way) | heal
 *   crash ID | restart ID              crash keeps only what was persisted
 *   expect ID key=value ...            role term leader commit applied last first voters learners quiesced
 *   expect-entry ID INDEX TERM         the entry at INDEX has TERM (-1: absent)
 *   expect-run ID INDEX START COUNT    INDEX lies in the run START .. START + COUNT - 1
 *   expect-read ID CTX INDEX           a ReadState with CTX came out at INDEX
 *   expect-fail COMMAND...             the command throws (a refused proposal, say)
 *   expect-logs-equal ID ID...         same last index and same terms everywhere
 */
import assert from 'node:assert/strict';
import type { NodeId } from '../../src/model/index.js';
import {
  type Entry,
  MemoryStorage,
  type Message,
  type RaftBug,
  RaftNode,
  type ReadState,
  bootstrapState,
  lastIndexOf,
} from '../../src/raft/index.js';

interface HNode {
  id: number;
  raft: RaftNode | null;
  /** The durable log: Readies are persisted to it synchronously, so a crash loses nothing written. */
  storage: MemoryStorage;
  /** Runs applied since the last start or snapshot install, and the index applied up to. */
  applied: Entry[];
  appliedTo: number;
  reads: ReadState[];
}

export interface ScriptOptions {
  bugs?: readonly RaftBug[];
}

export class ScriptCluster {
  readonly nodes = new Map<number, HNode>();
  private queue: Message[] = [];
  private readonly blocked = new Set<string>();
  private preVote = true;
  private checkQuorum = true;
  private entriesMax = 4096;
  private quiesce = false;
  private payload = 0;
  readonly log: string[] = [];

  constructor(private readonly opts: ScriptOptions = {}) {}

  private node(id: string | number): HNode {
    const n = this.nodes.get(Number(id));
    assert.ok(n !== undefined, `no node ${id}`);
    return n;
  }

  private raft(id: string | number): RaftNode {
    const r = this.node(id).raft;
    assert.ok(r !== null, `node ${id} is down`);
    return r;
  }

  private create(id: number, voters: NodeId[]): void {
    const storage = new MemoryStorage(bootstrapState(voters));
    const n: HNode = { id, raft: null, storage, applied: [], appliedTo: 0, reads: [] };
    this.nodes.set(id, n);
    this.start(n);
  }

  private start(n: HNode): void {
    n.raft = new RaftNode(
      {
        id: n.id as NodeId,
        electionTicks: 10,
        heartbeatTicks: 1,
        preVote: this.preVote,
        checkQuorum: this.checkQuorum,
        msgEntriesMax: this.entriesMax,
        quiesce: this.quiesce,
        bugs: this.opts.bugs,
        random: () => ((n.id * 0.37) % 1), // distinct, fixed election timeouts per node (no split votes)
      },
      n.storage,
    );
    n.applied = [];
    n.appliedTo = n.storage.snapshot().index;
  }

  /** Persist, send, apply every pending Ready. */
  private flush(): boolean {
    let any = false;
    for (const n of this.nodes.values()) {
      const r = n.raft;
      while (r !== null && r.hasReady()) {
        any = true;
        const rd = r.ready();
        if (rd.snapshot !== null) {
          n.storage.applySnapshot(rd.snapshot);
          n.applied = [];
          n.appliedTo = rd.snapshot.index;
        }
        n.storage.append(rd.entries);
        if (rd.hardState !== null) n.storage.setHardState(rd.hardState);
        for (const m of rd.messages) this.queue.push(m);
        for (const e of rd.committedEntries) {
          assert.equal(e.index, n.appliedTo + 1, `node ${n.id} applies out of order`);
          n.applied.push(e);
          n.appliedTo = lastIndexOf(e);
        }
        assert.equal(rd.committedTo, Math.max(n.appliedTo, rd.committedFrom - 1), `node ${n.id}: committed range and entries disagree`);
        n.reads.push(...rd.readStates);
        r.advance();
      }
    }
    this.checkApplied();
    return any;
  }

  /** State machine safety among the nodes: the same run at every index any two applied. */
  private checkApplied(): void {
    const seen = new Map<number, Entry>();
    for (const n of this.nodes.values()) {
      for (const e of n.applied) {
        const o = seen.get(e.index);
        if (o === undefined) seen.set(e.index, e);
        else assert.ok(o.term === e.term && o.count === e.count && o.kind === e.kind && o.data === e.data, `nodes applied different runs at ${e.index}`);
      }
    }
  }

  private matches(m: Message, args: Map<string, string>): boolean {
    const f = args.get('from');
    const t = args.get('to');
    return (f === undefined || Number(f) === m.from) && (t === undefined || Number(t) === m.to);
  }

  private deliverRound(args: Map<string, string>): number {
    const now = this.queue.filter((m) => this.matches(m, args));
    this.queue = this.queue.filter((m) => !this.matches(m, args));
    let n = 0;
    for (const m of now) {
      if (this.blocked.has(`${m.from}>${m.to}`)) continue;
      const dst = this.nodes.get(m.to);
      if (dst === undefined || dst.raft === null) continue;
      dst.raft.step(m);
      n++;
    }
    this.flush();
    return n;
  }

  private expect(id: string, kv: string[]): void {
    const r = this.raft(id);
    const s = r.status();
    for (const p of kv) {
      const [k, v] = p.split('=');
      const actual: Record<string, string> = {
        role: s.role,
        term: String(s.term),
        leader: String(s.leader),
        commit: String(s.commit),
        applied: String(s.applied),
        last: String(s.lastIndex),
        first: String(s.firstIndex),
        voters: s.conf.voters.join(','),
        learners: s.conf.learners.join(','),
        quiesced: String(r.isQuiesced()),
      };
      assert.ok(k in actual, `unknown key ${k}`);
      assert.equal(actual[k], v, `node ${id}: ${k}`);
    }
  }

  exec(line: string): void {
    const [cmd, ...a] = line.trim().split(/\s+/);
    const kv = new Map(a.filter((x) => x.includes('=')).map((x) => x.split('=') as [string, string]));
    switch (cmd) {
      case 'cluster': {
        const n = Number(kv.get('n') ?? 3);
        this.preVote = (kv.get('prevote') ?? 'on') === 'on';
        this.checkQuorum = (kv.get('checkquorum') ?? 'on') === 'on';
        this.entriesMax = Number(kv.get('entries-max') ?? 4096);
        this.quiesce = (kv.get('quiesce') ?? 'off') === 'on';
        const voters = Array.from({ length: n }, (_, i) => (i + 1) as NodeId);
        for (const id of voters) this.create(id, voters);
        break;
      }
      case 'add-node':
        this.create(Number(a[0]), []);
        break;
      case 'wake':
        this.raft(a[0]).wake(a[1] === 'down');
        this.flush();
        break;
      case 'tick-stabilize':
        for (let i = 0; i < Number(a[0] ?? 1); i++) {
          this.exec('tick-all 1');
          this.exec('stabilize');
        }
        break;
      case 'expect-queued':
        assert.equal(this.queue.length, Number(a[0]), `messages in flight: ${this.queue.map((m) => `${m.from}->${m.to} type ${m.type}`).join(', ')}`);
        break;
      case 'campaign':
        this.raft(a[0]).campaign();
        break;
      case 'tick':
        for (let i = 0; i < Number(a[1] ?? 1); i++) this.raft(a[0]).tick();
        break;
      case 'tick-all':
        for (let i = 0; i < Number(a[0] ?? 1); i++) {
          for (const n of this.nodes.values()) n.raft?.tick();
          this.flush();
        }
        break;
      case 'tick-election':
        for (let i = 0; i < 20; i++) this.raft(a[0]).tick();
        break;
      case 'propose': {
        const records = Number(kv.get('records') ?? 1);
        const times = a[1] === undefined || a[1].includes('=') ? 1 : Number(a[1]);
        for (let i = 0; i < times; i++) this.raft(a[0]).propose(new TextEncoder().encode(`p${++this.payload}`), records);
        break;
      }
      case 'read':
        this.raft(a[0]).readIndex(Number(a[1]));
        break;
      case 'transfer':
        this.raft(a[0]).transferLeadership(Number(a[1]) as NodeId);
        break;
      case 'compact': {
        const n = this.node(a[0]);
        const r = this.raft(a[0]);
        const snap = r.compact(r.status().applied, new Uint8Array(0));
        n.storage.compact(snap);
        break;
      }
      case 'conf': {
        const type = a[1] === 'add-learner' ? 'addLearner' : a[1] === 'add-voter' ? 'addVoter' : a[1] === 'remove' ? 'remove' : null;
        assert.ok(type !== null, `bad conf change ${a[1]}`);
        this.raft(a[0]).proposeConfChange({ type, node: Number(a[2]) as NodeId });
        break;
      }
      case 'deliver':
        this.deliverRound(kv);
        break;
      case 'drop':
        this.queue = this.queue.filter((m) => !this.matches(m, kv));
        break;
      case 'stabilize': {
        let rounds = 0;
        this.flush();
        while (this.queue.length > 0) {
          assert.ok(++rounds < 1000, 'stabilize did not converge');
          this.deliverRound(new Map());
        }
        break;
      }
      case 'partition': {
        this.blocked.clear();
        const groups = a.join(' ').split('|').map((g) => g.trim().split(/\s+/).map(Number));
        for (const g of groups) for (const h of groups) if (g !== h) for (const x of g) for (const y of h) this.blocked.add(`${x}>${y}`);
        break;
      }
      case 'isolate':
        for (const other of this.nodes.keys()) {
          if (other === Number(a[0])) continue;
          this.blocked.add(`${a[0]}>${other}`).add(`${other}>${a[0]}`);
        }
        break;
      case 'cut':
        this.blocked.add(`${a[0]}>${a[1]}`);
        break;
      case 'heal':
        this.blocked.clear();
        break;
      case 'crash':
        this.node(a[0]).raft = null;
        this.queue = this.queue.filter((m) => m.to !== Number(a[0]));
        break;
      case 'restart':
        this.start(this.node(a[0]));
        break;
      case 'expect':
        this.expect(a[0], a.slice(1));
        break;
      case 'expect-entry':
        assert.equal(this.raft(a[0]).log.term(Number(a[1])), Number(a[2]), `node ${a[0]}: term at ${a[1]}`);
        break;
      case 'expect-run': {
        const run = this.raft(a[0]).log.slice(Number(a[1]), Number(a[1]), Number.POSITIVE_INFINITY, 1)[0];
        assert.deepEqual([run.index, run.count], [Number(a[2]), Number(a[3])], `node ${a[0]}: run at ${a[1]}`);
        break;
      }
      case 'expect-read': {
        const rs = this.node(a[0]).reads.find((r) => r.context === Number(a[1]));
        assert.ok(rs !== undefined, `node ${a[0]}: no read state ${a[1]}`);
        assert.equal(rs.index, Number(a[2]), 'read index');
        break;
      }
      case 'expect-no-read':
        assert.ok(!this.node(a[0]).reads.some((r) => r.context === Number(a[1])), `node ${a[0]}: unexpected read state ${a[1]}`);
        break;
      case 'expect-fail':
        assert.throws(() => this.exec(a.join(' ')), `expected "${a.join(' ')}" to fail`);
        break;
      case 'expect-logs-equal': {
        const logs = a.map((id) => {
          const l = this.raft(id).log;
          const terms: number[] = [];
          for (let i = l.firstIndex(); i <= l.lastIndex(); i++) terms.push(l.term(i));
          return { last: l.lastIndex(), terms, first: l.firstIndex() };
        });
        for (const l of logs) {
          assert.equal(l.last, logs[0].last, 'last index differs');
          const lo = Math.max(l.first, logs[0].first);
          for (let i = lo; i <= l.last; i++) assert.equal(l.terms[i - l.first], logs[0].terms[i - logs[0].first], `term at ${i} differs`);
        }
        break;
      }
      default:
        throw new Error(`unknown command ${cmd}`);
    }
    this.flush();
  }
}

/** Runs a whole script; an error names the line that failed. */
export function runScript(text: string, opts: ScriptOptions = {}): ScriptCluster {
  const c = new ScriptCluster(opts);
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    try {
      c.exec(line);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      throw new Error(`line ${i + 1} "${line}": ${msg}`, { cause: err });
    }
  });
  return c;
}
