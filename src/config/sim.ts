import { z } from 'zod';
import { int, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';

/** The A1111-compatible simulator (`sdflow sim`): its port and how long its work takes. */
export const sim = group({
  port: setting({ env: 'SDFLOW_SIM_PORT', schema: int(7860, 0), meaning: 'Default port of `sdflow sim`.' }),
  stepMs: setting({
    env: 'SDFLOW_SIM_STEP_MS',
    schema: num(65, 0),
    meaning: 'Simulator: time per sampling step at 512x512, scaled by pixels.',
  }),
  loadMs: setting({
    env: 'SDFLOW_SIM_LOAD_MS',
    schema: num(5000, 0),
    meaning: 'Simulator: time to load a checkpoint other than the loaded one.',
  }),
  vaeMs: setting({ env: 'SDFLOW_SIM_VAE_MS', schema: num(100, 0), meaning: 'Simulator: VAE decode time per image.' }),
  fault: setting({
    env: 'SDFLOW_SIM_FAULT',
    schema: z.enum(['none', 'exit-at-start', 'crash-at-job', 'oom-at-job']).default('none'),
    meaning:
      "Simulator: a fault to inject, for testing how sdflow copes with a broken checkpoint (set it in a function's env): exit-at-start (the simulator exits before it listens), crash-at-job (it exits when a generation arrives), oom-at-job (it answers a generation with A1111's out-of-memory error).",
  }),
  statsDir: setting({
    env: 'SDFLOW_SIM_STATS_DIR',
    schema: optionalString,
    meaning: 'Simulator: where each process appends its busy intervals (tests and benchmarks).',
  }),
});
