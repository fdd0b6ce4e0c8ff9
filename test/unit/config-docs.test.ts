import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { settingsTable } from '../../src/config/index.js';

// docs/deploy.md ends with the config matrix, generated from the schema by scripts/config-matrix.mjs. These tests
// fail when a setting is added, removed, renamed or re-defaulted without regenerating it, or has no meaning.

const DOC = join(process.cwd(), 'docs', 'deploy.md');
const BEGIN = '<!-- config-matrix:begin';
const END = '<!-- config-matrix:end -->';

/** The matrix's rows as [name, default, meaning], read back from the Markdown. */
function matrixRows(): [string, string, string][] {
  const doc = readFileSync(DOC, 'utf8');
  const begin = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  expect(begin, 'docs/deploy.md has the config-matrix markers').toBeGreaterThanOrEqual(0);
  expect(end).toBeGreaterThan(begin);
  return doc
    .slice(begin, end)
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => {
      const cells = line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim().replace(/\\\|/g, '|'));
      return [cells[0].replace(/`/g, ''), cells[1], cells[2]];
    });
}

describe('the config matrix in docs/deploy.md', () => {
  it('gives every setting a meaning', () => {
    const missing = settingsTable()
      .filter((row) => !row.meaning)
      .map((row) => row.name);
    expect(missing, 'settings without a meaning (src/config/)').toEqual([]);
  });

  it('lists every setting of src/config/, in order, with its default and meaning', () => {
    const rows = matrixRows();
    expect(rows.map((r) => r[0])).toEqual(settingsTable().map((row) => row.name));
    for (const [[name, shown, meaning], row] of rows.map((r, i) => [r, settingsTable()[i]] as const)) {
      const expected = row.default === undefined ? '(unset)' : row.default === '' ? '(empty)' : `\`${row.default}\``;
      expect(shown, `default of ${name}`).toBe(expected);
      expect(meaning, `meaning of ${name}`).toBe(row.meaning);
    }
  });

  it('is what scripts/config-matrix.mjs generates from the built schema', () => {
    const run = spawnSync(process.execPath, ['scripts/config-matrix.mjs', '--check'], { encoding: 'utf8' });
    expect(run.status, `${run.stdout}${run.stderr}`).toBe(0);
  });

  it('takes defaults from the schema, not from a copy', () => {
    const byName = new Map(settingsTable().map((row) => [row.name, row.default]));
    expect(byName.get('PORT')).toBe('8080');
    expect(byName.get('SDFLOW_OSS_CNAME')).toBe('false');
    expect(byName.get('SDFLOW_FC_GPU_TYPE')).toBe('fc.gpu.tesla.1');
    expect(byName.get('SDFLOW_SD_COMMAND')).toBeUndefined();
    expect(byName.get('SDFLOW_PASSTHROUGH_PREFIXES')).toBeUndefined();
  });
});
