/**
 * Goal: the node identity file is created once, read back exactly, checked as untrusted input, and
 * binds the data dir to one node id. Method: real files in a temp dir.
 */
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadOrCreateIdentity, nodeFile, readIdentity, writeIdentity } from '../../src/cluster/membership/identity.js';
import { asNodeId } from '../../src/model/index.js';
import { isSluiceError } from '../../src/errors.js';
import { tempDir } from '../e2e/helpers.js';

describe('node identity (__cluster/node.json)', () => {
  it('is created on first start (new UUID, no cluster yet, owner-only) and read back unchanged', () => {
    const dir = tempDir('sluice-identity-');
    expect(readIdentity(dir)).toBeNull();
    const first = loadOrCreateIdentity(dir, asNodeId(3));
    expect(first).toMatchObject({ nodeId: 3, clusterId: null });
    expect(first.nodeUuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(fs.statSync(nodeFile(dir)).mode & 0o777).toBe(0o600);
    writeIdentity(dir, { ...first, clusterId: 'c-1' });
    expect(loadOrCreateIdentity(dir, asNodeId(3))).toEqual({ ...first, clusterId: 'c-1' });
    // A wiped data dir is a new node: a new UUID.
    const wiped = tempDir('sluice-identity-');
    expect(loadOrCreateIdentity(wiped, asNodeId(3)).nodeUuid).not.toBe(first.nodeUuid);
  });

  it('refuses another node id over the same data dir, naming both', () => {
    const dir = tempDir('sluice-identity-');
    loadOrCreateIdentity(dir, asNodeId(2));
    expect(() => loadOrCreateIdentity(dir, asNodeId(5))).toThrow(/belongs to node 2, but this node was started with --node-id 5/);
  });

  it('refuses a damaged file with LOG_CORRUPT and a way out, never a silent new identity', () => {
    for (const body of ['{', '{"version":2}', '{"version":1,"nodeId":0,"nodeUuid":"x","clusterId":null}', '{"version":1,"nodeId":1,"nodeUuid":"not-a-uuid","clusterId":null}', '{"version":1,"nodeId":1,"nodeUuid":"00000000-0000-4000-8000-000000000001","clusterId":""}']) {
      const dir = tempDir('sluice-identity-');
      loadOrCreateIdentity(dir, asNodeId(1));
      fs.writeFileSync(nodeFile(dir), body);
      let err: unknown;
      try {
        loadOrCreateIdentity(dir, asNodeId(1));
      } catch (e) {
        err = e;
      }
      expect(isSluiceError(err, 'LOG_CORRUPT'), body).toBe(true);
      expect((err as Error).message).toMatch(/is not a valid node identity .*move the data dir away/);
      expect(fs.readFileSync(nodeFile(dir), 'utf8')).toBe(body);
    }
  });
});
