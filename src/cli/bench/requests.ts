import type { Client } from '@temporalio/client';
import type { Txt2ImgRequest } from '../../api/schemas.js';
import { ApiError, CliError, type SdflowClient, type TaskFilter, type TaskSummary } from '../client/api.js';

// The requests every scenario sends, and how one is timed. Times come from the monotonic clock (performance.now()).

/** A txt2img job's size. */
export interface JobShape {
  steps: number;
  width: number;
  height: number;
}

/** The overhead and cold-start job: 4 steps at 512×512, about 0.36 s on the simulator's A10 timings. */
export const SHORT_A10_JOB: JobShape = { steps: 4, width: 512, height: 512 };
/** The slots job: 1 step at 64×64, the simulator's 100 ms of VAE and almost no sampling. */
export const TINY_JOB: JobShape = { steps: 1, width: 64, height: 64 };
/** The multimodel job: 20 steps at 512×512, 1.4 s on A10 timings. */
export const FULL_A10_JOB: JobShape = { steps: 20, width: 512, height: 512 };

export function txt2imgBody(model: string, job: JobShape, seed: number, prompt: string): Txt2ImgRequest {
  return { stable_diffusion_model: model, prompt, seed, ...job };
}

/** The same job as A1111 receives it from an agent: the checkpoint in override_settings. */
export function a1111Body(model: string, job: JobShape, seed: number, prompt: string): Record<string, unknown> {
  return {
    prompt,
    seed,
    ...job,
    override_settings: { sd_model_checkpoint: model },
    override_settings_restore_afterwards: true,
  };
}

export interface Timed {
  ok: boolean;
  ms: number;
  taskId?: string;
  error?: string;
}

/** A sync txt2img through the API: ok when the task succeeded. */
export async function timedSync(client: SdflowClient, body: Txt2ImgRequest): Promise<Timed> {
  const t0 = performance.now();
  try {
    const { body: answer } = await client.submit('txt2img', body, { async: false });
    const ok = answer.status === 'succeeded';
    return {
      ok,
      ms: performance.now() - t0,
      taskId: answer.taskId,
      ...(ok ? {} : { error: `${answer.status}${answer.message ? `: ${answer.message}` : ''}` }),
    };
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    const taskId = err instanceof ApiError ? (err.body as { taskId?: string } | undefined)?.taskId : undefined;
    return { ok: false, ms: performance.now() - t0, taskId, error: err.message };
  }
}

/**
 * Sends these jobs at once, sync, so that the instances they need are started and hold their checkpoints before
 * anything is timed; throws when one fails.
 */
export async function warmUp(client: SdflowClient, jobs: readonly { model: string; job: JobShape }[]): Promise<void> {
  const answers = await Promise.all(
    jobs.map(({ model, job }, i) => timedSync(client, txt2imgBody(model, job, i, 'sdflow bench warm-up'))),
  );
  const failure = answers.find((a) => !a.ok);
  if (failure) throw new Error(`a warm-up request failed: ${failure.error}`);
}

/** An async txt2img: the taskId once accepted. */
export async function timedAsync(client: SdflowClient, body: Txt2ImgRequest): Promise<Timed> {
  const t0 = performance.now();
  try {
    const { body: answer } = await client.submit('txt2img', body, { async: true });
    return { ok: true, ms: performance.now() - t0, taskId: answer.taskId };
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    return { ok: false, ms: performance.now() - t0, error: err.message };
  }
}

/** A POST straight to an A1111 (or simulator) txt2img. */
export async function timedDirect(baseUrl: string, body: Record<string, unknown>): Promise<Timed> {
  const t0 = performance.now();
  try {
    const res = await fetch(`${baseUrl}/sdapi/v1/txt2img`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    return { ok: res.ok, ms: performance.now() - t0, ...(res.ok ? {} : { error: `HTTP ${res.status}: ${text}` }) };
  } catch (err) {
    return { ok: false, ms: performance.now() - t0, error: (err as Error).message };
  }
}

/** Waits for a task's workflow to close (a long poll on Temporal); answers its final status. */
export async function taskEnd(temporal: Client, taskId: string): Promise<string> {
  try {
    const summary = (await temporal.workflow.getHandle(taskId).result()) as { status?: unknown } | undefined;
    return typeof summary?.status === 'string' ? summary.status : 'unknown';
  } catch {
    return 'failed';
  }
}

/** Every task the caller may list with this filter, by taskId: their status, and when they started and finished. */
export async function listedTasks(client: SdflowClient, filter: TaskFilter = {}): Promise<Map<string, TaskSummary>> {
  const found = new Map<string, TaskSummary>();
  let cursor: string | undefined;
  do {
    const page = await client.tasks({ ...filter, limit: 1000, cursor });
    for (const task of page.tasks) found.set(task.taskId, task);
    cursor = page.cursor;
  } while (cursor);
  return found;
}
