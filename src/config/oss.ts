import { credentials } from './cloud.js';
import { bool, bytesOfMb, int, num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';

/** The OSS object store (SDFLOW_OBJECT_STORE=oss): the bucket, how to reach it, and how to upload. */
export const oss = group(
  {
    region: setting({
      env: 'SDFLOW_OSS_REGION',
      schema: optionalString,
      meaning: 'OSS region, e.g. cn-hangzhou (or SDFLOW_OSS_ENDPOINT).',
    }),
    bucket: setting({
      env: 'SDFLOW_OSS_BUCKET',
      schema: optionalString,
      meaning: 'OSS bucket of inputs, images and models.',
    }),
    endpoint: setting({
      env: 'SDFLOW_OSS_ENDPOINT',
      schema: optionalString,
      meaning: 'OSS endpoint URL; wins over the region. With SDFLOW_OSS_CNAME, the custom domain of the bucket.',
    }),
    // The endpoint is a custom domain bound to the bucket (a CNAME), not a regional OSS endpoint.
    cname: setting({
      env: 'SDFLOW_OSS_CNAME',
      schema: bool(false),
      meaning: 'SDFLOW_OSS_ENDPOINT is a custom domain bound to the bucket.',
    }),
    internal: setting({
      env: 'SDFLOW_OSS_INTERNAL',
      schema: bool(false),
      meaning: 'With a region: use the VPC-internal endpoint.',
    }),
    partSizeBytes: setting({
      env: 'SDFLOW_OSS_PART_SIZE_MB',
      schema: num(16, 0.1),
      meaning: 'Part size of multipart uploads.',
      map: bytesOfMb,
    }),
    multipartThresholdBytes: setting({
      env: 'SDFLOW_OSS_MULTIPART_THRESHOLD_MB',
      schema: num(64, 0.1),
      meaning: 'Objects larger than this go up by multipart upload.',
      map: bytesOfMb,
    }),
    timeoutS: setting({ env: 'SDFLOW_OSS_TIMEOUT_S', schema: num(60, 1), meaning: 'Timeout of one OSS request.' }),
    maxAttempts: setting({
      env: 'SDFLOW_OSS_MAX_ATTEMPTS',
      schema: int(4, 1),
      meaning: 'Attempts per OSS request, the first included.',
    }),
  },
  (oss, read) => ({ ...oss, credentials: credentials.load(read) }),
);
