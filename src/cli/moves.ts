/**
 * `sluice topic move`, `sluice cluster decommission|recommission|rebalance` (cluster mode; docs/
 * cluster.md "Moves"). Recommission answers at once (it moves nothing). The others start the work on
 * the controller and then, unless `--no-wait`, follow its progress (ListReassignments, every
 * CLI_MOVE_POLL_MS) printing each change of step, until it is done or `--wait-timeout` passes (exit 1,
 * saying the move carries on without the CLI).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CLI_MOVE_POLL_MS, NODE_ID_MAX } from '../constants.js';
import { Admin, type Reassignments, type Recommission } from '../client/index.js';
import { emit } from './output.js';
import { UsageError } from './parse.js';
import { clientOptions, type Common } from './topic.js';

export interface WaitOptions {
  wait: boolean;
  waitTimeout: number;
}

type Move = Reassignments['reassignments'][number];

/** `1,2,4` -> [1, 2, 4]: distinct positive node ids. */
export function parseReplicaList(value: string): number[] {
  const ids = value.split(',').map((s) => s.trim());
  const nums = ids.map((s) => (/^\d{1,10}$/.test(s) ? Number(s) : NaN));
  if (nums.length === 0 || nums.some((n) => !(n >= 1 && n <= NODE_ID_MAX))) throw new UsageError(`--replicas: a comma-separated list of node ids, e.g. 1,2,4; got '${value}'`);
  if (new Set(nums).size !== nums.length) throw new UsageError(`--replicas: a node appears twice in '${value}'`);
  return nums;
}

function describeMove(m: Move): string {
  const parts = [`voters ${m.replicas.join(',') || '-'}`];
  if (m.learners.length > 0) parts.push(`learners ${m.learners.join(',')} (catching up)`);
  if (m.lost.length > 0) parts.push(`lost ${m.lost.join(',')} (rebuilding)`);
  if (m.target.length > 0) parts.push(`-> target ${m.target.join(',')}`);
  parts.push(`leader ${m.leader || 'none'}`);
  return `${m.topic}/${m.partition}: ${parts.join(', ')}`;
}

/** Polls until `done(state)`; prints what changed (table format). Throws past the deadline. */
async function follow(admin: Admin, o: Common & WaitOptions, what: string, relevant: (m: Move) => boolean, done: (r: Reassignments) => boolean): Promise<Reassignments> {
  const deadline = Date.now() + o.waitTimeout;
  const shown = new Map<string, string>();
  for (;;) {
    const r = await admin.reassignments();
    if (o.format === 'table') {
      for (const m of r.reassignments.filter(relevant)) {
        const key = `${m.topic}/${m.partition}`;
        const line = describeMove(m);
        if (shown.get(key) !== line) process.stdout.write(`${line}\n`);
        shown.set(key, line);
      }
    }
    if (done(r)) return r;
    if (Date.now() >= deadline) throw new Error(`${what} is not done after ${o.waitTimeout} ms; it carries on in the cluster (see \`sluice cluster reassignments\`)`);
    await sleep(CLI_MOVE_POLL_MS);
  }
}

export async function moveTopicPartition(topic: string, o: Common & WaitOptions & { partition?: number; replicas?: number[] }): Promise<void> {
  if (o.partition === undefined) throw new UsageError('say which partition: -p N');
  if (o.replicas === undefined) throw new UsageError('say where to: --replicas 1,2,4');
  const partition = o.partition;
  const admin = new Admin(clientOptions(o));
  try {
    await admin.movePartition(topic, partition, o.replicas);
    if (!o.wait) return emit(o.format, { topic, partition, target: o.replicas, started: true }, () => `moving ${topic}/${partition} to ${o.replicas!.join(',')}`);
    const mine = (m: Move): boolean => m.topic === topic && m.partition === partition;
    await follow(admin, o, `the move of ${topic}/${partition}`, mine, (r) => !r.reassignments.some((m) => mine(m) && m.target.length > 0));
    emit(o.format, { topic, partition, replicas: o.replicas, done: true }, () => `${topic}/${partition} now on ${o.replicas!.join(',')}`);
  } finally {
    admin.close();
  }
}

export async function decommission(nodeId: number, o: Common & WaitOptions): Promise<void> {
  const admin = new Admin(clientOptions(o));
  try {
    await admin.decommissionNode(nodeId);
    if (!o.wait) return emit(o.format, { nodeId, started: true }, () => `decommissioning node ${nodeId}`);
    const r = await follow(admin, o, `the decommission of node ${nodeId}`, (m) => m.replicas.includes(nodeId) || m.learners.includes(nodeId) || m.target.length > 0, (s) => s.nodes.find((n) => n.nodeId === nodeId)?.state === 'decommissioned');
    emit(o.format, { nodeId, state: 'decommissioned', nodes: r.nodes }, () => `node ${nodeId} is decommissioned: it holds no replica and may be stopped`);
  } finally {
    admin.close();
  }
}

/** What a recommission did, in words (rpk style): the change, then the node's state now. */
export function describeRecommission(r: Recommission): string {
  const id = r.node.nodeId;
  const now = `node ${id}: ${r.node.state}, ${r.node.replicas} replica(s)`;
  if (r.previousState === 'active') return `node ${id} is already active; nothing to do\n${now}`;
  const what =
    r.previousState === 'decommissioning'
      ? 'it is no longer drained (moves already begun off it finish; no new one starts)'
      : 'new topics, added partitions and `sluice cluster rebalance` may place replicas on it again';
  return `node ${id} recommissioned (was ${r.previousState}): ${what}\n${now}`;
}

/** `sluice cluster recommission N`: answers at once (nothing to follow: no replica moves). */
export async function recommission(nodeId: number, o: Common): Promise<void> {
  const admin = new Admin(clientOptions(o));
  try {
    const r = await admin.recommissionNode(nodeId);
    emit(o.format, r, () => describeRecommission(r));
  } finally {
    admin.close();
  }
}

export async function rebalance(o: Common & WaitOptions): Promise<void> {
  const admin = new Admin(clientOptions(o));
  try {
    const moves = await admin.rebalance();
    if (!o.wait || moves === 0) return emit(o.format, { moves }, () => (moves === 0 ? 'replica counts are balanced; nothing to move' : `${moves} move(s) started`));
    process.stdout.write(o.format === 'table' ? `${moves} move(s) started\n` : '');
    const r = await follow(admin, o, 'the rebalance', (m) => m.target.length > 0, (s) => !s.reassignments.some((m) => m.target.length > 0));
    emit(o.format, { moves, nodes: r.nodes }, () => `done: ${r.nodes.map((n) => `node ${n.nodeId} holds ${n.replicas}`).join(', ')}`);
  } finally {
    admin.close();
  }
}

export async function listReassignments(o: Common): Promise<void> {
  const admin = new Admin(clientOptions(o));
  try {
    const r = await admin.reassignments();
    emit(o.format, r, () => [...r.reassignments.map(describeMove), ...r.nodes.map((n) => `node ${n.nodeId}: ${n.state}, ${n.replicas} replica(s)`)].join('\n'));
  } finally {
    admin.close();
  }
}
