import { lookup as dnsLookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import type { WebhookAllowList } from '../config/index.js';

// Where a webhook may go. A target is checked on the addresses its host resolves to, at submit and again at every
// delivery, and the delivery connects to the very address that passed: a host that later resolves elsewhere (DNS
// rebinding) is checked again, never trusted. Private, loopback and link-local addresses (and the other ranges that
// are not public) are refused unless SDFLOW_WEBHOOK_ALLOW covers them by address; when it is set, the host must also
// be listed, by name, pattern or address.

/** A target that may not be sent to; the message says why. */
export class TargetRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetRefusedError';
  }
}

/** A target whose host does not resolve now. */
export class TargetUnresolvedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TargetUnresolvedError';
  }
}

export type AddressKind = 'public' | 'loopback' | 'private' | 'link-local' | 'reserved';

function ranges(entries: [string, number, 'ipv4' | 'ipv6'][]): BlockList {
  const list = new BlockList();
  for (const [address, prefix, family] of entries) list.addSubnet(address, prefix, family);
  return list;
}

const LOOPBACK = ranges([
  ['127.0.0.0', 8, 'ipv4'],
  ['::1', 128, 'ipv6'],
]);
const LINK_LOCAL = ranges([
  ['169.254.0.0', 16, 'ipv4'],
  ['fe80::', 10, 'ipv6'],
]);
const PRIVATE = ranges([
  ['10.0.0.0', 8, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['fc00::', 7, 'ipv6'],
  ['fec0::', 10, 'ipv6'],
]);
/** Special-purpose ranges that are neither of the above: unspecified, documentation, benchmarking, multicast, … */
const RESERVED = ranges([
  ['0.0.0.0', 8, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.0.2.0', 24, 'ipv4'],
  ['192.88.99.0', 24, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['198.51.100.0', 24, 'ipv4'],
  ['203.0.113.0', 24, 'ipv4'],
  ['224.0.0.0', 3, 'ipv4'],
  ['::', 128, 'ipv6'],
  ['64:ff9b:1::', 48, 'ipv6'],
  ['100::', 64, 'ipv6'],
  ['2001::', 23, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
]);

/** The 16 bytes of an IPv6 address (which may end in a dotted IPv4 address). */
function ipv6Bytes(address: string): Buffer {
  const groupsOf = (part: string) =>
    (part ? part.split(':') : []).flatMap((g) => {
      if (!g.includes('.')) return [g];
      const [a, b, c, d] = g.split('.').map(Number);
      return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)];
    });
  const [head, tail] = address.split('::');
  const left = groupsOf(head);
  const right = tail === undefined ? [] : groupsOf(tail);
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill('0'), ...right];
  const bytes = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) bytes.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  return bytes;
}

/**
 * The IPv4 address an IPv6 address stands for, when it embeds one that the network would reach: IPv4-mapped
 * (::ffff:a.b.c.d), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
 */
function embeddedIpv4(address: string): string | undefined {
  const b = ipv6Bytes(address);
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return [...b.subarray(12)].join('.');
  if (b.readUInt32BE(0) === 0x0064ff9b && zeros(4, 12)) return [...b.subarray(12)].join('.');
  if (b.readUInt16BE(0) === 0x2002) return [...b.subarray(2, 6)].join('.');
  return undefined;
}

/** An address as the checks compare it: an IPv6 address that embeds an IPv4 one becomes that IPv4 address. */
export function normalizeAddress(address: string): { address: string; family: 'ipv4' | 'ipv6' } {
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (isIP(bare) === 4) return { address: bare, family: 'ipv4' };
  const v4 = embeddedIpv4(bare);
  return v4 ? { address: v4, family: 'ipv4' } : { address: bare.toLowerCase(), family: 'ipv6' };
}

/** Whether an address is public, or which kind of address a webhook may not reach unless it is listed. */
export function addressKind(address: string): AddressKind {
  const a = normalizeAddress(address);
  if (LOOPBACK.check(a.address, a.family)) return 'loopback';
  if (LINK_LOCAL.check(a.address, a.family)) return 'link-local';
  if (PRIVATE.check(a.address, a.family)) return 'private';
  if (RESERVED.check(a.address, a.family)) return 'reserved';
  return 'public';
}

/** SDFLOW_WEBHOOK_ALLOW, compiled for checking targets. */
export class TargetPolicy {
  private readonly listed: BlockList | undefined;

  constructor(private readonly allow: WebhookAllowList | undefined) {
    if (allow) this.listed = ranges(allow.cidrs.map((c) => [c.address, c.prefix, c.family]));
  }

  private listedAddress(address: string): boolean {
    if (!this.listed) return false;
    const a = normalizeAddress(address);
    return this.listed.check(a.address, a.family);
  }

  private listedName(host: string): boolean {
    if (!this.allow) return false;
    const name = host.toLowerCase().replace(/\.$/, '');
    return this.allow.names.includes(name) || this.allow.wildcards.some((suffix) => name.endsWith(suffix));
  }

  /** Throws TargetRefusedError unless `host`, resolved to `addresses`, may be sent to. */
  check(host: string, addresses: string[]): void {
    if (addresses.length === 0) throw new TargetRefusedError(`${host} resolves to no address`);
    for (const address of addresses) {
      const kind = addressKind(address);
      if (kind !== 'public' && !this.listedAddress(address)) {
        throw new TargetRefusedError(
          `${host} resolves to ${address}, a ${kind} address; SDFLOW_WEBHOOK_ALLOW must list it to allow it`,
        );
      }
    }
    if (!this.allow) return;
    const byName = isIP(host) === 0 && this.listedName(host);
    if (!byName && !addresses.every((a) => this.listedAddress(a))) {
      throw new TargetRefusedError(`${host} is not in SDFLOW_WEBHOOK_ALLOW`);
    }
  }
}

/** A target whose address passed the checks: a delivery connects to `address`, whatever the host resolves to later. */
export interface ResolvedTarget {
  url: URL;
  address: string;
  family: 4 | 6;
}

export type Resolver = (host: string) => Promise<{ address: string; family: number }[]>;

const systemResolver: Resolver = (host) => dnsLookup(host, { all: true, verbatim: true });

/**
 * Resolves a webhook URL's host and checks every address it resolves to: TargetRefusedError when it may not be sent
 * to, TargetUnresolvedError when its host does not resolve (which may pass).
 */
export async function resolveTarget(
  url: string,
  policy: TargetPolicy,
  resolve: Resolver = systemResolver,
): Promise<ResolvedTarget> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TargetRefusedError(`${url} is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new TargetRefusedError(`${parsed.protocol} is not http: or https:`);
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  let found: { address: string; family: number }[];
  if (isIP(host) !== 0) {
    found = [{ address: host, family: isIP(host) }];
  } else {
    try {
      found = await resolve(host);
    } catch (err) {
      throw new TargetUnresolvedError(`${host} does not resolve (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
  }
  policy.check(
    host,
    found.map((a) => a.address),
  );
  return { url: parsed, address: found[0].address, family: found[0].family === 6 ? 6 : 4 };
}
