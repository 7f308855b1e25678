/**
 * Goal (issue 14 §2 "The chart drives a cluster"): the pods of the StatefulSet the chart renders, run
 * from exactly its container command, args and env, form one cluster; a rolling restart done the way
 * the StatefulSet controller does it (highest ordinal first, SIGTERM within the rendered grace
 * period, the next pod only once the restarted one passes the rendered readiness probe) under acks=all
 * producers loses no acknowledged record; each stopped pod hands its partition leaderships away
 * before it exits, so writes see no election-length outage; and a restarted follower that is behind
 * turns ready only once its leader counts it in sync again.
 * Method: helm renders the defaults (3 replicas); test/k8s/pods.ts starts ordinals 0-2 as the kubelet
 * would, with one documented substitution: each pod's stable DNS name (in SLUICE_ADVERTISE_ADDR,
 * SLUICE_SEEDS, SLUICE_CONTROLLER_VOTERS) resolves to that pod's own 127.0.x.y address. The preStop
 * hook (a sleep, so Service endpoints drop the pod first) has nothing to wait for here and is not run.
 * State is read as clients and the kubelet read it (gRPC, /readyz). Every wait polls an observable,
 * bounded in count and time; measured times are printed.
 * Then scale 3 -> 5 under an acks=all producer (pods 3 and 4 from the 5-replica render join and take
 * replicas; nothing acknowledged during it is lost on any replica) and back 5 -> 3
 * exactly as the chart's NOTES.txt tells an operator (docs/kubernetes.md "Scale"): under acks=all
 * producers on an RF 3 topic created while there were five pods, the documented `cluster decommission`
 * command (parsed from the rendered NOTES; this checkout's CLI in place of the image's, the pod's
 * localhost being its address here) for id 5 and then id 4, each waited for; `cluster reassignments`
 * shows both decommissioned holding nothing; pods 4 and 3 are stopped as the StatefulSet controller
 * does (SIGTERM, highest first, within the grace period); the 3-replica render rolls nothing. Asserted:
 * every acknowledged record is on every surviving replica, once; every partition of every topic ends
 * with 3 replicas on nodes 1-3; the removed nodes lead nothing (`cluster info`); writes go on; no shard
 * worker died. Decommission times and write gaps are printed.
 */
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cliPath, waitExit } from '../../bench/broker-process.js';
import { Admin, Producer, type Reassignments } from '../../src/client/index.js';
import type { TopicDescription } from '../../src/broker/types.js';
import { FastBrokerClient } from '../../src/rpc/index.js';
import { FORWARDED_METADATA_KEY } from '../../src/rpc/forward.js';
import { OffsetSpec, type FetchResponse } from '../../src/rpc/gen/sluice/v1/broker.js';
import { decodeBatches, encodeBatch } from '../../src/batch/index.js';
import { Acks } from '../../src/rpc/gen/sluice/v1/records.js';
import { REPLICA_ISR_LAG_OFFSETS_MAX } from '../../src/constants.js';
import { TEST_FAULTS_FILE_ENV } from '../../src/storage/test-hooks.js';
import { CHART_DIR, helm, NAMESPACE, RELEASE, render, statefulSet, type Manifest } from './helm.js';
import { addressBlock, cleanUpPods, podFrom, probeReadiness, startPod, tempDir, withTimeout, type Pod, type RunningPod } from './pods.js';

const REPLICAS = 3;
const TOPIC = 'orders';
const PARTITIONS = 3;
/** The topic the scale-down runs under: created with five pods, so some of its replicas are on pods 3 and 4. */
const SHRINK_TOPIC = 'shrink';
const SHRINK_PARTITIONS = 5;
/** Ceilings for a loaded 2-core machine; a pod is normally ready again in a few seconds. */
const WAIT_MS = 60_000;
/** One `cluster decommission` (a handful of replica moves of small logs) normally takes a few seconds. */
const DECOMMISSION_TIMEOUT_MS = 90_000;
const CLI_TIMEOUT_MS = 30_000;
const POLL_MS = 100;

let sts: Manifest;
/** The 5-replica render (scale 3 -> 5), whose pods 3 and 4 the scale-down stops again. */
let sts5: Manifest;
const pods: Pod[] = [];
const running: (RunningPod | null)[] = [];

const grpcOf = (p: Pod): string => `${p.ip}:${p.ports.grpc}`;
const nodeIdOf = (p: Pod): number => p.ordinal + 1;

