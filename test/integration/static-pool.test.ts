import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { emptySafetensors } from '../../src/cli/demo-models.js';
import { ConfigError, loadConfig } from '../../src/config/index.js';
import { metaDbFile } from '../../src/data-dir.js';
import { freePort } from '../../src/http-util.js';
import { createLogger } from '../../src/logging.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import type { WebUiView } from '../../src/platform/functions/static/pool.js';
import { readPoolFile } from '../../src/platform/functions/static/pool-file.js';
import { StaticPoolRuntime } from '../../src/platform/functions/static/runtime.js';
import { createMetaStore, createObjectStore } from '../../src/platform/index.js';
import { objectKeyForModel } from '../../src/platform/object-store/keys.js';
import type { AgentEvent } from '../../src/protocol/events.js';
import { maxOverlap, readBusyIntervals } from '../../src/sim/stats.js';
import {
  type CliProcess,
  cleanup,
  isAlive,
  isPng,
  makeTestEnv,
  spawnCli,
  type TestEnv,
  waitFor,
  waitForHttp,
} from '../helpers/runtime-procs.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, download, type Stack, startStack, waitForFinal } from '../helpers/stack.js';

// The static GPU pool (SDFLOW_FUNCTIONS=static) end to end: three `sdflow sim` processes stand in for three
// existing WebUIs, a pool file maps the demo checkpoints to them (one WebUI serves both), and a stack without
// `sdflow runtime` runs tasks on them. A counting tap in front of each WebUI sees every generation request, so the
// test can tell whether two jobs ever reached one WebUI at once (the simulator's own lock would hide it). A second
// stack with two workers on two more WebUIs checks that this holds across processes, through the WebUIs' leases in
// the meta store, and that a WebUI whose holder was killed is free again once its lease expires.

const UNSERVED = 'sdflow-unserved.safetensors';

interface Generation {
  model: unknown;
  seed: unknown;
  /** When the request reached the tap (epoch ms). */
  at: number;
}

/** A transparent proxy in front of one WebUI that counts the generation requests in flight through it. */
interface Tap {
  url: string;
  inFlight: number;
  maxInFlight: number;
  generations: Generation[];
  /** Seeds of the generations in flight now. */
  active: Set<unknown>;
  close(): Promise<void>;
}

const GENERATION = /^\/sdapi\/v1\/(txt2img|img2img|extra-single-image)(\?|$)/;

