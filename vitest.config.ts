import { defineConfig } from 'vitest/config';

// forks, not threads: worker threads crash with Temporal's native bridge.
export default defineConfig({
  test: {
    pool: 'forks',
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts', 'test/compat/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/setup-temporal-logging.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Integration files each start a stack of processes; on 2 cores, running two at once is the most that keeps
    // the simulator's timings meaningful.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
