import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../src/http-util.js';

const listen = (port: number) =>
  new Promise<() => Promise<void>>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(() => new Promise((done) => server.close(() => done()))));
  });

describe('freePort', () => {
  it('hands out listenable ports below the ephemeral range, never the same one twice', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 200; i++) ports.push(await freePort());
    expect(new Set(ports).size).toBe(ports.length);
    // Outgoing connections take their local ports from 32768 up (Linux) or 49152 up (elsewhere).
    for (const port of ports) expect(port).toBeLessThan(32768);
    const closers = await Promise.all(ports.slice(0, 20).map(listen));
    await Promise.all(closers.map((close) => close()));
  });
});
