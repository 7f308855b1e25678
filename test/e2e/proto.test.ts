/**
 * Goal: the API definition stays clean and documented. Method: run `buf lint` (STANDARD) on proto/,
 * and check that every SluiceError code has a gRPC status mapping and a row in docs/api.md.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { ERROR_CODES } from '../../src/errors.js';
import { GRPC_STATUS_BY_CODE } from '../../src/rpc/index.js';

const root = new URL('../../', import.meta.url).pathname;

describe('API definition', () => {
  it('passes buf lint (STANDARD)', () => {
    const out = execFileSync(`${root}node_modules/.bin/buf`, ['lint'], { cwd: root, encoding: 'utf8' });
    expect(out.trim()).toBe('');
  });

  it('maps and documents every error reason', () => {
    const doc = fs.readFileSync(`${root}docs/api.md`, 'utf8');
    for (const code of ERROR_CODES) {
      expect(GRPC_STATUS_BY_CODE[code], code).toBeTypeOf('number');
      expect(doc, code).toContain(`| \`${code}\` |`);
    }
  });
});
