/**
 * Summarizes V8 .cpuprofile files (from `SLUICE_BENCH_PROF=1 node dist/bench/run.js ...`): self time by
 * module and the top functions, so a missed target comes with where the time went.
 *
 *     node dist/bench/harness/profile.js bench/out/run-.../*.cpuprofile
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  totalS: number;
  byModule: Array<[string, number]>;
  topSelf: Array<[string, number]>;
}

function moduleOf(frame: ProfileNode['callFrame']): string {
  const special: Record<string, string> = { '(idle)': '(idle)', '(garbage collector)': '(gc)', '(program)': '(program)' };
  if (special[frame.functionName]) return special[frame.functionName]!;
  const url = frame.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/');
  if (url === '') return '(native)';
  if (url.startsWith('node_modules/')) {
    const parts = url.split('/');
    return parts[1]!.startsWith('@') ? `${parts[1]}/${parts[2]}` : parts[1]!;
  }
  if (url.startsWith('node:')) return `node:${url.slice(5).split('/')[0]}`;
  return url.split('/').slice(0, 3).join('/');
}

export function summarizeProfile(file: string, top = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfById = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    selfById.set(id, (selfById.get(id) ?? 0) + dt);
    total += dt;
  });
  const byModule = new Map<string, number>();
  const byFunction = new Map<string, number>();
  for (const [id, t] of selfById) {
    const frame = nodes.get(id)!.callFrame;
    const mod = moduleOf(frame);
    byModule.set(mod, (byModule.get(mod) ?? 0) + t);
    const key = `${frame.functionName || '(anonymous)'} ${frame.url.split('/').slice(-2).join('/')}:${frame.lineNumber + 1}`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + t);
  }
  const share = (entries: Map<string, number>) => [...entries].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k, t]) => [k, t / total] as [string, number]);
  return { file: basename(file), totalS: total / 1e6, byModule: share(byModule), topSelf: share(byFunction) };
}

export function formatProfile(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  return [
    `${s.file}: ${s.totalS.toFixed(1)} s sampled`,
    `  by module: ${s.byModule.map(([k, x]) => `${k} ${pct(x)}`).join(', ')}`,
    ...s.topSelf.map(([k, x]) => `  ${pct(x).padStart(6)}  ${k}`),
  ].join('\n');
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(basename(process.argv[1]))) {
  for (const file of process.argv.slice(2)) console.log(formatProfile(summarizeProfile(file)));
}
