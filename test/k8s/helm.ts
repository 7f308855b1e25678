/**
 * Test helpers: run the real helm binary (k8s/scripts/get-helm.mjs fetches and caches it) on the
 * chart, parse what it renders, and validate each manifest against the Kubernetes API schemas of
 * kubernetes-models (and the Prometheus Operator's for the ServiceMonitor).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { ensureHelm } from '../../k8s/scripts/get-helm.mjs';

export const CHART_DIR = fileURLToPath(new URL('../../k8s/charts/sluice', import.meta.url));
export const RELEASE = 'rel';
export const NAMESPACE = 'streams';
/** A helm render or lint takes well under a second; this only stops a hung binary. */
const HELM_TIMEOUT_MS = 60_000;

/** A rendered Kubernetes object, loosely typed: tests reach into it by path. */
export type Manifest = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any; [k: string]: any };

export type Values = Record<string, string | number | boolean>;

// helm keeps config and caches under $HOME; keep them beside the cached binary, out of the user's home.
const helmHome = path.join(path.dirname(ensureHelm()), 'home');
fs.mkdirSync(helmHome, { recursive: true });

export function helm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(ensureHelm(), args, {
    encoding: 'utf8',
    timeout: HELM_TIMEOUT_MS,
    env: { ...process.env, HELM_CONFIG_HOME: helmHome, HELM_CACHE_HOME: helmHome, HELM_DATA_HOME: helmHome },
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function setArgs(values: Values): string[] {
  return Object.entries(values).flatMap(([k, v]) => [typeof v === 'string' ? '--set-string' : '--set', `${k}=${String(v)}`]);
}

/** `helm template` with these values; the raw result, for tests that expect a failure. */
export function template(values: Values = {}): { status: number | null; stdout: string; stderr: string } {
  return helm(['template', RELEASE, CHART_DIR, '--namespace', NAMESPACE, ...setArgs(values)]);
}

/** Renders and parses every manifest; throws with helm's message when the render fails. */
export function render(values: Values = {}): Manifest[] {
  const r = template(values);
  if (r.status !== 0) throw new Error(`helm template failed (${r.status}): ${r.stderr}`);
  const docs = parseAllDocuments(r.stdout);
  for (const d of docs) if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0].message}`);
  return docs.map((d) => d.toJS() as Manifest | null).filter((m): m is Manifest => m !== null);
}

// Each class validates its own kind's schema; a kind missing here fails the test that renders it.
const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Throws when the manifest breaks its kind's schema (wrong types, missing required fields, bad enums). */
export function validateManifest(m: Manifest): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (Model === undefined) throw new Error(`no schema for ${m.apiVersion}/${m.kind}`);
  new Model(m as never).validate();
}

export function only(manifests: Manifest[], kind: string): Manifest[] {
  return manifests.filter((m) => m.kind === kind);
}

export function statefulSet(manifests: Manifest[]): Manifest {
  const s = only(manifests, 'StatefulSet');
  if (s.length !== 1) throw new Error(`expected one StatefulSet, got ${s.length}`);
  return s[0];
}

/** Does a matchLabels selector select an object with these labels? (Every pair must be present.) */
export function selects(matchLabels: Record<string, string>, labels: Record<string, string> = {}): boolean {
  return Object.entries(matchLabels).every(([k, v]) => labels[k] === v);
}
