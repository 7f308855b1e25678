/**
 * Goal: the package a new user installs and the README they follow work as written: the embedded
 * example runs twice in a row, `require('sluice')` resolves (no ERR_PACKAGE_PATH_NOT_EXPORTED), the
 * published files hold dist/src, the descriptor sets, proto/ and LICENSE but not dist/bench or
 * dist/test, every dependency install script is decided in `allowScripts` (so `npm install` prints no
 * warning), and the tour's keys land on different partitions.
 * Method: run the README's TypeScript block (plain JavaScript) as an .mjs file inside the package, so
 * `from 'sluice'` resolves through package.json's exports as it does for a user, in a fresh working
 * directory, twice; `npm pack --dry-run --json --ignore-scripts` for the file list; package-lock.json's
 * hasInstallScript flags; murmur2 on the tour's keys.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { partitionForKey } from '../../src/model/murmur2.js';
import { tempDir } from './helpers.js';

const readme = fs.readFileSync('README.md', 'utf8');

describe('the package and the README', () => {
  it("runs the README's embedded example twice in a row", () => {
    const block = /```ts\n([\s\S]*?)```/.exec(readme);
    expect(block, 'README.md has a ```ts block').not.toBeNull();
    const scratch = path.resolve('.vitest-tmp');
    fs.mkdirSync(scratch, { recursive: true });
    const script = path.join(scratch, `readme-example-${process.pid}.mjs`);
    fs.writeFileSync(script, block![1]!);
    const cwd = tempDir('sluice-readme-');
    try {
      const runs = [1, 2].map(() => spawnSync(process.execPath, [script], { cwd, encoding: 'utf8', timeout: 60_000 }));
      for (const r of runs) expect(r.status, r.stderr).toBe(0);
      // Each start of the broker begins a term whose no-op takes an offset: 0, then 2.
      expect(runs[0]!.stdout.trim().split('\n')).toEqual(['1 order-1']);
      expect(runs[1]!.stdout.trim().split('\n')).toEqual(['1 order-1', '3 order-1']);
    } finally {
      fs.rmSync(script, { force: true });
    }
  });

  it('resolves require("sluice") through the exports map', () => {
    const r = spawnSync(process.execPath, ['-e', "try { console.log(typeof require('sluice').startBroker) } catch (e) { console.log(e.code) }"], { encoding: 'utf8', timeout: 30_000 });
    // Node 20.19+ and 22.12+ load ES modules from require; older Node 20 refuses with ERR_REQUIRE_ESM.
    expect(['function', 'ERR_REQUIRE_ESM']).toContain(r.stdout.trim());
  });

  it('publishes dist/src, the descriptor sets, proto/ and LICENSE, and not dist/bench or dist/test', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'ignore'] });
    const files: string[] = JSON.parse(out)[0].files.map((f: { path: string }) => f.path);
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'dist/src/index.js', 'dist/src/cli/main.js', 'dist/descriptors.binpb', 'dist/health.binpb', 'proto/sluice/v1/broker.proto']));
    expect(files.filter((f) => f.startsWith('dist/bench/') || f.startsWith('dist/test/'))).toEqual([]);
    const license = fs.readFileSync('LICENSE', 'utf8');
    expect(license).toMatch(/Apache License\s+Version 2\.0, January 2004/);
    expect(license).toMatch(/END OF TERMS AND CONDITIONS/);
    expect(JSON.parse(fs.readFileSync('package.json', 'utf8')).license).toBe('Apache-2.0');
  });

  it('decides every dependency install script in allowScripts', () => {
    const pkg = JSON.parse(fs.readFileSync('package.json', 'utf8')) as { allowScripts?: Record<string, boolean> };
    const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8')) as { packages: Record<string, { hasInstallScript?: boolean }> };
    const withScripts = Object.entries(lock.packages)
      .filter(([where, p]) => where !== '' && p.hasInstallScript === true)
      .map(([where]) => where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length));
    expect(withScripts.length).toBeGreaterThan(0); // the lockfile does flag them: this check can fail
    for (const name of withScripts) expect(Object.keys(pkg.allowScripts ?? {}), name).toContain(name);
  });

  it("spreads the tour's keys over the topic's partitions", () => {
    const create = /sluice topic create orders -p (\d+)/.exec(readme);
    const produce = /printf '([^']*)' \| sluice produce orders -k :/.exec(readme);
    expect(create).not.toBeNull();
    expect(produce).not.toBeNull();
    const keys = produce![1]!.split('\\n').filter((l) => l.length > 0).map((l) => l.slice(0, l.indexOf(':')));
    const partitions = new Set(keys.map((k) => partitionForKey(Buffer.from(k), Number(create![1]))));
    expect(partitions.size).toBe(Number(create![1]));
  });
});
