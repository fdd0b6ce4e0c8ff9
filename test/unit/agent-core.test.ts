import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { AgentCore } from '../../src/gpu-agent/core.js';
import { InvokeFailure } from '../../src/gpu-agent/invoke.js';
import { type SdClient, SdHttpError, SdUnavailableError } from '../../src/gpu-agent/sd-client.js';
import type { ObjectStore } from '../../src/platform/object-store/port.js';

// The agent core that both hosts (the agent server and the static pool) run: the function's settings and the
// checkpoint, applied the same way whoever hosts it.

const MODEL = 'core-test.safetensors';

/** An SD that holds `checkpoint`, records what is set, and fails the way it is told to. */
function fakeSd(checkpoint: string, fail?: () => Error) {
  const set: Record<string, unknown>[] = [];
  let holds = checkpoint;
  const reads = { count: 0 };
  const sd = {
    async getOptions() {
      reads.count++;
      if (fail) throw fail();
      return { sd_model_checkpoint: holds };
    },
    async setOptions(options: Record<string, unknown>) {
      if (fail) throw fail();
      set.push(options);
      if (typeof options.sd_model_checkpoint === 'string') holds = `${options.sd_model_checkpoint} [0123abcd]`;
      return {};
    },
  } as unknown as SdClient;
  return { sd, set, reads, switchTo: (other: string) => (holds = other) };
}

function core(sd: SdClient, settings?: Record<string, unknown>, soleClient?: boolean) {
  const unreachable: string[] = [];
  const agent = new AgentCore({
    sd,
    backend: { markUnreachable: (reason) => unreachable.push(reason) },
    store: async () => ({}) as ObjectStore,
    model: MODEL,
    settings,
    timings: loadConfig({}).agent,
    logger: pino({ level: 'silent' }),
    soleClient,
  });
  return { agent, unreachable };
}

describe('the agent core', () => {
  it("applies the function's settings once, then loads the checkpoint, announcing the load", async () => {
    const { sd, set } = fakeSd('other.safetensors [ffff0000]');
    const { agent } = core(sd, { CLIP_stop_at_last_layers: 2 });
    let loads = 0;
    await agent.ensureCheckpoint(() => loads++);
    await agent.ensureCheckpoint(() => loads++);
    expect(set).toEqual([{ CLIP_stop_at_last_layers: 2 }, { sd_model_checkpoint: MODEL }]);
    expect(loads).toBe(1);
    expect(agent.pinned).toBe(true);

    // A restarted SD gets them again.
    agent.forgetSdState();
    expect(agent.pinned).toBe(false);
    await agent.ensureCheckpoint(() => loads++);
    expect(set.at(-1)).toEqual({ CLIP_stop_at_last_layers: 2 });
    expect(loads).toBe(1);
  });

  it("reads SD's checkpoint before every invoke, but once as SD's sole client until SD may have changed", async () => {
    const shared = fakeSd(`${MODEL} [0123abcd]`);
    const { agent: guest } = core(shared.sd);
    await guest.ensureCheckpoint(() => {});
    shared.switchTo('other.safetensors [ffff0000]');
    let loads = 0;
    await guest.ensureCheckpoint(() => loads++);
    expect(loads).toBe(1);
    expect(shared.reads.count).toBe(3);

    const own = fakeSd(`${MODEL} [0123abcd]`);
    const { agent } = core(own.sd, undefined, true);
    await agent.ensureCheckpoint(() => {});
    await agent.ensureCheckpoint(() => {});
    expect(own.reads.count).toBe(1);
    // A passthrough that is not a read (here one the fake store fails) may have switched SD: it is read again.
    const passthrough = { kind: 'passthrough', params: { method: 'POST', path: '/sdapi/v1/options', body: {} } };
    await agent.invoke(passthrough, () => {}, new AbortController().signal);
    expect(agent.pinned).toBe(false);
    own.switchTo('other.safetensors [ffff0000]');
    await agent.ensureCheckpoint(() => loads++);
    expect(loads).toBe(2);
    expect(agent.pinned).toBe(true);
  });

  it("turns SD's refusal into a final failure with SD's reason", async () => {
    const { sd } = fakeSd('', () => new SdHttpError(422, 'no such checkpoint'));
    const refused = core(sd).agent.ensureCheckpoint(() => {});
    await expect(refused).rejects.toBeInstanceOf(InvokeFailure);
    await expect(refused).rejects.toMatchObject({ kind: 'not_found', retryable: false, status: 422 });
    await expect(refused).rejects.toThrow(/checkpoint core-test\.safetensors cannot be loaded: no such checkpoint/);
    const settings = core(sd, { bad: 1 }).agent.ensureCheckpoint(() => {});
    await expect(settings).rejects.toThrow(/SD refused the function's settings: no such checkpoint/);
  });

  it('tells its backend when SD is out of reach, and fails retryably', async () => {
    const { sd } = fakeSd('', () => new SdUnavailableError('SD unreachable at /sdapi/v1/options: ECONNREFUSED'));
    const { agent, unreachable } = core(sd);
    await expect(agent.ensureCheckpoint(() => {})).rejects.toBeInstanceOf(SdUnavailableError);
    expect(unreachable).toEqual(['SD unreachable at /sdapi/v1/options: ECONNREFUSED']);
  });
});
