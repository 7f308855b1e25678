/**
 * Goal: pin down the protocol's behaviour in the situations Raft is known to get wrong (figure 8, a
 * stale leader, snapshot catch-up, membership, transfer, flapping links under every pre-vote /
 * check-quorum combination).
 * Method: each test/raft/testdata/*.txt script drives an in-memory cluster command by command
 * (harness.ts) and states what must hold; the harness checks state-machine safety after every command.
 * The figure-8 script is also run with the `commit-old-term` bug, and must then fail.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runScript } from './harness.js';

const dir = join(dirname(fileURLToPath(import.meta.url)), 'testdata');
const scripts = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort();

describe('raft scenario scripts', () => {
  it('has the scripts the issue asks for', () => {
    for (const name of ['elect', 'partition-leader', 'figure-8', 'stale-leader', 'snapshot', 'membership', 'transfer', 'flapping']) {
      expect(scripts).toContain(`${name}.txt`);
    }
  });

  for (const f of scripts) {
    it(f, () => {
      runScript(readFileSync(join(dir, f), 'utf8'));
    });
  }

  it('figure-8 fails when old-term entries are committed by counting (the checker can fail)', () => {
    const text = readFileSync(join(dir, 'figure-8.txt'), 'utf8');
    expect(() => runScript(text, { bugs: ['commit-old-term'] })).toThrow(/commit/);
  });
});
