import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Connection } from '@temporalio/client';
import type { Config } from '../config/index.js';
import {
  logsDir,
  processLogFile,
  temporalCliVersionFile,
  temporalDbFile,
  temporalDir,
  temporalServerFile,
} from '../data-dir.js';
import { createLogger, type Logger } from '../logging.js';
import { stopRecordedInstances } from '../platform/functions/local/pool.js';
import { createMetaStore, createObjectStore } from '../platform/index.js';
import { connectTemporal } from '../temporal.js';
import { registerDemoCheckpoints } from './demo-models.js';
import { type RoleProcess, spawnRole, waitForHttp, waitForOutput } from './processes.js';
import {
  type DevServer,
  ensureSearchAttributes,
  PINNED_TEMPORAL_VERSION,
  probeSearchAttributes,
  resolveTemporalCli,
  startDevServer,
  stopLeftoverServer,
  temporalCliVersion,
  waitForTemporal,
} from './temporal-server.js';

// `sdflow dev` (= npm start): everything on the embedded defaults, in order — Temporal, runtime, worker, API —
// and stopped in reverse order on Ctrl-C. A second start reuses the data dir, so earlier results stay readable.
// Killed hard, it leaves nothing either: the kernel kills the Temporal server with it (Linux), and the roles see
// their IPC channel close and stop, the runtime stopping its instances (see `serve` in main.ts).

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Prints a child's pino lines compactly: `12:00:01 api     info  message {fields}`. */
function consoleLine(name: string) {
  return (line: string) => {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line);
    } catch {
      console.log(`${name.padEnd(8)} ${line}`);
      return;
    }
    const { level, time, msg, pid: _pid, name: _name, hostname: _host, ...rest } = entry;
    if (typeof level === 'number' && level < 30) return;
    const clock = new Date(typeof time === 'number' ? time : Date.now()).toTimeString().slice(0, 8);
    const fields = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
    console.log(
      `${clock} ${name.padEnd(8)} ${(LEVELS[level as number] ?? String(level)).padEnd(5)} ${msg ?? ''}${fields}`,
    );
  };
}

/**
 * Starts the dev server with its SQLite file in the data dir, or reuses a Temporal already answering at the address
 * (the user's own). A server an earlier `sdflow dev` of this data dir left running is not the user's: it is stopped
 * and replaced, so this start owns (and its Ctrl-C stops) the server it uses.
 */
async function ensureTemporal(config: Config, logger: Logger): Promise<DevServer | null> {
  const { address, namespace } = config.temporal;
  mkdirSync(temporalDir(config.dataDir), { recursive: true });
  const recordFile = temporalServerFile(config.dataDir);
  const leftover = await stopLeftoverServer(recordFile);
  if (leftover) logger.warn({ pid: leftover }, 'stopped the Temporal server an earlier sdflow dev left running');
  try {
    await waitForTemporal(address, namespace, 1500);
    logger.info({ address }, 'reusing the Temporal server already running');
    const connection = await Connection.connect({ address });
    await ensureSearchAttributes(connection, namespace);
    await connection.close();
    return null;
  } catch {
    // Nothing answers: start our own below.
  }
  const [ip, port] = address.split(':');
  if (!['127.0.0.1', 'localhost'].includes(ip ?? '')) {
    throw new Error(`Temporal at ${address} does not answer, and sdflow dev only starts one on 127.0.0.1`);
  }
  const cli = await resolveTemporalCli();
  const version = await temporalCliVersion(cli);
  const versionFile = temporalCliVersionFile(config.dataDir);
  let recorded: string | undefined;
  try {
    recorded = readFileSync(versionFile, 'utf8').trim();
  } catch {
    writeFileSync(versionFile, `${version}\n`);
  }
  if (recorded && recorded !== version) {
    logger.warn({ recorded, running: version }, 'this data dir was created by another Temporal CLI version');
  }
  if (version !== PINNED_TEMPORAL_VERSION)
    logger.warn({ version, pinned: PINNED_TEMPORAL_VERSION }, 'Temporal CLI is not the pinned version');
  logger.info({ cli, version }, 'starting the Temporal dev server');
  const server = await startDevServer({
    cli,
    ip: '127.0.0.1',
    port: Number(port ?? 7233),
    uiPort: config.temporal.uiPort,
    httpPort: config.temporal.httpPort,
    dbFile: temporalDbFile(config.dataDir),
    namespace,
    logFile: processLogFile(config.dataDir, 'temporal'),
    recordFile,
    exitWithParent: true,
  });
  if (!server.exitsWithParent) {
    logger.warn(
      { pid: server.process.pid },
      'no parent-death signal here: if sdflow dev is killed hard, the Temporal server runs on until the next sdflow dev stops it',
    );
  }
  return server;
}

