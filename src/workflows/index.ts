// The workflow bundle's entry: every workflow type the worker registers.
export { generationWorkflow } from './generation.js';
export { reconcilerWorkflow } from './reconciler.js';
export { modelRegistrationWorkflow } from './registration.js';
export { retentionWorkflow } from './retention.js';
export { semaphoreWorkflow } from './semaphore.js';
