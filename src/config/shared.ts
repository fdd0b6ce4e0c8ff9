import { isAbsolute, resolve } from 'node:path';
import { z } from 'zod';
import { group, setting } from './setting.js';

/** Settings every process reads: where it keeps its state, how much it logs, and which deployment it belongs to. */
export const shared = group({
  dataDir: setting({
    env: 'SDFLOW_DATA_DIR',
    schema: z.string().default('./.sdflow'),
    meaning: 'Local state: SQLite, objects, the Temporal dev server file, logs, instance records.',
    map: (dir) => (isAbsolute(dir) ? dir : resolve(dir)),
  }),
  logLevel: setting({
    env: 'SDFLOW_LOG_LEVEL',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    meaning: 'pino log level of every process.',
  }),
  deployment: setting({
    env: 'SDFLOW_DEPLOYMENT',
    schema: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and -, at most 32')
      .default('default'),
    meaning: 'Deployment id: names the semaphore and reconciler workflows and the default Tablestore prefix.',
  }),
});