function logs(): string {
  return pods.map((p) => `--- pod ${p.ordinal}:\n${running[p.ordinal]?.stderr().slice(-3000) ?? '(down)'}`).join('\n');
}

async function waitFor<T>(what: string, probe: () => Promise<T | null | false> | T | null | false, timeoutMs = WAIT_MS): Promise<T> {
  const t0 = performance.now();
  for (let i = 0; i < Math.ceil(timeoutMs / POLL_MS) + 1; i++) {
    const v = await probe();
    if (v !== null && v !== false) return v;
    if (performance.now() - t0 > timeoutMs) break;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}\n${logs()}`);
}

async function describeVia(p: Pod, topic = TOPIC): Promise<TopicDescription | null> {
  const a = new Admin({ brokers: grpcOf(p), requestTimeoutMs: 3_000, channelOptions: { 'grpc.use_local_subchannel_pool': 1 } });
  try {
    return await a.describeTopic(topic);
  } catch {
    return null;
  } finally {
    a.close();
  }
}

/** The topic as the first running pod other than `except` describes it (leaders' own ISR included). */
async function describeTopic(except = -1, topic = TOPIC): Promise<TopicDescription | null> {
  for (const p of pods) {
    if (p.ordinal === except || running[p.ordinal] === null) continue;
    const d = await describeVia(p, topic);
    if (d !== null) return d;
  }
  return null;
}

/** Every record value pod `p`'s own replica of `partition` holds (the forwarded marker keeps the read local). */
async function readLocal(p: Pod, partition: number, topic = TOPIC): Promise<string[]> {
  const c = new FastBrokerClient(grpcOf(p), grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const md = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    m.set(FORWARDED_METADATA_KEY, '1');
    return m;
  };
  const values: string[] = [];
  try {
    let offset = Number(
      (
        await new Promise<{ offsets: { offset: bigint }[] }>((resolve, reject) =>
          c.listOffsets({ topic, partitions: [partition], spec: OffsetSpec.OFFSET_SPEC_EARLIEST, timestampMs: 0n }, md(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
        )
      ).offsets[0].offset,
    );
    for (let i = 0; i < 100_000; i++) {
      const res = await new Promise<FetchResponse>((resolve, reject) =>
        c.fetch({ topic, partition, offset: BigInt(offset), maxBytes: 1 << 20, maxWaitMs: 0, raw: true }, md(), { deadline: Date.now() + 10_000 }, (err, r) => (err ? reject(err) : resolve(r!))),
      );
      for (const b of decodeBatches(res.recordBatches)) for (const r of b.records) if ((b.header.attributes & 0x20) === 0 && r.offset >= offset) values.push(Buffer.from(r.value!).toString());
      if (Number(res.nextOffset) <= offset) break;
      offset = Number(res.nextOffset);
    }
  } finally {
    c.close();
  }
  return values;
}

/** pino's JSON lines on a pod's stderr whose msg is `msg`. */
function logLines(pod: RunningPod, msg: string): Record<string, unknown>[] {
  return pod
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((o) => o.msg === msg);
}

/** The longest time any partition went without an acknowledgement inside [from, to], and where. */
function longestGap(ackTimes: readonly number[][], from: number, to: number): { ms: number; at: string } {
  let worst = 0;
  let at = '';
  for (const [partition, times] of ackTimes.entries()) {
    let prev = from;
    for (const t of [...times.filter((x) => x >= from && x <= to), to]) {
      if (t - prev > worst) {
        worst = t - prev;
        at = `partition ${partition} from +${Math.round(prev - from)} ms to +${Math.round(t - from)} ms`;
      }
      prev = t;
    }
  }
  return { ms: Math.round(worst), at };
}

/** The broker's log lines saying a shard worker died (it replaces the worker, but a death is a bug). */
function workerDeaths(pod: RunningPod): string[] {
  return pod
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{') && /"msg":"shard \d+ worker died/.test(l));
}

/** What the kubelet does to stop a pod: SIGTERM, then SIGKILL once the rendered grace period is over. */
async function stopPod(p: Pod, rendered = sts): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
  const r = running[p.ordinal]!;
  const graceMs = Number(rendered.spec.template.spec.terminationGracePeriodSeconds) * 1000;
  const t0 = performance.now();
  r.child.kill('SIGTERM');
  const exit = await withTimeout(waitExit(r.child), graceMs, `pod ${p.ordinal} exit within terminationGracePeriodSeconds`);
  running[p.ordinal] = null;
  return { ...exit, ms: Math.round(performance.now() - t0) };
}

/**
 * `kubectl exec <pod> -- node /app/dist/src/cli/main.js ARGS`: this checkout's CLI with the pod's
 * environment; the CLI's default broker, the pod's own localhost:7070, is the pod's address here.
 */
async function execCli(p: Pod, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  const env = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, NODE_ENV: 'production', ...p.env, SLUICE_BROKERS: grpcOf(p) };
  const child = spawn(process.execPath, [cliPath(), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  try {
    const exit = await withTimeout(waitExit(child), timeoutMs, `sluice ${args.join(' ')}`);
    return { code: exit.code, stdout, stderr, ms: Math.round(performance.now() - t0) };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Starts the pod again (same volume, same address) and waits for its readiness probe; returns the 503 bodies seen. */
async function startAndWaitReady(p: Pod, extraEnv: Record<string, string> = {}, onProbe?: (body: string) => void): Promise<string[]> {
  const r = startPod(p, extraEnv);
  running[p.ordinal] = r;
  await r.ready;
  const seen: string[] = [];
  await waitFor(`pod ${p.ordinal} passes its readiness probe`, async () => {
    const res = await probeReadiness(sts, p);
    if (res.status !== 200) {
      seen.push(res.body);
      onProbe?.(res.body);
    }
    return res.status === 200;
  });
  return seen;
}

beforeAll(async () => {
  sts = statefulSet(render());
  expect(sts.spec.replicas).toBe(REPLICAS);
  const ipOf = addressBlock();
  for (let o = 0; o < REPLICAS; o++) pods.push(podFrom(sts, o, ipOf, tempDir()));
  const t0 = performance.now();
  for (const p of pods) running.push(startPod(p));
  await Promise.all(running.map((r) => r!.ready));
  await waitFor('every pod passes its readiness probe', async () => (await Promise.all(pods.map((p) => probeReadiness(sts, p)))).every((r) => r.status === 200));
  // Placement counts the nodes the controller leader sees alive; gossip spreads them in rounds.
  await waitFor('every pod sees three alive', async () => {
    const counts = await Promise.all(
      pods.map(async (p) => {
        const a = new Admin({ brokers: grpcOf(p), requestTimeoutMs: 3_000 });
        try {
          return (await a.metadata()).brokers.filter((b) => b.alive && b.state === 'alive').length;
        } catch {
          return 0;
        } finally {
          a.close();
        }
      }),
    );
    return counts.every((c) => c === REPLICAS);
  });
  console.log(`${REPLICAS} pods ready in ${Math.round(performance.now() - t0)} ms`);
}, 120_000);

afterAll(cleanUpPods);

describe('the rendered StatefulSet, three pods as processes', () => {
  it('forms one cluster: an RF 3 topic created through pod 0 has a leader per partition and all three pods in sync', async () => {
    const admin = new Admin({ brokers: grpcOf(pods[0]) });
    try {
      const t = await admin.createTopic(TOPIC, { partitions: PARTITIONS, replicationFactor: 3 });
      expect(t.partitions.every((p) => p.replicas.length === 3)).toBe(true);
    } finally {
      admin.close();
    }
    await waitFor('every partition led, every replica in sync', async () => {
      const d = await describeTopic();
      return d !== null && d.partitions.every((p) => p.leader > 0 && (p.inSyncReplicas ?? []).length === 3);
    });
    // Readiness now covers the replicas too, and they are caught up: every pod is ready.
    await waitFor('every pod ready with its replicas in sync', async () => (await Promise.all(pods.map((p) => probeReadiness(sts, p)))).every((r) => r.status === 200));
  }, 120_000);

  it('rolling restart in reverse ordinal order under acks=all producers: leaderships handed off before each exit, no long write outage, nothing acknowledged lost', async () => {
    const producer = new Producer({ brokers: pods.map(grpcOf), acks: 'all', lingerMs: 0, retries: 30, retryBackoffMs: 20, retryBackoffMaxMs: 500, requestTimeoutMs: 5_000 });
    const acked: string[][] = Array.from({ length: PARTITIONS }, () => []);
    const ackTimes: number[][] = Array.from({ length: PARTITIONS }, () => []);
    let failed = 0;
    let stop = false;
    const loops = Array.from({ length: PARTITIONS }, (_, partition) =>
      (async () => {
        for (let i = 0; !stop && i < 1_000_000; i++) {
          const v = `p${partition}-${i}`;
          try {
            await producer.send(TOPIC, { partition, value: Buffer.from(v) });
            acked[partition].push(v);
            ackTimes[partition].push(performance.now());
          } catch {
            failed++;
          }
        }
      })(),
    );
    const total = (): number => acked.reduce((n, a) => n + a.length, 0);
    const gaps: number[] = [];
    let handedOff = 0;
    try {
      await waitFor('the producers are running', () => acked.every((a) => a.length >= 20));
      for (const ordinal of [2, 1, 0]) {
        const p = pods[ordinal];
        const before = await waitFor('a description', () => describeTopic());
        const led = before.partitions.filter((x) => x.leader === nodeIdOf(p)).map((x) => x.partition);
        const r = running[ordinal]!;
        const t0 = performance.now();
        const exit = await stopPod(p);
        expect(exit, r.stderr().slice(-3000)).toEqual({ code: 0, signal: null, ms: exit.ms });
        // The pod said, before its clean exit, that it handed off everything it led.
        const handOff = logLines(r, 'leaderships handed off');
        expect(handOff, r.stderr().slice(-3000)).toHaveLength(1);
        expect(handOff[0]).toMatchObject({ remaining: 0 });
        // What it led at SIGTERM is not compared with `led`: it also leads partitions of
        // __consumer_offsets, and leader balancing may have moved leaderships since `before`.
        expect(Number.isInteger(Number(handOff[0].led))).toBe(true);
        handedOff += led.length;
        // ... and the partitions it led have other leaders now (the survivors agree).
        const after = await waitFor(`partitions led by pod ${ordinal} have a new leader`, async () => {
          const d = await describeTopic(ordinal);
          return d !== null && led.every((i) => d.partitions[i].leader > 0 && d.partitions[i].leader !== nodeIdOf(p)) ? d : null;
        });
        for (const i of led) expect(after.partitions[i].leaderEpoch ?? 0).toBeGreaterThan(before.partitions[i].leaderEpoch ?? 0);
        const ackedAtStop = total();
        const tStart = Math.round(performance.now() - t0);
        const seen = await startAndWaitReady(p);
        const tReady = Math.round(performance.now() - t0);
        // Writes went on through the stop and the restart.
        await waitFor('writes continue after the restart', () => total() >= ackedAtStop + 20);
        const { ms: gap, at: worstAt } = longestGap(ackTimes, t0, performance.now());
        gaps.push(gap);
        console.log(`pod ${ordinal}: led ${JSON.stringify(led)}, handed off in ${String(handOff[0].ms)} ms, exited in ${exit.ms} ms, restarted at +${tStart} ms, ready at +${tReady} ms after ${seen.length} failed probes; longest write gap ${gap} ms (${worstAt})`);
      }
    } finally {
      stop = true;
      await Promise.all(loops);
      await producer.close();
    }
    console.log(`rolling restart: ${total()} acknowledged, ${failed} sends failed after retries, longest write gaps ${JSON.stringify(gaps)} ms, ${handedOff} leaderships handed off`);
    expect(handedOff).toBeGreaterThan(0);
    // A kill -9 of a leader costs its partitions an election timeout (1-2 s) plus the client finding the
    // new leader: 3.3 s measured in test/cluster/serve-cluster-process.test.ts. With the hand-off a
    // stop costs a few hundred ms (240-570 ms in three runs here); some cost 2-2.5 s while a produce that
    // reached a leader handing leadership away killed its shard (fixed in src/partition).
    // The gaps are printed above, not asserted tightly: what is asserted is the behaviour (every
    // leadership handed off before the exit, new leaders with a higher epoch, nothing lost), plus a
    // ceiling that only a stall with no leader for several election timeouts would pass.
    expect(Math.max(...gaps)).toBeLessThan(8_000);

    // Nothing acknowledged is lost, on any pod's own replica, and nothing is written twice (the producer is idempotent).
    for (const p of pods) {
      for (let partition = 0; partition < PARTITIONS; partition++) {
        let last = '';
        await waitFor(`pod ${p.ordinal} holds every acknowledged record of partition ${partition}`, async () => {
          const values = await readLocal(p, partition).catch((e: unknown) => ((last = String(e)), null));
          if (values === null) return false;
          const have = new Set(values);
          const missing = acked[partition].filter((v) => !have.has(v));
          last = `${values.length} held, ${acked[partition].length} acked, missing ${JSON.stringify(missing.slice(0, 5))}`;
          return missing.length === 0 ? values : false;
        }).catch((e: unknown) => {
          throw new Error(`${last}\n${(e as Error).message}`);
        });
        const values = await readLocal(p, partition);
        expect(values.length, `duplicates on pod ${p.ordinal} partition ${partition}`).toBe(new Set(values).size);
      }
    }
  }, 300_000);

  it('readiness = caught up: a pod restarted behind its leader by more than the in-sync bound is not ready until its leader counts it in sync', async () => {
    const p = pods[2];
    const partition = 0;
    await stopPod(p); // if it led the partition, it handed it off
    // A steady load of 2,000-record batches through pod 0 (acks=all, forwarded to the leader): the
    // leader drops pod 2 from its in-sync set, and while pod 2's disk is slow (below) it cannot get
    // back within the bound, so its catching-up state lasts until the test heals the disk.
    const client = new FastBrokerClient(grpcOf(pods[0]), grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const batch = encodeBatch(Array.from({ length: 2_000 }, (_, i) => ({ key: null, value: Buffer.from(`behind-${i}`), headers: [], timestampMs: Date.now() })));
    let loading = true;
    let produced = 0;
    const load = (async () => {
      for (let i = 0; loading && i < 100_000; i++) {
        await new Promise<void>((resolve) =>
          client.produce({ topic: TOPIC, partition, records: [], recordBatch: batch, acks: Acks.ACKS_ALL, producerEpoch: 0, baseSequence: 0 }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
            if (err === null) produced += 2_000;
            resolve();
          }),
        );
      }
    })();
    // TEST-ONLY fault (src/storage/test-hooks.ts, the chaos harness's slow disk): each fdatasync of
    // the restarted pod waits 1 s; the test heals it once /readyz has said the replica is behind.
    const faults = path.join(path.dirname(p.dataDir), `faults-${path.basename(p.dataDir)}.json`);
    let sawCatchingUp = false;
    let seen: string[] = [];
    try {
      await waitFor('the leader drops pod 2 from its in-sync set', async () => {
        const d = await describeTopic(2);
        return d !== null && d.partitions[partition].leader > 0 && !(d.partitions[partition].inSyncReplicas ?? [3]).includes(nodeIdOf(p)) && produced > REPLICA_ISR_LAG_OFFSETS_MAX;
      });
      fs.writeFileSync(faults, JSON.stringify({ fsyncDelayMs: 1_000 }));
      seen = await startAndWaitReady(p, { [TEST_FAULTS_FILE_ENV]: faults }, (body) => {
        if (!sawCatchingUp && body.includes(`catching up with their leaders: ${TOPIC}/${partition} (not in node`)) {
          sawCatchingUp = true;
          loading = false;
          fs.writeFileSync(faults, '{}');
        }
      });
    } finally {
      loading = false;
      await load;
      client.close();
      fs.rmSync(faults, { force: true });
    }
    expect(sawCatchingUp, `503 bodies seen: ${JSON.stringify([...new Set(seen)])}`).toBe(true);
    // Ready now: its leader counts it in sync.
    const d = await describeTopic(2);
    expect(d!.partitions[partition].inSyncReplicas).toContain(nodeIdOf(p));
    console.log(`pod 2 ready after ${seen.length} failed probes (${produced} records produced meanwhile); reasons: ${JSON.stringify([...new Set(seen.map((b) => b.replace(/\d+/g, 'N')))])}`);
  }, 180_000);
  it('scale 3 -> 5 under an acks=all producer: the 5-replica render leaves pods 0-2 untouched (no roll), pods 3 and 4 join, turn ready, and take replicas of a new topic; nothing acknowledged lost', async () => {
    sts5 = statefulSet(render({ replicaCount: 5 }));
    expect(sts5.spec.replicas).toBe(5);
    // Only replicas changed: the pod template is the same, so the StatefulSet controller rolls nothing.
    expect(sts5.spec.template).toEqual(sts.spec.template);
    const ipOf = (o: number): string => pods[0].ip.replace(/\.\d+$/, `.${o + 1}`);
    // An acks=all producer on the first topic runs through the whole scale-up (issue 14: "under a producer").
    const writer = new Producer({ brokers: pods.map(grpcOf), acks: 'all', lingerMs: 0, retries: 20, requestTimeoutMs: 5_000 });
    const acked: string[][] = Array.from({ length: PARTITIONS }, () => []);
    let writing = true;
    let sent = 0;
    const writes = (async () => {
      for (let i = 0; writing && i < 1_000_000; i++) {
        const partition = i % PARTITIONS;
        const v = `up-${i}`;
        sent++;
        await writer.send(TOPIC, { partition, value: Buffer.from(v) }).then(
          () => acked[partition].push(v),
          () => {},
        );
      }
    })();
    await waitFor('the scale-up producer is running', () => acked.every((a) => a.length >= 10));
    for (const o of [3, 4]) {
      pods.push(podFrom(sts5, o, ipOf, tempDir()));
      running.push(startPod(pods[o]));
    }
    await Promise.all([3, 4].map((o) => running[o]!.ready));
    await waitFor('pods 3 and 4 pass their readiness probes', async () => (await Promise.all([3, 4].map((o) => probeReadiness(sts5, pods[o])))).every((r) => r.status === 200));
    await waitFor('every pod sees five alive', async () => {
      const a = new Admin({ brokers: grpcOf(pods[0]), requestTimeoutMs: 3_000 });
      try {
        return (await a.metadata()).brokers.filter((b) => b.alive && b.state === 'alive').length === 5;
      } catch {
        return false;
      } finally {
        a.close();
      }
    });
    const admin = new Admin({ brokers: grpcOf(pods[4]) });
    try {
      const t = await admin.createTopic('wide', { partitions: 5, replicationFactor: 3 });
      const used = new Set(t.partitions.flatMap((p) => p.replicas));
      expect(used.has(4) && used.has(5)).toBe(true);
    } finally {
      admin.close();
    }
    const producer = new Producer({ brokers: [grpcOf(pods[3])], acks: 'all', lingerMs: 0, retries: 20, requestTimeoutMs: 5_000 });
    try {
      for (let partition = 0; partition < 5; partition++) await producer.send('wide', { partition, value: Buffer.from(`w${partition}`) });
    } finally {
      await producer.close();
    }
    await waitFor('every pod ready with the new replicas in sync', async () => (await Promise.all(pods.map((p) => probeReadiness(sts5, p)))).every((r) => r.status === 200));
    const atJoin = acked.map((a) => a.length);
    await waitFor('the producer keeps going after the scale-up', () => acked.every((a, i) => a.length >= atJoin[i] + 10));
    writing = false;
    await writes;
    await writer.close();
    // Nothing acknowledged during the scale-up is lost: every pod holding a replica of the topic has it all.
    const d = (await waitFor(`${TOPIC} described`, () => describeTopic()))!;
    for (const part of d.partitions) {
      for (const id of part.replicas) {
        const held = await waitFor(`node ${id} holds every record acknowledged on ${TOPIC}/${part.partition}`, async () => {
          const vs = await readLocal(pods[id - 1], part.partition).catch(() => null);
          return vs !== null && acked[part.partition].every((v) => vs.includes(v)) ? vs : null;
        });
        expect(acked[part.partition].filter((v) => !held.includes(v))).toEqual([]);
      }
    }
    console.log(`scale 3 -> 5 under an acks=all producer: ${acked.reduce((n, a) => n + a.length, 0)} of ${sent} sends acknowledged, none lost`);
  }, 180_000);
  it('scale 5 -> 3 as NOTES.txt says, under acks=all producers: decommission ids 5 then 4 with the CLI, stop pods 4 and 3, render 3 replicas; nothing acknowledged lost, no replica left on 4 or 5, writes go on', async () => {
    // The documented step, from the chart's own NOTES (rendered as `helm upgrade --set replicaCount=5` prints it).
    const notes = helm(['install', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--dry-run=client', '--replace', '--set', 'replicaCount=5']);
    expect(notes.status, notes.stderr).toBe(0);
    const step = /kubectl exec (\S+) -- node \/app\/dist\/src\/cli\/main\.js (cluster decommission) (\d+)/.exec(notes.stdout);
    expect(step, notes.stdout).not.toBeNull();
    expect(step![1]).toBe(`${sts5.metadata.name}-0`);
    expect(step![3]).toBe('5');
    const decommissionArgs = step![2].split(' ');

    // An RF 3 topic created while there are five pods, so that some replicas land on pods 3 and 4.
    const admin = new Admin({ brokers: grpcOf(pods[0]) });
    try {
      const t = await admin.createTopic(SHRINK_TOPIC, { partitions: SHRINK_PARTITIONS, replicationFactor: 3 });
      const used = new Set(t.partitions.flatMap((x) => x.replicas));
      expect(used.has(4) || used.has(5)).toBe(true);
    } finally {
      admin.close();
    }
    await waitFor(`every partition of ${SHRINK_TOPIC} led, every replica in sync`, async () => {
      const d = await describeTopic(-1, SHRINK_TOPIC);
      return d !== null && d.partitions.every((x) => x.leader > 0 && (x.inSyncReplicas ?? []).length === 3);
    });
    const pids = [0, 1, 2].map((o) => running[o]!.child.pid);

    // The clients know the cluster through all five pods (what the client Service resolved to before).
    const producer = new Producer({ brokers: pods.map(grpcOf), acks: 'all', lingerMs: 0, retries: 30, retryBackoffMs: 20, retryBackoffMaxMs: 500, requestTimeoutMs: 5_000 });
    const acked: string[][] = Array.from({ length: SHRINK_PARTITIONS }, () => []);
    const ackTimes: number[][] = Array.from({ length: SHRINK_PARTITIONS }, () => []);
    let failed = 0;
    let stop = false;
    const loops = Array.from({ length: SHRINK_PARTITIONS }, (_, partition) =>
      (async () => {
        for (let i = 0; !stop && i < 1_000_000; i++) {
          const v = `s${partition}-${i}`;
          try {
            await producer.send(SHRINK_TOPIC, { partition, value: Buffer.from(v) });
            acked[partition].push(v);
            ackTimes[partition].push(performance.now());
          } catch {
            failed++;
          }
        }
      })(),
    );
    const total = (): number => acked.reduce((n, a) => n + a.length, 0);
    const timings: string[] = [];
    const gaps: number[] = [];
    const stops: number[] = [];
    const runs = running.filter((r): r is RunningPod => r !== null);
    try {
      await waitFor('the producers are running', () => acked.every((a) => a.length >= 20));
      // 1. Decommission the highest ids, one at a time, each with the documented command run in pod 0.
      for (const id of [5, 4]) {
        const before = total();
        const t0 = performance.now();
        const r = await execCli(pods[0], [...decommissionArgs, String(id)], DECOMMISSION_TIMEOUT_MS);
        expect(r.code, `${r.stdout}\n${r.stderr}\n${logs()}`).toBe(0);
        expect(r.stdout).toContain(`node ${id} is decommissioned: it holds no replica and may be stopped`);
        const gap = longestGap(ackTimes, t0, performance.now());
        gaps.push(gap.ms);
        timings.push(`decommission ${id}: ${r.ms} ms, ${r.stdout.split('\n').length - 2} progress lines, ${total() - before} records acknowledged meanwhile, longest write gap ${gap.ms} ms (${gap.at})`);
      }
      const moves = await execCli(pods[0], ['cluster', 'reassignments', '--format', 'json'], CLI_TIMEOUT_MS);
      expect(moves.code, moves.stderr).toBe(0);
      const state = JSON.parse(moves.stdout) as Reassignments;
      expect(state.reassignments.filter((m) => m.target.length > 0)).toEqual([]);
      for (const id of [4, 5]) expect(state.nodes.find((n) => n.nodeId === id)).toEqual({ nodeId: id, state: 'decommissioned', replicas: 0 });
      for (const id of [1, 2, 3]) expect(state.nodes.find((n) => n.nodeId === id)?.state).toBe('active');

      // 2. What the StatefulSet controller does for replicas=3: stop the highest ordinal, then the next.
      for (const ordinal of [4, 3]) {
        const r = running[ordinal]!;
        const t0 = performance.now();
        const exit = await stopPod(pods[ordinal], sts5);
        expect(exit, r.stderr().slice(-3000)).toEqual({ code: 0, signal: null, ms: exit.ms });
        // A decommissioned node leads nothing, so it has nothing to hand off.
        expect(logLines(r, 'leaderships handed off')[0], r.stderr().slice(-3000)).toMatchObject({ led: 0, remaining: 0 });
        timings.push(`pod ${ordinal} exited ${exit.ms} ms after SIGTERM`);
        stops.push(t0);
      }
      // 3. The 3-replica render: the same pod template, so pods 0-2 are not rolled; they run on, ready.
      const sts3 = statefulSet(render({ replicaCount: 3 }));
      expect(sts3.spec.replicas).toBe(3);
      expect(sts3.spec.template).toEqual(sts5.spec.template);
      expect([0, 1, 2].map((o) => (running[o] === null ? 'stopped' : running[o]!.child.exitCode))).toEqual([null, null, null]);
      expect([0, 1, 2].map((o) => running[o]!.child.pid)).toEqual(pids);
      await waitFor('pods 0-2 pass their readiness probes', async () => (await Promise.all([0, 1, 2].map((o) => probeReadiness(sts3, pods[o])))).every((r) => r.status === 200));
      // The cluster keeps accepting writes on every partition.
      const atStop = acked.map((a) => a.length);
      await waitFor('writes continue on every partition after the scale-down', () => acked.every((a, i) => a.length >= atStop[i] + 20));
      const gap = longestGap(ackTimes, stops[0], performance.now());
      gaps.push(gap.ms);
      timings.push(`longest write gap from the first stop on ${gap.ms} ms (${gap.at})`);
    } finally {
      stop = true;
      await Promise.all(loops);
      await producer.close();
    }
    console.log(`scale 5 -> 3: ${timings.join('; ')}; ${total()} acknowledged, ${failed} sends failed after retries`);
    // Each move's REMOVE of a leader hands leadership to a replica that stays first, and a decommissioned
    // pod leads nothing when it stops, so no partition waits out an election: the same stall-only ceiling
    // as the rolling restart.
    expect(Math.max(...gaps)).toBeLessThan(8_000);
    expect(failed).toBe(0);
    // No shard worker died on any pod (a produce written but not proposed during a leadership hand-off
    // once killed shards here: src/partition/partition.ts `produce`).
    for (const r of runs) expect(workerDeaths(r)).toEqual([]);

    // Every partition of every topic ends with 3 replicas, none on the removed nodes, as each survivor's metadata says.
    for (const o of [0, 1, 2]) {
      await waitFor(`pod ${o}'s metadata places no replica on nodes 4 and 5`, async () => {
        const a = new Admin({ brokers: grpcOf(pods[o]), requestTimeoutMs: 3_000 });
        try {
          const m = await a.metadata();
          expect(m.topics.map((t) => t.name)).toEqual(expect.arrayContaining([TOPIC, 'wide', SHRINK_TOPIC]));
          return m.topics.every((t) => t.partitions.every((x) => x.replicas.length === 3 && x.replicas.every((n) => n <= 3) && x.leader >= 1 && x.leader <= 3));
        } catch {
          return false;
        } finally {
          a.close();
        }
      });
    }
    // `sluice cluster info`: the removed nodes lead nothing.
    const info = await execCli(pods[0], ['cluster', 'info', '--format', 'json'], CLI_TIMEOUT_MS);
    expect(info.code, info.stderr).toBe(0);
    const summary = JSON.parse(info.stdout) as { brokers: { nodeId: number; state: string; leaders: number }[]; leaderlessPartitions: number };
    console.log(`cluster info after the scale-down: ${JSON.stringify(summary.brokers.map((b) => ({ id: b.nodeId, state: b.state, leaders: b.leaders })))}`);
    expect(summary.leaderlessPartitions).toBe(0);
    for (const b of summary.brokers.filter((x) => x.nodeId > 3)) expect(b.leaders).toBe(0);

    // Nothing acknowledged is lost: every acknowledged value is on every surviving replica, none twice.
    const d = (await describeTopic(-1, SHRINK_TOPIC))!;
    for (const x of d.partitions) {
      for (const node of x.replicas) {
        const p = pods[node - 1];
        let last = '';
        await waitFor(`pod ${p.ordinal} holds every acknowledged record of ${SHRINK_TOPIC}/${x.partition}`, async () => {
          const values = await readLocal(p, x.partition, SHRINK_TOPIC).catch((e: unknown) => ((last = String(e)), null));
          if (values === null) return false;
          const have = new Set(values);
          const missing = acked[x.partition].filter((v) => !have.has(v));
          last = `${values.length} held, ${acked[x.partition].length} acked, missing ${JSON.stringify(missing.slice(0, 5))}`;
          return missing.length === 0 ? values : false;
        }).catch((e: unknown) => {
          throw new Error(`${last}\n${(e as Error).message}`);
        });
        const values = await readLocal(p, x.partition, SHRINK_TOPIC);
        expect(values.length, `duplicates on pod ${p.ordinal} partition ${x.partition}`).toBe(new Set(values).size);
      }
    }
  }, 240_000);
});
