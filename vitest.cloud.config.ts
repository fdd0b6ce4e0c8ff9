import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run test:cloud`: the cloud adapters (OSS, Tablestore, Function Compute) against honest local HTTP fakes,
// and a stack running on those fakes.
export default defineConfig({ test: { ...base.test, include: ['test/cloud/**/*.test.ts'] } });
