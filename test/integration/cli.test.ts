import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL, DEMO_MODEL_2, type Stack, startStack } from '../helpers/stack.js';

// The client CLI as users run it: the built `node dist/cli/main.js` as a real process against a real stack, with
// API keys on so --key / SDFLOW_API_KEY are exercised.

const CLI = resolve('dist/cli/main.js');
const KEY = 'alice-secret-0001';
const USER = 'alice';

let stack: Stack;
let work: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function start(args: string[], env: Record<string, string | undefined> = {}): ChildProcess {
  const childEnv: Record<string, string | undefined> = {
    ...process.env,
    SDFLOW_URL: stack.url,
    SDFLOW_API_KEY: KEY,
    SDFLOW_MODEL: undefined,
    ...env,
  };
  return spawn(process.execPath, [CLI, ...args], { cwd: work, env: childEnv as NodeJS.ProcessEnv });
}

function finish(child: ChildProcess): Promise<Run> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  return new Promise((res) => child.on('close', (code) => res({ code, stdout, stderr })));
}

const sdflow = (args: string[], env?: Record<string, string | undefined>) => finish(start(args, env));

/** Runs a command that must succeed and returns its stdout. */
async function ok(args: string[]): Promise<string> {
  const r = await sdflow(args);
  expect(r.code, `sdflow ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

const json = async (args: string[]) => JSON.parse(await ok([...args, '--json']));
const dir = (name: string) => mkdtempSync(join(work, `${name}-`));
const pngSize = async (file: string) => {
  const m = await sharp(file).metadata();
  return `${m.width}x${m.height}`;
};
const quick = ['--model', DEMO_MODEL, '--steps', '2', '--width', '64', '--height', '64'];
/** Long enough to be running for many seconds at the test stack's 10 ms per 512×512 step. */
const long = ['--model', DEMO_MODEL, '--steps', '500', '--width', '1024', '--height', '1024'];

async function waitForRunning(taskId: string) {
  const until = Date.now() + 30_000;
  for (;;) {
    const p = await json(['tasks', 'progress', taskId]);
    if (p.status === 'running' && p.state.sampling_step > 0) return p;
    if (Date.now() > until) throw new Error(`never seen sampling: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'sdflow-cli-'));
  stack = await startStack({ env: { SDFLOW_API_KEYS: `${USER}:user:${KEY}` } });
});

