import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, inject, it } from 'vitest';
import { type ServerRecord, waitForTemporal } from '../../src/cli/temporal-server.js';
import { freePort } from '../../src/http-util.js';
import { LocalFunctionRuntime } from '../../src/platform/functions/local/client.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import type { AgentEvent } from '../../src/protocol/events.js';
import { type DevEnv, makeDevEnv, removeDevEnv, startDev, stopDev } from '../helpers/dev.js';
import {
  CLI,
  cleanup,
  isAlive,
  makeTestEnv,
  processesOf,
  startRuntimeProcess,
  type TestEnv,
  waitFor,
} from '../helpers/runtime-procs.js';
import { call, DEMO_MODEL, download } from '../helpers/stack.js';

// Nothing `sdflow dev` starts outlives it, however it dies; a Temporal server an earlier `sdflow dev` left is
// replaced, a user's own is reused; the runtime stops its instances when told to stop.

let d: DevEnv;
let reuser: DevEnv;
let rt: TestEnv;
let stuck: TestEnv;
/** Processes a test started itself, killed at the end whatever happened. */
const strays: ChildProcess[] = [];

beforeAll(async () => {
  d = await makeDevEnv();
  reuser = await makeDevEnv({
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    SDFLOW_DEPLOYMENT: `devreuse${process.pid}`,
    SDFLOW_TASK_QUEUE: `sdflow-devreuse-${process.pid}`,
  });
  rt = makeTestEnv(['exit-model.safetensors']);
  stuck = makeTestEnv(['stuck-model.safetensors']);
});

afterAll(() => {
  for (const child of strays) child.kill('SIGKILL');
  for (const dir of [d, reuser]) if (dir) removeDevEnv(dir);
  for (const t of [rt, stuck]) if (t) cleanup(t);
});

/** A Node module run as a process of its own, and what it printed so far. */
function runModule(source: string, args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  strays.push(child);
  let said = '';
  child.stdout.on('data', (chunk: Buffer) => {
    said += chunk.toString();
  });
  return { child, said: () => said };
}

const serverRecordFile = (dir: DevEnv) => join(dir.dataDir, 'temporal', 'server.json');

function readServerRecord(dir: DevEnv): ServerRecord {
  return JSON.parse(readFileSync(serverRecordFile(dir), 'utf8'));
}

function role(cmdline: string): string {
  if (cmdline.includes(' server start-dev ')) return 'temporal';
  if (cmdline.includes(' sim --port ')) return 'sim';
  return cmdline.split(' ').pop() ?? cmdline;
}

it('leaves no process behind when killed with SIGKILL, and the next start serves the earlier results', async () => {
  const first = await startDev(d.env);
  const r = await call(d.api, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'survive a kill',
    steps: 3,
    width: 64,
    height: 64,
  });
  expect(r.json.status).toBe('succeeded');
  const bytes = await download(r.json.ossUrl[0]);

  const started = processesOf(d.dataDir).filter((p) => p.pid !== first.child.pid);
  expect(new Set(started.map((p) => role(p.cmdline)))).toEqual(
    new Set(['temporal', 'runtime', 'worker', 'api', 'agent', 'sim']),
  );
  // What sdflow dev recorded is among them: the Temporal server and the runtime's instances.
  const pids = started.map((p) => p.pid);
  expect(pids).toContain(readServerRecord(d).pid);
  const instances = JSON.parse(readFileSync(join(d.dataDir, 'runtime', 'instances.json'), 'utf8'));
  expect(instances.length).toBeGreaterThan(0);
  for (const instance of instances) expect(pids).toContain(instance.pid);

  first.child.kill('SIGKILL');
  const killedAt = Date.now();
  await waitFor(
    'every process sdflow dev started to end',
    () => pids.every((pid) => !isAlive(pid)) && processesOf(d.dataDir).length === 0,
    10_000,
  );
  console.log(`dev-exit: the last of ${pids.length} processes was gone ${Date.now() - killedAt} ms after SIGKILL`);

  const second = await startDev(d.env);
  try {
    expect(second.output()).toContain(`Temporal UI  ${d.ui}`);
    const again = await call(d.api, 'GET', `/tasks/${r.json.taskId}/result`);
    expect(again.json.status).toBe('succeeded');
    expect((await download(again.json.ossUrl[0])).equals(bytes)).toBe(true);
  } finally {
    expect(await stopDev(second.child)).toBe(0);
  }
  expect(existsSync(serverRecordFile(d))).toBe(false);
}, 300_000);

