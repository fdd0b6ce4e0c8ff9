import { agent } from './agent.js';
import { functions } from './functions.js';
import { runtime } from './runtime.js';
import { num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';

/**
 * The static GPU pool (SDFLOW_FUNCTIONS=static): WebUIs the operator runs, shared through leases in the meta store.
 * The worker plays the agent for them, so it polls them as an agent polls its own WebUI.
 */
export const staticPool = group(
  {
    /** Checkpoints mapped to WebUI URLs. */
    poolFile: setting({
      env: 'SDFLOW_STATIC_POOL_FILE',
      schema: optionalString,
      meaning: 'Static pool (SDFLOW_FUNCTIONS=static): JSON file mapping checkpoints to WebUI URLs.',
    }),
    /** How long a WebUI's lease outlives its holder's last renewal (a holder that died frees it then). */
    leaseTtlS: setting({
      env: 'SDFLOW_STATIC_LEASE_TTL_S',
      schema: num(30, 1),
      meaning:
        "Static pool: a WebUI's lease in the meta store lasts this long unless renewed; one a dead process held frees then.",
    }),
  },
  (pool, read) => ({
    ...pool,
    functionPrefix: read(functions.settings.prefix),
    queueTimeoutS: read(runtime.settings.instanceQueueTimeoutS),
    sdStartTimeoutS: read(agent.settings.sdStartTimeoutS),
    generateTimeoutS: read(agent.settings.generateTimeoutS),
    progressPollMs: read(agent.settings.progressPollMs),
    interruptPollMs: read(agent.settings.interruptPollMs),
    previewIntervalMs: read(agent.settings.previewIntervalMs),
  }),
);
