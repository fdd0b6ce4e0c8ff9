import { z } from 'zod';
import { absoluteDir, nonEmpty } from './schemas.js';

// Function Compute 3.0 settings given as JSON (SDFLOW_FC_*_CONFIG, SDFLOW_FC_ENV), in FC's own field names, checked
// here so that a mistake names the variable instead of failing at the first CreateFunction. A function's resources
// are checked against the same schemas.

/** FC 3.0's GPU types and the GPU memory (MB) of each card: T4, A10 and an Ada Lovelace card with 48 GB. */
export const FC_GPU_TYPES = { 'fc.gpu.tesla.1': 16384, 'fc.gpu.ampere.1': 24576, 'fc.gpu.ada.1': 49152 } as const;
export type FcGpuType = keyof typeof FC_GPU_TYPES;
const gpuTypeNames = Object.keys(FC_GPU_TYPES) as [FcGpuType, ...FcGpuType[]];
export const fcGpuTypeSchema = z.enum(gpuTypeNames, { error: `must be one of ${gpuTypeNames.join(', ')}` });

export const fcVpcConfigSchema = z.strictObject({
  vpcId: nonEmpty,
  vSwitchIds: z.array(nonEmpty).min(1, 'must name at least one vSwitch'),
  securityGroupId: nonEmpty,
});
export const fcNasConfigSchema = z.strictObject({
  userId: z.number().int().optional(),
  groupId: z.number().int().optional(),
  mountPoints: z
    .array(z.strictObject({ serverAddr: nonEmpty, mountDir: absoluteDir, enableTLS: z.boolean().optional() }))
    .min(1, 'must hold at least one mount point'),
});
export const fcOssMountConfigSchema = z.strictObject({
  mountPoints: z
    .array(
      z.strictObject({
        bucketName: nonEmpty,
        bucketPath: z.string().regex(/^\//, 'must start with /'),
        endpoint: nonEmpty,
        mountDir: absoluteDir,
        readOnly: z.boolean().optional(),
      }),
    )
    .min(1, 'must hold at least one mount point'),
});
export const fcEnvSchema = z
  .record(z.string(), z.string({ error: 'must be a string' }), { error: 'must be an object of NAME: "value"' })
  .superRefine((vars, ctx) => {
    for (const name of Object.keys(vars)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        ctx.addIssue({ code: 'custom', path: [name], message: 'is not a valid environment variable name' });
      }
    }
  });