it('stops what a crashed runtime left running when it stops itself', async () => {
  const dev = await startDev(d.env);
  const exited = new Promise<number | null>((resolve) => dev.child.once('exit', resolve));
  const r = await call(d.api, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'warm an instance',
    steps: 2,
    width: 64,
    height: 64,
  });
  expect(r.json.status).toBe('succeeded');
  const started = processesOf(d.dataDir).filter((p) => p.pid !== dev.child.pid);
  const runtime = started.find((p) => role(p.cmdline) === 'runtime');
  expect(started.filter((p) => role(p.cmdline) === 'agent')).toHaveLength(1);

  process.kill(runtime!.pid, 'SIGKILL');
  expect(await exited).toBe(1);
  expect(dev.output()).toContain('runtime exited unexpectedly');
  expect(dev.output()).toContain('stopped the instances the runtime left running');
  expect(processesOf(d.dataDir)).toEqual([]);
}, 300_000);

it('stops a Temporal server an earlier sdflow dev left running, and starts its own on the same data', async () => {
  // A launcher that records its server and dies without stopping it, as one whose supervision failed would.
  const script = `
    import { startDevServer } from ${JSON.stringify(join(CLI, '..', 'temporal-server.js'))};
    const server = await startDevServer(JSON.parse(process.argv[1]));
    console.log('ready', server.process.pid);`;
  const [, port] = String(d.env.TEMPORAL_ADDRESS).split(':');
  const options = {
    cli: inject('temporalCli'),
    ip: '127.0.0.1',
    port: Number(port),
    uiPort: Number(d.env.SDFLOW_TEMPORAL_UI_PORT),
    httpPort: Number(d.env.SDFLOW_TEMPORAL_HTTP_PORT),
    dbFile: join(d.dataDir, 'temporal', 'temporal.db'),
    namespace: 'default',
    logFile: join(d.dataDir, 'logs', 'leftover-temporal.log'),
    recordFile: serverRecordFile(d),
  };
  const { child: launcher, said } = runModule(script, [JSON.stringify(options)], d.env);
  await waitFor('the leftover server to be ready', () => said().includes('ready'), 60_000);
  const leftover = readServerRecord(d).pid;
  launcher.kill('SIGKILL');
  await waitFor('the launcher to be gone', () => !isAlive(launcher.pid!));
  expect(isAlive(leftover)).toBe(true);

  const dev = await startDev(d.env);
  try {
    expect(dev.output()).toContain('stopped the Temporal server an earlier sdflow dev left running');
    expect(dev.output()).toContain(`Temporal UI  ${d.ui}`);
    expect(isAlive(leftover)).toBe(false);
    expect(readServerRecord(d).pid).not.toBe(leftover);
  } finally {
    expect(await stopDev(dev.child)).toBe(0);
  }
}, 300_000);

it("reuses the user's own Temporal server, leaving alone a process that reuses a stale record's pid", async () => {
  const bystander = spawn('sleep', ['300'], { stdio: 'ignore' });
  strays.push(bystander);
  const deadLauncher = spawnSync('true').pid;
  const stale: ServerRecord = {
    pid: bystander.pid!,
    launcher: deadLauncher,
    dbFile: join(reuser.dataDir, 'temporal', 'temporal.db'),
    address: String(reuser.env.TEMPORAL_ADDRESS),
  };
  mkdirSync(join(reuser.dataDir, 'temporal'), { recursive: true });
  writeFileSync(serverRecordFile(reuser), JSON.stringify(stale));

  const dev = await startDev(reuser.env);
  try {
    expect(dev.output()).toContain('reusing the Temporal server already running');
    expect(dev.output()).toContain('(the reused server’s own UI)');
    expect(isAlive(bystander.pid!)).toBe(true);
    expect(existsSync(serverRecordFile(reuser))).toBe(false);
  } finally {
    expect(await stopDev(dev.child)).toBe(0);
  }
  await waitForTemporal(inject('temporalAddress'), 'default', 5000);
}, 300_000);

