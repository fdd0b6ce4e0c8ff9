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
 * The default rates: Function Compute 3.0's pay-as-you-go price (tier 1, USD 0.00002 per compute unit) times its
 * GPU conversion factors per GB-second of GPU memory: the Tesla series 2.1 active and 0.5 idle, for a 16 GB card
 * (`default`, as fc.gpu.tesla.1), and the Ada series 1.5 active and 0.25 idle, for a 48 GB card (fc.gpu.ada.1). Idle
 * costs about a fifth of active. Billed GPU-seconds depend only on a row's idle/active ratio.
 */
const FC_USD_PER_CU = 0.00002;
/** USD per second of a card with this much GPU memory; rounded to the nanodollar, past float noise. */
const fcRate = (gpuMemoryGb: number, activeCuPerGbS: number, idleCuPerGbS: number): BillingRate => {
  const perS = (cuPerGbS: number) => Math.round(gpuMemoryGb * cuPerGbS * FC_USD_PER_CU * 1e9) / 1e9;
  return { activePerS: perS(activeCuPerGbS), idlePerS: perS(idleCuPerGbS) };
};
export const DEFAULT_BILLING_RATES: Readonly<Record<string, BillingRate>> = {
  default: fcRate(16, 2.1, 0.5),
  'fc.gpu.ada.1': fcRate(48, 1.5, 0.25),
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
      'Price per second of an instance, by GPU type (a function\'s instanceType, e.g. fc.gpu.ampere.1, or `default` for the rest), as JSON {"<type>": {"activePerS": n, "idlePerS": n}}; merged over the defaults from Function Compute 3.0\'s published prices (USD: `default`, a 16 GB Tesla card, 0.000672 active and 0.00016 idle; `fc.gpu.ada.1`, a 48 GB Ada card, 0.00144 and 0.00024). Prices each task\'s billedGpuS.',
    map: (parsed): Readonly<Record<string, BillingRate>> => ({ ...DEFAULT_BILLING_RATES, ...parsed }),
  }),
});
