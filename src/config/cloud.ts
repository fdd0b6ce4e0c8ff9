import { optionalString } from './schemas.js';
import { group, setting } from './setting.js';

/**
 * Alibaba Cloud credentials, which every cloud adapter's group carries. They come from the standard ALIBABA_CLOUD_*
 * environment, never from files in the repo.
 */
export const credentials = group({
  accessKeyId: setting({
    env: 'ALIBABA_CLOUD_ACCESS_KEY_ID',
    schema: optionalString,
    meaning: 'Alibaba Cloud AccessKey id (OSS, Tablestore, FC). From the environment only.',
  }),
  accessKeySecret: setting({
    env: 'ALIBABA_CLOUD_ACCESS_KEY_SECRET',
    schema: optionalString,
    meaning: 'Alibaba Cloud AccessKey secret. From the environment only.',
  }),
  securityToken: setting({
    env: 'ALIBABA_CLOUD_SECURITY_TOKEN',
    schema: optionalString,
    meaning: 'STS token, with temporary AccessKeys (read once at start).',
  }),
});
