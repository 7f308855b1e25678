/**
 * Goal: every bad input a new user types gets one line on stderr that says what is wrong and what to
 * try, and exit code 1: bad flag values (format, numbers beyond what the wire carries, durations,
 * addresses), a broker address without a port, the broker's HTTP port instead of its gRPC port, an
 * endpoint that accepts and never answers (`--timeout`). Also: internal topics are hidden unless
 * `--internal`, and hints fit the command.
 * Method: run dist/src/cli/main.js as a child process against a spawned `sluice serve`, its HTTP port,
 * and a loopback TCP listener that never answers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import net from 'node:net';
import { cliPath, spawnBroker, type BrokerProcess } from '../../bench/broker-process.js';
import { tempDir } from '../e2e/helpers.js';
import { TOPIC_PARTITIONS_MAX } from '../../src/constants.js';

let broker: BrokerProcess;
let silent: net.Server;
let silentAddress: string;
const sockets = new Set<net.Socket>();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function sluice(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [cliPath(), ...args], { env: { ...process.env, SLUICE_BROKERS: broker.grpcAddress, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr, ms: Date.now() - started }),
    );
  });
}

/** The run failed with exit 1 and exactly one line on stderr, which matches `pattern`. */
function oneLineFailure(r: Run, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(/^sluice: error: /);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

beforeAll(async () => {
  broker = await spawnBroker(tempDir('sluice-cli-input-'));
  // Accepts connections and never says a word: a hung or wrong endpoint.
  silent = net.createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentAddress = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
});
afterAll(async () => {
  broker?.child.kill('SIGKILL');
  for (const s of sockets) s.destroy();
  await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
});

describe('sluice CLI input', () => {
  it('refuses bad flag values in one line', async () => {
    oneLineFailure(await sluice(['topic', 'list', '--format', 'yaml']), /unknown --format "yaml": use table or json/);
    oneLineFailure(await sluice(['consume', 'orders', '-o', '99999999999999999999']), /an offset must be at most 9007199254740991/);
    oneLineFailure(await sluice(['consume', 'orders', '-o', '@99999999999999999999']), /a timestamp must be at most/);
    oneLineFailure(await sluice(['consume', 'orders', '-p', '99999999999']), new RegExp(`--partition must be an integer from 0 to ${TOPIC_PARTITIONS_MAX - 1}`));
    oneLineFailure(await sluice(['topic', 'create', 'big', '-p', '99999999999']), /--partitions must be an integer from 1 to 2147483647/);
    oneLineFailure(await sluice(['consume', 'orders', '-n', 'many']), /--count must be an integer/);
    oneLineFailure(await sluice(['topic', 'list', '--timeout', '5x']), /--timeout must be a duration such as 500ms, 10s or 2m/);
    oneLineFailure(await sluice(['topic', 'list', '-b', 'http://127.0.0.1:7070']), /no scheme/);
    oneLineFailure(await sluice(['topic', 'list', '-b', '127.0.0.1:99999']), /the port must be from 1 to 65535/);
    oneLineFailure(await sluice(['topic', 'list'], { SLUICE_BROKERS: '::1' }), /IPv6 address goes in brackets/);
    oneLineFailure(await sluice(['group', 'reset-offsets', 'g', '--to-datetime', '99999999999999999999']), /at most 9007199254740991/);
    oneLineFailure(await sluice(['topic', 'nope']), /unknown command 'nope'/);
    oneLineFailure(await sluice(['cluster', 'recommission', '0']), /node must be an integer from 1 to 2147483647 \(got "0"\)/);
    oneLineFailure(await sluice(['cluster', 'recommission', 'three']), /node must be an integer/);
  });

  it("says the HTTP port is not the gRPC port, and times out a silent endpoint with --timeout", async () => {
    oneLineFailure(await sluice(['topic', 'list', '-b', broker.httpAddress]), /answered, but not as a gRPC server: is that the broker's HTTP port\?/);
    // The group member's stream says the same.
    oneLineFailure(await sluice(['consume', 'orders', '-g', 'g1', '-b', broker.httpAddress]), /answered, but not as a gRPC server/);
    const hung = await sluice(['topic', 'list', '-b', silentAddress, '--timeout', '1s']);
    oneLineFailure(hung, new RegExp(`no answer from ${silentAddress} within 1000 ms: is a Sluice broker listening there`));
    expect(hung.ms).toBeLessThan(20_000); // the default would be 30 s
    const env = await sluice(['topic', 'list', '-b', silentAddress], { SLUICE_TIMEOUT: '500ms' });
    oneLineFailure(env, /within 500 ms/);
  });

  it('hides internal topics unless --internal, and hints fit the command', async () => {
    expect((await sluice(['topic', 'create', 'visible'])).code).toBe(0);
    expect((await sluice(['group', 'list'])).code).toBe(0); // opens the coordinator, which creates __consumer_offsets
    const plain = await sluice(['topic', 'list', '--format', 'json']);
    expect(JSON.parse(plain.stdout).map((t: { name: string }) => t.name)).toEqual(['visible']);
    const all = await sluice(['topic', 'list', '--internal', '--format', 'json']);
    expect(JSON.parse(all.stdout).map((t: { name: string }) => t.name)).toEqual(['__consumer_offsets', 'visible']);

    const deleted = await sluice(['topic', 'delete', 'nope']);
    oneLineFailure(deleted, /UNKNOWN_TOPIC.*sluice topic list/);
    expect(deleted.stderr).not.toMatch(/create/);
    oneLineFailure(await sluice(['consume', 'nope', '-e']), /UNKNOWN_TOPIC.*sluice topic create/);
  });

  it('documents -o with the names it accepts', async () => {
    const help = (await sluice(['consume', '--help'])).stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/-o, --offset <offset> where to start: start \(or earliest\), end \(or latest\), N, -N \(N before the end\), @timestamp_ms \(default: start\)/);
    expect(help).toMatch(/--timeout <duration>.*\(default: 30s/);
  });
});
