/**
 * Goal: the partition shapes of a chaos cluster set exactly the links they name (a test of the
 * harness: a shape that cut nothing would make every partition schedule pass vacuously), and the
 * TEST-ONLY peer address map the nodes read is the identity when unset and refuses non-loopback
 * addresses. Method: `linkSettings` on 3 and 5 nodes, checked link by link; the map parsed in a child
 * process with the variable set (it is read once per process), from dist/ (needs `npm run build`).
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { linkSettings } from './links.js';
import { peerDialAddress } from '../../src/cluster/test-peer-map.js';

/** "i>j:mode" for every setting, sorted. */
const flat = (s: ReturnType<typeof linkSettings>): string[] => s.map((x) => `${x.from}>${x.to}:${x.mode}`).sort();

describe('partition shapes (links.ts)', () => {
  it('minority: every link between the two sides drops, both ways; links within a side pass', () => {
    expect(flat(linkSettings('minority', [2], 3))).toEqual(['1>2:drop', '2>1:drop', '2>3:drop', '3>2:drop']);
    const five = flat(linkSettings('minority', [1, 4], 5));
    expect(five).toHaveLength(2 * 2 * 3);
    expect(five.some((l) => l.startsWith('1>4') || l.startsWith('4>1') || l.startsWith('2>3'))).toBe(false);
  });

  it('bridge: the bridge keeps both sides; the sides lose each other', () => {
    expect(flat(linkSettings('bridge', [1], 3, 2))).toEqual(['1>3:drop', '3>1:drop']);
    expect(flat(linkSettings('bridge', [1, 2], 5, 3))).toEqual(['1>4:drop', '1>5:drop', '2>4:drop', '2>5:drop', '4>1:drop', '4>2:drop', '5>1:drop', '5>2:drop']);
  });

  it('one-way: what the node sends is lost on both connections of each pair; what it receives arrives', () => {
    expect(flat(linkSettings('one-way', [3], 3))).toEqual(['1>3:drop-responses', '2>3:drop-responses', '3>1:drop-requests', '3>2:drop-requests']);
  });
});

describe('the TEST-ONLY peer address map (src/cluster/test-peer-map.ts)', () => {
  // The built module (needs `npm run build`, as the brokers the harness starts do).
  const distModule = pathToFileURL(path.resolve('dist/src/cluster/test-peer-map.js')).href;
  const inChild = (map: string, address: string): string =>
    execFileSync(process.execPath, ['--input-type=module', '-e', `import(${JSON.stringify(distModule)}).then((m) => { try { process.stdout.write(m.peerDialAddress(${JSON.stringify(address)})); } catch (e) { process.stdout.write('ERR ' + e.message); } })`], { env: { ...process.env, SLUICE_TEST_PEER_ADDRESS_MAP: map }, encoding: 'utf8' });

  it('is the identity when unset', () => {
    expect(process.env.SLUICE_TEST_PEER_ADDRESS_MAP).toBeUndefined();
    expect(peerDialAddress('127.0.0.12:5000')).toBe('127.0.0.12:5000');
  });

  it('maps the addresses it names, and refuses anything but loopback', () => {
    const map = JSON.stringify({ '127.0.0.12:5000': '127.0.0.11:6000' });
    expect(inChild(map, '127.0.0.12:5000')).toBe('127.0.0.11:6000');
    expect(inChild(map, '127.0.0.13:5000')).toBe('127.0.0.13:5000');
    expect(inChild(JSON.stringify({ '10.0.0.1:5000': '127.0.0.11:6000' }), '10.0.0.1:5000')).toMatch(/^ERR .*only loopback/);
  });
});
