#!/usr/bin/env node
import { Command } from 'commander';
import { type CloudCredentials, ConfigError, loadConfig } from '../config/index.js';
import { createLogger } from '../logging.js';
import { registerClientCommands } from './client-commands.js';

// The one sdflow command. Process subcommands start a long-running server and stop it on SIGINT/SIGTERM; the
// client subcommands talk to a running API.

export interface RunningServer {
  port: number;
  close(): Promise<void>;
  /** Last resort when close() cannot finish: kills at once what close() would have stopped (the runtime's instances). */
  kill?(): void;
}

/** How long a process whose launcher is gone has to close before it kills what it started and exits. */
const LAUNCHER_GONE_DEADLINE_MS = 5000;

/**
 * Calls `onGone` once the process that launched this one with an IPC channel (`sdflow dev`, a test) is gone: the
 * kernel closes the channel when the launcher dies, however it dies, on Linux and macOS alike. The channel may have
 * closed before this is called, while the server was starting.
 */
function onLauncherGone(onGone: () => void): void {
  if (!process.send) return;
  if (process.connected) process.once('disconnect', onGone);
  else onGone();
}

/**
 * Runs a server until SIGINT/SIGTERM or the loss of its launcher, then closes it once. A second signal, a failed
 * close, or a close that overruns the deadline after the launcher's loss, kills what the server started and exits.
 *
 * How the runtime tells its launcher's death from its own crash: only a runtime that is alive can notice that its
 * launcher is gone, and it then stops as on SIGTERM, stopping its instances. A runtime that crashes runs no more
 * code: its instances (each in its own process group) live on, for its successor to re-adopt.
 */
async function serve(name: string, start: () => Promise<RunningServer>): Promise<void> {
  let server: RunningServer | undefined;
  let stopping = false;
  const forceExit = (code: number) => {
    try {
      server?.kill?.();
    } finally {
      process.exit(code);
    }
  };
  const close = (running: RunningServer, why: string) =>
    running.close().then(
      () => process.exit(0),
      (err) => {
        console.error(`${name}: error while stopping after ${why}:`, err);
        forceExit(1);
      },
    );
  const stop = (why: string, deadlineMs?: number) => {
    if (deadlineMs !== undefined) {
      setTimeout(() => {
        console.error(`${name}: still stopping ${deadlineMs} ms after ${why}; killing what is left`);
        forceExit(1);
      }, deadlineMs).unref();
    }
    if (stopping) return;
    stopping = true;
    if (server) void close(server, why);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => (stopping ? forceExit(130) : stop(signal)));
  }
  // Watched from the start: a launcher that dies while the server starts must stop it too.
  onLauncherGone(() => stop('the loss of its launcher', LAUNCHER_GONE_DEADLINE_MS));
  server = await start();
  if (stopping) void close(server, 'a stop requested while starting');
}

function config() {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}

const program = new Command()
  .name('sdflow')
  .description('Stable Diffusion API platform: a durable Temporal queue in front of AUTOMATIC1111')
  .showHelpAfterError();

program
  .command('dev')
  .description('run the whole platform on the embedded defaults (Temporal dev server, runtime, worker, API)')
  .action(async () => {
    const { runDev } = await import('./dev.js');
    await runDev(config());
  });

program
  .command('api')
  .description('run the HTTP API')
  .action(async () => {
    const c = config();
    const { startApi } = await import('../api/server.js');
    await serve('api', () => startApi(c, createLogger('api', c.logLevel)));
  });

program
  .command('worker')
  .description('run the Temporal worker (workflows and activities)')
  .action(async () => {
    const c = config();
    const { startWorker } = await import('../worker.js');
    await serve('worker', () => startWorker(c, createLogger('worker', c.logLevel)));
  });

program
  .command('runtime')
  .description('run the local function runtime, the owner of local function instances')
  .action(async () => {
    const c = config();
    const { startRuntime } = await import('../platform/functions/local/runtime-server.js');
    await serve('runtime', () => startRuntime(c.runtime, createLogger('runtime', c.logLevel)));
  });

program
  .command('agent')
  .description("run one function instance's GPU agent in front of an SD backend")
  .action(async () => {
    const c = config();
    const { startAgent } = await import('../gpu-agent/server.js');
    // Loaded at the first object the agent reads or writes; FC's per-request credentials replace the configured ones.
    const openStore = async (credentials: CloudCredentials | undefined) => {
      const { createObjectStore } = await import('../platform/index.js');
      return createObjectStore(credentials ? { ...c, oss: { ...c.oss, credentials } } : c);
    };
    await serve('agent', () => startAgent(c.agent, createLogger('agent', c.logLevel), openStore));
  });

program
  .command('sim')
  .description('run the A1111-compatible simulator (a stand-in for SD WebUI; it makes no diffusion claims)')
  .option('--port <port>', 'port to listen on (default SDFLOW_SIM_PORT)')
  .option('--models-dir <dir>', 'directory with stableDiffusion/, sdVae/, lora/ and controlNet/ model files')
  .action(async (opts: { port?: string; modelsDir?: string }) => {
    const c = config();
    const { startSimServer } = await import('../sim/server.js');
    const { modelsDir } = await import('../data-dir.js');
    await serve('sim', () =>
      startSimServer({
        host: '127.0.0.1',
        port: opts.port !== undefined ? Number(opts.port) : c.sim.port,
        stepMs: c.sim.stepMs,
        loadMs: c.sim.loadMs,
        vaeMs: c.sim.vaeMs,
        modelsDir: opts.modelsDir ?? modelsDir(c.dataDir),
        statsDir: c.sim.statsDir,
        fault: c.sim.fault,
        logger: createLogger('sim', c.logLevel),
      }),
    );
  });

program
  .command('webhooks')
  .description("this deployment's webhooks")
  .command('secret')
  .description(
    'print the secret receivers verify webhook signatures with: SDFLOW_WEBHOOK_SECRET, else the one generated into ' +
      'the data dir (run it where the API and workers run, with their config)',
  )
  .action(async () => {
    const c = config();
    const { loadWebhookSecret } = await import('../webhooks/signing.js');
    try {
      console.log(loadWebhookSecret(c.webhooks));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      console.error(err.message);
      process.exit(2);
    }
  });

registerClientCommands(program);

program.parseAsync(process.argv).catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