async function startTap(targetPort: number): Promise<Tap> {
  const server: Server = createServer((req, res) => {
    const counted = req.method === 'POST' && GENERATION.test(req.url ?? '');
    const chunks: Buffer[] = [];
    let generation: Generation | undefined;
    let open = false;
    const finish = () => {
      if (!open) return;
      open = false;
      tap.inFlight--;
      tap.active.delete(generation?.seed);
    };
    const upstream = httpRequest(
      { host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers, agent: false },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.on('end', finish);
        answer.pipe(res);
      },
    );
    // A dead WebUI: the caller sees its connection cut, as it would without the tap.
    upstream.on('error', () => {
      finish();
      res.destroy();
    });
    res.on('close', finish);
    req.on('data', (chunk: Buffer) => {
      if (counted) chunks.push(chunk);
    });
    req.on('end', () => {
      if (!counted) return;
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, any>;
      generation = { model: body.override_settings?.sd_model_checkpoint, seed: body.seed, at: Date.now() };
      tap.generations.push(generation);
      tap.active.add(generation.seed);
      open = true;
      tap.inFlight++;
      tap.maxInFlight = Math.max(tap.maxInFlight, tap.inFlight);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const tap: Tap = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    inFlight: 0,
    maxInFlight: 0,
    generations: [],
    active: new Set(),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
  return tap;
}

interface WebUi {
  name: string;
  port: number;
  proc: CliProcess;
  tap: Tap;
}

let gpus: TestEnv;
let stack: Omit<Stack, 'runtime'>;
let webUis: Record<'a' | 'b' | 'c', WebUi>;
let poolFile: string;
let observer: StaticPoolRuntime;

function startSim(name: string, port: number): CliProcess {
  const logFile = join(gpus.dataDir, `sim-${name}.log`);
  return spawnCli(
    ['sim', '--port', String(port), '--models-dir', join(gpus.dataDir, 'objects', 'models')],
    gpus.env,
    logFile,
  );
}

async function startWebUi(name: string): Promise<WebUi> {
  const port = await freePort();
  const proc = startSim(name, port);
  await waitForHttp(`http://127.0.0.1:${port}/sdapi/v1/options`, 60_000, proc, join(gpus.dataDir, `sim-${name}.log`));
  return { name, port, proc, tap: await startTap(port) };
}

async function simStats(ui: WebUi): Promise<{ pid: number; interruptedJobs: number; jobs: number }> {
  return (await fetch(`http://127.0.0.1:${ui.port}/sim/stats`)).json() as Promise<any>;
}

const v1 = (params: Record<string, unknown> = {}) => ({
  stable_diffusion_model: DEMO_MODEL,
  prompt: 'a lighthouse',
  steps: 10,
  width: 512,
  height: 512,
  ...params,
});
const v2 = (params: Record<string, unknown> = {}) => v1({ stable_diffusion_model: DEMO_MODEL_2, ...params });

async function submit(body: Record<string, unknown>, base = stack.url): Promise<string> {
  const r = await call(base, 'POST', '/txt2img', body, { 'Request-Type': 'async' });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.taskId;
}

/** The tap a generation with this seed went through. */
const tapOfSeed = (seed: number) => Object.values(webUis).find((ui) => ui.tap.generations.some((g) => g.seed === seed));

async function observed(model: string): Promise<Record<string, WebUiView['state']>> {
  const fn = (await observer.listFunctions()).find((f) => f.model === model)!;
  return Object.fromEntries((fn.instances as WebUiView[]).map((i) => [i.id, i.state]));
}

/** Whether the worker logged `msg` about the WebUI at `url`. */
function workerLogged(msg: string, url: string): boolean {
  return readFileSync(join(stack.dataDir, 'logs', 'worker1.log'), 'utf8')
    .split('\n')
    .some((line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        return entry.msg === msg && entry.url === url;
      } catch {
        return false;
      }
    });
}

beforeAll(async () => {
  gpus = makeTestEnv([]);
  const ckptDir = join(gpus.dataDir, 'objects', 'models', 'stableDiffusion');
  for (const name of [DEMO_MODEL, DEMO_MODEL_2]) writeFileSync(join(ckptDir, name), emptySafetensors({ name }));
  const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(startWebUi));
  webUis = { a, b, c };
  poolFile = join(gpus.dataDir, 'pool.json');
  writeFileSync(
    poolFile,
    JSON.stringify({
      checkpoints: { [DEMO_MODEL]: [a.tap.url, b.tap.url], [DEMO_MODEL_2]: [`${b.tap.url}/`, c.tap.url] },
      healthCheckS: 0.5,
      healthTimeoutS: 2,
    }),
  );
  stack = await startStack({
    runtime: false,
    env: {
      SDFLOW_FUNCTIONS: 'static',
      SDFLOW_STATIC_POOL_FILE: poolFile,
      SDFLOW_MAX_CONCURRENCY: '8',
      SDFLOW_SD_PROGRESS_POLL_MS: '50',
    },
  });
  const config = loadConfig({ ...process.env, ...stack.env });
  observer = new StaticPoolRuntime(config.staticPool, {
    store: () => createObjectStore(config),
    meta: () => createMetaStore(config),
    logger: createLogger('observer', 'silent'),
  });
  // A checkpoint that is registered and loaded, but that no WebUI of the pool serves.
  const meta = await createMetaStore(config);
  const now = new Date().toISOString();
  await meta.putModel({
    type: 'stableDiffusion',
    name: UNSERVED,
    ossPath: objectKeyForModel('stableDiffusion', UNSERVED),
    etag: 'unserved',
    status: 'loaded',
    registeredTime: now,
    lastModificationTime: now,
  });
  await meta.close();
}, 240_000);

afterAll(async () => {
  await observer?.close();
  await stack?.stop();
  if (webUis) await Promise.all(Object.values(webUis).map((ui) => ui.tap.close()));
  if (gpus) cleanup(gpus);
});

describe('the pool file', () => {
  const write = (name: string, content: string) => {
    const file = join(gpus.dataDir, name);
    writeFileSync(file, content);
    return file;
  };

  it('is checked, every problem naming the file and the field', () => {
    const missing = join(gpus.dataDir, 'no-such-pool.json');
    expect(() => readPoolFile(missing)).toThrow(new RegExp(`static pool file ${missing}: cannot read it`));
    const notJson = write('not-json.json', '{ "checkpoints": ');
    expect(() => readPoolFile(notJson)).toThrow(/not-json\.json: not valid JSON/);
    const bad = write(
      'bad.json',
      JSON.stringify({
        checkpoints: { 'a.safetensors': ['http://gpu1:7860', 'ftp://gpu2'], 'b.safetensors': [] },
        healthCheckS: 'often',
        extra: 1,
      }),
    );
    let message = '';
    try {
      readPoolFile(bad);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message).toContain(`static pool file ${bad}:`);
    expect(message).toContain('checkpoints["a.safetensors"][1]: must be the http(s) base URL of a WebUI');
    expect(message).toContain('checkpoints["b.safetensors"]: must list at least one WebUI URL');
    expect(message).toContain('healthCheckS: must be a number of seconds');
    expect(message).toMatch(/extra/);
    const twice = write(
      'twice.json',
      JSON.stringify({ checkpoints: { x: ['http://gpu1:7860/', 'http://gpu1:7860'] } }),
    );
    expect(() => readPoolFile(twice)).toThrow(/checkpoints\.x\[1\]: lists http:\/\/gpu1:7860 twice/);
    const empty = write('empty.json', JSON.stringify({ checkpoints: {} }));
    expect(() => readPoolFile(empty)).toThrow(/checkpoints: must map at least one checkpoint/);
    expect(readPoolFile(poolFile)).toMatchObject({ healthCheckS: 0.5, healthTimeoutS: 2 });
  });

  it('is required by SDFLOW_FUNCTIONS=static', () => {
    const config = loadConfig({ SDFLOW_DATA_DIR: gpus.dataDir, SDFLOW_FUNCTIONS: 'static' });
    expect(
      () =>
        new StaticPoolRuntime(config.staticPool, {
          store: () => createObjectStore(config),
          meta: () => createMetaStore(config),
          logger: createLogger('t', 'silent'),
        }),
    ).toThrow(/SDFLOW_FUNCTIONS=static\) needs SDFLOW_STATIC_POOL_FILE/);
  });
});

