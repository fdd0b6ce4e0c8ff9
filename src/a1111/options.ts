import { defaultOptions } from '../sim/lists.js';

// Placeholder until the simulator branch lands its table of A1111 1.10.1's options.
export function a1111OptionDefaults(): Record<string, unknown> {
  return defaultOptions();
}
