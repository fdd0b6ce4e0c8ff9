import { join } from 'node:path';

// Where the local adapters keep their files under the data dir. The local model directory is the object store's
// `models/` prefix, so a registered model is visible to every local instance without copying.

export const objectsDir = (dataDir: string) => join(dataDir, 'objects');
export const modelsDir = (dataDir: string) => join(objectsDir(dataDir), 'models');
export const metaDbFile = (dataDir: string) => join(dataDir, 'sdflow.db');
export const runtimeDir = (dataDir: string) => join(dataDir, 'runtime');
export const logsDir = (dataDir: string) => join(dataDir, 'logs');
export const urlSecretFile = (dataDir: string) => join(dataDir, 'url-secret');
