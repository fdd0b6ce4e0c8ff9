import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { desiredFunction } from '../../src/platform/functions/fc/spec.js';
import { localInstanceEnv } from '../../src/platform/functions/instance-env.js';
import { functionNameFor } from '../../src/platform/functions/naming.js';
import { isPlatformEnvName } from '../../src/protocol/instance-env.js';

// One environment contract for instances: on every runtime, the platform's variables win over a function's env, which
// cannot set any of them, not even one recorded before the API refused them.

const MODEL = 'env-test.safetensors';
const FUNCTION = functionNameFor(MODEL);

/** A function env that tries every kind of platform variable, next to one of its own. */
const hostileEnv = {
  HF_HOME: '/mnt/hf',
  SD_MODEL: 'other.safetensors',
  SDFLOW_INSTANCE_ID: 'i-forged',
  SDFLOW_FUNCTION_NAME: 'sd_forged',
  SDFLOW_AGENT_PORT: '1',
  SDFLOW_AGENT_HOST: '0.0.0.0',
  SDFLOW_DATA_DIR: '/elsewhere',
  SDFLOW_OBJECT_STORE: 'oss',
  SDFLOW_LOG_LEVEL: 'silent',
  SDFLOW_MAX_BODY_MB: '100000',
  SDFLOW_SD_EXTRA_ARGS: '--forged',
  SDFLOW_SD_OPTIONS: '{"forged":true}',
  SDFLOW_OSS_BUCKET: 'attacker-bucket',
  SDFLOW_OSS_ENDPOINT: 'http://attacker.example',
};

describe('the platform variables', () => {
  it('are every name the platform sets, with the SDFLOW_OSS_ prefix', () => {
    for (const name of Object.keys(hostileEnv).filter((n) => n !== 'HF_HOME')) {
      expect(isPlatformEnvName(name), name).toBe(true);
    }
    expect(isPlatformEnvName('SDFLOW_RESTART_AT')).toBe(true);
    expect(isPlatformEnvName('SDFLOW_OSS_ANYTHING')).toBe(true);
    expect(isPlatformEnvName('HF_HOME')).toBe(false);
    expect(isPlatformEnvName('SDFLOW_SD_URL')).toBe(false);
  });
});

describe("a local instance's environment", () => {
  const inherited = { PATH: '/usr/bin', SDFLOW_OBJECT_STORE: 'local', SDFLOW_LOG_LEVEL: 'info', SDFLOW_AGENT_HOST: '' };
  const env = localInstanceEnv(
    inherited,
    {
      id: 'i-1',
      port: 4242,
      functionName: FUNCTION,
      model: MODEL,
      resources: { env: hostileEnv, extraArgs: '--api --xformers', sdOptions: { CLIP_stop_at_last_layers: 2 } },
    },
    '/data',
  );

  it("puts the platform's variables over the function's env", () => {
    expect(env).toMatchObject({
      SD_MODEL: MODEL,
      SDFLOW_INSTANCE_ID: 'i-1',
      SDFLOW_FUNCTION_NAME: FUNCTION,
      SDFLOW_AGENT_PORT: '4242',
      SDFLOW_AGENT_HOST: '127.0.0.1',
      SDFLOW_DATA_DIR: '/data',
      SDFLOW_SD_EXTRA_ARGS: '--api --xformers',
      SDFLOW_SD_OPTIONS: '{"CLIP_stop_at_last_layers":2}',
    });
  });

  it("keeps the runtime's own settings, and the function's variables that are not the platform's", () => {
    expect(env).toMatchObject({ PATH: '/usr/bin', SDFLOW_OBJECT_STORE: 'local', SDFLOW_LOG_LEVEL: 'info' });
    expect(env.HF_HOME).toBe('/mnt/hf');
    expect(env.SDFLOW_MAX_BODY_MB).toBeUndefined();
    expect(Object.keys(env).filter((name) => name.startsWith('SDFLOW_OSS_'))).toEqual([]);
  });
});

describe("an FC function's environment", () => {
  const config = loadConfig({
    SDFLOW_FUNCTIONS: 'fc',
    SDFLOW_OBJECT_STORE: 'oss',
    SDFLOW_OSS_BUCKET: 'deployment-bucket',
    SDFLOW_OSS_REGION: 'cn-hangzhou',
    SDFLOW_FC_IMAGE: 'registry.example/sdflow:1',
    SDFLOW_FC_ENV: JSON.stringify({ TZ: 'UTC', HF_HOME: '/deployment/hf' }),
  });
  const env = desiredFunction(config.fc, {
    functionName: FUNCTION,
    model: MODEL,
    resources: { env: hostileEnv, extraArgs: '--api --xformers' },
  }).environmentVariables;

  it("puts the platform's variables over the function's env", () => {
    expect(env).toMatchObject({
      SD_MODEL: MODEL,
      SDFLOW_FUNCTION_NAME: FUNCTION,
      SDFLOW_AGENT_PORT: '9000',
      SDFLOW_AGENT_HOST: '0.0.0.0',
      SDFLOW_DATA_DIR: '/mnt/sdflow',
      SDFLOW_OBJECT_STORE: 'oss',
      SDFLOW_LOG_LEVEL: 'info',
      SDFLOW_MAX_BODY_MB: '50',
      SDFLOW_SD_EXTRA_ARGS: '--api --xformers',
      SDFLOW_OSS_BUCKET: 'deployment-bucket',
      SDFLOW_OSS_REGION: 'cn-hangzhou',
    });
  });

  it("leaves out the function's platform variables that the platform does not set here", () => {
    for (const name of ['SDFLOW_INSTANCE_ID', 'SDFLOW_SD_OPTIONS', 'SDFLOW_OSS_ENDPOINT']) {
      expect(env[name], name).toBeUndefined();
    }
  });

  it("keeps the function's own variables over the deployment's", () => {
    expect(env).toMatchObject({ TZ: 'UTC', HF_HOME: '/mnt/hf' });
  });
});
