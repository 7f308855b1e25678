/**
 * Goal: `sluice consume TOPIC -g GROUP` and `sluice group list|describe|delete|reset-offsets` work end
 * to end: describe shows per-partition lag in a table, reset-offsets is a dry run without --execute and
 * refuses while the group has members, errors are one line with the stable reason and exit code 1.
 * Method: the built CLI (dist/src/cli/main.js) as a child process against a real in-process broker.
 */
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGroupBroker, topicWithRecords, waitFor, type GroupBroker } from './helpers.js';

const CLI = path.resolve('dist/src/cli/main.js');
let gb: GroupBroker;

function sluice(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '-b', gb.address], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  gb = await startGroupBroker();
  await topicWithRecords(gb.brokerAddress, 'cli-topic', 2, 5);
});
afterAll(async () => {
  await gb?.close();
});

describe('sluice group CLI', () => {
  it('consumes with -g, commits what it printed, and shows lag', async () => {
    const first = await sluice(['consume', 'cli-topic', '-g', 'cli-g', '-n', '3']);
    expect(first.code).toBe(0);
    expect(first.stdout.trim().split('\n').length).toBe(3);
    const second = await sluice(['consume', 'cli-topic', '-g', 'cli-g', '-n', '7']);
    expect(second.code).toBe(0);
    const all = [...first.stdout.trim().split('\n'), ...second.stdout.trim().split('\n')];
    expect(new Set(all).size).toBe(10); // no record twice, none skipped
    // Each partition: the first term's no-op at 0, records at 1-5; committed = high watermark = 6.

    const d = await sluice(['group', 'describe', 'cli-g']);
    expect(d.code).toBe(0);
    expect(d.stdout).toMatch(/TOPIC\s+PARTITION\s+COMMITTED-OFFSET\s+HIGH-WATERMARK\s+LAG/);
    expect(d.stdout).toMatch(/cli-topic\s+0\s+6\s+6\s+0/);
    expect(d.stdout).toMatch(/EMPTY/);
    const json = JSON.parse((await sluice(['group', 'describe', 'cli-g', '--format', 'json'])).stdout);
    expect(json.partitions.map((p: { lag: number }) => p.lag)).toEqual([0, 0]);
    expect((await sluice(['group', 'list'])).stdout).toMatch(/cli-g\s+EMPTY\s+0/);
  });

  it('reset-offsets: dry run by default, --execute applies, refused with members', async () => {
    const dry = await sluice(['group', 'reset-offsets', 'cli-g', '--to-earliest']);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/cli-topic\s+0\s+6\s+0/);
    expect(dry.stderr).toMatch(/dry run/);
    expect((await sluice(['group', 'describe', 'cli-g'])).stdout).toMatch(/cli-topic\s+0\s+6\s+6\s+0/);
    const exec = await sluice(['group', 'reset-offsets', 'cli-g', '--to-offset', '2', '--execute']);
    expect(exec.code).toBe(0);
    expect((await sluice(['group', 'describe', 'cli-g'])).stdout).toMatch(/cli-topic\s+0\s+2\s+6\s+4/);
    const noTarget = await sluice(['group', 'reset-offsets', 'cli-g']);
    expect(noTarget.code).toBe(1);

    // A live member: the reset is refused with a clear reason.
    const member = spawn(process.execPath, [CLI, 'consume', 'cli-topic', '-g', 'cli-g', '-b', gb.address], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    member.stdout.on('data', (b: Buffer) => (out += b.toString()));
    await waitFor('member consuming', () => out.split('\n').length > 6, 15_000);
    const refused = await sluice(['group', 'reset-offsets', 'cli-g', '--to-latest', '--execute']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/GROUP_NOT_EMPTY/);
    const del = await sluice(['group', 'delete', 'cli-g']);
    expect(del.stderr).toMatch(/GROUP_NOT_EMPTY/);
    member.kill('SIGTERM');
    await new Promise((r) => member.once('exit', r));
    await waitFor('group empty', async () => /EMPTY/.test((await sluice(['group', 'describe', 'cli-g'])).stdout), 10_000);
    expect((await sluice(['group', 'delete', 'cli-g'])).code).toBe(0);
    const gone = await sluice(['group', 'describe', 'cli-g']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/UNKNOWN_GROUP/);
  });
});
