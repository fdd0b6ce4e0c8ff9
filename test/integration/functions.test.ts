import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { LocalFunctionRuntime } from '../../src/platform/functions/local/client.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import type { RuntimeFunction } from '../../src/platform/functions/port.js';
import { createMetaStore } from '../../src/platform/index.js';
import type { MetaStore } from '../../src/platform/meta-store/port.js';
import { isAlive, waitFor } from '../helpers/runtime-procs.js';
import { call, DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack } from '../helpers/stack.js';

// The function admin routes on the real stack: batch update (all, selected, partial failure), delete (then the next
// request recreates the function), per-item delete failures, and restart. Checked on both sides: the API's records
// and the runtime's functions and instances.

const FN_1 = functionNameFor(DEMO_MODEL);
const FN_2 = functionNameFor(DEMO_MODEL_2);
const UNKNOWN_FN = `sd_${'0'.repeat(40)}`;

type InstanceView = { id: string; pid: number; state: string };
type FunctionView = Omit<RuntimeFunction, 'instances'> & { instances: InstanceView[] };

let stack: Stack;
let meta: MetaStore;
let runtime: LocalFunctionRuntime;
let runtimeUrl: string;

const api = (method: string, path: string, body?: unknown) => call(stack.url, method, path, body);

async function generate(model: string) {
  const r = await api('POST', '/txt2img', {
    stable_diffusion_model: model,
    prompt: 'f',
    steps: 2,
    width: 64,
    height: 64,
  });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json;
}

async function runtimeFn(name: string): Promise<FunctionView | undefined> {
  const res = await fetch(`${runtimeUrl}/functions/${name}`);
  if (res.status === 404) return undefined;
  return (await res.json()) as FunctionView;
}

const live = async (name: string) => ((await runtimeFn(name))?.instances ?? []).filter((i) => i.state !== 'stopping');
const listed = async () =>
  ((await api('GET', '/list/sdapi/functions')).json.functions as { functionName: string }[]).map((f) => f.functionName);
const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');

