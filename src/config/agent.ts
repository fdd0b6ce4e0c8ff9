import { z } from 'zod';
import { api } from './api.js';
import { argv, int, jsonSetting, num, optionalString } from './schemas.js';
import { ConfigError, group, setting } from './setting.js';
import { shared } from './shared.js';

/**
 * The command that starts the agent's WebUI (SDFLOW_SD_COMMAND), as an argv: a JSON array of strings is run as is; any
 * other text is a command line for `/bin/sh -c` (write `exec` before the WebUI so that signals reach it).
 */
const sdCommand = optionalString.transform((v, ctx) => {
  if (v === undefined) return undefined;
  if (!v.startsWith('[')) return ['/bin/sh', '-c', v];
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: `is not valid JSON (${(err as Error).message})` });
    return z.NEVER;
  }
  const checked = argv.safeParse(parsed);
  if (!checked.success) {
    ctx.addIssue({ code: 'custom', message: 'a JSON command must be a non-empty array of non-empty strings' });
    return z.NEVER;
  }
  return checked.data;
});

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** A WebUI the agent starts runs on the agent's own machine: it answers at a loopback SDFLOW_SD_URL. */
function checkSdCommand(command: string[] | undefined, sdUrl: string | undefined): void {
  if (!command) return;
  const problem = (detail: string) => new ConfigError(`invalid configuration: SDFLOW_SD_URL: ${detail}`);
  if (!sdUrl) throw problem('SDFLOW_SD_COMMAND needs it: the address its WebUI answers at, e.g. http://127.0.0.1:7861');
  let host: string;
  try {
    host = new URL(sdUrl).hostname;
  } catch {
    throw problem(`${sdUrl} is not a URL`);
  }
  if (!LOOPBACK_HOSTS.has(host)) {
    throw problem(`with SDFLOW_SD_COMMAND it must be a loopback address (127.0.0.1, localhost or [::1]), not ${host}`);
  }
}

/**
 * The GPU agent of one function instance: its identity and placement (set by the local runtime or FC on the instance),
 * the WebUI it fronts, and how it polls it.
 */
export const agent = group(
  {
    instanceId: setting({
      env: 'SDFLOW_INSTANCE_ID',
      schema: optionalString,
      meaning: "The instance's id, in the agent's logs and /healthz. Set by the local runtime (unset: agent-<random>).",
    }),
    functionName: setting({
      env: 'SDFLOW_FUNCTION_NAME',
      schema: optionalString,
      meaning:
        "The function the instance belongs to, in the agent's logs and /healthz. The local runtime and FC set it.",
    }),
    host: setting({
      env: 'SDFLOW_AGENT_HOST',
      // Blank too: an agent never listens on every interface by accident.
      schema: optionalString.transform((host) => host ?? '127.0.0.1'),
      meaning: "The agent's listen address. FC sets 0.0.0.0: a container is reached from outside itself.",
    }),
    port: setting({
      env: 'SDFLOW_AGENT_PORT',
      schema: int(0, 0),
      meaning: "The agent's port (0: any free port). The local runtime and FC set it.",
    }),
    sdUrl: setting({
      env: 'SDFLOW_SD_URL',
      schema: optionalString,
      meaning:
        "The agent's WebUI (A1111 with --api): one that runs on its own, or the loopback address of SDFLOW_SD_COMMAND's (unset: the simulator).",
      map: (url) => url?.replace(/\/$/, ''),
    }),
    /** The WebUI the agent starts and supervises, answering at sdUrl (argv). */
    sdCommand: setting({
      env: 'SDFLOW_SD_COMMAND',
      schema: sdCommand,
      meaning:
        'A WebUI the agent starts and restarts: a shell command line (use exec) or a JSON argv; needs a loopback SDFLOW_SD_URL.',
    }),
    sdStartTimeoutS: setting({
      env: 'SDFLOW_SD_START_TIMEOUT_S',
      schema: num(120, 1),
      meaning:
        'How long the agent waits for SD to answer; a started WebUI or simulator that does not is killed and started again.',
    }),
    progressPollMs: setting({
      env: 'SDFLOW_SD_PROGRESS_POLL_MS',
      schema: int(250, 20),
      meaning: "How often a running job's progress is read from SD.",
    }),
    generateTimeoutS: setting({
      env: 'SDFLOW_SD_GENERATE_TIMEOUT_S',
      schema: num(7200, 1),
      meaning: 'Backstop on one generation request to SD; a cancel or the task deadline normally ends it first.',
    }),
    interruptPollMs: setting({
      env: 'SDFLOW_INTERRUPT_POLL_MS',
      schema: int(1000, 50),
      meaning: 'How often a running job checks for an A1111-style interrupt (POST /sdapi/v1/interrupt).',
    }),
    previewIntervalMs: setting({
      env: 'SDFLOW_PREVIEW_INTERVAL_MS',
      schema: int(2000, 0),
      meaning:
        "How often a running job's live preview is read from SD and stored for progress readers (0: no previews).",
    }),
    model: setting({
      env: 'SD_MODEL',
      schema: optionalString,
      meaning: "The agent's pinned checkpoint. The local runtime and FC set it.",
    }),
    /** The function's WebUI settings (POST /functions/{name}/options), applied before the instance serves. */
    sdOptions: setting({
      env: 'SDFLOW_SD_OPTIONS',
      schema: jsonSetting(z.record(z.string(), z.unknown())),
      meaning:
        "The function's WebUI settings as a JSON object, applied to SD before the instance serves. The local runtime and FC set it from POST /functions/{name}/options.",
    }),
  },
  (agent, read) => {
    checkSdCommand(agent.sdCommand, agent.sdUrl);
    return {
      ...agent,
      dataDir: read(shared.settings.dataDir),
      // An invoke carries what the API accepted.
      maxBodyBytes: read(api.settings.maxBodyBytes),
    };
  },
);
