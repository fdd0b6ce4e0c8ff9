import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Stack, startStack } from '../helpers/stack.js';
import { EXTRAS, type FieldFact, IMG2IMG, INFOTEXT, PNG_INFO, TXT2IMG } from './a1111-models.js';
import { A1111_OPTIONS, HTML } from './a1111-options.js';

// sdflow's A1111 drop-in routes on a real stack (zero simulated timings) against A1111 1.10.1's request models:
// each route gets one request with every optional field null and one with every field at A1111's default (the
// required image fields carry a small PNG), and answers 200 in A1111's shape. Options are a user's own here: any
// user may POST them (A1111 answers `null`), and GET answers the full A1111 set.

const USER = { authorization: 'Bearer compatsecret1' };
// Another user for the option posts, so that their nulls never reach the generation requests' override_settings.
const OPTIONS_USER = { authorization: 'Bearer compatopts01' };

let stack: Stack;
const api = (path: string, body?: unknown, headers = USER) =>
  call(stack.url, body === undefined ? 'GET' : 'POST', path, body, headers);

/** Every field of a model null (or, for the required ones, the typical value): the all-null request. */
const allNull = (fields: FieldFact[]) => Object.fromEntries(fields.map((x) => [x.name, x.required ? x.typical : null]));
/** Every field at A1111's default (the required ones at their typical value). */
const allDefault = (fields: FieldFact[]) =>
  Object.fromEntries(fields.map((x) => [x.name, x.required ? x.typical : x.default]));

const GENERATION_SHAPE = { images: expect.any(Array), parameters: expect.any(Object), info: expect.any(String) };
const ROUTES: Array<[string, string, FieldFact[], object]> = [
  ['txt2img', '/sdapi/v1/txt2img', TXT2IMG, GENERATION_SHAPE],
  ['img2img', '/sdapi/v1/img2img', IMG2IMG, GENERATION_SHAPE],
  [
    'extra-single-image',
    '/sdapi/v1/extra-single-image',
    EXTRAS,
    { html_info: expect.any(String), image: expect.any(String) },
  ],
  ['png-info', '/sdapi/v1/png-info', PNG_INFO, { info: INFOTEXT, items: {}, parameters: expect.any(Object) }],
];

/** A1111's option defaults, less the OptionHTML entries, which are never stored. */
const optionDefaults = Object.fromEntries(Object.entries(A1111_OPTIONS).filter(([, v]) => v !== HTML));

beforeAll(async () => {
  stack = await startStack({
    env: {
      SDFLOW_SIM_STEP_MS: '0',
      SDFLOW_SIM_LOAD_MS: '0',
      SDFLOW_SIM_VAE_MS: '0',
      SDFLOW_API_KEYS: 'compat:user:compatsecret1,compatopts:user:compatopts01',
    },
  });
});

afterAll(async () => {
  await stack?.stop();
});

describe('drop-in routes, all-null and all-default requests', () => {
  it.each(ROUTES)('POST %s with every optional field null → 200', async (_, path, fields, shape) => {
    const r = await api(path, allNull(fields));
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(r.json).toMatchObject(shape);
  });

  it.each(ROUTES)('POST %s with every field at its A1111 default → 200', async (_, path, fields, shape) => {
    const r = await api(path, allDefault(fields));
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(r.json).toMatchObject(shape);
  });
});

describe('drop-in options', () => {
  it('POST /sdapi/v1/options with every key null → 200 null', async () => {
    const r = await api(
      '/sdapi/v1/options',
      Object.fromEntries(Object.keys(optionDefaults).map((k) => [k, null])),
      OPTIONS_USER,
    );
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(r.json).toBeNull();
  });

  it('POST /sdapi/v1/options with every key at its A1111 default → 200 null', async () => {
    const r = await api('/sdapi/v1/options', optionDefaults, OPTIONS_USER);
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(r.json).toBeNull();
  });

  it("GET /sdapi/v1/options answers every one of A1111 1.10.1's keys", async () => {
    const r = await api('/sdapi/v1/options', undefined, OPTIONS_USER);
    expect(r.status, JSON.stringify(r.json).slice(0, 300)).toBe(200);
    expect(Object.keys(A1111_OPTIONS).filter((k) => !(k in r.json))).toEqual([]);
  });
});
