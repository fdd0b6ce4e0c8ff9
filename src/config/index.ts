import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { agent } from './agent.js';
import { api } from './api.js';
import { billing } from './billing.js';
import { credentials } from './cloud.js';
import { fc } from './fc.js';
import { functions } from './functions.js';
import { limits } from './limits.js';
import { models } from './models.js';
import { oss } from './oss.js';
import { runtime } from './runtime.js';
import { ConfigError, type GroupValue, type Read, type Setting } from './setting.js';
import { shared } from './shared.js';
import { sim } from './sim.js';
import { staticPool } from './static-pool.js';
import { stores } from './stores.js';
import { tablestore } from './tablestore.js';
import { tasks } from './tasks.js';
import { temporal } from './temporal.js';
import { webhooks } from './webhooks.js';
import { invoke, reconciler, retention, semaphore, worker } from './worker.js';

// Every setting sdflow reads, each declared once in the group of its consumer. This is the only place that reads
// process.env for configuration; every process gets a Config, and passes each consumer its group.

export type { BillingRate } from './billing.js';
export {
  FC_GPU_TYPES,
  type FcGpuType,
  fcEnvSchema,
  fcGpuTypeSchema,
  fcNasConfigSchema,
  fcOssMountConfigSchema,
  fcVpcConfigSchema,
} from './fc-schemas.js';
export { ConfigError } from './setting.js';
export type { WebhookAllowList } from './webhooks.js';

/** Every group, in the order of the config matrix. */
const groups = [
  shared,
  api,
  limits,
  models,
  stores,
  temporal,
  tasks,
  webhooks,
  invoke,
  worker,
  billing,
  semaphore,
  reconciler,
  retention,
  functions,
  runtime,
  agent,
  staticPool,
  sim,
  credentials,
  oss,
  tablestore,
  fc,
];

const settings: Setting[] = groups.flatMap((g) => Object.values(g.settings));
const declared = new Set(settings);

/** The environment as the schema sees it. Keys are variable names, so errors name the variable to fix. */
const envSchema = z.object(Object.fromEntries(settings.map((s) => [s.env, s.schema])));

function loadFile(path: string): Record<string, string> {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as unknown;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error(`config file ${path} must hold a JSON object of SETTING: value`);
  }
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, String(v)]));
}

/** Reads the config: the optional JSON file named by SDFLOW_CONFIG first, then the environment on top. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env) {
  const fromFile = env.SDFLOW_CONFIG ? loadFile(env.SDFLOW_CONFIG) : {};
  const merged: Record<string, string | undefined> = { ...fromFile };
  for (const { env: name } of settings) if (env[name] !== undefined) merged[name] = env[name];
  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new ConfigError(`invalid configuration: ${detail}`);
  }
  const read: Read = (s) => {
    if (!declared.has(s)) throw new Error(`${s.env} is read, but no group of the config declares it`);
    return s.map(parsed.data[s.env]);
  };
  return {
    // Read by every process, so at the top.
    ...shared.load(read),
    api: api.load(read),
    limits: limits.load(read),
    models: models.load(read),
    stores: stores.load(read),
    temporal: temporal.load(read),
    tasks: tasks.load(read),
    webhooks: webhooks.load(read),
    invoke: invoke.load(read),
    worker: worker.load(read),
    billing: billing.load(read),
    semaphore: semaphore.load(read),
    reconciler: reconciler.load(read),
    retention: retention.load(read),
    functions: functions.load(read),
    runtime: runtime.load(read),
    agent: agent.load(read),
    staticPool: staticPool.load(read),
    sim: sim.load(read),
    oss: oss.load(read),
    tablestore: tablestore.load(read),
    fc: fc.load(read),
  };
}

export type Config = ReturnType<typeof loadConfig>;
export type ApiConfig = GroupValue<typeof api>;
export type LimitsConfig = GroupValue<typeof limits>;
export type ModelsConfig = GroupValue<typeof models>;
export type StoresConfig = GroupValue<typeof stores>;
export type TemporalConfig = GroupValue<typeof temporal>;
export type TasksConfig = GroupValue<typeof tasks>;
export type WebhooksConfig = GroupValue<typeof webhooks>;
export type InvokeConfig = GroupValue<typeof invoke>;
export type WorkerConfig = GroupValue<typeof worker>;
export type BillingConfig = GroupValue<typeof billing>;
export type SemaphoreConfig = GroupValue<typeof semaphore>;
export type ReconcilerConfig = GroupValue<typeof reconciler>;
export type RetentionConfig = GroupValue<typeof retention>;
export type FunctionsConfig = GroupValue<typeof functions>;
export type RuntimeConfig = GroupValue<typeof runtime>;
export type AgentConfig = GroupValue<typeof agent>;
export type StaticPoolConfig = GroupValue<typeof staticPool>;
export type SimConfig = GroupValue<typeof sim>;
export type CloudCredentials = GroupValue<typeof credentials>;
export type OssConfig = GroupValue<typeof oss>;
export type TablestoreConfig = GroupValue<typeof tablestore>;
export type FcConfig = GroupValue<typeof fc>;

export interface SettingRow {
  name: string;
  /** The default as it would be written in the environment; undefined when unset by default. */
  default: string | undefined;
  meaning: string;
}

/** The default of a setting, read from its schema by parsing "unset". */
function defaultOf(s: Setting): string | undefined {
  const parsed = s.schema.safeParse(undefined);
  const value: unknown = parsed.success ? parsed.data : undefined;
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return undefined;
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** Every setting, group by group, with its default and meaning: the config matrix of docs/deploy.md. */
export function settingsTable(): SettingRow[] {
  return settings.map((s) => ({ name: s.env, default: defaultOf(s), meaning: s.meaning }));
}
