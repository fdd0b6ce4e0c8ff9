import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { type DevServer, resolveTemporalCli, startDevServerOnFreePorts } from '../src/cli/temporal-server.js';

// One Temporal dev server for the whole run, on free ports with the UI and HTTP ports set explicitly, and the
// workflow bundle built once by `npm run build` (dist/workflow-bundle.js).

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    temporalNamespace: string;
    temporalCli: string;
    workflowBundlePath: string;
  }
}

let server: DevServer | undefined;
let dir: string | undefined;
let ownerFile: string | undefined;

/**
 * Where each run records its server, so a later run can stop servers left by a run that was killed where the kernel
 * could not end them with it (no `setpriv`).
 */
const OWNERS = join(tmpdir(), 'sdflow-test-temporal');

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function reapAbandonedServers() {
  mkdirSync(OWNERS, { recursive: true });
  for (const name of readdirSync(OWNERS)) {
    const file = join(OWNERS, name);
    try {
      const { owner, server: serverPid } = JSON.parse(readFileSync(file, 'utf8')) as { owner: number; server: number };
      if (alive(owner)) continue;
      if (alive(serverPid) && readFileSync(`/proc/${serverPid}/cmdline`, 'utf8').includes('start-dev')) {
        process.kill(serverPid, 'SIGKILL');
      }
      rmSync(file, { force: true });
    } catch {
      rmSync(file, { force: true });
    }
  }
}

export async function setup(project: TestProject) {
  const bundle = join(process.cwd(), 'dist', 'workflow-bundle.js');
  if (!existsSync(bundle)) console.warn(`${bundle} is missing: run 'npm run build' first (npm test does)`);
  reapAbandonedServers();
  const cli = await resolveTemporalCli();
  dir = mkdtempSync(join(tmpdir(), 'sdflow-temporal-'));
  // Ends with this process however it ends (a killed run included); globalSetup runs on vitest's main thread.
  server = await startDevServerOnFreePorts({
    cli,
    namespace: 'default',
    logDir: dir,
    headless: false,
    exitWithParent: true,
  });
  ownerFile = join(OWNERS, `${process.pid}.json`);
  writeFileSync(ownerFile, JSON.stringify({ owner: process.pid, server: server.process.pid }));
  project.provide('temporalAddress', server.address);
  project.provide('temporalNamespace', 'default');
  project.provide('temporalCli', cli);
  project.provide('workflowBundlePath', bundle);
}

export async function teardown() {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (ownerFile) rmSync(ownerFile, { force: true });
}
