/**
 * Goal: the Dockerfile (which cannot be built here: no Docker) agrees with the chart and the build.
 * Method: read it as text and check what would break a pod silently: the chart's command execs the
 * image's entrypoint (node, the broker's node flags, the CLI path) as `npm start` does, the image user is the one the chart runs as, the runtime stage carries
 * what `sluice serve` reads at run time (dist, proto, production node_modules), and .dockerignore
 * keeps every input of `npm run build` (tsconfig.build.json's includes, buf and npm files) in the context.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { render, statefulSet } from './helm.js';
import { BROKER_NODE_FLAGS } from '../../src/constants.js';

const root = new URL('../../', import.meta.url);
const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
const instructions = dockerfile.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith('#'));
const runtimeStage = instructions.slice(instructions.findLastIndex((l) => l.startsWith('FROM ')));

/** Docker's rule, simplified to what .dockerignore uses: the last matching line wins, `!` re-includes. */
function ignored(file: string, patterns: string[]): boolean {
  let out = false;
  for (const raw of patterns) {
    const negate = raw.startsWith('!');
    const p = negate ? raw.slice(1) : raw;
    const re = new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    if (re.test(file)) out = !negate;
  }
  return out;
}

describe('Dockerfile', () => {
  const sts = statefulSet(render());
  const pod = sts.spec.template.spec;

  it('has an absolute node entrypoint, with the broker node flags, that the chart execs as npm start does', () => {
    const entry = instructions.find((l) => l.startsWith('ENTRYPOINT '));
    const argv = JSON.parse(entry!.slice('ENTRYPOINT '.length)) as string[];
    expect(argv[0]).toBe('node');
    expect(argv.slice(1, -1)).toEqual([...BROKER_NODE_FLAGS]);
    expect(argv.at(-1)).toMatch(/^\/app\/dist\/src\/cli\/main\.js$/);
    expect(pod.containers[0].command.join('\n')).toContain(`exec ${argv.join(' ')} serve "$@"`);
    const pkg = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`node ${BROKER_NODE_FLAGS.join(' ')} dist/src/cli/main.js serve`);
  });

  it('runs as the numeric user and group the chart sets (runAsNonRoot needs a number)', () => {
    const user = runtimeStage.find((l) => l.startsWith('USER '));
    expect(user).toBe(`USER ${pod.securityContext.runAsUser}:${pod.securityContext.runAsGroup}`);
  });

  it('the runtime stage carries dist, proto (read at run time), production node_modules and package.json', () => {
    const copies = runtimeStage.filter((l) => l.startsWith('COPY --from=build')).map((l) => l.split(/\s+/)[2]);
    expect(copies.sort()).toEqual(['/src/dist', '/src/node_modules', '/src/package.json', '/src/proto']);
    expect(instructions.some((l) => l.includes('npm prune --omit=dev'))).toBe(true);
  });

  it('.dockerignore keeps every build input in the context and leaves the rest out', () => {
    const patterns = readFileSync(new URL('.dockerignore', root), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    const build = JSON.parse(readFileSync(new URL('tsconfig.build.json', root), 'utf8')) as { include: string[] };
    const inputs = [...build.include, 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'buf.yaml', 'buf.gen.yaml', 'proto/sluice/v1/broker.proto', 'test/sim/main.ts'];
    for (const f of inputs) expect(ignored(f, patterns), f).toBe(false);
    for (const f of ['node_modules/x', 'dist/src/index.js', '.git/HEAD', 'test/broker/kill9.test.ts', 'src/rpc/gen/x.ts']) expect(ignored(f, patterns), f).toBe(true);
  });
});
