import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, settingsTable } from '../../src/config/index.js';

// Each setting is declared once, in the group of the consumer that reads it, with its meaning; the config is the
// only reader of the environment, so the config matrix lists every variable sdflow reads.

const SRC = join(process.cwd(), 'src');

/** Every TypeScript file under `dir`, with its text. */
function sources(dir: string): { path: string; text: string }[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((path) => path.endsWith('.ts'))
    .map((path) => ({ path: join(dir, path), text: readFileSync(join(dir, path), 'utf8') }));
}

const names = () => settingsTable().map((row) => row.name);

describe('the settings', () => {
  it('are each declared exactly once in src/config/, with a meaning', () => {
    const declared = sources(join(SRC, 'config')).flatMap(({ text }) =>
      [...text.matchAll(/\benv: '([A-Z0-9_]+)'/g)].map((m) => m[1]),
    );
    expect([...declared].sort()).toEqual([...names()].sort());
    expect(new Set(names()).size, 'a variable declared by two groups').toBe(names().length);
    for (const row of settingsTable()) expect(row.meaning.length, `meaning of ${row.name}`).toBeGreaterThan(10);
  });

  it('are read from the environment only by the config: elsewhere the environment is only passed on whole', () => {
    const reads = sources(SRC).flatMap(({ path, text }) =>
      [...text.matchAll(/process\.env(\s*\.\s*\w+|\s*\[[^\]]*\]|)/g)].map((m) => ({ path, access: m[1].trim() })),
    );
    expect(reads.length).toBeGreaterThan(0);
    const named = reads.filter((r) => r.access !== '');
    expect(named, 'variables read around the config').toEqual([]);
    const destructured = sources(SRC).filter(({ text }) => /}\s*=\s*process\.env\b/.test(text));
    expect(destructured.map((s) => s.path)).toEqual([]);
  });

  it("include the agent's identity and placement, which the local runtime and FC set on an instance", () => {
    for (const name of ['SDFLOW_INSTANCE_ID', 'SDFLOW_FUNCTION_NAME', 'SDFLOW_AGENT_HOST', 'SDFLOW_AGENT_PORT']) {
      expect(names()).toContain(name);
    }
    const doc = readFileSync(join(process.cwd(), 'docs', 'deploy.md'), 'utf8');
    expect(doc).toContain('| `SDFLOW_INSTANCE_ID` | (unset) |');
    expect(doc).toContain('| `SDFLOW_AGENT_HOST` | `127.0.0.1` |');
    const agent = loadConfig({
      SDFLOW_INSTANCE_ID: 'i-1',
      SDFLOW_FUNCTION_NAME: 'sd_abc',
      SDFLOW_AGENT_HOST: '0.0.0.0',
    }).agent;
    expect(agent).toMatchObject({ instanceId: 'i-1', functionName: 'sd_abc', host: '0.0.0.0' });
    expect(loadConfig({ SDFLOW_AGENT_HOST: ' ' }).agent).toMatchObject({ instanceId: undefined, host: '127.0.0.1' });
  });

  it('may feed several groups: SDFLOW_MAX_BODY_MB is the body limit of the API, the runtime, the agent and FC', () => {
    const config = loadConfig({ SDFLOW_MAX_BODY_MB: '2' });
    const limits = [config.api, config.runtime, config.agent, config.fc].map((g) => g.maxBodyBytes);
    expect(limits).toEqual([2 * 1024 * 1024, 2 * 1024 * 1024, 2 * 1024 * 1024, 2 * 1024 * 1024]);
    expect(config.agent.dataDir).toBe(config.dataDir);
    expect(config.runtime.dataDir).toBe(config.dataDir);
  });
});