/** The built CLI against the stack: exit code and stdout. */
function sdflow(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [resolve('dist/cli/main.js'), ...args], {
    env: { ...process.env, SDFLOW_URL: stack.url },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

beforeAll(async () => {
  stack = await startStack({ env: { SDFLOW_FUNCTION_MAX_INSTANCES: '2', SDFLOW_KEEP_ALIVE_S: '600' } });
  const config = loadConfig({ ...process.env, ...stack.env });
  meta = await createMetaStore(config);
  runtimeUrl = config.runtime.url;
  runtime = new LocalFunctionRuntime({ url: runtimeUrl });
  await generate(DEMO_MODEL);
  await generate(DEMO_MODEL_2);
});

afterAll(async () => {
  await meta?.close();
  await stack?.stop();
});

describe('POST /batch_update_sd_resource', () => {
  it('with no selection updates every function: records and runtime limits', async () => {
    expect(await listed()).toEqual(expect.arrayContaining([FN_1, FN_2]));
    const r = await api('POST', '/batch_update_sd_resource', { keepAliveS: 300, maxInstances: 3, cpu: 8 });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toEqual({ status: 'success', failFuncList: [] });
    for (const name of [FN_1, FN_2]) {
      const fn = await runtimeFn(name);
      expect(fn?.limits).toEqual({ maxInstances: 3, keepAliveS: 300, minInstances: 0 });
      expect(fn?.resources).toMatchObject({ keepAliveS: 300, maxInstances: 3, cpu: 8 });
      expect((await meta.getFunction(name))?.resources).toEqual({ keepAliveS: 300, maxInstances: 3, cpu: 8 });
      // Limits alone never replace the instances.
      expect(await live(name)).toHaveLength(1);
    }
  });

  it('a selected function gets a new env: its instances are replaced and new ones carry it; others are untouched', async () => {
    const [old1] = await live(FN_1);
    const [old2] = await live(FN_2);
    const r = await api('POST', '/batch_update_sd_resource', {
      models: [DEMO_MODEL],
      env: { SDFLOW_TEST_FLAG: 'on' },
      extraArgs: '--api --medvram',
    });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    await waitFor('the old instance to stop', () => !isAlive(old1.pid));
    await generate(DEMO_MODEL);
    const [fresh] = await live(FN_1);
    expect(fresh.id).not.toBe(old1.id);
    expect(environ(fresh.pid)).toEqual(
      expect.arrayContaining(['SDFLOW_TEST_FLAG=on', 'SDFLOW_SD_EXTRA_ARGS=--api --medvram']),
    );
    expect((await meta.getFunction(FN_1))?.resources).toMatchObject({ env: { SDFLOW_TEST_FLAG: 'on' }, cpu: 8 });
    expect((await live(FN_2)).map((i) => i.id)).toEqual([old2.id]);
    expect((await meta.getFunction(FN_2))?.resources.env).toBeUndefined();
  });

  it('a partial failure names the unknown item, applies the known one, and answers 404', async () => {
    const r = await api('POST', '/batch_update_sd_resource', {
      models: [DEMO_MODEL, 'no-such-model.safetensors'],
      functions: [UNKNOWN_FN],
      timeout: 900,
    });
    expect(r.status, JSON.stringify(r.json)).toBe(404);
    expect(r.json.status).toBe('fail');
    expect(r.json.failFuncList).toEqual(['no-such-model.safetensors', UNKNOWN_FN]);
    expect(r.json.errMsg.split('\n')).toEqual([
      'no-such-model.safetensors: unknown checkpoint',
      `${UNKNOWN_FN}: unknown function`,
    ]);
    expect((await runtimeFn(FN_1))?.limits?.timeoutS).toBe(900);
    expect((await meta.getFunction(FN_1))?.resources.timeout).toBe(900);
  });

  it('refuses a malformed body with 400 naming the field', async () => {
    const bad = await api('POST', '/batch_update_sd_resource', { maxInstances: 0 });
    expect(bad.status).toBe(400);
    expect(bad.json.message).toMatch(/^maxInstances: must be at least 1/);
    const reserved = await api('POST', '/batch_update_sd_resource', { env: { SD_MODEL: 'x' } });
    expect(reserved.status).toBe(400);
    expect(reserved.json.message).toMatch(/env\.SD_MODEL/);
  });

  it("refuses every variable the platform sets in a function's env, with 400 naming it, and applies nothing", async () => {
    const before = await meta.getFunction(FN_1);
    const names = [
      'SDFLOW_AGENT_HOST',
      'SDFLOW_OBJECT_STORE',
      'SDFLOW_MAX_BODY_MB',
      'SDFLOW_LOG_LEVEL',
      'SDFLOW_RESTART_AT',
      'SDFLOW_OSS_BUCKET',
      'SDFLOW_OSS_PART_SIZE_MB',
    ];
    for (const name of names) {
      const r = await api('POST', '/batch_update_sd_resource', {
        models: [DEMO_MODEL],
        env: { HF_HOME: '/hf', [name]: 'x' },
      });
      expect(r.status, name).toBe(400);
      expect(r.json.message).toMatch(new RegExp(`^env\\.${name}: is set by the platform`));
    }
    const both = await api('POST', '/batch_update_sd_resource', {
      env: { SDFLOW_AGENT_HOST: '0.0.0.0', SDFLOW_OSS_ENDPOINT: 'http://elsewhere' },
    });
    expect(both.status).toBe(400);
    expect(both.json.message).toMatch(/env\.SDFLOW_AGENT_HOST/);
    expect(both.json.message).toMatch(/env\.SDFLOW_OSS_ENDPOINT/);
    expect(await meta.getFunction(FN_1)).toEqual(before);
  });
});

describe('GET /functions/{name}', () => {
  it("answers the record's resources and the runtime's limits and instances, by function or checkpoint name", async () => {
    const r = await api('GET', `/functions/${FN_1}`);
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    const inRuntime = (await runtimeFn(FN_1))!;
    expect(r.json).toMatchObject({
      functionName: FN_1,
      model: DEMO_MODEL,
      resources: (await meta.getFunction(FN_1))?.resources,
    });
    expect(r.json.runtime.limits).toEqual(inRuntime.limits);
    expect(r.json.runtime.instances.map((i: { id: string }) => i.id)).toEqual(inRuntime.instances.map((i) => i.id));
    expect(r.json.runtime.instances[0]).toEqual({ id: expect.any(String), busy: false, startedAt: expect.any(String) });
    expect((await api('GET', `/functions/${DEMO_MODEL}`)).json.functionName).toBe(FN_1);
    const unknown = await api('GET', `/functions/${UNKNOWN_FN}`);
    expect(unknown.status).toBe(404);
    expect(unknown.json.message).toMatch(/unknown function/);
  });
});

describe('POST /del/sd/functions', () => {
  it('deletes the runtime function (stopping its instances) and its record; the next request recreates both', async () => {
    const pids = (await live(FN_2)).map((i) => i.pid);
    expect(pids.length).toBeGreaterThan(0);
    const r = await api('POST', '/del/sd/functions', { functions: [FN_2] });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(r.json).toEqual({ status: 'success', fails: [] });
    expect(await listed()).not.toContain(FN_2);
    expect(await meta.getFunction(FN_2)).toBeNull();
    expect(await runtimeFn(FN_2)).toBeUndefined();
    for (const pid of pids) await waitFor(`pid ${pid} to exit`, () => !isAlive(pid));

    expect((await generate(DEMO_MODEL_2)).status).toBe('succeeded');
    expect(await listed()).toContain(FN_2);
    expect((await runtimeFn(FN_2))?.model).toBe(DEMO_MODEL_2);
    // A recreated function starts from no resources: the batch-updated ones went with the delete.
    expect((await meta.getFunction(FN_2))?.resources).toEqual({});
  });

  it('takes checkpoint names too, reports per-item failures, and answers 404 when only names were unknown', async () => {
    const r = await api('POST', '/del/sd/functions', { functions: [DEMO_MODEL, UNKNOWN_FN] });
    expect(r.status, JSON.stringify(r.json)).toBe(404);
    expect(r.json.status).toBe('fail');
    expect(r.json.fails).toEqual([{ functionName: UNKNOWN_FN, message: `${UNKNOWN_FN}: unknown function` }]);
    expect(await meta.getFunction(FN_1)).toBeNull();
    expect(await runtimeFn(FN_1)).toBeUndefined();
  });

  it('leaves no orphan: a record without a runtime function, or a runtime function without a record', async () => {
    await generate(DEMO_MODEL);
    await runtime.deleteFunction(FN_1);
    expect(await meta.getFunction(FN_1)).not.toBeNull();
    const orphan = functionNameFor('orphan.safetensors');
    await runtime.ensureFunction({ functionName: orphan, model: 'orphan.safetensors' });
    const r = await api('POST', '/del/sd/functions', { functions: [FN_1, orphan] });
    expect(r.status, JSON.stringify(r.json)).toBe(200);
    expect(await meta.getFunction(FN_1)).toBeNull();
    expect(await runtimeFn(orphan)).toBeUndefined();
    expect((await runtime.listFunctions()).map((f) => f.functionName)).not.toContain(orphan);
  });
});

describe('POST /restart', () => {
  it("recycles every function's instances", async () => {
    await generate(DEMO_MODEL);
    const before = [...(await live(FN_1)), ...(await live(FN_2))];
    expect(before.length).toBeGreaterThanOrEqual(2);
    const r = await api('POST', '/restart');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ status: 'success' });
    for (const { pid } of before) await waitFor(`pid ${pid} to exit`, () => !isAlive(pid));
    await generate(DEMO_MODEL);
    await generate(DEMO_MODEL_2);
    const after = [...(await live(FN_1)), ...(await live(FN_2))].map((i) => i.id);
    expect(after).toHaveLength(2);
    for (const { id } of before) expect(after).not.toContain(id);
  });
});

