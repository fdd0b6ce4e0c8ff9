import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Router from '@koa/router';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { authenticate, type KeyRing, parseKeys } from '../../src/api/auth.js';
import { errorMapper } from '../../src/api/errors.js';
import { consoleConfigRoute, consoleFiles } from '../../src/api/routes/console.js';
import { loadConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/logging.js';

// The console's routes in process, in the order the API mounts them (files before the key check, config.json
// after): the files are public and confined to their folder, config.json needs the key when keys are configured
// and tells the page who the caller is and where the Temporal Web UI is.

const KEY = 'console-unit-secret';

let dir: string;
const servers: Server[] = [];

async function serve(keys: KeyRing | null, env: Record<string, string> = {}): Promise<string> {
  const router = new Router();
  consoleConfigRoute(router, loadConfig({ SDFLOW_DATA_DIR: dir, ...env }), keys !== null);
  const app = new Koa();
  app.use(errorMapper(createLogger('test', 'silent')));
  app.use(consoleFiles(join(dir, 'console')));
  app.use(authenticate(keys));
  app.use(router.routes());
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sdflow-console-route-'));
  mkdirSync(join(dir, 'console', 'assets'), { recursive: true });
  writeFileSync(join(dir, 'console', 'index.html'), '<!doctype html><title>console</title>');
  writeFileSync(join(dir, 'console', 'assets', 'index-abc123.js'), 'console.log(1)');
  writeFileSync(join(dir, 'secret.txt'), 'not for the page');
});

afterAll(() => {
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the console files', () => {
  let base: string;
  beforeAll(async () => {
    base = await serve(parseKeys(`ops:admin:${KEY}`, 'test'));
  });

  it('serves the page without a key, under a policy that keeps it on this origin', async () => {
    const res = await fetch(`${base}/console/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache, must-revalidate');
    expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(await res.text()).toContain('<title>console</title>');
  });

  it('redirects /console to /console/, and caches hashed assets for good', async () => {
    const redirect = await fetch(`${base}/console`, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('/console/');
    const asset = await fetch(`${base}/console/assets/index-abc123.js`);
    expect(asset.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(asset.headers.get('cache-control')).toContain('immutable');
  });

  it('answers a JSON 404 for a missing file or a path out of its folder, and 405 for a write', async () => {
    for (const path of [
      '/console/missing.js',
      '/console/..%2fsecret.txt',
      '/console/assets/..%2f..%2f..%2fsecret.txt',
    ]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { message: string }).message, path).toMatch(/no console file/);
    }
    expect((await fetch(`${base}/console/`, { method: 'POST' })).status).toBe(405);
  });
});

describe('GET /console/config.json', () => {
  it('needs the key when keys are configured, and names the caller and the Temporal Web UI', async () => {
    const base = await serve(parseKeys(`ops:admin:${KEY}`, 'test'), {
      SDFLOW_TEMPORAL_UI_URL: 'https://temporal.example.test/',
      TEMPORAL_NAMESPACE: 'sd',
    });
    expect((await fetch(`${base}/console/config.json`)).status).toBe(401);
    const res = await fetch(`${base}/console/config.json`, { headers: { Authorization: `Bearer ${KEY}` } });
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(await res.json()).toEqual({
      user: 'ops',
      role: 'admin',
      auth: 'keys',
      temporalUiUrl: 'https://temporal.example.test',
      temporalNamespace: 'sd',
    });
  });

  it("with auth off, answers without a key and points at the dev server's UI", async () => {
    const base = await serve(null, { SDFLOW_TEMPORAL_UI_PORT: '18233' });
    expect(await (await fetch(`${base}/console/config.json`)).json()).toEqual({
      user: 'local',
      role: 'admin',
      auth: 'off',
      temporalUiUrl: 'http://127.0.0.1:18233',
      temporalNamespace: 'default',
    });
  });
});
