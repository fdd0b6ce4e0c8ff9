import { z } from 'zod';
import { jsonSetting } from './schemas.js';
import { group, setting } from './setting.js';

// What GPU time costs, per GPU type: the worker prices each task's cost with it (docs/ARCHITECTURE.md, "Cost").

/** The price of one instance's second, active (serving, or starting) and idle (warm, waiting). */
export interface BillingRate {
  activePerS: number;
  idlePerS: number;
}

/**
 * The default rate: Function Compute's published GPU prices (announced for 14 June 2024, tier 0) of USD 0.000018 per
 * GB-second of GPU memory active and USD 0.000007 idle, for a 16 GB card (fc.gpu.tesla.1). Billed GPU-seconds depend
 * only on the ratio of the two.
 */
export const DEFAULT_BILLING_RATES: Readonly<Record<string, BillingRate>> = {
  default: { activePerS: 0.000288, idlePerS: 0.000112 },
};

const rateSchema = z.strictObject({
  activePerS: z.number({ error: 'activePerS must be a number' }).positive('activePerS must be above 0'),
  idlePerS: z.number({ error: 'idlePerS must be a number' }).min(0, 'idlePerS must not be negative'),
});

export const billing = group({
  rates: setting({
    env: 'SDFLOW_BILLING_RATES',
    schema: jsonSetting(
      z.record(z.string().min(1), rateSchema, {
        error: 'must be a JSON object of GPU type: {"activePerS": number, "idlePerS": number}',
      }),
    ),
    meaning:
      'Price per second of an instance, by GPU type (a function\'s instanceType, e.g. fc.gpu.ampere.1, or `default` for the rest), as JSON {"<type>": {"activePerS": n, "idlePerS": n}}; merged over the default, Function Compute\'s published 16 GB Tesla rates ({"default": {"activePerS": 0.000288, "idlePerS": 0.000112}}, USD). Prices each task\'s billedGpuS.',
    map: (parsed): Readonly<Record<string, BillingRate>> => ({ ...DEFAULT_BILLING_RATES, ...parsed }),
  }),
});
