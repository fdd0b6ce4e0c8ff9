// Bundles the workflow code once at build time, so workers start without running webpack.
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';

const workflowsPath = fileURLToPath(new URL('../dist/workflows/index.js', import.meta.url));
const out = fileURLToPath(new URL('../dist/workflow-bundle.js', import.meta.url));
const { code } = await bundleWorkflowCode({
  workflowsPath,
  logger: { log() {}, info() {}, warn: console.warn, error: console.error, debug() {}, trace() {} },
});
await writeFile(out, code);
console.log(`bundled workflows: ${out} (${(code.length / 1024).toFixed(0)} KiB)`);
