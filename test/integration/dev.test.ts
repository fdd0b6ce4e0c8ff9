import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type DevEnv, makeDevEnv, refused, removeDevEnv, startDev, stopDev } from '../helpers/dev.js';
import { call, DEMO_MODEL, download } from '../helpers/stack.js';

// `sdflow dev` (what `npm start` runs) as a user meets it: it starts its own Temporal dev server with a SQLite file
// in the data dir, then runtime, worker and API; Ctrl-C stops everything; a second start keeps earlier results.

let d: DevEnv;
let env: NodeJS.ProcessEnv;
let api: string;
let ui: string;

beforeAll(async () => {
  d = await makeDevEnv();
  ({ env, api, ui } = d);
});

afterAll(() => {
  if (d) removeDevEnv(d);
});

it('starts everything, stops it all on Ctrl-C, and a second start keeps earlier results', async () => {
  const first = await startDev(env);
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
  const instances = JSON.parse(readFileSync(join(d.dataDir, 'runtime', 'instances.json'), 'utf8'));
  expect(instances).toEqual([]);

  const second = await startDev(env);
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