it('the runtime given SIGTERM mid-request stops its instances, agents and simulators, and exits', async () => {
  const runtime = await startRuntimeProcess(rt);
  const client = new LocalFunctionRuntime({ url: runtime.url });
  const functionName = functionNameFor('exit-model.safetensors');
  await client.ensureFunction({ functionName, model: 'exit-model.safetensors', resources: {} });
  const events: AgentEvent[] = [];
  const invoke = (async () => {
    const request = {
      taskId: `exit${Date.now().toString(36)}`,
      user: 'alice',
      kind: 'txt2img' as const,
      model: 'exit-model.safetensors',
      params: { prompt: 'interrupted', steps: 500, width: 512, height: 512 },
    };
    for await (const event of client.invoke(functionName, request, { signal: new AbortController().signal })) {
      events.push(event);
    }
  })().catch(() => undefined); // the stream breaks when the runtime stops
  await waitFor('sampling progress', () => events.some((e) => e.type === 'progress' && e.phase === 'sampling'), 60_000);
  const children = processesOf(rt.dataDir).filter((p) => p.pid !== runtime.pid);
  expect(new Set(children.map((p) => role(p.cmdline)))).toEqual(new Set(['agent', 'sim']));

  const stoppedAt = Date.now();
  runtime.child.kill('SIGTERM');
  expect((await runtime.exited).code).toBe(0);
  console.log(`dev-exit: the runtime stopped its instances and exited ${Date.now() - stoppedAt} ms after SIGTERM`);
  await invoke;
  for (const { pid } of children) expect(isAlive(pid)).toBe(false);
  expect(processesOf(rt.dataDir)).toEqual([]);
  expect(JSON.parse(readFileSync(join(rt.dataDir, 'runtime', 'instances.json'), 'utf8'))).toEqual([]);
}, 120_000);

it('a runtime whose launcher dies stops within its deadline, even with an instance that ignores SIGTERM', async () => {
  // The launcher: a process that starts the runtime as sdflow dev does (an IPC channel, its own process group).
  const script = `
    import { spawnRole, waitForHttp } from ${JSON.stringify(join(CLI, '..', 'processes.js'))};
    const [url, logFile] = process.argv.slice(1);
    const runtime = spawnRole('runtime', ['runtime'], { env: process.env, logFile });
    await waitForHttp(url + '/healthz', 60000, runtime);
    console.log('ready');
    setInterval(() => {}, 1000);`;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const { child: launcher, said } = runModule(script, [url, join(stuck.dataDir, 'runtime.log')], {
    ...process.env,
    ...stuck.env,
    SDFLOW_RUNTIME_PORT: String(port),
  });
  await waitFor('the runtime to be ready', () => said().includes('ready'), 60_000);

  const functionName = functionNameFor('stuck-model.safetensors');
  // A WebUI that ignores SIGTERM, and says so once it does.
  const ignoring = join(stuck.dataDir, 'webui-ignores-sigterm');
  const webui = [
    process.execPath,
    '-e',
    `process.on('SIGTERM', () => {}); require('node:fs').writeFileSync(${JSON.stringify(ignoring)}, ''); setInterval(() => {}, 1000)`,
  ];
  await new LocalFunctionRuntime({ url }).ensureFunction({
    functionName,
    model: 'stuck-model.safetensors',
    resources: {
      env: { SDFLOW_SD_URL: `http://127.0.0.1:${await freePort()}`, SDFLOW_SD_COMMAND: JSON.stringify(webui) },
    },
  });
  // The instance never becomes ready (its WebUI never answers): it is starting when the launcher dies.
  void fetch(`${url}/functions/${functionName}/invoke`, { method: 'POST', body: '{}' })
    .then((res) => res.arrayBuffer())
    .catch(() => undefined);
  await waitFor('the WebUI to ignore SIGTERM', () => existsSync(ignoring), 60_000);
  const isWebui = (cmdline: string) => cmdline.includes(webui[2]);
  const started = processesOf(stuck.dataDir).filter((p) => p.pid !== launcher.pid);
  expect(started.map((p) => (isWebui(p.cmdline) ? 'webui' : role(p.cmdline))).sort()).toEqual([
    'agent',
    'runtime',
    'webui',
  ]);

  launcher.kill('SIGKILL');
  const killedAt = Date.now();
  await waitFor('every process the launcher started to end', () => processesOf(stuck.dataDir).length === 0, 10_000);
  console.log(
    `dev-exit: a runtime stuck on a SIGTERM-proof instance was gone with all ${started.length} processes ${Date.now() - killedAt} ms after its launcher's SIGKILL`,
  );
}, 120_000);
