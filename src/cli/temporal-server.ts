import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Client, Connection } from '@temporalio/client';
import { freePort } from '../http-util.js';
import { isAlive, stopGroup } from '../platform/functions/local/processes.js';
import { SEARCH_ATTRIBUTES } from '../types.js';

const execFileAsync = promisify(execFile);

/** The version the setup script pins; the data dir records the version that created it. */
export const PINNED_TEMPORAL_VERSION = '1.9.1';

/** Runs scripts/setup-temporal.sh, which finds or installs the CLI, and returns the binary's path. */
export async function resolveTemporalCli(): Promise<string> {
  const script = fileURLToPath(new URL('../../scripts/setup-temporal.sh', import.meta.url));
  try {
    const { stdout } = await execFileAsync('bash', [script], { maxBuffer: 16 * 1024 * 1024, timeout: 30 * 60_000 });
    const path = stdout.trim().split('\n').pop();
    if (!path) throw new Error('setup-temporal.sh printed no path');
    return path;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`could not provide the Temporal CLI:\n${e.stderr?.trim() || e.message}`);
  }
}

export async function temporalCliVersion(cli: string): Promise<string> {
  const { stdout } = await execFileAsync(cli, ['--version']);
  return /temporal version (\S+)/.exec(stdout)?.[1] ?? 'unknown';
}

export interface DevServerOptions {
  cli: string;
  ip: string;
  port: number;
  uiPort: number;
  httpPort: number;
  metricsPort?: number;
  /** SQLite file for persistence; in memory when absent. */
  dbFile?: string;
  namespace: string;
  /** stdout/stderr of the server go here; inherited when absent. */
  logFile?: string;
  headless?: boolean;
  /** Where the running server is recorded (removed when it stops), so a later start can find it if it is left. */
  recordFile?: string;
  /**
   * Kill the server when this process dies, however it dies (Linux, through util-linux `setpriv --pdeathsig`). The
   * kernel ties the signal to the thread that spawned the server, so call from the main thread.
   */
  exitWithParent?: boolean;
}

export interface DevServer {
  address: string;
  process: ChildProcess;
  /** Whether the kernel kills the server when this process dies (`exitWithParent` on a machine that can). */
  exitsWithParent: boolean;
  stop(): Promise<void>;
}

/** What `recordFile` holds: the server, the process that started it, and the SQLite file that makes it this one. */
export interface ServerRecord {
  pid: number;
  launcher: number;
  dbFile: string | null;
  address: string;
}

/** The search attributes sdflow registers, with their Temporal types. */
export const SEARCH_ATTRIBUTE_TYPES: Record<string, 'Keyword'> = Object.fromEntries(
  Object.values(SEARCH_ATTRIBUTES).map((key) => [key.name, 'Keyword']),
);

/**
 * The server settings sdflow needs beyond Temporal's defaults (temporal/docker-compose.yml sets the same for a
 * cluster): every task waiting for a GPU slot holds one update open on the semaphore, and Temporal admits only ten
 * open updates per workflow by default, refusing the rest until the caller retries.
 */
export const SERVER_DYNAMIC_CONFIG = ['history.maxInFlightUpdates=10000'];

export async function startDevServer(o: DevServerOptions): Promise<DevServer> {
  const args = [
    'server',
    'start-dev',
    '--ip',
    o.ip,
    '--port',
    String(o.port),
    '--ui-port',
    String(o.uiPort),
    '--http-port',
    String(o.httpPort),
    '--namespace',
    o.namespace,
    '--log-level',
    'warn',
    '--ui-disable-news-fetch',
    ...SERVER_DYNAMIC_CONFIG.flatMap((entry) => ['--dynamic-config-value', entry]),
  ];
  if (o.metricsPort) args.push('--metrics-port', String(o.metricsPort));
  // WAL with normal sync: a commit survives a crash of the server or of this machine's processes, not a power cut,
  // and no longer waits for a full fsync of the database file, which every workflow step would otherwise pay.
  if (o.dbFile) {
    args.push(
      '--db-filename',
      o.dbFile,
      '--sqlite-pragma',
      'journal_mode=wal',
      '--sqlite-pragma',
      'synchronous=normal',
    );
  }
  if (o.headless) args.push('--headless');
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTE_TYPES)) args.push('--search-attribute', `${name}=${type}`);
  const out = o.logFile ? openSync(o.logFile, 'a') : 'inherit';
  const setpriv = o.exitWithParent ? findSetpriv() : undefined;
  // setpriv sets the parent-death signal and then execs the CLI, so the pid stays the server's.
  const [command, argv] = setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', o.cli, ...args]] : [o.cli, args];
  const child = spawn(command, argv, { stdio: ['ignore', out, out], detached: true });
  const address = `${o.ip}:${o.port}`;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const forget = () => {
    if (o.recordFile) rmSync(o.recordFile, { force: true });
  };
  if (o.recordFile && child.pid !== undefined) {
    const record: ServerRecord = { pid: child.pid, launcher: process.pid, dbFile: o.dbFile ?? null, address };
    writeFileSync(o.recordFile, `${JSON.stringify(record)}\n`);
  }
  const ready = waitForTemporal(address, o.namespace, 60_000);
  let first: 'ready' | number | null;
  try {
    first = await Promise.race([ready.then(() => 'ready' as const), exited.then((code) => code)]);
  } catch (err) {
    // Never ready: a server left running would hold its ports and the data file.
    child.kill('SIGKILL');
    forget();
    throw err;
  }
  if (first !== 'ready') {
    forget();
    throw new Error(`temporal dev server exited with code ${first}${o.logFile ? `; see ${o.logFile}` : ''}`);
  }
  return {
    address,
    process: child,
    exitsWithParent: setpriv !== undefined,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      forget();
    },
  };
}

