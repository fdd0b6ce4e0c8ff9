import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run test:faults`: fault injection, load and fuzzing on real stacks. Heavier than `npm test`; one file at a
// time so the scenarios do not disturb each other's timings. It also runs the fault scenarios that `npm test`
// already covers (worker SIGKILL, deadlines, the reconciler), so this one suite holds every scenario of
// docs/RELIABILITY.md.
export default defineConfig({
  test: {
    ...base.test,
    include: [
      'test/faults/**/*.test.ts',
      'test/integration/worker-kill.test.ts',
      'test/integration/limits.test.ts',
      'test/integration/reconciler.test.ts',
    ],
    maxWorkers: 1,
    testTimeout: 600_000,
  },
});
