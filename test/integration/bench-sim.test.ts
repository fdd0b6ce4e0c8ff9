import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Owned } from '../../src/cli/bench/owned.js';
import { A10_TIMINGS, type BenchPlace, startBenchSim } from '../../src/cli/bench/stacks.js';
import { freePort } from '../../src/http-util.js';

// The benchmark's bare simulators (the direct baseline, the switching pool) are ready when they answer themselves: a
// port picked free can be taken by another process before the simulator binds it, and that one's answer is not the
// simulator's readiness.

describe("the benchmark's simulators", () => {
  let root: string;
  let place: BenchPlace;

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'sdflow-bench-sim-'));
    place = { temporal: { address: '127.0.0.1:1', namespace: 'default' }, root, owned: new Owned() };
  });

  afterAll(async () => {
    await place.owned.stopAll(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });

  it('start and answer with their own pid', async () => {
    const sim = await startBenchSim(place, 'sim-own', { timings: A10_TIMINGS, modelsDir: join(root, 'models') });
    const stats = (await (await fetch(`${sim.url}/sim/stats`)).json()) as { pid: number; port: number; jobs: number };
    expect(stats.port).toBe(Number(new URL(sim.url).port));
    expect(stats.jobs).toBe(0);
    expect(stats.pid).not.toBe(process.pid);
    await sim.stop();
  }, 60_000);

  it('fail to start when another process answers on their port, instead of taking its answers', async () => {
    const port = await freePort();
    // Answers every route 200 with a pid of its own, as a leftover simulator on the port would.
    const other: Server = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ pid: process.pid }));
    });
    await new Promise<void>((resolve) => other.listen(port, '127.0.0.1', resolve));
    try {
      await expect(
        startBenchSim(place, 'sim-taken', { timings: A10_TIMINGS, modelsDir: join(root, 'models'), port }),
      ).rejects.toThrow(/sim-taken exited before|answered by another process/);
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  }, 60_000);
});