const FREE_PORT_ATTEMPTS = 3;

/**
 * Starts a dev server (in memory) on ports that were free a moment ago. Another process may take one of them in
 * between (the server also picks internal ports of its own), so a server that exits at start is tried again on new
 * ports. Each attempt logs to `temporal-<n>.log` in `logDir`.
 */
export async function startDevServerOnFreePorts(
  o: Pick<DevServerOptions, 'cli' | 'namespace' | 'headless' | 'exitWithParent'> & { logDir: string },
): Promise<DevServer> {
  for (let attempt = 1; ; attempt++) {
    const logFile = join(o.logDir, `temporal-${attempt}.log`);
    try {
      return await startDevServer({
        ...o,
        ip: '127.0.0.1',
        port: await freePort(),
        uiPort: await freePort(),
        httpPort: await freePort(),
        metricsPort: await freePort(),
        logFile,
      });
    } catch (err) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8').trim().split('\n').slice(-5).join('\n') : '';
      console.warn(
        `temporal dev server, attempt ${attempt} of ${FREE_PORT_ATTEMPTS}: ${(err as Error).message}\n${log}`,
      );
      if (attempt >= FREE_PORT_ATTEMPTS) throw err;
    }
  }
}

/** util-linux `setpriv`, when it runs here; Linux only, as the parent-death signal is. */
function findSetpriv(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  return spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0 ? 'setpriv' : undefined;
}

/** A process's command line, arguments joined by spaces; undefined when it is gone or cannot be read. */
function commandLine(pid: number): string | undefined {
  try {
    if (process.platform === 'linux') return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
    return execFileSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
}

/**
 * Stops the server recorded in `recordFile` when the process that started it is gone, and forgets the record. The
 * recorded pid must still be a Temporal dev server on the recorded SQLite file: a process that merely reuses the pid
 * is left alone. A server whose launcher still runs (another `sdflow dev` on the same data dir) is kept, record and
 * all. Returns the pid it stopped.
 */
export async function stopLeftoverServer(recordFile: string): Promise<number | undefined> {
  let record: ServerRecord;
  try {
    record = JSON.parse(readFileSync(recordFile, 'utf8')) as ServerRecord;
  } catch {
    rmSync(recordFile, { force: true });
    return undefined;
  }
  if (isAlive(record.launcher) && commandLine(record.launcher)?.endsWith(' dev')) return undefined;
  const command = isAlive(record.pid) ? `${commandLine(record.pid) ?? ''} ` : '';
  const ours =
    command.includes(' server start-dev ') &&
    record.dbFile !== null &&
    command.includes(` --db-filename ${record.dbFile} `);
  // The server runs in its own process group (it was spawned detached), so the group is the server.
  if (ours && !(await stopGroup(record.pid, 10_000))) {
    throw new Error(`the Temporal server (pid ${record.pid}) left by an earlier start survived SIGKILL`);
  }
  rmSync(recordFile, { force: true });
  return ours ? record.pid : undefined;
}

/** Resolves once the frontend answers for the namespace; throws after `timeoutMs`. */
export async function waitForTemporal(address: string, namespace: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 2000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  throw new Error(`Temporal at ${address} did not become ready: ${(last as Error)?.message ?? last}`);
}

/** Registers sdflow's search attributes on a server that lacks them (a reused server, or a cluster). */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<void> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = Object.keys(SEARCH_ATTRIBUTE_TYPES).filter((name) => !customAttributes?.[name]);
  if (missing.length === 0) return;
  await connection.operatorService.addSearchAttributes({
    namespace,
    // 2 is INDEXED_VALUE_TYPE_KEYWORD in temporal.api.enums.v1.
    searchAttributes: Object.fromEntries(missing.map((name) => [name, 2])),
  });
}

/**
 * Search attributes are not usable the instant a server starts. Ready means a workflow started with them is
 * found by a visibility query on them; the probe is terminated afterwards.
 */
export async function probeSearchAttributes(client: Client, timeoutMs = 60_000): Promise<void> {
  const workflowId = `sdflow-probe-${Date.now().toString(36)}`;
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      await client.workflow.start('sdflowProbe', {
        workflowId,
        taskQueue: 'sdflow-probe',
        workflowExecutionTimeout: '1m',
        typedSearchAttributes: Object.values(SEARCH_ATTRIBUTES).map((key) => ({ key, value: 'sdflow-probe' })),
      });
      break;
    } catch (err) {
      last = err;
      if (Date.now() > until) throw new Error(`search attributes not usable: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  const query = `WorkflowId = "${workflowId}" AND ${SEARCH_ATTRIBUTES.user.name} = "sdflow-probe"`;
  try {
    while ((await client.workflow.count(query)).count < 1) {
      if (Date.now() > until)
        throw new Error(`visibility never found the probe workflow (last error: ${String(last)})`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await client.workflow
      .getHandle(workflowId)
      .terminate('probe done')
      .catch(() => undefined);
  }
}
