import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// `npm run test:browser`: the web console in Debian's Chromium (/usr/bin/chromium, never a downloaded browser),
// driven by playwright-core on a real stack.
export default defineConfig({ test: { ...base.test, include: ['test/browser/**/*.test.ts'] } });
