import type { Config } from '../config.js';
import { LocalFunctionRuntime } from './functions/local/client.js';
import type { FunctionRuntime } from './functions/port.js';
import type { MetaStore } from './meta-store/port.js';
import { SqliteMetaStore } from './meta-store/sqlite.js';
import { LocalObjectStore } from './object-store/local.js';
import { metaDbFile, objectsDir } from './object-store/local-paths.js';
import type { ObjectStore } from './object-store/port.js';
import { loadUrlSecret } from './object-store/signing.js';

// The one place that picks adapters from config. Processes call these; nothing else constructs an adapter.

const unavailable = (adapter: string) =>
  new Error(`the ${adapter} adapter is not available in this build; use the local default`);

export function createObjectStore(config: Config): ObjectStore {
  switch (config.stores.objectStore) {
    case 'local':
      return new LocalObjectStore({
        root: objectsDir(config.dataDir),
        publicUrl: config.api.publicUrl,
        secret: loadUrlSecret(config),
      });
    case 'oss':
      throw unavailable('oss object store');
  }
}

export function createMetaStore(config: Config): MetaStore {
  switch (config.stores.metaStore) {
    case 'sqlite':
      return SqliteMetaStore.open(metaDbFile(config.dataDir));
    case 'tablestore':
      throw unavailable('tablestore meta store');
  }
}

export function createFunctionRuntime(config: Config): FunctionRuntime {
  switch (config.functions.backend) {
    case 'local':
      return new LocalFunctionRuntime({ url: config.runtime.url });
    case 'fc':
      throw unavailable('Function Compute runtime');
    case 'static':
      throw unavailable('static GPU pool runtime');
  }
}
