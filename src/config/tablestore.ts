import { z } from 'zod';
import { credentials } from './cloud.js';
import { int, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';
import { shared } from './shared.js';

/** The Tablestore meta store (SDFLOW_META_STORE=tablestore): the instance, its tables, and its requests. */
export const tablestore = group(
  {
    endpoint: setting({
      env: 'SDFLOW_TABLESTORE_ENDPOINT',
      schema: optionalString,
      meaning: 'Tablestore instance endpoint URL.',
    }),
    instance: setting({
      env: 'SDFLOW_TABLESTORE_INSTANCE',
      schema: optionalString,
      meaning: 'Tablestore instance name.',
    }),
    tablePrefix: setting({
      env: 'SDFLOW_TABLESTORE_TABLE_PREFIX',
      schema: z
        .string()
        .regex(/^[A-Za-z_][A-Za-z0-9_]{0,40}$/, 'letters, digits and _, starting with a letter or _, at most 41')
        .optional(),
      meaning: 'Prefix of the tables (unset: `sdflow_<deployment>_`), so deployments can share an instance.',
    }),
    timeoutS: setting({
      env: 'SDFLOW_TABLESTORE_TIMEOUT_S',
      schema: num(30, 1),
      meaning: 'Timeout of one Tablestore request.',
    }),
    maxAttempts: setting({
      env: 'SDFLOW_TABLESTORE_MAX_ATTEMPTS',
      schema: int(4, 1),
      meaning: 'Attempts per Tablestore request, the first included.',
    }),
  },
  (tablestore, read) => ({
    ...tablestore,
    // Deployments sharing an instance never collide: the default prefix carries the deployment id.
    tablePrefix: tablestore.tablePrefix ?? `sdflow_${read(shared.settings.deployment).replace(/-/g, '_')}_`,
    credentials: credentials.load(read),
  }),
);
