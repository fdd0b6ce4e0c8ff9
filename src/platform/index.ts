import type { Config } from '../config/index.js';
import { metaDbFile, objectsDir } from '../data-dir.js';
import { createLogger } from '../logging.js';
import type { FunctionRuntime } from './functions/port.js';
import type { MetaStore } from './meta-store/port.js';
import type { ObjectStore } from './object-store/port.js';
import { loadUrlSecret } from './object-store/signing.js';

// The one place that picks adapters from config, and gives each its own slice of it. Processes call these; nothing
// else constructs an adapter. Each backend's module is imported in its own case, so a process loads only the
// adapters its config picks: loading the cloud SDKs for nothing costs each local process ~0.5 s of CPU.

export async function createObjectStore(config: Config): Promise<ObjectStore> {
  switch (config.stores.objectStore) {
    case 'local': {
      const { LocalObjectStore } = await import('./object-store/local/store.js');
      return new LocalObjectStore({
        root: objectsDir(config.dataDir),
        publicUrl: config.api.publicUrl,
        secret: loadUrlSecret(config.stores),
      });
    }
    case 'oss': {
      const { OssObjectStore } = await import('./object-store/oss/store.js');
      return new OssObjectStore(config.oss);
    }
  }
}

export async function createMetaStore(config: Config): Promise<MetaStore> {
  switch (config.stores.metaStore) {
    case 'sqlite': {
      const { SqliteMetaStore } = await import('./meta-store/sqlite/store.js');
      return SqliteMetaStore.open(metaDbFile(config.dataDir));
    }
    case 'tablestore': {
      const { TablestoreMetaStore } = await import('./meta-store/tablestore/store.js');
      return new TablestoreMetaStore(config.tablestore);
    }
  }
}

export async function createFunctionRuntime(config: Config): Promise<FunctionRuntime> {
  switch (config.functions.backend) {
    case 'local': {
      const { LocalFunctionRuntime } = await import('./functions/local/client.js');
      return new LocalFunctionRuntime({ url: config.runtime.url });
    }
    case 'fc': {
      const { FcFunctionRuntime } = await import('./functions/fc/runtime.js');
      return new FcFunctionRuntime(config.fc);
    }
    case 'static': {
      const { StaticPoolRuntime } = await import('./functions/static/runtime.js');
      return new StaticPoolRuntime(config.staticPool, {
        store: () => createObjectStore(config),
        meta: () => createMetaStore(config),
        logger: createLogger('static-pool', config.logLevel),
      });
    }
  }
}
