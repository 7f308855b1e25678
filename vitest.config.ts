import { defineConfig } from 'vitest/config';

// Tests run against real processes and real disks, so they are slower than pure unit tests;
// the timeouts below are ceilings for a noisy 2-core machine, not expectations.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
  },
});