export async function runDev(config: Config): Promise<void> {
  const started = Date.now();
  const logger = createLogger('dev', config.logLevel);
  mkdirSync(logsDir(config.dataDir), { recursive: true });
  const roles: RoleProcess[] = [];
  let temporal: DevServer | null = null;
  let stopping = false;

  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping: api, worker, runtime, temporal');
    for (const role of [...roles].reverse()) await role.stop();
    // A runtime that crashed (or was killed after its grace) left its instances for a successor; none is coming.
    if (roles.some((role) => role.name === 'runtime')) {
      try {
        const stopped = await stopRecordedInstances(config.dataDir);
        if (stopped > 0) logger.warn({ stopped }, 'stopped the instances the runtime left running');
      } catch (err) {
        logger.error({ err: (err as Error).message }, 'could not stop the instances the runtime left running');
      }
    }
    await temporal?.stop();
    process.exit(code);
  };
  // SIGHUP: the terminal was closed.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stopAll(0));

  try {
    temporal = await ensureTemporal(config, logger);
    const client = await connectTemporal(config.temporal);
    await probeSearchAttributes(client);
    await client.connection.close();

    const meta = await createMetaStore(config);
    if (config.models.demo) await registerDemoCheckpoints(await createObjectStore(config), meta);
    await meta.close();

    const env = { ...process.env, SDFLOW_DATA_DIR: config.dataDir };
    const start = (name: string) => {
      const role = spawnRole(name, [name], {
        env,
        logFile: processLogFile(config.dataDir, name),
        onLine: consoleLine(name),
      });
      role.exited.then((code) => {
        if (!stopping) {
          console.error(`${name} exited unexpectedly (code ${code}); see ${processLogFile(config.dataDir, name)}`);
          void stopAll(1);
        }
      });
      roles.push(role);
      return role;
    };

    const runtime = start('runtime');
    await waitForHttp(`${config.runtime.url}/healthz`, 60_000, runtime, { ownAnswer: true });
    const worker = start('worker');
    await waitForOutput(worker, /"msg":"worker running"/, 120_000);
    const api = start('api');
    await waitForHttp(`http://127.0.0.1:${config.api.port}/healthz`, 120_000, api, { ownAnswer: true });

    const ui = temporal ? `http://127.0.0.1:${config.temporal.uiPort}` : '(the reused server’s own UI)';
    console.log(
      [
        '',
        `sdflow is ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
        `  API          ${config.api.publicUrl}`,
        `  Console      ${config.api.publicUrl}/console/`,
        `  Temporal UI  ${ui}`,
        `  data dir     ${config.dataDir}`,
        `  logs         ${logsDir(config.dataDir)}`,
        '',
        `try: curl -s ${config.api.publicUrl}/txt2img -H 'content-type: application/json' \\`,
        `       -d '{"stable_diffusion_model":"sdflow-demo-v1.safetensors","prompt":"a lighthouse","steps":8}'`,
        '',
      ].join('\n'),
    );
  } catch (err) {
    console.error(`sdflow dev could not start: ${(err as Error).message}`);
    await stopAll(1);
  }
}
