import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimServer } from '../../src/sim/server.js';
import { BASE, CHECKPOINT, EXTRAS, type FieldFact, IMG2IMG, INFOTEXT, PNG_INFO, TXT2IMG } from './a1111-models.js';
import { A1111_OPTIONS, HTML, RUNTIME_OPTIONS } from './a1111-options.js';

// `sdflow sim` against A1111 1.10.1's request models (the tables in a1111-models.ts and a1111-options.ts): each
// optional field sent on its own over a small base request, as null, as A1111's default and as a typical value,
// answers 200 or the status A1111 itself answers. Options: GET answers every key, POSTing a key's default changes
// nothing, null is taken, an unknown key is a 422. Zero simulated timings, so the whole file takes seconds.

type Json = Record<string, any>;
interface Sim {
  port: number;
  close(): Promise<void>;
}
interface Case {
  title: string;
  body: Json;
  status: number;
  detail?: string;
}

const root = mkdtempSync(join(tmpdir(), 'sdflow-compat-'));
let gen: Sim;
let opts: Sim;

async function call(sim: Sim, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://127.0.0.1:${sim.port}${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

const show = (v: unknown) => {
  const s = JSON.stringify(v) ?? 'undefined';
  return s.length > 40 ? `${s.slice(0, 32)}…` : s;
};

/**
 * The requests for one model: per optional field null, default and typical; then each field's further values. As
 * [title, case] pairs, so that vitest prints the title whole.
 */
function cases(model: string, base: Json, fields: FieldFact[]): Array<[string, Case]> {
  const out: Case[] = [];
  const send = (x: FieldFact, label: string, value: unknown, status = 200, detail?: string) =>
    out.push({
      title: `${model}.${x.name} = ${label} → ${status}`,
      body: { ...base, [x.name]: value },
      status,
      detail,
    });
  for (const x of fields) {
    if (!x.required) {
      send(x, 'null', null);
      send(x, `${show(x.default)} (default)`, x.default);
      send(x, show(x.typical), x.typical, x.status, x.detail);
    }
    for (const m of x.more ?? []) send(x, show(m.value), m.value, m.status, m.detail);
  }
  return out.map((c) => [c.title, c]);
}

async function expectAnswer(path: string, c: Case) {
  const r = await call(gen, 'POST', path, c.body);
  expect(r.status, r.text.slice(0, 300)).toBe(c.status);
  if (c.detail !== undefined) expect(r.json?.detail).toBe(c.detail);
  return r.json;
}

beforeAll(async () => {
  const models = join(root, 'models');
  mkdirSync(join(models, 'stableDiffusion'), { recursive: true });
  writeFileSync(join(models, 'stableDiffusion', CHECKPOINT), 'compat checkpoint bytes');
  const zero = { host: '127.0.0.1', port: 0, stepMs: 0, loadMs: 0, vaeMs: 0, modelsDir: models };
  // Two instances: the option tests change settings that generation must not see.
  [gen, opts] = await Promise.all([startSimServer(zero), startSimServer(zero)]);
});

afterAll(async () => {
  await Promise.all([gen?.close(), opts?.close()]);
  rmSync(root, { recursive: true, force: true });
});

describe('sim: txt2img fields', () => {
  it.each(cases('txt2img', BASE.txt2img, TXT2IMG))('%s', async (_, c) => {
    const json = await expectAnswer('/sdapi/v1/txt2img', c);
    if (c.status === 200) expect(json).toMatchObject({ parameters: expect.any(Object), info: expect.any(String) });
  });
});

describe('sim: img2img fields', () => {
  it.each(cases('img2img', BASE.img2img, IMG2IMG))('%s', async (_, c) => {
    const json = await expectAnswer('/sdapi/v1/img2img', c);
    if (c.status === 200) expect(json).toMatchObject({ parameters: expect.any(Object), info: expect.any(String) });
  });
});

describe('sim: extra-single-image fields', () => {
  it.each(cases('extras', BASE.extras, EXTRAS))('%s', async (_, c) => {
    const json = await expectAnswer('/sdapi/v1/extra-single-image', c);
    if (c.status === 200) expect(json).toMatchObject({ html_info: expect.any(String), image: expect.any(String) });
  });
});

describe('sim: png-info', () => {
  it.each(cases('png-info', BASE.pngInfo, PNG_INFO))('%s', async (_, c) => {
    await expectAnswer('/sdapi/v1/png-info', c);
  });

  it('answers {info, items, parameters} with the infotext and its parsed fields', async () => {
    const r = await call(gen, 'POST', '/sdapi/v1/png-info', BASE.pngInfo);
    expect(r.status).toBe(200);
    expect(Object.keys(r.json).sort()).toEqual(['info', 'items', 'parameters']);
    expect(r.json.info).toBe(INFOTEXT);
    expect(r.json.items).toEqual({});
    expect(r.json.parameters).toMatchObject({ Prompt: 'a lighthouse', Steps: '20', Seed: '42' });
  });
});

describe('sim: options', () => {
  const keys = Object.keys(A1111_OPTIONS);
  const getOptions = async () => {
    const r = await call(opts, 'GET', '/sdapi/v1/options');
    expect(r.status).toBe(200);
    return r.json as Json;
  };

  it(`GET answers every one of A1111 1.10.1's ${keys.length} option keys`, async () => {
    const got = await getOptions();
    expect(keys.filter((k) => !(k in got))).toEqual([]);
  });

  it.each(keys)('options.%s = its default → 200, changes nothing', async (key) => {
    const before = await getOptions();
    // An HTML entry's text and the loaded model's name and hash are not in the table: send what GET answers.
    const value = A1111_OPTIONS[key] === HTML || RUNTIME_OPTIONS.has(key) ? before[key] : A1111_OPTIONS[key];
    const r = await call(opts, 'POST', '/sdapi/v1/options', { [key]: value });
    expect(r.status, r.text.slice(0, 300)).toBe(200);
    expect(r.json).toBeNull();
    expect(await getOptions()).toEqual(before);
  });

  it('an unknown key → 422 with a detail, and is not stored', async () => {
    const r = await call(opts, 'POST', '/sdapi/v1/options', { no_such_option_compat: 1 });
    expect(r.status, r.text.slice(0, 300)).toBe(422);
    expect(r.json).toHaveProperty('detail');
    expect(await getOptions()).not.toHaveProperty('no_such_option_compat');
  });

  // Last: these leave nulls behind.
  it.each(keys)('options.%s = null → 200', async (key) => {
    const r = await call(opts, 'POST', '/sdapi/v1/options', { [key]: null });
    expect(r.status, r.text.slice(0, 300)).toBe(200);
  });
});
