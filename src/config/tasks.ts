import { int, num } from './schemas.js';
import { group, setting } from './setting.js';

/** How a task's workflow runs: its deadline, its slots, its backstop. Read by whoever starts workflows and the worker. */
export const tasks = group({
  deadlineS: setting({
    env: 'SDFLOW_TASK_DEADLINE_S',
    schema: num(1800, 1),
    meaning: "A task still unfinished after this long fails, with the reason (the workflow's own timer).",
  }),
  executionTimeoutS: setting({
    env: 'SDFLOW_WORKFLOW_EXECUTION_TIMEOUT_S',
    schema: num(86400, 60),
    meaning: 'Temporal execution timeout of task and registration workflows: a far backstop.',
  }),
  maxConcurrency: setting({
    env: 'SDFLOW_MAX_CONCURRENCY',
    schema: int(4, 1),
    meaning: 'Global slots: GPU jobs running at once across the deployment.',
  }),
  modelBusyRetryS: setting({
    env: 'SDFLOW_MODEL_BUSY_RETRY_S',
    schema: num(5, 0.1),
    meaning:
      'A task whose checkpoint is being re-registered (PUT /models) checks again this often; it runs once loaded.',
  }),
});
