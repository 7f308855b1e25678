/**
 * Goal: `--controller-voters` (SLUICE_CONTROLLER_VOTERS) takes 1, 3 or 5 distinct node ids, plain or in
 * the Helm chart's `ID@HOST:PORT` form, and refuses anything else with a message naming the flag.
 * Method: the parser directly (the CLI turns its UsageError into one line on stderr and exit 1).
 */
import { describe, expect, it } from 'vitest';
import { parseControllerVoters } from '../../src/cli/parse.js';

describe('--controller-voters', () => {
  it('takes 1, 3 or 5 ids, plain or ID@HOST:PORT', () => {
    expect(parseControllerVoters('1')).toEqual([1]);
    expect(parseControllerVoters('1,2,3')).toEqual([1, 2, 3]);
    expect(parseControllerVoters(' 3 , 1,2 ')).toEqual([3, 1, 2]);
    expect(parseControllerVoters('1@10.0.0.1:7070,2@sluice-1.sluice:7070,3@[::1]:7070')).toEqual([1, 2, 3]);
    expect(parseControllerVoters('1,2,3,4,5')).toEqual([1, 2, 3, 4, 5]);
  });

  it('refuses an even count, duplicates, 0, junk and more than 5, naming the flag', () => {
    for (const bad of ['1,2', '1,1,2', '0', '0,1,2', 'a,b,c', '', '1,2,3,4,5,6,7', '1@,2,3x']) {
      expect(() => parseControllerVoters(bad), bad).toThrow(/--controller-voters: controller voters must be 1, 3 or 5 distinct positive node ids/);
    }
  });
});
