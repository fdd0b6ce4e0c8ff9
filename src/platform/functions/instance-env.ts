// The environment variables a function's resources become on its instances, for every runtime: the WebUI launch
// arguments, and the function's WebUI settings, which the agent applies before the instance serves.

export const EXTRA_ARGS_ENV = 'SDFLOW_SD_EXTRA_ARGS';
export const SD_OPTIONS_ENV = 'SDFLOW_SD_OPTIONS';

export function resourceEnv(resources: Record<string, unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  if (typeof resources.extraArgs === 'string') env[EXTRA_ARGS_ENV] = resources.extraArgs;
  const settings = resources.sdOptions;
  if (typeof settings === 'object' && settings !== null && Object.keys(settings).length > 0) {
    env[SD_OPTIONS_ENV] = JSON.stringify(settings);
  }
  return env;
}

/** The resources an instance environment came from (a runtime that keeps only the environment, such as FC). */
export function resourcesFromEnv(env: Record<string, string>): Record<string, unknown> {
  const resources: Record<string, unknown> = {};
  if (env[EXTRA_ARGS_ENV] !== undefined) resources.extraArgs = env[EXTRA_ARGS_ENV];
  if (env[SD_OPTIONS_ENV] !== undefined) {
    try {
      resources.sdOptions = JSON.parse(env[SD_OPTIONS_ENV]);
    } catch {
      // not ours to judge: an environment edited by hand keeps working without the settings
    }
  }
  return resources;
}
