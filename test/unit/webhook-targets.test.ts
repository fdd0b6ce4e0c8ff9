import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.js';
import { postWebhook } from '../../src/webhooks/send.js';
import {
  addressKind,
  type Resolver,
  resolveTarget,
  TargetPolicy,
  TargetRefusedError,
  TargetUnresolvedError,
} from '../../src/webhooks/targets.js';

// Where a webhook may go: the kinds of address, SDFLOW_WEBHOOK_ALLOW's hosts, patterns and CIDRs, the check on the
// resolved addresses, and a delivery that connects to the address that was checked.

const policy = (allow?: string) =>
  new TargetPolicy(loadConfig(allow === undefined ? {} : { SDFLOW_WEBHOOK_ALLOW: allow }).webhooks.allow);

/** A resolver answering from a table, as DNS would. */
const dns =
  (table: Record<string, string[]>): Resolver =>
  async (host) => {
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };

async function refusal(promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TargetRefusedError);
  return (err as Error).message;
}

describe('addressKind', () => {
  it.each([
    ['8.8.8.8', 'public'],
    ['1.1.1.1', 'public'],
    ['172.15.255.255', 'public'],
    ['172.32.0.0', 'public'],
    ['100.63.255.255', 'public'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'reserved'],
    ['192.0.2.10', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['224.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
  ])('IPv4 %s is %s', (address, kind) => {
    expect(addressKind(address)).toBe(kind);
  });

  it.each([
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001:80b::200e', 'public'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['::', 'reserved'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf::1', 'link-local'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fec0::1', 'private'],
    ['ff02::1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['2001:0:4136:e378::1', 'reserved'],
  ])('IPv6 %s is %s', (address, kind) => {
    expect(addressKind(address)).toBe(kind);
  });

  it.each([
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['0:0:0:0:0:ffff:7f00:0001', 'loopback'],
    ['::ffff:10.1.2.3', 'private'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['::ffff:8.8.8.8', 'public'],
    ['64:ff9b::a00:1', 'private'],
    ['64:ff9b::808:808', 'public'],
    ['2002:c0a8:101::1', 'private'],
    ['2002:808:808::1', 'public'],
  ])('an IPv6 address embedding IPv4, %s, is what its IPv4 address is: %s', (address, kind) => {
    expect(addressKind(address)).toBe(kind);
  });
});

describe('the target check', () => {
  it('allows any public host, and refuses private, loopback and link-local addresses, when nothing is listed', () => {
    const open = policy();
    expect(() =>
      open.check('hooks.example.com', ['93.184.215.14', '2606:2800:21f:cb07:6820:80da:af6b:8b2c']),
    ).not.toThrow();
    expect(() => open.check('internal.example.com', ['10.0.0.5'])).toThrow(/10\.0\.0\.5, a private address/);
    expect(() => open.check('127.0.0.1', ['127.0.0.1'])).toThrow(/a loopback address; SDFLOW_WEBHOOK_ALLOW must list/);
    expect(() => open.check('metadata', ['169.254.169.254'])).toThrow(/link-local/);
    expect(() => open.check('mapped', ['::ffff:192.168.0.1'])).toThrow(/private/);
    // One private address among public ones is enough to refuse: a connection might take it.
    expect(() => open.check('mixed.example.com', ['93.184.215.14', '10.0.0.5'])).toThrow(TargetRefusedError);
    expect(() => open.check('nothing.example.com', [])).toThrow(/resolves to no address/);
  });

  it('allows only listed hosts, patterns and ranges when SDFLOW_WEBHOOK_ALLOW is set', () => {
    const listed = policy('hooks.example.org, *.example.com, 203.0.114.0/24, 10.0.0.0/8, fd00::/8, 127.0.0.1');
    const ok = (host: string, ...addresses: string[]) => expect(() => listed.check(host, addresses)).not.toThrow();
    const refused = (host: string, addresses: string[], message: RegExp) =>
      expect(() => listed.check(host, addresses)).toThrow(message);

    ok('hooks.example.org', '93.184.215.14');
    ok('HOOKS.Example.ORG.', '93.184.215.14');
    refused('other.example.org', ['93.184.215.14'], /other\.example\.org is not in SDFLOW_WEBHOOK_ALLOW/);

    ok('a.example.com', '93.184.215.14');
    ok('b.a.example.com', '93.184.215.14');
    refused('example.com', ['93.184.215.14'], /not in SDFLOW_WEBHOOK_ALLOW/);
    refused('evil-example.com', ['93.184.215.14'], /not in SDFLOW_WEBHOOK_ALLOW/);
    // A listed name is no licence for a private address: only a listed range is.
    refused('a.example.com', ['192.168.1.1'], /a private address/);

    // A host whose every address is in a listed range passes, by address.
    ok('anything.test', '203.0.114.7');
    ok('10.20.30.40', '10.20.30.40');
    ok('fd00::1', 'fd00::1');
    ok('127.0.0.1', '127.0.0.1');
    ok('::ffff:127.0.0.1', '::ffff:127.0.0.1');
    refused('127.0.0.2', ['127.0.0.2'], /loopback/);
    refused('anything.test', ['203.0.114.7', '8.8.8.8'], /not in SDFLOW_WEBHOOK_ALLOW/);
    refused('11.0.0.1', ['11.0.0.1'], /not in SDFLOW_WEBHOOK_ALLOW/);
  });

  it.each([
    ['10.0.0.0/33', /"10\.0\.0\.0\/33" is not a CIDR/],
    ['::/129', /is not a CIDR/],
    ['1.2.3.4/x', /is not a CIDR/],
    ['not a host', /"not a host" is neither a host/],
    ['*.', /is neither a host/],
    ['http://x.example.com', /is neither a host/],
  ])('refuses %s in SDFLOW_WEBHOOK_ALLOW, naming the setting', (entry, message) => {
    expect(() => loadConfig({ SDFLOW_WEBHOOK_ALLOW: entry })).toThrow(/SDFLOW_WEBHOOK_ALLOW/);
    expect(() => loadConfig({ SDFLOW_WEBHOOK_ALLOW: entry })).toThrow(message);
  });
});

describe('resolveTarget', () => {
  it('checks the addresses the host resolves to, and answers the one to connect to', async () => {
    const target = await resolveTarget(
      'https://hooks.example.com/x',
      policy(),
      dns({ 'hooks.example.com': ['93.184.215.14'] }),
    );
    expect(target).toMatchObject({ address: '93.184.215.14', family: 4 });
    expect(target.url.hostname).toBe('hooks.example.com');
    const literal = await resolveTarget('http://[2606:4700:4700::1111]:8080/', policy(), dns({}));
    expect(literal).toMatchObject({ address: '2606:4700:4700::1111', family: 6 });
  });

  it('checks again at every call, so a name that comes to resolve to a private address is refused (DNS rebinding)', async () => {
    const answers = [['93.184.215.14'], ['127.0.0.1']];
    const rebinding: Resolver = async () => answers.shift()!.map((address) => ({ address, family: 4 }));
    await resolveTarget('http://rebind.example.com/', policy(), rebinding);
    expect(await refusal(resolveTarget('http://rebind.example.com/', policy(), rebinding))).toMatch(/127\.0\.0\.1/);
  });

  it('tells a host that does not resolve from a refused one, and refuses what is not http(s)', async () => {
    await expect(resolveTarget('http://nowhere.invalid/', policy(), dns({}))).rejects.toBeInstanceOf(
      TargetUnresolvedError,
    );
    expect(await refusal(resolveTarget('file:///etc/passwd', policy()))).toMatch(/not http: or https:/);
    expect(await refusal(resolveTarget('http://0x7f.1/', policy()))).toMatch(/127\.0\.0\.1, a loopback/);
  });
});

describe('postWebhook', () => {
  it('connects to the checked address, whatever the name resolves to now, and keeps the name in Host', async () => {
    const seen: { host?: string; body: string }[] = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        seen.push({ host: req.headers.host, body });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      // The name does not exist in DNS: only the pinned address can be what the connection reached.
      const target = await resolveTarget(
        `http://hooks.invalid:${port}/in`,
        policy('127.0.0.1'),
        dns({ 'hooks.invalid': ['127.0.0.1'] }),
      );
      expect(await postWebhook(target, '{"a":1}', { 'webhook-id': 'msg_1' }, 5000)).toBe(204);
      expect(seen).toEqual([{ host: `hooks.invalid:${port}`, body: '{"a":1}' }]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('gives up on a receiver that does not answer in time', async () => {
    const server = createServer(() => {});
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const target = await resolveTarget(`http://127.0.0.1:${port}/`, policy('127.0.0.1'));
      await expect(postWebhook(target, '{}', {}, 200)).rejects.toThrow(/no answer within 200 ms/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
