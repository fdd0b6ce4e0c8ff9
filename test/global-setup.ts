import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { type DevServer, resolveTemporalCli, startDevServer } from '../src/cli/temporal-server.js';
import { freePort } from '../src/http-util.js';

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

/** Where each run records its server, so a later run can stop servers left by a run that was killed. */
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

const START_ATTEMPTS = 3;

/**
 * Starts the dev server on ports that were free a moment ago. Another process may take one of them in between (the
 * server also picks internal ports of its own), so a server that exits at start is tried again on new ports.
 */
async function startOnFreePorts(cli: string, logDir: string): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    const logFile = join(logDir, `temporal-${attempt}.log`);
    const [port, uiPort, httpPort, metricsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    try {
      return await startDevServer({
        cli,
        ip: '127.0.0.1',
        port,
        uiPort,
        httpPort,
        metricsPort,
        namespace: 'default',
        logFile,
        headless: false,
      });
    } catch (err) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
      console.warn(`temporal dev server, attempt ${attempt} of ${START_ATTEMPTS}: ${(err as Error).message}\n${log}`);
      if (attempt >= START_ATTEMPTS) throw err;
    }
  }
}

export async function setup(project: TestProject) {
  const bundle = join(process.cwd(), 'dist', 'workflow-bundle.js');
  if (!existsSync(bundle)) console.warn(`${bundle} is missing: run 'npm run build' first (npm test does)`);
  reapAbandonedServers();
  const cli = await resolveTemporalCli();
  dir = mkdtempSync(join(tmpdir(), 'sdflow-temporal-'));
  server = await startOnFreePorts(cli, dir);
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
