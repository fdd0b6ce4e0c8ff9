import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/http-util.js';
import type { ErrorEvent, ResultEvent } from '../../src/protocol/events.js';
import type { InvokeRequest } from '../../src/protocol/invoke.js';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import {
  type CliProcess,
  cleanup,
  isAlive,
  makeTestEnv,
  processesOf,
  spawnCli,
  streamEvents,
  type TestEnv,
  waitFor,
  waitForHttp,
} from '../helpers/runtime-procs.js';

// The GPU agent on its own: `sdflow agent` with the simulator it runs as a child, and with an external SD URL.

const MODEL = 'agent-model.safetensors';
const OTHER = 'agent-other.safetensors';

let t: TestEnv;
let agent: CliProcess;
let url: string;
let seq = 0;

const request = (params: Record<string, unknown>, kind: InvokeRequest['kind'] = 'txt2img'): InvokeRequest => ({
  taskId: `ag${Date.now().toString(36)}x${++seq}`,
  user: 'carol',
  kind,
  model: MODEL,
  params: { prompt: 'a tree', steps: 10, width: 256, height: 256, seed: 1, ...params },
});

async function startAgent(env: Record<string, string> = {}): Promise<{ proc: CliProcess; url: string }> {
  const port = await freePort();
  const logFile = join(t.dataDir, `agent-${port}.log`);
  const proc = spawnCli(
    ['agent'],
    { ...t.env, SD_MODEL: MODEL, SDFLOW_AGENT_PORT: String(port), SDFLOW_INSTANCE_ID: `i-agent-${port}`, ...env },
    logFile,
  );
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/healthz`, 60_000, proc, logFile);
  return { proc, url: base };
}

async function simPid(base: string): Promise<number> {
  return ((await (await fetch(`${base}/sd/sim/stats`)).json()) as { pid: number }).pid;
}

beforeAll(async () => {
  t = makeTestEnv([MODEL, OTHER], { SDFLOW_SD_PROGRESS_POLL_MS: '40' });
  ({ proc: agent, url } = await startAgent());
});

afterAll(async () => {
  await agent?.stop();
  if (t) cleanup(t);
});

describe('gpu agent', () => {
  it('reports health and initializes with the pinned checkpoint loaded', async () => {
    const health = await fetch(`${url}/healthz`);
    expect(await health.json()).toMatchObject({ status: 'ok', model: MODEL, busy: false, sdReady: true });
    const init = await fetch(`${url}/initialize`, { method: 'POST' });
    expect(init.status).toBe(200);
    const options = (await (await fetch(`${url}/sd/sdapi/v1/options`)).json()) as Record<string, unknown>;
    expect(options.sd_model_checkpoint).toMatch(new RegExp(`^${MODEL} \\[`));
  });

  it('streams NDJSON and refuses malformed requests and requests for another checkpoint', async () => {
    const res = await fetch(`${url}/invoke`, { method: 'POST', body: JSON.stringify(request({})) });
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    await res.arrayBuffer();

    const bad = await streamEvents(`${url}/invoke`, { taskId: 'x/y', user: 'carol', kind: 'txt2img' });
    expect(bad.events).toHaveLength(1);
    expect(bad.events[0]).toMatchObject({ type: 'error', kind: 'bad_input', retryable: false });
    expect((bad.events[0] as ErrorEvent).message).toMatch(/taskId/);

    const other = await streamEvents(`${url}/invoke`, { ...request({}), model: OTHER });
    expect(other.events.at(-1)).toMatchObject({ type: 'error', retryable: false });
    expect((other.events.at(-1) as ErrorEvent).message).toMatch(/pinned to/);
  });

  it('upscales an object-key image with extra-single-image', async () => {
    const { events } = await streamEvents(`${url}/invoke`, request({ width: 128, height: 96 }));
    const source = events.at(-1) as ResultEvent;
    const upscale = await streamEvents(`${url}/invoke`, {
      ...request({}, 'extra'),
      params: { image: source.images[0], upscaling_resize: 2, upscaler_1: 'Lanczos' },
    });
    const result = upscale.events.at(-1) as ResultEvent;
    expect(result.type).toBe('result');
    expect(JSON.parse(result.info)).toHaveProperty('html_info');
    expect(result.parameters).toEqual({ image: source.images[0], upscaling_resize: 2, upscaler_1: 'Lanczos' });
    const meta = await sharp(join(t.dataDir, 'objects', result.images[0])).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 256, 192]);
  });

  it('serialises concurrent invokes and shows busy meanwhile', async () => {
    const started = Date.now();
    let sawBusy = false;
    const runs = Promise.all([0, 1, 2].map((i) => streamEvents(`${url}/invoke`, request({ steps: 60, seed: i }))));
    await waitFor('healthz to show busy', async () => {
      sawBusy = ((await (await fetch(`${url}/healthz`)).json()) as { busy: boolean }).busy;
      return sawBusy;
    });
    for (const run of await runs) expect(run.events.at(-1)?.type).toBe('result');
    const intervals = readBusyIntervals(t.statsDir).filter((i) => i.start >= started);
    expect(intervals).toHaveLength(3);
    expect(maxOverlap(intervals)).toBe(1);
  });

  it('reloads its checkpoint when SD was switched away, announcing it with a starting event', async () => {
    const switched = await fetch(`${url}/sd/sdapi/v1/options`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ sd_model_checkpoint: OTHER }),
    });
    expect(switched.status).toBe(200);
    const { events } = await streamEvents(`${url}/invoke`, request({}));
    expect(events[0]).toMatchObject({ type: 'progress', phase: 'starting' });
    expect(events.at(-1)?.type).toBe('result');
    const options = (await (await fetch(`${url}/sd/sdapi/v1/options`)).json()) as Record<string, unknown>;
    expect(options.sd_model_checkpoint).toMatch(new RegExp(`^${MODEL} \\[`));
  });

  it('reloads its checkpoint when a passthrough invoke switched SD away', async () => {
    const switched = await streamEvents(`${url}/invoke`, {
      ...request({}),
      kind: 'passthrough',
      params: { method: 'POST', path: '/sdapi/v1/options', body: { sd_model_checkpoint: OTHER } },
    });
    expect(switched.events.at(-1)?.type).toBe('result');
    const { events } = await streamEvents(`${url}/invoke`, request({}));
    expect(events[0]).toMatchObject({ type: 'progress', phase: 'starting' });
    expect(events.at(-1)?.type).toBe('result');
    const options = (await (await fetch(`${url}/sd/sdapi/v1/options`)).json()) as Record<string, unknown>;
    expect(options.sd_model_checkpoint).toMatch(new RegExp(`^${MODEL} \\[`));
  });

  it('fails an in-flight invoke retryably when its simulator dies, then restarts the simulator', async () => {
    const pid = await simPid(url);
    let killed = false;
    const { events } = await streamEvents(`${url}/invoke`, request({ steps: 400, width: 512, height: 512 }), (e) => {
      if (!killed && e.type === 'progress' && e.phase === 'sampling') {
        killed = true;
        process.kill(pid, 'SIGKILL');
      }
    });
    expect(killed).toBe(true);
    expect(events.at(-1)).toMatchObject({ type: 'error', kind: 'sd_error', retryable: true });
    await waitFor('the simulator to be restarted', async () => {
      const res = await fetch(`${url}/healthz`);
      return res.status === 200 && (await simPid(url)) !== pid;
    });
    expect(isAlive(pid)).toBe(false);
    const after = await streamEvents(`${url}/invoke`, request({}));
    expect(after.events.at(-1)?.type, JSON.stringify(after.events.at(-1))).toBe('result');
  });

  it('uses an external SD at SDFLOW_SD_URL instead of starting a simulator', async () => {
    const simPort = await freePort();
    const simLog = join(t.dataDir, 'external-sim.log');
    const sim = spawnCli(['sim', '--port', String(simPort)], t.env, simLog);
    try {
      await waitForHttp(`http://127.0.0.1:${simPort}/sdapi/v1/options`, 60_000, sim, simLog);
      const external = await startAgent({ SDFLOW_SD_URL: `http://127.0.0.1:${simPort}` });
      try {
        expect(await simPid(external.url)).toBe(sim.pid);
        const { events } = await streamEvents(`${external.url}/invoke`, request({}));
        expect(events.at(-1)?.type).toBe('result');
        const children = processesOf(t.dataDir).filter((p) => p.cmdline.includes(' sim '));
        // the first agent's simulator and the external one; the second agent started none
        expect(children).toHaveLength(2);
      } finally {
        await external.proc.stop();
      }
    } finally {
      await sim.stop();
    }
  });

  it('stops its simulator when it stops', async () => {
    const pid = await simPid(url);
    await agent.stop();
    expect((await agent.exited).code).toBe(0);
    await waitFor('the simulator to exit', () => !isAlive(pid), 10_000);
  });
});