afterAll(async () => {
  await stack?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('generation commands', () => {
  let firstTask: string;

  it('txt2img follows the task, prints the taskId and saves <taskId>_<n>.png of the right size', async () => {
    const out = dir('txt2img');
    const r = await sdflow([
      'txt2img',
      'a lighthouse on a cliff',
      '--model',
      DEMO_MODEL,
      '--negative',
      'blurry',
      '--steps',
      '3',
      '--width',
      '128',
      '--height',
      '96',
      '--batch',
      '2',
      '--seed',
      '7',
      '--cfg',
      '6.5',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const taskId = /^taskId\s+(\S+)$/m.exec(r.stdout)?.[1];
    expect(taskId).toBeDefined();
    expect(r.stdout).toMatch(/^status\s+succeeded in [\d.]+ s$/m);
    expect(r.stdout).toMatch(/^seeds\s+7, 8$/m);
    // The phases, as the task's event stream reports them, one line each, in order (three steps may pass between
    // two reads of SD's progress: sampling is shown when it was seen).
    const lines = r.stderr.split('\n').filter((l) => l.startsWith(`task ${taskId}: `));
    const shown = lines.map((l) => l.slice(`task ${taskId}: `.length).replace(', cold start', ''));
    const phases = ['waiting', 'running (starting)', 'running (sampling)', 'running (uploading)', 'succeeded'];
    expect(shown.filter((l, i) => l !== shown[i - 1])).toEqual(
      phases.filter((p) => p !== 'running (sampling)' || shown.includes(p)),
    );
    expect(readdirSync(out).sort()).toEqual([`${taskId}_1.png`, `${taskId}_2.png`]);
    for (const f of readdirSync(out)) expect(await pngSize(join(out, f))).toBe('128x96');
    firstTask = taskId!;
  });

  it('--json prints the result; --set passes extra A1111 fields; --task-id chooses the id', async () => {
    const taskId = `cli-json-${Date.now()}`;
    const result = await json([
      'txt2img',
      'json please',
      ...quick,
      '--no-download',
      '--task-id',
      taskId,
      '--set',
      'subseed_strength=0.25',
      '--set',
      'sampler_name=Euler a',
      '--set',
      'restore_faces=false',
    ]);
    expect(result).toMatchObject({ taskId, status: 'succeeded', images: [`images/${USER}/${taskId}_1.png`] });
    expect(result.ossUrl).toHaveLength(1);
    expect(result.files).toBeUndefined();
    expect(result.parameters).toMatchObject({ subseed_strength: 0.25, sampler_name: 'Euler a', restore_faces: false });
    expect(readdirSync(work).filter((f) => f.startsWith(taskId))).toEqual([]);
  });

  it('--async prints just the taskId; tasks wait follows it to the end and downloads', async () => {
    const taskId = (await ok(['txt2img', 'later', ...quick, '--async'])).trim();
    expect(taskId).toMatch(/^[A-Za-z0-9_-]+$/);
    const out = dir('wait');
    const r = await sdflow(['tasks', 'wait', taskId, '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^status\s+succeeded/m);
    expect(readdirSync(out)).toEqual([`${taskId}_1.png`]);
  });

  it('img2img sends a local file as the init image', async () => {
    const init = join(work, 'init.png');
    await sharp({ create: { width: 80, height: 60, channels: 3, background: '#884422' } })
      .png()
      .toFile(init);
    const out = dir('img2img');
    const result = await json([
      'img2img',
      'from a file',
      '--model',
      DEMO_MODEL_2,
      '--init',
      init,
      '--denoise',
      '0.5',
      '--steps',
      '2',
      '--width',
      '64',
      '--height',
      '48',
      '--out',
      out,
    ]);
    expect(result.status).toBe('succeeded');
    expect(result.parameters.denoising_strength).toBe(0.5);
    expect(result.files).toEqual([join(out, `${result.taskId}_1.png`)]);
    expect(await pngSize(result.files[0])).toBe('64x48');
  });

  it('img2img refuses a missing local file before calling the API', async () => {
    const r = await sdflow(['img2img', 'x', ...quick, '--init', './missing.png']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--init: no such file \.\/missing\.png/);
  });

  it('upscale takes an object key and saves the upscaled image', async () => {
    const out = dir('upscale');
    const result = await json(['upscale', `images/${USER}/${firstTask}_1.png`, '--scale', '2', '--out', out]);
    expect(result.status).toBe('succeeded');
    expect(result.parameters).toMatchObject({ upscaling_resize: 2, upscaler_1: 'Lanczos' });
    expect(await pngSize(result.files[0])).toBe('256x192');
  });
});

describe('tasks commands', () => {
  let taskId: string;

  beforeAll(async () => {
    taskId = (await ok(['txt2img', 'to read', ...quick, '--seed', '99', '--no-download', '--async'])).trim();
    expect((await sdflow(['tasks', 'wait', taskId, '--json'])).code).toBe(0);
  });

  it('tasks result shows a finished task, for people and as JSON', async () => {
    const human = await ok(['tasks', 'result', taskId]);
    expect(human).toMatch(new RegExp(`^taskId\\s+${taskId}$`, 'm'));
    expect(human).toMatch(/^status\s+succeeded$/m);
    expect(human).toMatch(/^seeds\s+99$/m);
    expect(human).toContain(`images/${USER}/${taskId}_1.png`);
    const result = await json(['tasks', 'result', taskId]);
    expect(result).toMatchObject({ taskId, status: 'succeeded', images: [`images/${USER}/${taskId}_1.png`] });
    expect(JSON.parse(result.info).seed).toBe(99);
  });

  it('tasks progress of a finished task reports progress 1', async () => {
    expect(await json(['tasks', 'progress', taskId])).toMatchObject({ taskId, status: 'succeeded', progress: 1 });
    expect(await ok(['tasks', 'progress', taskId])).toMatch(/^progress\s+100\.0%$/m);
  });

  it('tasks cancel ends a running task as cancelled; cancelling it again exits 1 with the API message', async () => {
    const id = (await ok(['txt2img', 'long', ...long, '--async'])).trim();
    const running = await waitForRunning(id);
    expect(running.state.sampling_steps).toBe(500);
    expect(await ok(['tasks', 'progress', id])).toMatch(/^step\s+\d+\/500$/m);
    const out = await ok(['tasks', 'cancel', id]);
    expect(out).toMatch(/^status\s+cancelled$/m);
    expect((await json(['tasks', 'result', id])).status).toBe('cancelled');
    const again = await sdflow(['tasks', 'cancel', id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already cancelled.*HTTP 409/);
  });

  it('the first Ctrl-C while txt2img waits cancels the task, and the command exits 130', async () => {
    const child = start(['txt2img', 'interrupt me', ...long]);
    const done = finish(child);
    let stderr = '';
    await new Promise<void>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`never sampling:\n${stderr}`)), 30_000);
      child.stderr?.on('data', (c: Buffer) => {
        stderr += c.toString();
        if (/running \(sampling\)/.test(stderr)) {
          clearTimeout(timer);
          res();
        }
      });
    });
    child.kill('SIGINT');
    const r = await done;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(/cancelling/);
    expect(r.stdout).toMatch(/^status\s+cancelled/m);
    const taskId = /^taskId\s+(\S+)$/m.exec(r.stdout)![1];
    expect((await json(['tasks', 'result', taskId])).status).toBe('cancelled');
  });

  it('tasks retry runs a cancelled task again and saves its images; tasks list shows both, newest first', async () => {
    // Long enough (about 6 s at 256×256) to be cancelled before it ends; its retry then runs it all.
    const sized = ['--model', DEMO_MODEL, '--steps', '400', '--width', '256', '--height', '256'];
    const id = (await ok(['txt2img', 'again', ...sized, '--async'])).trim();
    expect(await ok(['tasks', 'cancel', id])).toMatch(/^status\s+cancelled$/m);
    const out = dir('retry');
    const r = await sdflow(['tasks', 'retry', id, '--task-id', 'cli-retry-1', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^taskId\s+cli-retry-1$/m);
    expect(await json(['tasks', 'result', 'cli-retry-1'])).toMatchObject({ status: 'succeeded', retryOf: id });
    expect(readdirSync(out)).toEqual(['cli-retry-1_1.png']);

    const listed = await json(['tasks', 'list', '--limit', '2']);
    expect(listed.tasks.map((t: { taskId: string }) => t.taskId)).toEqual(['cli-retry-1', id]);
    expect(listed.cursor).toBeTruthy();
    const table = await ok(['tasks', 'list', '--status', 'cancelled']);
    expect(table).toMatch(/^TASK\s+STATUS\s+KIND\s+MODEL\s+USER\s+CREATED\s+MESSAGE$/m);
    expect(table).toMatch(new RegExp(`^${id}\\s+cancelled\\s+txt2img`, 'm'));
    expect(table).not.toMatch(/cli-retry-1/);
    const twice = await sdflow(['tasks', 'retry', 'cli-retry-1']);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/only a failed or cancelled task can be retried.*HTTP 409/);
  });

  it('an unknown task exits 1 with the API message', async () => {
    const r = await sdflow(['tasks', 'result', 'never-submitted-42']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown task never-submitted-42.*HTTP 404/);
  });
});

describe('catalog commands', () => {
  it('models list shows the demo checkpoints as loaded; --json gives the API list', async () => {
    const human = await ok(['models', 'list']);
    expect(human).toMatch(/^NAME\s+TYPE\s+STATUS\s+MODIFIED$/m);
    for (const name of [DEMO_MODEL, DEMO_MODEL_2]) {
      expect(human).toMatch(new RegExp(`^${name.replace(/\./g, '\\.')}\\s+stableDiffusion\\s+loaded\\s`, 'm'));
    }
    const list = await json(['models', 'list', '--type', 'stableDiffusion', '--status', 'loaded']);
    expect(list.map((m: any) => m.name)).toEqual(expect.arrayContaining([DEMO_MODEL, DEMO_MODEL_2]));
    expect(await json(['models', 'list', '--type', 'lora'])).toEqual([]);
  });

  it('models get shows one model; an unknown one exits 1', async () => {
    expect(await json(['models', 'get', DEMO_MODEL])).toMatchObject({
      name: DEMO_MODEL,
      type: 'stableDiffusion',
      status: 'loaded',
      ossPath: `models/stableDiffusion/${DEMO_MODEL}`,
    });
    expect(await ok(['models', 'get', DEMO_MODEL])).toMatch(/^ossPath\s+models\/stableDiffusion\//m);
    const r = await sdflow(['models', 'get', 'nope.safetensors']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unknown model nope\.safetensors/);
  });

  it('functions list shows the function of a used checkpoint', async () => {
    const fn = `sd_${createHash('sha256').update(DEMO_MODEL).digest('hex').slice(0, 40)}`;
    expect(await ok(['functions', 'list'])).toMatch(new RegExp(`^${fn}\\s+${DEMO_MODEL.replace(/\./g, '\\.')}$`, 'm'));
    const answer = await json(['functions', 'list']);
    expect(answer.status).toBe('success');
    expect(answer.functions).toContainEqual({ functionName: fn, model: DEMO_MODEL });
  });
});

describe('errors and exit codes', () => {
  const cases: [string, string[], Record<string, string | undefined>, number, RegExp][] = [
    ['negative steps', ['txt2img', 'x', '--model', DEMO_MODEL, '--steps', '-1'], {}, 1, /steps: must be at least 1/],
    ['an unknown model', ['txt2img', 'x', '--model', 'nope.safetensors'], {}, 1, /stable_diffusion_model.*nope/],
    ['a bad model filter', ['models', 'list', '--type', 'pixelArt'], {}, 1, /type: must be one of/],
    ['a malformed --task-id', ['txt2img', 'x', ...quick, '--task-id', 'has space'], {}, 1, /taskId header/],
    ['no API key', ['models', 'list'], { SDFLOW_API_KEY: undefined }, 1, /missing API key.*HTTP 401/],
    ['a wrong --key', ['models', 'list', '--key', 'not-the-secret'], {}, 1, /invalid API key.*HTTP 401/],
    ['an unreachable API', ['models', 'list', '--url', 'http://127.0.0.1:9'], {}, 1, /cannot reach the API/],
    ['a non-number --steps', ['txt2img', 'x', ...quick, '--steps', 'many'], {}, 2, /--steps.*must be a number/],
    ['a bad --set', ['txt2img', 'x', ...quick, '--set', 'novalue'], {}, 2, /key=value/],
    ['an unknown option', ['functions', 'list', '--colour'], {}, 2, /unknown option/],
  ];
  for (const [name, args, env, code, message] of cases) {
    it(`${name} exits ${code} with a message`, async () => {
      const r = await sdflow(args, env);
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    });
  }

  it('SDFLOW_MODEL stands in for --model', async () => {
    const r = await sdflow(['txt2img', 'env model', '--steps', '2', '--width', '64', '--height', '64', '--async'], {
      SDFLOW_MODEL: DEMO_MODEL,
    });
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('without --model', () => {
  const modelOf = async (taskId: string) =>
    (await json(['tasks', 'list', '--limit', '5'])).tasks.find((t: { taskId: string }) => t.taskId === taskId).model;
  const setCheckpoint = (checkpoint: string | null) =>
    fetch(`${stack.url}/sdapi/v1/options`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ sd_model_checkpoint: checkpoint }),
    });

  it('txt2img renders with your checkpoint (sd_model_checkpoint of your A1111 options), else the default', async () => {
    const quickNoModel = ['--steps', '2', '--width', '64', '--height', '64', '--no-download'];
    const byDefault = await json(['txt2img', 'the default', ...quickNoModel]);
    expect(byDefault.status).toBe('succeeded');
    expect(await modelOf(byDefault.taskId)).toBe(DEMO_MODEL);

    expect((await setCheckpoint('sdflow-demo-v2')).status).toBe(200);
    try {
      const mine = await json(['txt2img', 'mine', ...quickNoModel]);
      expect(mine.status).toBe('succeeded');
      expect(await modelOf(mine.taskId)).toBe(DEMO_MODEL_2);
    } finally {
      await setCheckpoint(null);
    }
  });
});

describe('webhooks secret', () => {
  it('prints the secret the workers sign with: the one generated into the data dir', async () => {
    const r = await sdflow(['webhooks', 'secret'], { SDFLOW_DATA_DIR: stack.dataDir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(r.stdout.trim()).toBe(readFileSync(join(stack.dataDir, 'webhook-secret'), 'utf8').trim());
  });

  it('refuses to make one up when the stores are cloud ones, naming the setting', async () => {
    const r = await sdflow(['webhooks', 'secret'], { SDFLOW_DATA_DIR: work, SDFLOW_META_STORE: 'tablestore' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/SDFLOW_WEBHOOK_SECRET must be set/);
  });
});
