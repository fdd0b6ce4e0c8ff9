// The orchestrator image's HEALTHCHECK. One image runs either role, so this finds the role of the sdflow process in
// the container: the API is healthy when GET /healthz answers 200 (a checkpoint is servable and Temporal, the meta
// store and the function runtime answer); a worker is healthy while its process runs.
import { readdirSync, readFileSync } from 'node:fs';

function sdflowRole() {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv;
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const main = argv.findIndex((arg) => arg.endsWith('dist/cli/main.js'));
    if (main >= 0) return argv[main + 1];
  }
  return undefined;
}

const role = sdflowRole();
if (role === 'api') {
  const port = process.env.PORT || '8080';
  try {
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(4000) });
    process.exit(res.ok ? 0 : 1);
  } catch {
    process.exit(1);
  }
}
process.exit(role === undefined ? 1 : 0);
