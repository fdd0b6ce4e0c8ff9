import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The console is built into dist/console, which the API serves at /console/. Everything is bundled: the page loads
// nothing from another origin.
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/console/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    sourcemap: false,
    // No asset becomes a data: URL: the page's content security policy loads images from URLs only.
    assetsInlineLimit: 0,
  },
});
