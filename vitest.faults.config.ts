import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run test:faults`: fault injection, load and fuzzing on real stacks. Heavier than `npm test`; one file at a
// time so the scenarios do not disturb each other's timings.
export default defineConfig({
  test: { ...base.test, include: ['test/faults/**/*.test.ts'], maxWorkers: 1, testTimeout: 600_000 },
});
