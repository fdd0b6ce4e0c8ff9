import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalFunctionRuntime } from '../../src/platform/functions/local/client.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import type { AgentEvent } from '../../src/protocol/events.js';
import type { InvokeRequest } from '../../src/protocol/invoke.js';
import {
  cleanup,
  makeTestEnv,
  type RuntimeProcess,
  startRuntimeProcess,
  type TestEnv,
} from '../helpers/runtime-procs.js';

// How an invoke reports a broken instance, on real processes (runtime, agent, simulator): the fault a function's env
// injects into its simulator (SDFLOW_SIM_FAULT) comes back as an error event whose `fault` says what the checkpoint's
// circuit breaker counts: an instance that fails to start, one that crashes mid-job, SD out of memory. A request SD
// rejects carries none.

const MODEL = 'fault-model.safetensors';
const FN = functionNameFor(MODEL);

let t: TestEnv;
let runtime: RuntimeProcess;
let client: LocalFunctionRuntime;
let seq = 0;

const request = (params: Record<string, unknown> = {}): InvokeRequest => ({
  taskId: `fault${Date.now().toString(36)}x${++seq}`,
  user: 'alice',
  kind: 'txt2img',
  model: MODEL,
  params: { prompt: 'p', steps: 3, width: 64, height: 64, seed: 1, ...params },
});

async function lastEvent(req: InvokeRequest): Promise<AgentEvent | undefined> {
  let last: AgentEvent | undefined;
  for await (const event of client.invoke(FN, req, { signal: new AbortController().signal })) last = event;
  return last;
}

const withFault = (fault: string) =>
  client.ensureFunction({ functionName: FN, model: MODEL, resources: { env: { SDFLOW_SIM_FAULT: fault } } });

beforeAll(async () => {
  // A short start timeout, so that an instance that never gets ready fails its start quickly.
  t = makeTestEnv([MODEL], { SDFLOW_INSTANCE_START_TIMEOUT_S: '8', SDFLOW_KEEP_ALIVE_S: '600' });
  runtime = await startRuntimeProcess(t);
  client = new LocalFunctionRuntime({ url: runtime.url });
});

afterAll(async () => {
  await runtime?.stop();
  if (t) cleanup(t);
});

describe('instance faults', () => {
  it('an instance whose SD never starts fails the request as a start fault', async () => {
    await withFault('exit-at-start');
    expect(await lastEvent(request())).toMatchObject({
      type: 'error',
      retryable: true,
      fault: 'start',
      message: expect.stringContaining('failed to start'),
    });
  }, 60_000);

  it('SD crashing mid-job is a crash fault; a request SD rejects is no fault', async () => {
    await withFault('none');
    expect((await lastEvent(request()))?.type).toBe('result');
    const rejected = await lastEvent(request({ steps: 0 }));
    expect(rejected).toMatchObject({ type: 'error', kind: 'bad_input', retryable: false });
    expect(rejected).not.toHaveProperty('fault');
    await withFault('crash-at-job');
    expect(await lastEvent(request())).toMatchObject({ type: 'error', retryable: true, fault: 'crash' });
  }, 60_000);

  it("SD's out-of-memory answer is an oom fault", async () => {
    await withFault('oom-at-job');
    expect(await lastEvent(request())).toMatchObject({
      type: 'error',
      retryable: true,
      fault: 'oom',
      message: expect.stringContaining('CUDA out of memory'),
    });
  }, 60_000);
});
