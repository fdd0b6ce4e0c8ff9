import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { freePort } from '../../src/http-util.js';
import type { InvokeRequest } from '../../src/protocol/invoke.js';
import {
  CLI,
  type CliProcess,
  cleanup,
  isAlive,
  makeTestEnv,
  spawnCli,
  streamEvents,
  type TestEnv,
  waitFor,
  waitForHttp,
} from '../helpers/runtime-procs.js';

// The agent starting its own WebUI (SDFLOW_SD_COMMAND), with the simulator standing in for A1111: it waits for the
// WebUI at SDFLOW_SD_URL, starts it again when it dies, and stops it (and whatever the WebUI started) when it stops.

const MODEL = 'command-model.safetensors';

let t: TestEnv;
let seq = 0;
const running: CliProcess[] = [];

const request = (params: Record<string, unknown> = {}): InvokeRequest => ({
  taskId: `cmd${Date.now().toString(36)}x${++seq}`,
  user: 'dana',
  kind: 'txt2img',
  model: MODEL,
  params: { prompt: 'a harbour', steps: 8, width: 256, height: 256, seed: 3, ...params },
});

const modelsDir = () => join(t.dataDir, 'objects', 'models');

async function startAgent(command: string, sdPort: number): Promise<{ proc: CliProcess; url: string }> {
  const port = await freePort();
  const logFile = join(t.dataDir, `agent-${port}.log`);
  const proc = spawnCli(
    ['agent'],
    {
      ...t.env,
      SD_MODEL: MODEL,
      SDFLOW_AGENT_PORT: String(port),
      SDFLOW_INSTANCE_ID: `i-cmd-${port}`,
      SDFLOW_SD_URL: `http://127.0.0.1:${sdPort}`,
      SDFLOW_SD_COMMAND: command,
    },
    logFile,
  );
  running.push(proc);
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}/healthz`, 60_000, proc, logFile);
  return { proc, url };
}

/** The pid of the simulator answering behind the agent. */
async function webUiPid(agentUrl: string): Promise<number> {
  return ((await (await fetch(`${agentUrl}/sd/sim/stats`)).json()) as { pid: number }).pid;
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

beforeAll(() => {
  t = makeTestEnv([MODEL]);
});

afterAll(async () => {
  await Promise.all(running.map((p) => p.stop()));
  if (t) cleanup(t);
});

describe('agent with SDFLOW_SD_COMMAND', () => {
  it('refuses a command without a loopback SDFLOW_SD_URL', () => {
    const base = { SDFLOW_DATA_DIR: t.dataDir, SDFLOW_SD_COMMAND: 'exec webui --api --nowebui' };
    expect(() => loadConfig(base)).toThrow(/SDFLOW_SD_URL: SDFLOW_SD_COMMAND needs it/);
    expect(() => loadConfig({ ...base, SDFLOW_SD_URL: 'http://10.0.0.7:7861' })).toThrow(/loopback address/);
    expect(() =>
      loadConfig({ ...base, SDFLOW_SD_COMMAND: '["python", 7]', SDFLOW_SD_URL: 'http://127.0.0.1:1' }),
    ).toThrow(/SDFLOW_SD_COMMAND: a JSON command must be a non-empty array/);
    const shell = loadConfig({ ...base, SDFLOW_SD_URL: 'http://localhost:7861/' });
    expect(shell.agent.sdCommand).toEqual(['/bin/sh', '-c', 'exec webui --api --nowebui']);
    expect(shell.agent.sdUrl).toBe('http://localhost:7861');
    const argv = loadConfig({
      ...base,
      SDFLOW_SD_COMMAND: '["python", "launch.py"]',
      SDFLOW_SD_URL: 'http://[::1]:7861',
    });
    expect(argv.agent.sdCommand).toEqual(['python', 'launch.py']);
  });

  it('starts the WebUI, serves through it, restarts it on the same port when it dies, and stops it', async () => {
    const sdPort = await freePort();
    const command = `exec "${process.execPath}" "${CLI}" sim --port ${sdPort} --models-dir "${modelsDir()}"`;
    const { proc, url } = await startAgent(command, sdPort);

    const first = await webUiPid(url);
    // `exec` made the shell the WebUI: the agent's own child, in the agent's process group.
    expect(parentOf(first)).toBe(proc.pid);
    const before = await streamEvents(`${url}/invoke`, request());
    expect(before.events.at(-1)?.type, JSON.stringify(before.events.at(-1))).toBe('result');

    process.kill(first, 'SIGKILL');
    const second = await waitFor('the WebUI to be started again', async () => {
      const health = await fetch(`${url}/healthz`).catch(() => undefined);
      if (health?.status !== 200) return undefined;
      const pid = await webUiPid(url).catch(() => first);
      return pid !== first ? pid : undefined;
    });
    expect(isAlive(first)).toBe(false);
    expect(parentOf(second)).toBe(proc.pid);
    // The same port: SDFLOW_SD_URL is where the started WebUI answers.
    const options = (await (await fetch(`http://127.0.0.1:${sdPort}/sim/stats`)).json()) as { pid: number };
    expect(options.pid).toBe(second);
    const after = await streamEvents(`${url}/invoke`, request({ seed: 4 }));
    expect(after.events.at(-1)?.type, JSON.stringify(after.events.at(-1))).toBe('result');

    await proc.stop();
    expect((await proc.exited).code).toBe(0);
    await waitFor('the WebUI to stop with the agent', () => !isAlive(second), 10_000);
  });

  it('stops a WebUI a shell started without exec, and runs a JSON argv as is', async () => {
    const shellPort = await freePort();
    // No exec: the shell stays the agent's child and the WebUI is its child.
    const shell = await startAgent(
      `"${process.execPath}" "${CLI}" sim --port ${shellPort} --models-dir "${modelsDir()}"; echo after`,
      shellPort,
    );
    const grandchild = await webUiPid(shell.url);
    expect(parentOf(parentOf(grandchild))).toBe(shell.proc.pid);
    await shell.proc.stop();
    await waitFor('the shell-started WebUI to stop with the agent', () => !isAlive(grandchild), 10_000);

    const argvPort = await freePort();
    const argv = await startAgent(
      JSON.stringify([process.execPath, CLI, 'sim', '--port', String(argvPort), '--models-dir', modelsDir()]),
      argvPort,
    );
    const pid = await webUiPid(argv.url);
    expect(parentOf(pid)).toBe(argv.proc.pid);
    const { events } = await streamEvents(`${argv.url}/invoke`, request({ seed: 5 }));
    expect(events.at(-1)?.type, JSON.stringify(events.at(-1))).toBe('result');
    await argv.proc.stop();
    await waitFor('the argv-started WebUI to stop with the agent', () => !isAlive(pid), 10_000);
  });
});
