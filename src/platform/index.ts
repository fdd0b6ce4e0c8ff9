import type { Config } from '../config/index.js';
import { metaDbFile, objectsDir } from '../data-dir.js';
import { createLogger } from '../logging.js';
import { FcFunctionRuntime } from './functions/fc/runtime.js';
import { LocalFunctionRuntime } from './functions/local/client.js';
import type { FunctionRuntime } from './functions/port.js';
import { StaticPoolRuntime } from './functions/static/runtime.js';
import type { MetaStore } from './meta-store/port.js';
import { SqliteMetaStore } from './meta-store/sqlite/store.js';
import { TablestoreMetaStore } from './meta-store/tablestore/store.js';
import { LocalObjectStore } from './object-store/local/store.js';
import { OssObjectStore } from './object-store/oss/store.js';
import type { ObjectStore } from './object-store/port.js';
import { loadUrlSecret } from './object-store/signing.js';

// The one place that picks adapters from config, and gives each its own slice of it. Processes call these; nothing
// else constructs an adapter.

export function createObjectStore(config: Config): ObjectStore {
  switch (config.stores.objectStore) {
    case 'local':
      return new LocalObjectStore({
        root: objectsDir(config.dataDir),
        publicUrl: config.api.publicUrl,
        secret: loadUrlSecret(config.stores),
      });
    case 'oss':
      return new OssObjectStore(config.oss);
  }
}

export function createMetaStore(config: Config): MetaStore {
  switch (config.stores.metaStore) {
    case 'sqlite':
      return SqliteMetaStore.open(metaDbFile(config.dataDir));
    case 'tablestore':
      return new TablestoreMetaStore(config.tablestore);
  }
}

export function createFunctionRuntime(config: Config): FunctionRuntime {
  switch (config.functions.backend) {
    case 'local':
      return new LocalFunctionRuntime({ url: config.runtime.url });
    case 'fc':
      return new FcFunctionRuntime(config.fc);
    case 'static':
      return new StaticPoolRuntime(config.staticPool, {
        store: () => createObjectStore(config),
        meta: () => createMetaStore(config),
        logger: createLogger('static-pool', config.logLevel),
      });
  }
}
