import { bool, bytesOfMb, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';

/** Checkpoints: the API's model uploads and default, and the demo checkpoints `sdflow dev` registers. */
export const models = group({
  demo: setting({
    env: 'SDFLOW_DEMO_MODELS',
    schema: bool(true),
    meaning: '`sdflow dev` registers the two simulator demo checkpoints.',
  }),
  defaultModel: setting({
    env: 'SDFLOW_DEFAULT_MODEL',
    schema: optionalString,
    meaning: 'Checkpoint of requests that name none (A1111 drop-in and passthrough routes).',
  }),
  maxUploadBytes: setting({
    env: 'SDFLOW_MAX_MODEL_UPLOAD_MB',
    schema: num(20480, 0.001),
    meaning: 'Largest model upload (413 past it).',
    map: bytesOfMb,
  }),
  registrationSettleWaitS: setting({
    env: 'SDFLOW_REGISTRATION_SETTLE_WAIT_S',
    schema: num(15, 0),
    meaning:
      "An update of a model whose row has settled waits this long for the earlier registration's workflow to close (409 after).",
  }),
});
