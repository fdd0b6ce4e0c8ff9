import { z } from 'zod';
import { int, optionalString } from './schemas.js';
import { group, setting } from './setting.js';
import { shared } from './shared.js';

/** Which object and meta stores the processes use, and the signed links to stored objects. */
export const stores = group(
  {
    objectStore: setting({
      env: 'SDFLOW_OBJECT_STORE',
      schema: z.enum(['local', 'oss']).default('local'),
      meaning: 'Object store adapter: local files or Alibaba OSS.',
    }),
    metaStore: setting({
      env: 'SDFLOW_META_STORE',
      schema: z.enum(['sqlite', 'tablestore']).default('sqlite'),
      meaning: 'Meta store adapter: SQLite or Alibaba Tablestore.',
    }),
    urlTtlS: setting({
      env: 'SDFLOW_URL_TTL_S',
      schema: int(3600, 1),
      meaning: 'Lifetime of signed links (local /files/ links and OSS URLs).',
    }),
    urlSecret: setting({
      env: 'SDFLOW_URL_SECRET',
      schema: optionalString,
      meaning:
        'Secret that signs local /files/ links (unset: generated once and kept in the data dir). Share it across API replicas.',
    }),
  },
  // A generated URL secret is kept in the data dir.
  (stores, read) => ({ ...stores, dataDir: read(shared.settings.dataDir) }),
);
