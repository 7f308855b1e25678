/**
 * An in-memory network for controller tests: a `RaftTransport` and a `ControllerForwarder` per node,
 * delivering asynchronously (setImmediate, so per-peer order is kept, as the real transport promises) and
 * dropping whatever goes to or from a node that is down. Forwarded requests cross as encoded protobuf,
 * as they would on the wire. Stands in for the gRPC transport being built in src/cluster/transport.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller, type ControllerForwarder, type ControllerOptions } from '../../src/controller/index.js';
import type { GroupId, RaftTransport } from '../../src/cluster/types.js';
import type { Message } from '../../src/raft/index.js';
import type { NodeId } from '../../src/model/index.js';
import { SluiceError } from '../../src/errors.js';
import { SubmitRequest, SubmitResponse } from '../../src/rpc/gen/sluice/cluster/v1/controller.js';
import type { ControllerLogState, MetadataEvent } from '../../src/controller/index.js';

export class MemoryNet {
  private readonly handlers = new Map<string, (m: Message) => void>();
  readonly controllers = new Map<NodeId, Controller>();
  private readonly down = new Set<NodeId>();
  sent = 0;
  /** Sees every message a node sends while neither end is down (tests count campaigns with it). */
  observe: ((from: NodeId, msg: Message) => void) | null = null;

  transport(node: NodeId): RaftTransport {
    return {
      send: (group: GroupId, msg: Message) => {
        if (this.down.has(node) || this.down.has(msg.to)) return;
        this.sent++;
        this.observe?.(node, msg);
        setImmediate(() => {
          if (this.down.has(msg.to) || this.down.has(node)) return;
          this.handlers.get(`${msg.to}/${group}`)?.(msg);
        });
      },
      register: (group: GroupId, handler: (m: Message) => void) => {
        const key = `${node}/${group}`;
        this.handlers.set(key, handler);
        return () => {
          if (this.handlers.get(key) === handler) this.handlers.delete(key);
        };
      },
    };
  }

  forwarder(node: NodeId): ControllerForwarder {
    return {
      submit: async (leader: NodeId, req: SubmitRequest): Promise<SubmitResponse> => {
        const target = this.controllers.get(leader);
        if (target === undefined || this.down.has(leader) || this.down.has(node)) {
          throw new SluiceError('UNAVAILABLE', `node ${leader} cannot be reached from node ${node}`);
        }
        const wire = SubmitRequest.decode(SubmitRequest.encode(req).finish());
        return SubmitResponse.decode(SubmitResponse.encode(await target.handleSubmit(wire)).finish());
      },
    };
  }

  /**
   * What node `node`'s controller log holds, asked by `from` (`Controller/LogState`); rejects when
   * either is down or `node` runs no controller (a stopped process answers nothing).
   */
  async logState(from: NodeId, node: NodeId): Promise<ControllerLogState> {
    const target = this.controllers.get(node);
    if (target === undefined || this.down.has(node) || this.down.has(from)) throw new SluiceError('UNAVAILABLE', `node ${node} cannot be reached from node ${from}`);
    return target.logState;
  }

  /** Cuts a node off (messages and forwarding both ways), or heals it. */
  setDown(node: NodeId, down: boolean): void {
    if (down) this.down.add(node);
    else this.down.delete(node);
  }
}

export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `sluice-ctl-${tag}-`));
}

export interface TestNode {
  id: NodeId;
  dir: string;
  uuid: string;
  controller: Controller | null;
}

/** Ticks fast enough for tests, slow enough that a loaded 2-core machine does not lose leaders. */
export const TEST_TICK_MS = 20;

export async function openNode(net: MemoryNet, n: TestNode, voters: readonly NodeId[], extra: Partial<ControllerOptions> = {}): Promise<Controller> {
  const c = await Controller.open({
    nodeId: n.id,
    dataDir: n.dir,
    voters,
    self: { uuid: n.uuid, address: `127.0.0.${n.id}:7070`, rack: '', shards: 2 },
    transport: net.transport(n.id),
    forwarder: net.forwarder(n.id),
    tickMs: TEST_TICK_MS,
    electionTicks: 10,
    heartbeatTicks: 1,
    ...extra,
  });
  n.controller = c;
  net.controllers.set(n.id, c);
  return c;
}

export async function closeNode(net: MemoryNet, n: TestNode): Promise<void> {
  net.controllers.delete(n.id);
  await n.controller?.close();
  n.controller = null;
}

/**
 * Resolves when `check()` holds, re-checking on every leader change and metadata event of the given
 * controllers and on a short probe interval (Raft progress without events, e.g. a no-op commit);
 * rejects after `timeoutMs` with `what`. Bounded in time.
 */
export function waitFor(controllers: readonly Controller[], check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const unsubs: Array<() => void> = [];
    const finish = (err?: Error) => {
      clearTimeout(timer);
      clearInterval(probe);
      for (const u of unsubs) u();
      if (err) reject(err);
      else resolve();
    };
    const test = () => {
      let ok = false;
      try {
        ok = check();
      } catch {
        ok = false;
      }
      if (ok) finish();
    };
    const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`)), timeoutMs);
    const probe = setInterval(test, 25);
    for (const c of controllers) {
      unsubs.push(c.onLeaderChange(() => setImmediate(test)));
      unsubs.push(c.onEvent((_e: MetadataEvent) => setImmediate(test)));
    }
    test();
  });
}

/** The one leader all running controllers agree on, or 0. */
export function agreedLeader(controllers: readonly Controller[]): NodeId {
  const leaders = controllers.filter((c) => c.isLeader);
  if (leaders.length !== 1) return 0 as NodeId;
  const id = leaders[0].nodeId;
  return controllers.every((c) => c.leaderId === id) ? id : (0 as NodeId);
}
