import type { MetaStore } from '../meta-store/port.js';
import { functionNameFor } from './naming.js';
import type { FunctionRuntime } from './port.js';

// A function lives in two places: the runtime (which runs it) and its meta-store record (which the API lists and
// which holds its resources). The API's passthrough resolves a checkpoint's function with this, as the worker's
// ensureFunction activity does, so that neither side is ever left without the other.

/**
 * The checkpoint's function name, creating the function in the runtime (then its record) when it has no record.
 * `refresh` re-asserts a recorded function in the runtime with the record's resources: the runtime lost it.
 */
export async function provideCheckpointFunction(
  meta: MetaStore,
  functions: FunctionRuntime,
  model: string,
  prefix: string,
  refresh = false,
): Promise<string> {
  const functionName = functionNameFor(model, prefix);
  const existing = await meta.getFunction(functionName);
  if (existing && !refresh) return functionName;
  await functions.ensureFunction({ functionName, model, resources: existing?.resources ?? {} });
  if (!existing) {
    const now = new Date().toISOString();
    await meta.putFunction({ functionName, model, resources: {}, createdAt: now, updatedAt: now });
  }
  return functionName;
}
