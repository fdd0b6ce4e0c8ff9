import { join } from 'node:path';

// Where things live under the data dir (SDFLOW_DATA_DIR). Every path under it is made here, so this is the whole
// map of what a data dir holds.

/** The local object store: one file per object key. */
export const objectsDir = (dataDir: string) => join(dataDir, 'objects');
/** The model files instances load: the object store's `models/` prefix, so a registered model needs no copy. */
export const modelsDir = (dataDir: string) => join(objectsDir(dataDir), 'models');
/** The SQLite meta store. */
export const metaDbFile = (dataDir: string) => join(dataDir, 'sdflow.db');
/** The URL-signing secret generated when SDFLOW_URL_SECRET is unset. */
export const urlSecretFile = (dataDir: string) => join(dataDir, 'url-secret');
/** The webhook-signing secret generated when SDFLOW_WEBHOOK_SECRET is unset. */
export const webhookSecretFile = (dataDir: string) => join(dataDir, 'webhook-secret');

/** The local runtime's record of its functions and instances, which a restarted runtime re-adopts. */
export const runtimeDir = (dataDir: string) => join(dataDir, 'runtime');
export const runtimeFunctionsFile = (dataDir: string) => join(runtimeDir(dataDir), 'functions.json');
export const runtimeInstancesFile = (dataDir: string) => join(runtimeDir(dataDir), 'instances.json');

/** The Temporal dev server `sdflow dev` starts: its database, its process record, the CLI version that made it. */
export const temporalDir = (dataDir: string) => join(dataDir, 'temporal');
export const temporalDbFile = (dataDir: string) => join(temporalDir(dataDir), 'temporal.db');
export const temporalServerFile = (dataDir: string) => join(temporalDir(dataDir), 'server.json');
export const temporalCliVersionFile = (dataDir: string) => join(temporalDir(dataDir), 'CLI_VERSION');

export const logsDir = (dataDir: string) => join(dataDir, 'logs');
/** The log of one process `sdflow dev` starts (a role, or `temporal`). */
export const processLogFile = (dataDir: string, name: string) => join(logsDir(dataDir), `${name}.log`);
/** The local runtime's instance logs, one file per instance id. */
export const instanceLogsDir = (dataDir: string) => join(logsDir(dataDir), 'instances');
export const instanceLogFile = (dataDir: string, instanceId: string) =>
  join(instanceLogsDir(dataDir), `${instanceId}.log`);
