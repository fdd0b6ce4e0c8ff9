// The agent's HTTP routes, which the local runtime and FC (its trigger, its initializer) call on an instance.

export const AGENT_PATHS = {
  /** GET: the instance's health (AgentHealth); 200 once SD answers, 503 before. */
  healthz: '/healthz',
  /** POST: pins the checkpoint before the instance's first request (FC's initializer, the local runtime's start). */
  initialize: '/initialize',
  /** POST: one invoke request, answered with NDJSON events. */
  invoke: '/invoke',
} as const;

/** The agent's route for a request to SD's own API, e.g. `/sdapi/v1/sd-models` → `/sd/sdapi/v1/sd-models`. */
export const SD_PASSTHROUGH_PREFIX = '/sd';
export const sdPassthroughPath = (pathAndQuery: string) => `${SD_PASSTHROUGH_PREFIX}${pathAndQuery}`;

/** The body of GET /healthz. */
export interface AgentHealth {
  status: 'ok' | 'starting';
  instanceId: string;
  functionName: string;
  model: string;
  busy: boolean;
  sdReady: boolean;
}
