import { isIP } from 'node:net';
import { num, optionalString } from './schemas.js';
import { group, setting } from './setting.js';
import { shared } from './shared.js';
import { stores } from './stores.js';

// Webhooks: the secret that signs them, the targets they may go to, and how they are retried. Read by the API (which
// checks a target at submit) and the worker (which delivers).

/** The targets SDFLOW_WEBHOOK_ALLOW lists: host names, `*.domain` patterns, and addresses or CIDRs. */
export interface WebhookAllowList {
  /** Exact host names, lower case. */
  names: string[];
  /** The suffixes of `*.domain` patterns, e.g. `.example.com`: any name under the domain, not the domain itself. */
  wildcards: string[];
  /** Address ranges; a single address is a range of one. */
  cidrs: { address: string; prefix: number; family: 'ipv4' | 'ipv6' }[];
}

const HOST_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** One entry of the list, added to `list`; an error message when it is none of the three forms. */
function addEntry(list: WebhookAllowList, entry: string): string | undefined {
  const [rawAddress, prefixText, ...extra] = entry.split('/');
  const address = rawAddress.replace(/^\[(.*)\]$/, '$1');
  const version = isIP(address);
  if (version !== 0) {
    const bits = version === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? bits : Number(prefixText);
    if (extra.length > 0 || !/^\d{1,3}$/.test(prefixText ?? String(bits)) || prefix > bits) {
      return `"${entry}" is not a CIDR (the prefix must be 0 to ${bits})`;
    }
    list.cidrs.push({ address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' });
    return undefined;
  }
  const name = entry.toLowerCase();
  if (name.startsWith('*.') && HOST_NAME.test(name.slice(2))) {
    list.wildcards.push(name.slice(1));
    return undefined;
  }
  if (HOST_NAME.test(name)) {
    list.names.push(name);
    return undefined;
  }
  return `"${entry}" is neither a host, a *.domain pattern, an address nor a CIDR`;
}

const allowList = optionalString.transform((text, ctx): WebhookAllowList | undefined => {
  if (text === undefined) return undefined;
  const list: WebhookAllowList = { names: [], wildcards: [], cidrs: [] };
  for (const entry of text.split(',').map((e) => e.trim())) {
    if (!entry) continue;
    const problem = addEntry(list, entry);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }
  return list;
});

/** `whsec_` and the base64 of the key, as the Standard Webhooks specification writes a secret. */
const secret = optionalString.refine(
  (text) => {
    if (text === undefined) return true;
    const key = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(text)?.[1];
    const bytes = key === undefined ? 0 : Buffer.from(key, 'base64').length;
    return bytes >= 24 && bytes <= 64;
  },
  { message: 'must be whsec_ followed by the base64 of a 24 to 64 byte key' },
);

export const webhooks = group(
  {
    secret: setting({
      env: 'SDFLOW_WEBHOOK_SECRET',
      schema: secret,
      meaning:
        'Secret that signs webhooks, whsec_<base64> (unset: generated once and kept in the data dir; `sdflow webhooks ' +
        'secret` prints it). Required when the API and workers do not share a data dir, as with OSS or Tablestore.',
    }),
    allow: setting({
      env: 'SDFLOW_WEBHOOK_ALLOW',
      schema: allowList,
      meaning:
        'Webhook targets allowed, comma-separated: hosts, *.domain patterns, addresses and CIDRs (unset: any public ' +
        'host). Private, loopback and link-local addresses are refused unless an address or CIDR here covers them.',
    }),
    timeoutS: setting({
      env: 'SDFLOW_WEBHOOK_TIMEOUT_S',
      schema: num(10, 1),
      meaning: 'How long one webhook delivery attempt waits for its answer.',
    }),
    retryInitialS: setting({
      env: 'SDFLOW_WEBHOOK_RETRY_INITIAL_S',
      schema: num(5, 0.1),
      meaning:
        'First backoff before a failed start or completed webhook is sent again (doubling, at most an hour apart).',
    }),
    retryHours: setting({
      env: 'SDFLOW_WEBHOOK_RETRY_HOURS',
      schema: num(24, 0.001),
      meaning:
        'How long a start or completed webhook is retried (network errors, timeouts, 5xx and 429) before it is dropped.',
    }),
    progressIntervalS: setting({
      env: 'SDFLOW_WEBHOOK_PROGRESS_INTERVAL_S',
      schema: num(2, 0.1),
      meaning: 'At most one progress webhook per task this often; progress webhooks are never retried.',
    }),
  },
  (webhooks, read) => ({
    ...webhooks,
    // A generated secret is kept in the data dir, which only processes on one machine share.
    dataDir: read(shared.settings.dataDir),
    sharedDataDir: read(stores.settings.objectStore) === 'local' && read(stores.settings.metaStore) === 'sqlite',
  }),
);