describe('the static GPU pool', () => {
  it("lists the file's checkpoints as functions, with their WebUIs' health", async () => {
    await waitFor('every WebUI to be in rotation', async () =>
      Object.values(await observed(DEMO_MODEL)).every((s) => s === 'idle'),
    );
    const functions = await observer.listFunctions();
    expect(functions.map((f) => [f.model, f.functionName]).sort()).toEqual(
      [DEMO_MODEL, DEMO_MODEL_2].map((m) => [m, functionNameFor(m)]).sort(),
    );
    expect(await observed(DEMO_MODEL_2)).toEqual({ [webUis.b.tap.url]: 'idle', [webUis.c.tap.url]: 'idle' });
  });

  it('generates synchronously and asynchronously, and passes reads through to a WebUI of the checkpoint', async () => {
    const sync = await call(stack.url, 'POST', '/txt2img', v1({ seed: 10, batch_size: 2 }));
    expect(sync.status, JSON.stringify(sync.json)).toBe(200);
    expect(sync.json.status).toBe('succeeded');
    expect(sync.json.ossUrl).toHaveLength(2);
    expect(isPng(await download(sync.json.ossUrl[0]))).toBe(true);
    expect([webUis.a, webUis.b]).toContain(tapOfSeed(10));

    const taskId = await submit(v2({ seed: 20 }));
    const done = await waitForFinal(stack.url, taskId);
    expect(done.status, JSON.stringify(done)).toBe('succeeded');
    expect([webUis.b, webUis.c]).toContain(tapOfSeed(20));
    // The static pool reports no instance time: the worker's own view of the invoke prices it, with no idle time.
    expect(done.cost).toMatchObject({ gpuS: expect.any(Number), idleS: 0, gpuType: 'default', images: 1 });
    expect(done.cost.gpuS).toBeGreaterThan(0);

    // img2img from the first result: the input is read from the object store, as the agent would.
    const img = await call(stack.url, 'POST', '/img2img', {
      ...v1({ seed: 30 }),
      init_images: [sync.json.images[0]],
      denoising_strength: 0.5,
    });
    expect(img.status, JSON.stringify(img.json)).toBe(200);
    expect(img.json.status).toBe('succeeded');

    const samplers = await call(stack.url, 'GET', `/sdapi/v1/samplers?model=${DEMO_MODEL_2}`);
    expect(samplers.status).toBe(200);
    expect(samplers.json.map((s: { name: string }) => s.name)).toContain('Euler a');
  });

  it('never puts two jobs on one WebUI, with more tasks than WebUIs', async () => {
    const started = Date.now();
    for (const ui of Object.values(webUis)) ui.tap.generations.length = 0;
    const ids = await Promise.all([
      ...[0, 1, 2, 3, 4, 5].map((i) => submit(v1({ seed: 100 + i, steps: 15 }))),
      ...[0, 1, 2, 3].map((i) => submit(v2({ seed: 200 + i, steps: 15 }))),
    ]);
    const results = await Promise.all(ids.map((id) => waitForFinal(stack.url, id, 120_000)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill('succeeded'));

    for (const ui of Object.values(webUis)) {
      expect(ui.tap.maxInFlight, `WebUI ${ui.name}`).toBe(1);
      expect(ui.tap.generations.length, `WebUI ${ui.name}`).toBeGreaterThan(0);
    }
    // Each checkpoint ran only on its own WebUIs; b served both.
    expect(new Set(webUis.a.tap.generations.map((g) => g.model))).toEqual(new Set([DEMO_MODEL]));
    expect(new Set(webUis.c.tap.generations.map((g) => g.model))).toEqual(new Set([DEMO_MODEL_2]));
    const work = readBusyIntervals(gpus.statsDir).filter((i) => i.start >= started);
    expect(work).toHaveLength(10);
    for (const pid of new Set(work.map((i) => i.pid))) {
      expect(maxOverlap(work.filter((i) => i.pid === pid))).toBe(1);
    }
    expect(maxOverlap(work)).toBeLessThanOrEqual(3);
    expect(maxOverlap(work)).toBeGreaterThan(1);
  });

  it('cancels a running task by interrupting the WebUI that runs it, and only that one', async () => {
    const before = { b: await simStats(webUis.b), c: await simStats(webUis.c) };
    const keep = await submit(v2({ seed: 301, steps: 150 }));
    const cancel = await submit(v2({ seed: 302, steps: 150 }));
    await waitFor(
      'both tasks to be running on a WebUI',
      () => tapOfSeed(301)?.tap.active.has(301) && tapOfSeed(302)?.tap.active.has(302),
      30_000,
    );
    const victim = tapOfSeed(302)!;
    const other = tapOfSeed(301)!;
    expect(new Set([victim.name, other.name])).toEqual(new Set(['b', 'c']));

    const answer = await call(stack.url, 'POST', `/tasks/${cancel}/cancellation`);
    expect(answer.status).toBe(200);
    expect((await waitForFinal(stack.url, cancel)).status).toBe('cancelled');
    expect((await waitForFinal(stack.url, keep, 60_000)).status).toBe('succeeded');

    const victimStats = await simStats(victim);
    const otherStats = await simStats(other);
    expect(victimStats.interruptedJobs).toBe(before[victim.name as 'b' | 'c'].interruptedJobs + 1);
    expect(otherStats.interruptedJobs).toBe(before[other.name as 'b' | 'c'].interruptedJobs);
  });

  it('ends an in-flight request retryably when its WebUI dies, takes it out of rotation, and back once restarted', async () => {
    // Directly through a runtime of its own, while the stack is idle: it takes the WebUI's lease as the stack's
    // processes do.
    const fn = functionNameFor(DEMO_MODEL_2);
    const request = {
      taskId: `static${Date.now().toString(36)}`,
      user: 'erin',
      kind: 'txt2img' as const,
      model: DEMO_MODEL_2,
      params: { prompt: 'a dam', steps: 300, width: 512, height: 512, seed: 401 },
    };
    const events: AgentEvent[] = [];
    let killed: WebUi | undefined;
    for await (const event of observer.invoke(fn, request, { signal: new AbortController().signal })) {
      events.push(event);
      if (!killed && event.type === 'progress' && event.phase === 'sampling') {
        killed = tapOfSeed(401)!;
        process.kill((await simStats(killed)).pid, 'SIGKILL');
      }
    }
    expect(killed).toBeDefined();
    expect(events.at(-1)).toMatchObject({ type: 'error', kind: 'sd_error', retryable: true });
    await waitFor(
      'the dead WebUI to leave the rotation',
      async () => (await observed(DEMO_MODEL_2))[killed!.tap.url] === 'down',
    );

    killed!.proc = startSim(killed!.name, killed!.port);
    await waitFor(
      'the restarted WebUI to return',
      async () => (await observed(DEMO_MODEL_2))[killed!.tap.url] === 'idle',
      30_000,
    );
    const again: AgentEvent[] = [];
    for await (const event of observer.invoke(
      fn,
      { ...request, taskId: `${request.taskId}b` },
      {
        signal: new AbortController().signal,
      },
    )) {
      again.push(event);
    }
    expect(again.at(-1)?.type, JSON.stringify(again.at(-1))).toBe('result');
  });

  it('keeps tasks succeeding when a WebUI is killed under one, and uses it again once it is back', async () => {
    const first = await submit(v1({ seed: 501, steps: 300 }));
    const dead = await waitFor('the task to reach a WebUI', () => tapOfSeed(501), 30_000);
    const deadPid = (await simStats(dead)).pid;
    process.kill(deadPid, 'SIGKILL');
    expect((await waitForFinal(stack.url, first, 90_000)).status).toBe('succeeded');
    const survivor = dead === webUis.a ? webUis.b : webUis.a;
    // It ran on the dead WebUI first, and its retry on the other one.
    expect(dead.tap.generations.some((g) => g.seed === 501)).toBe(true);
    expect(survivor.tap.generations.some((g) => g.seed === 501)).toBe(true);
    await waitFor('the worker to take it out of rotation', () =>
      workerLogged('WebUI taken out of rotation', dead.tap.url),
    );

    const sent = dead.tap.generations.length;
    const ids = await Promise.all([0, 1, 2].map((i) => submit(v1({ seed: 510 + i }))));
    for (const id of ids) expect((await waitForFinal(stack.url, id, 60_000)).status).toBe('succeeded');
    expect(dead.tap.generations.length).toBe(sent);
    expect(isAlive(deadPid)).toBe(false);

    dead.proc = startSim(dead.name, dead.port);
    await waitFor('the worker to put it back', () => workerLogged('WebUI back in rotation', dead.tap.url), 30_000);
    const more = await Promise.all([0, 1, 2, 3].map((i) => submit(v1({ seed: 520 + i, steps: 20 }))));
    for (const id of more) expect((await waitForFinal(stack.url, id, 60_000)).status).toBe('succeeded');
    expect(dead.tap.generations.length).toBeGreaterThan(sent);
    expect(dead.tap.maxInFlight).toBe(1);
  });

  it('fails a task for a checkpoint no WebUI serves at once, and refuses to delete a function', async () => {
    const started = Date.now();
    const r = await call(stack.url, 'POST', '/txt2img', v1({ stable_diffusion_model: UNSERVED }));
    expect(r.json.status, JSON.stringify(r.json)).toBe('failed');
    expect(r.json.message).toMatch(new RegExp(`no GPU serves checkpoint ${UNSERVED.replace(/\./g, '\\.')}`));
    // Not retried: a retry cannot help until the pool file changes.
    expect(Date.now() - started).toBeLessThan(15_000);
    const read = await call(stack.url, 'GET', `/sdapi/v1/samplers?model=${encodeURIComponent(UNSERVED)}`);
    expect(read.status).toBe(503);
    expect(read.json.message).toMatch(/no GPU serves checkpoint/);

    const del = await call(stack.url, 'POST', '/del/sd/functions', { functions: [DEMO_MODEL] });
    expect(del.json.status).toBe('fail');
    expect(del.json.fails[0].message).toMatch(/the static GPU pool cannot delete/);
    const restart = await call(stack.url, 'POST', '/restart');
    expect(restart.status).toBe(200);
    expect((await call(stack.url, 'POST', '/txt2img', v1({ seed: 601 }))).json.status).toBe('succeeded');
  });
});

describe('the static GPU pool with two workers', () => {
  /**
   * Short enough for a test, yet two thirds of it (the least a dead holder's lease outlives it) is well past the
   * invoke heartbeat timeout (5 s): a killed worker's task is retried while its WebUI's lease still runs.
   */
  const LEASE_TTL_S = 15;
  let pair: Record<'d' | 'e', WebUi>;
  let twin: Omit<Stack, 'runtime'>;

  interface LeaseRow {
    resource: string;
    holder: string;
    expires_at: number;
  }

  /** The stack's leases as the meta store's SQLite file holds them. */
  function leases(): LeaseRow[] {
    const db = new Database(metaDbFile(twin.dataDir), { readonly: true });
    try {
      return db.prepare<[], LeaseRow>('SELECT resource, holder, expires_at FROM leases').all();
    } finally {
      db.close();
    }
  }

  /** The pid a holder names (`host:pid:random`). */
  const pidOf = (holder: string) => Number(/:(\d+):[0-9a-f]{8}$/.exec(holder)?.[1]);

  beforeAll(async () => {
    const [d, e] = await Promise.all(['d', 'e'].map(startWebUi));
    pair = { d, e };
    const file = join(gpus.dataDir, 'pool-pair.json');
    const both = [d.tap.url, e.tap.url];
    writeFileSync(
      file,
      JSON.stringify({
        checkpoints: { [DEMO_MODEL]: both, [DEMO_MODEL_2]: both },
        healthCheckS: 0.5,
        healthTimeoutS: 2,
      }),
    );
    twin = await startStack({
      workers: 2,
      runtime: false,
      env: {
        SDFLOW_FUNCTIONS: 'static',
        SDFLOW_STATIC_POOL_FILE: file,
        SDFLOW_STATIC_LEASE_TTL_S: String(LEASE_TTL_S),
        SDFLOW_MAX_CONCURRENCY: '10',
        SDFLOW_SD_PROGRESS_POLL_MS: '50',
      },
    });
  }, 240_000);

  afterAll(async () => {
    await twin?.stop();
    if (pair) await Promise.all(Object.values(pair).map((ui) => ui.tap.close()));
  });

  it('never puts two jobs on one WebUI, with both workers running tasks on the same two WebUIs', async () => {
    const workerPids = new Set(twin.workers.map((w) => w.child.pid));
    const holders = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const row of leases()) holders.add(row.holder);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const ids = await Promise.all(
        Array.from({ length: 10 }, (_, i) => submit((i % 2 ? v2 : v1)({ seed: 700 + i, steps: 20 }), twin.url)),
      );
      const results = await Promise.all(ids.map((id) => waitForFinal(twin.url, id, 120_000)));
      expect(results.map((r) => r.status)).toEqual(Array(10).fill('succeeded'));
    } finally {
      sampling = false;
      await sampler;
    }
    for (const ui of Object.values(pair)) {
      expect(ui.tap.maxInFlight, `WebUI ${ui.name}`).toBe(1);
      expect(ui.tap.generations.length, `WebUI ${ui.name}`).toBeGreaterThan(0);
    }
    // Both workers held WebUIs: the one-at-a-time held across processes, not just inside one.
    expect(new Set([...holders].map(pidOf))).toEqual(workerPids);
    // Every lease was given back once its job was done.
    expect(leases()).toEqual([]);
  });

  it('frees a WebUI whose holder was killed once its lease expires, and not before', async () => {
    const seed = 801;
    const taskId = await submit(v1({ seed, steps: 200 }), twin.url);
    const held = await waitFor(
      'the task to run on a WebUI',
      () => Object.values(pair).find((ui) => ui.tap.active.has(seed)),
      60_000,
    );
    const other = held === pair.d ? pair.e : pair.d;
    // The other WebUI stays taken by someone else throughout, so the task's retry can only run on this one.
    const meta = await createMetaStore(loadConfig({ ...process.env, ...twin.env }));
    try {
      expect(await meta.tryAcquireLease(`static:${other.tap.url}`, 'test-blocker', 300_000)).toBe(true);
      const holder = leases().find((row) => row.resource === `static:${held.tap.url}`)!.holder;
      const worker = twin.workers.find((w) => w.child.pid === pidOf(holder));
      expect(worker, `the holder ${holder} is a worker`).toBeDefined();
      worker!.child.kill('SIGKILL');
      await worker!.exited;
      const killedAt = Date.now();
      // Nobody renews it any more: this is when it frees.
      const lease = leases().find((row) => row.resource === `static:${held.tap.url}`)!;
      expect(lease.holder).toBe(holder);
      expect(lease.expires_at).toBeGreaterThan(killedAt);
      expect(await meta.tryAcquireLease(`static:${held.tap.url}`, 'test-probe', 1000)).toBe(false);

      const done = await waitForFinal(twin.url, taskId, 120_000);
      expect(done.status, JSON.stringify(done)).toBe('succeeded');
      const runs = held.tap.generations.filter((g) => g.seed === seed);
      expect(runs.length).toBeGreaterThanOrEqual(2);
      // The retry (on the surviving worker, once the heartbeat timed out) reached the WebUI only after the dead
      // holder's lease had expired.
      for (const retry of runs.slice(1)) expect(retry.at).toBeGreaterThanOrEqual(lease.expires_at);
      expect(other.tap.generations.some((g) => g.seed === seed)).toBe(false);
      expect(held.tap.maxInFlight).toBe(1);
      expect(leases()).toEqual([
        expect.objectContaining({ resource: `static:${other.tap.url}`, holder: 'test-blocker' }),
      ]);
    } finally {
      await meta.releaseLease(`static:${other.tap.url}`, 'test-blocker');
      await meta.close();
    }
  });
});