describe('the command line and a failing runtime', () => {
  it('sdflow functions update | restart | options | delete', async () => {
    await generate(DEMO_MODEL);
    const update = await sdflow(['functions', 'update', '--model', DEMO_MODEL, '--keep-alive', '200', '--env', 'X=1']);
    expect(update.code, update.stderr).toBe(0);
    expect((await meta.getFunction(FN_1))?.resources).toEqual({ keepAliveS: 200, env: { X: '1' } });
    const partial = await sdflow(['functions', 'update', '--function', UNKNOWN_FN, '--timeout', '60', '--json']);
    expect(partial.code).toBe(1);
    expect(JSON.parse(partial.stdout)).toMatchObject({ status: 'fail', failFuncList: [UNKNOWN_FN] });
    expect((await sdflow(['functions', 'restart'])).code).toBe(0);
    const settings = await sdflow(['functions', 'options', DEMO_MODEL, '--set', 'CLIP_stop_at_last_layers=2']);
    expect(settings.code, settings.stderr).toBe(0);
    expect(settings.stdout).toMatch(/"CLIP_stop_at_last_layers": 2/);
    expect((await meta.getFunction(FN_1))?.resources).toEqual({
      keepAliveS: 200,
      env: { X: '1' },
      sdOptions: { CLIP_stop_at_last_layers: 2 },
    });
    const shown = await sdflow(['functions', 'options', FN_1, '--json']);
    expect(JSON.parse(shown.stdout)).toMatchObject({ model: DEMO_MODEL, options: { CLIP_stop_at_last_layers: 2 } });
    const del = await sdflow(['functions', 'delete', DEMO_MODEL]);
    expect(del.code, del.stderr).toBe(0);
    expect(await meta.getFunction(FN_1)).toBeNull();
  });

  it('with the runtime down: batch update and delete fail per item with 500 and keep the records; restart is 503', async () => {
    await generate(DEMO_MODEL);
    await stack.runtime.stop(10_000);
    const update = await api('POST', '/batch_update_sd_resource', { models: [DEMO_MODEL], keepAliveS: 10 });
    expect(update.status, JSON.stringify(update.json)).toBe(500);
    expect(update.json.failFuncList).toEqual([DEMO_MODEL]);
    expect(update.json.errMsg).toMatch(/the runtime could not apply it: function runtime at .* unreachable/);
    expect((await meta.getFunction(FN_1))?.resources).toEqual({});
    const del = await api('POST', '/del/sd/functions', { functions: [FN_1] });
    expect(del.status, JSON.stringify(del.json)).toBe(500);
    expect(del.json.fails).toEqual([{ functionName: FN_1, message: expect.stringMatching(/unreachable/) }]);
    expect(await meta.getFunction(FN_1)).not.toBeNull();
    const shown = await api('GET', `/functions/${FN_1}`);
    expect(shown.json).toMatchObject({ functionName: FN_1, runtime: null, runtimeError: expect.any(String) });
    const restart = await api('POST', '/restart');
    expect(restart.status).toBe(503);
    expect(restart.json.message).toMatch(/unreachable/);
  });
});
