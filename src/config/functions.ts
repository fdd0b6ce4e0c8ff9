import { z } from 'zod';
import { group, setting } from './setting.js';

/** Which function runtime runs the GPU functions, and how their names begin: read by the API and the worker. */
export const functions = group({
  backend: setting({
    env: 'SDFLOW_FUNCTIONS',
    schema: z.enum(['local', 'fc', 'static']).default('local'),
    meaning: 'Function runtime: `sdflow runtime` (local), Alibaba FC 3.0, or a static pool of WebUI URLs.',
  }),
  prefix: setting({
    env: 'SDFLOW_FUNCTION_PREFIX',
    schema: z
      .string()
      .regex(/^[a-z0-9_-]{0,20}$/, 'lower-case letters, digits, _ and -, at most 20')
      .default(''),
    meaning:
      'Prefix of function names (`<prefix>sd_<hash>`), at most 20 characters; one per deployment sharing an FC account.',
  }),
});
