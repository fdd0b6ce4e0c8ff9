import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CLI_MAIN } from '../../src/cli/processes.js';
import { freePort } from '../../src/http-util.js';
import { call, DEMO_MODEL, download } from '../helpers/stack.js';

// `sdflow dev` (what `npm start` runs) as a user meets it: it starts its own Temporal dev server with a SQLite file
// in the data dir, then runtime, worker and API; Ctrl-C stops everything; a second start keeps earlier results.

let env: NodeJS.ProcessEnv;
let dataDir: string;
let api: string;
let ui: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'sdflow-dev-'));
  const port = await freePort();
  api = `http://127.0.0.1:${port}`;
  const uiPort = await freePort();
  ui = `http://127.0.0.1:${uiPort}`;
  env = {
    ...process.env,
    SDFLOW_DATA_DIR: dataDir,
    PORT: String(port),
    TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`,
    SDFLOW_TEMPORAL_UI_PORT: String(uiPort),
    SDFLOW_TEMPORAL_HTTP_PORT: String(await freePort()),
    SDFLOW_RUNTIME_PORT: String(await freePort()),
    SDFLOW_DEPLOYMENT: 'devtest',
    SDFLOW_SIM_STEP_MS: '10',
    SDFLOW_SIM_LOAD_MS: '200',
  };
});

afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

function startDev(): Promise<{ child: ChildProcess; output: () => string }> {
  const child = spawn(process.execPath, [CLI_MAIN, 'dev'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev not ready in 120 s:\n${output}`)), 120_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('sdflow is ready')) {
        clearTimeout(timer);
        resolve({ child, output: () => output });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`dev exited with ${code}:\n${output}`)));
  });
}

async function stopDev(child: ChildProcess): Promise<number | null> {
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.kill('SIGINT');
  return exited;
}

async function refused(url: string): Promise<boolean> {
  try {
    await fetch(url, { signal: AbortSignal.timeout(2000) });
    return false;
  } catch {
    return true;
  }
}

it('starts everything, stops it all on Ctrl-C, and a second start keeps earlier results', async () => {
  const first = await startDev();
  expect(first.output()).toContain(`API          ${api}`);
  expect(first.output()).toContain(`Temporal UI  ${ui}`);
  expect((await fetch(ui)).status).toBe(200);

  const r = await call(api, 'POST', '/txt2img', {
    stable_diffusion_model: DEMO_MODEL,
    prompt: 'keep me',
    steps: 3,
    width: 64,
    height: 64,
  });
  expect(r.json.status).toBe('succeeded');
  const bytes = await download(r.json.ossUrl[0]);

  expect(await stopDev(first.child)).toBe(0);
  expect(await refused(`${api}/healthz`)).toBe(true);
  expect(await refused(`http://${env.TEMPORAL_ADDRESS}`)).toBe(true);
  expect(await refused(`http://127.0.0.1:${env.SDFLOW_RUNTIME_PORT}/healthz`)).toBe(true);
  // The runtime stopped its instances (the agent and simulator processes) with it.
  const instances = JSON.parse(readFileSync(join(dataDir, 'runtime', 'instances.json'), 'utf8'));
  expect(instances).toEqual([]);

  const second = await startDev();
  try {
    const again = await call(api, 'GET', `/tasks/${r.json.taskId}/result`);
    expect(again.json.status).toBe('succeeded');
    expect((await download(again.json.ossUrl[0])).equals(bytes)).toBe(true);
    const next = await call(api, 'POST', '/txt2img', {
      stable_diffusion_model: DEMO_MODEL,
      prompt: 'after restart',
      steps: 2,
      width: 64,
      height: 64,
    });
    expect(next.json.status).toBe('succeeded');
  } finally {
    expect(await stopDev(second.child)).toBe(0);
  }
}, 300_000);
