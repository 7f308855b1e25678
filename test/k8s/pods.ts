/**
 * Test helpers: run pods of the rendered StatefulSet as local processes, doing only what the kubelet
 * and the pod would: resolve the downward-API fields (metadata.name), expand $(VAR) references the
 * kubelet's way, give each pod its own address (a 127.0.x.y loopback address stands for the pod IP and
 * for the pod's stable DNS name, the one documented substitution), mount a temp dir at /data, and use
 * this checkout as the image's /app. The command itself (/bin/sh, which must exec node) is spawned
 * as rendered, in its own process group (as a container is).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { cliPath } from '../../bench/broker-process.js';
import { NAMESPACE, RELEASE, type Manifest } from './helm.js';

/** Ceiling for a loaded 2-core machine; a broker is normally up in well under a second. */
export const POD_START_TIMEOUT_MS = 30_000;

const FULL = `${RELEASE}-sluice`;
export const podHost = (ordinal: number): string => `${FULL}-${ordinal}.${FULL}-headless.${NAMESPACE}.svc.cluster.local`;

/** The kubelet's $(VAR) expansion: `$$` is a literal `$`; a reference to an undefined name stays as written. */
export function kubeletExpand(s: string, vars: Record<string, string>): string {
  return s.replace(/\$\$|\$\(([^)]*)\)/g, (m: string, name: string | undefined) => (m === '$$' ? '$' : name !== undefined && name in vars ? vars[name] : m));
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}

/** The container's environment as the kubelet builds it: in order, each value may refer to earlier ones. */
function kubeletEnv(env: EnvVar[], fields: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of env) {
    if (e.valueFrom !== undefined) {
      const fieldPath = e.valueFrom.fieldRef?.fieldPath;
      if (fieldPath === undefined || !(fieldPath in fields)) throw new Error(`env ${e.name}: unsupported valueFrom ${JSON.stringify(e.valueFrom)}`);
      out[e.name] = fields[fieldPath];
    } else {
      out[e.name] = kubeletExpand(e.value ?? '', out);
    }
  }
  return out;
}

export interface Pod {
  ordinal: number;
  argv: string[];
  env: Record<string, string>;
  ip: string;
  dataDir: string;
  /** The ports the container declares, by name (grpc, http). */
  ports: Record<string, number>;
}

/** Everything needed to start pod `ordinal` of the rendered StatefulSet on this machine. */
export function podFrom(sts: Manifest, ordinal: number, ipOf: (ordinal: number) => string, dataDir: string): Pod {
  const c = sts.spec.template.spec.containers[0];
  const ip = ipOf(ordinal);
  const env = kubeletEnv(c.env, { 'metadata.name': `${sts.metadata.name}-${ordinal}`, 'metadata.namespace': NAMESPACE });
  // DNS: each pod's stable name resolves to that pod's address.
  for (const [k, v] of Object.entries(env)) {
    env[k] = v.replace(/[a-z0-9-]+-(\d+)\.[a-z0-9.-]+\.svc\.cluster\.local/g, (name: string, o: string) => {
      expect(name).toBe(podHost(Number(o)));
      return ipOf(Number(o));
    });
  }
  const expand = (s: string): string => kubeletExpand(s, env);
  const argv = [...c.command, ...c.args].map(expand).map((a) =>
    a
      .replace('/app/dist/src/cli/main.js', cliPath()) // the image's /app is this checkout
      .replace(/^--data-dir=\/data$/, `--data-dir=${dataDir}`) // the volume mounted at /data
      .replace(/^(--(?:grpc|http)-addr=)0\.0\.0\.0:/, `$1${ip}:`), // the pod's own network: its address
  );
  const ports = Object.fromEntries((c.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
  return { ordinal, argv, env, ip, dataDir, ports };
}

/** A loopback block of addresses for this run's pods, away from 127.0.0.1 where other tests bind. */
export function addressBlock(): (ordinal: number) => string {
  const base = 16 + Math.floor(Math.random() * 200);
  return (ordinal) => `127.0.${base}.${ordinal + 1}`;
}

export interface RunningPod {
  child: ChildProcess;
  /** Resolves with the broker's first stdout line ("sluice broker ready: ..."). */
  ready: Promise<string>;
  stderr: () => string;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];

export function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pod-'));
  dirs.push(d);
  return d;
}

/** Kills every pod process group started here and removes the temp dirs (afterEach/afterAll). */
export function cleanUpPods(): void {
  // The whole process group: if the wrapper ever failed to exec, node would be sh's child.
  for (const c of children.splice(0)) {
    try {
      process.kill(-c.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

/** Starts the pod's container command; `extraEnv` only for test-only fault hooks (named where used). */
export function startPod(pod: Pod, extraEnv: Record<string, string> = {}): RunningPod {
  // A container sees the image's environment (PATH, NODE_ENV) plus the rendered env; nothing of ours.
  const env = { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`, NODE_ENV: 'production', ...pod.env, ...extraEnv };
  // detached: its own process group (as a container is), so cleanup can kill everything it started.
  const child = spawn(pod.argv[0], pod.argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ready in ${POD_START_TIMEOUT_MS} ms: ${err}`)), POD_START_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before ready: ${err}`));
    });
  });
  ready.catch(() => {}); // callers that never await it must not see an unhandled rejection
  return { child, ready, stderr: () => err };
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

/** The pod's readiness probe as the kubelet runs it (the rendered httpGet path and port): status and body. */
export async function probeReadiness(sts: Manifest, pod: Pod): Promise<{ status: number; body: string }> {
  const get = sts.spec.template.spec.containers[0].readinessProbe.httpGet as { path: string; port: string | number };
  const port = typeof get.port === 'number' ? get.port : pod.ports[get.port];
  try {
    const res = await fetch(`http://${pod.ip}:${port}${get.path}`, { signal: AbortSignal.timeout(3_000) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    return { status: 0, body: String(err) };
  }
}
