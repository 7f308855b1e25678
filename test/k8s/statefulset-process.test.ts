/**
 * Goal: the container the chart renders really runs: its command, args and env start a broker that
 * gets ready on gRPC health (the startup/liveness probes) and /readyz (readiness), carries the identity
 * the chart computed, and exits 0 on SIGTERM (what the kubelet sends after preStop).
 * Method: render the chart with helm, take the StatefulSet container's command, args and env exactly
 * as rendered, and do only what the kubelet and the pod would: resolve the downward-API field
 * (metadata.name), expand $(VAR) references the kubelet's way, give the pod its own address (a
 * 127.0.0.x loopback address stands for the pod IP and for each pod's DNS name), mount a temp dir at
 * /data, and use this checkout as the image's /app. Then spawn the command itself (/bin/sh, which
 * must exec node) and talk to it as the probes would.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { cliPath, waitExit } from '../../bench/broker-process.js';
import { render, statefulSet } from './helm.js';
import { BROKER_NODE_FLAGS } from '../../src/constants.js';
import { addressBlock, cleanUpPods, kubeletExpand, podFrom, POD_START_TIMEOUT_MS as READY_TIMEOUT_MS, startPod as start, tempDir, withTimeout } from './pods.js';

const EXIT_TIMEOUT_MS = 30_000;

function healthCheck(address: string): Promise<string> {
  const def = protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true });
  const { grpc: g } = grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } };
  const client = new g.health.v1.Health(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    (client as unknown as { Check(req: object, opts: object, cb: (err: Error | null, res?: { status: string }) => void): void }).Check(
      { service: '' },
      { deadline: Date.now() + READY_TIMEOUT_MS },
      (err, res) => {
        client.close();
        if (err) reject(err);
        else resolve(res!.status);
      },
    );
  });
}

afterEach(cleanUpPods);

describe('the rendered StatefulSet container, run as the kubelet would', () => {
  it('pod 2 starts from the rendered command, serves gRPC health, is not ready while its seeds are down, carries its identity, and exits 0 on SIGTERM', async () => {
    const ipOf = addressBlock();
    const pod = podFrom(statefulSet(render()), 2, ipOf, tempDir());
    expect(pod.argv[0]).toBe('/bin/sh');
    const { child, ready, stderr } = start(pod);
    const line = await ready;
    expect(line).toContain(`grpc=${pod.ip}:7070 http=${pod.ip}:7071 data=${pod.dataDir}`);

    // The shell exec'd node: the pid the kubelet started is `sluice serve` itself, so SIGTERM reaches it.
    const cmdline = fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
    expect(path.basename(cmdline[0])).toBe('node');
    expect(cmdline.slice(1, 3 + BROKER_NODE_FLAGS.length)).toEqual([...BROKER_NODE_FLAGS, cliPath(), 'serve']);
    const environ = new Set(fs.readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0'));
    expect(environ.has('SLUICE_NODE_ID=3')).toBe(true);
    expect(environ.has(`SLUICE_ADVERTISE_ADDR=${pod.ip}:7070`)).toBe(true);
    expect(environ.has(`SLUICE_SEEDS=${[0, 1, 2].map((o) => `${ipOf(o)}:7070`).join(',')}`)).toBe(true);
    expect(environ.has(`SLUICE_CONTROLLER_VOTERS=${[0, 1, 2].map((o) => `${o + 1}@${ipOf(o)}:7070`).join(',')}`)).toBe(true);

    expect(await healthCheck(`${pod.ip}:7070`)).toBe('SERVING');
    // Its seeds name pods 0 and 1, which are not running: it serves gRPC but is not ready (Kubernetes
    // sends it no traffic) until it has joined the cluster, and /readyz says why.
    const readyz = await fetch(`http://${pod.ip}:7071/readyz`);
    expect(readyz.status).toBe(503);
    expect(await readyz.text()).toMatch(new RegExp(`joining the cluster: no seed answered .*${ipOf(0).replace(/\./g, '\\.')}:7070`));
    expect(fs.existsSync(path.join(pod.dataDir, '.lock'))).toBe(true);

    child.kill('SIGTERM');
    const exit = await withTimeout(waitExit(child), EXIT_TIMEOUT_MS, 'exit after SIGTERM');
    expect(exit, stderr()).toEqual({ code: 0, signal: null });
    expect(stderr()).toContain('shut down cleanly');
  });

  it('the wrapper refuses a pod name without an ordinal, naming it', async () => {
    const pod = podFrom(statefulSet(render()), 0, addressBlock(), tempDir());
    pod.env.POD_NAME = 'not-a-statefulset-pod';
    const { child, ready } = start(pod);
    await expect(ready).rejects.toThrow(/exited \(1\).*no ordinal in POD_NAME=not-a-statefulset-pod/s);
    expect(child.exitCode).toBe(1);
  });

  it('kubeletExpand follows the kubelet: known names expand, $$ escapes, unknown references and $(( stay', () => {
    const vars = { POD_NAME: 'rel-sluice-0' };
    expect(kubeletExpand('$(POD_NAME).x:1', vars)).toBe('rel-sluice-0.x:1');
    expect(kubeletExpand('$$(POD_NAME)', vars)).toBe('$(POD_NAME)');
    expect(kubeletExpand('$(NOPE)', vars)).toBe('$(NOPE)');
    expect(kubeletExpand('X="$((ordinal + 1))"', vars)).toBe('X="$((ordinal + 1))"');
  });
});
