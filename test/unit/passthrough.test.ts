import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  answerStatus,
  changesInstance,
  failedStatus,
  INLINE_BODY_BYTES,
  isPassthroughPath,
  normalizedPath,
  storeLargeBody,
} from '../../src/api/passthrough.js';
import { loadConfig } from '../../src/config/index.js';
import { imageBase64, offloadImages, PassthroughRunner } from '../../src/gpu-agent/passthrough.js';
import type { PassthroughResult, SdClient } from '../../src/gpu-agent/sd-client.js';
import { LocalObjectStore } from '../../src/platform/object-store/local/store.js';
import type { AgentEvent, ErrorEvent, ResultEvent } from '../../src/protocol/events.js';

// The passthrough's rules and the agent's answer handling, without processes: which paths pass and which need an
// admin, how SD's statuses map, and how base64 images in SD's answer become object keys (real PNG and JPEG bytes).

const PREFIXES = loadConfig({}).api.passthroughPrefixes;
let png: string;
let jpeg: string;
let dir: string;
let store: LocalObjectStore;

beforeAll(async () => {
  const raw = { create: { width: 24, height: 16, channels: 3 as const, background: '#3366aa' } };
  png = (await sharp(raw).png().toBuffer()).toString('base64');
  jpeg = (await sharp(raw).jpeg().toBuffer()).toString('base64');
  dir = mkdtempSync(join(tmpdir(), 'sdflow-pt-'));
  store = new LocalObjectStore({ root: dir, publicUrl: 'http://127.0.0.1:1', secret: 'x'.repeat(32) });
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('passthrough paths', () => {
  it('passes /sdapi/v1/ and /controlnet/ plus configured extras, nothing else', () => {
    expect(PREFIXES).toEqual(['/sdapi/v1/', '/controlnet/']);
    expect(isPassthroughPath('/sdapi/v1/sd-models', PREFIXES)).toBe(true);
    expect(isPassthroughPath('/controlnet/model_list', PREFIXES)).toBe(true);
    expect(isPassthroughPath('/sdapi/v2/x', PREFIXES)).toBe(false);
    expect(isPassthroughPath('/internal/ping', PREFIXES)).toBe(false);
    const extra = loadConfig({ SDFLOW_PASSTHROUGH_PREFIXES: ' /agent-scheduler/v1 , /tagger/v1/ ' }).api;
    expect(extra.passthroughPrefixes).toEqual(['/sdapi/v1/', '/controlnet/', '/agent-scheduler/v1/', '/tagger/v1/']);
    expect(() => loadConfig({ SDFLOW_PASSTHROUGH_PREFIXES: '/' })).toThrow(/SDFLOW_PASSTHROUGH_PREFIXES/);
    expect(() => loadConfig({ SDFLOW_PASSTHROUGH_PREFIXES: '/a/../b' })).toThrow(/SDFLOW_PASSTHROUGH_PREFIXES/);
  });

  it('refuses dot segments and backslashes, plain or percent-encoded', () => {
    expect(normalizedPath('/sdapi/v1//options/')).toBe('/sdapi/v1/options');
    expect(normalizedPath('/sdapi/v1/%6Fptions')).toBe('/sdapi/v1/options');
    for (const path of ['/sdapi/v1/../../functions', '/sdapi/v1/%2e%2e/x', '/sdapi/v1/./x', '/sdapi/v1/a%5Cb']) {
      expect(() => normalizedPath(path), path).toThrow(/path/);
    }
    expect(() => normalizedPath('/sdapi/v1/%zz')).toThrow(/percent-encoding/);
  });

  it('routes that change an instance need an admin; reads and generation-like routes do not', () => {
    for (const route of ['reload-checkpoint', 'unload-checkpoint', 'server-kill', 'server-restart', 'refresh-loras']) {
      expect(changesInstance(`/sdapi/v1/${route}`), route).toBe(true);
    }
    expect(changesInstance(normalizedPath('/sdapi/v1/%72eload-checkpoint/'))).toBe(true);
    // Settings are the caller's own (a drop-in route), never one instance's.
    expect(changesInstance('/sdapi/v1/options')).toBe(false);
    expect(changesInstance('/sdapi/v1/png-info')).toBe(false);
    expect(changesInstance('/sdapi/v1/sd-models')).toBe(false);
  });
});

describe('passthrough statuses', () => {
  it('keeps 2xx and 4xx, answers an upstream 5xx with 502', () => {
    expect([200, 201, 204, 400, 404, 409, 422].map(answerStatus)).toEqual([200, 201, 204, 400, 404, 409, 422]);
    expect([500, 502, 503, 504].map(answerStatus)).toEqual([502, 502, 502, 502]);
  });

  it('answers a failed task 404 (unknown checkpoint), 504 (deadline) or 502 (the upstream failed)', () => {
    expect(failedStatus('not_found')).toBe(404);
    expect(failedStatus('deadline')).toBe(504);
    expect(failedStatus('internal')).toBe(502);
    expect(failedStatus('sd_error')).toBe(502);
    expect(failedStatus(undefined)).toBe(502);
  });
});

describe('offloading images from an answer', () => {
  it('recognises base64 images (and data URLs) by their bytes, never plain strings', () => {
    expect(imageBase64(png)).toBe(png);
    expect(imageBase64(`data:image/jpeg;base64,${jpeg}`)).toBe(jpeg);
    expect(imageBase64('Euler a')).toBeUndefined();
    expect(imageBase64('A'.repeat(200))).toBeUndefined();
    expect(imageBase64(png.slice(0, 40))).toBeUndefined();
  });

  it('replaces images at any depth with keys numbered in document order', async () => {
    const saved: [number, string][] = [];
    const { body, keys } = await offloadImages(
      { images: [png, jpeg], info: '{"seed": 1}', image: png, nested: { detected: [{ map: jpeg, label: 'x' }] } },
      async (base64, n) => {
        saved.push([n, base64.slice(0, 8)]);
        return `images/u/t_${n}.png`;
      },
    );
    expect(keys).toEqual(['images/u/t_1.png', 'images/u/t_2.png', 'images/u/t_3.png', 'images/u/t_4.png']);
    expect(body).toEqual({
      images: ['images/u/t_1.png', 'images/u/t_2.png'],
      info: '{"seed": 1}',
      image: 'images/u/t_3.png',
      nested: { detected: [{ map: 'images/u/t_4.png', label: 'x' }] },
    });
    expect(saved.map(([n]) => n)).toEqual([1, 2, 3, 4]);
  });

  it('the agent stores each image as PNG under the task keys and records SD status and rewritten body', async () => {
    const answer = { images: [jpeg], parameters: {}, info: 'ok' };
    const { events } = await runAgent({ status: 200, json: answer }, { method: 'POST', path: '/controlnet/detect' });
    const result = events.at(-1) as ResultEvent;
    expect(result.type).toBe('result');
    expect(result.images).toEqual(['images/alice/task1_1.png']);
    expect(JSON.parse(result.info)).toEqual({
      status: 200,
      body: { images: ['images/alice/task1_1.png'], parameters: {}, info: 'ok' },
    });
    expect(result.parameters).toEqual({ method: 'POST', path: '/controlnet/detect' });
    const stored = readFileSync(join(dir, 'images', 'alice', 'task1_1.png'));
    expect(stored.subarray(1, 4).toString()).toBe('PNG');
    expect((await sharp(stored).metadata()).width).toBe(24);
  });

  it('keeps a 4xx as the recorded answer, fails a 5xx as retryable, and reads a stored body back', async () => {
    const rejected = await runAgent(
      { status: 422, json: { detail: 'nope' } },
      { method: 'POST', path: '/sdapi/v1/options', body: { x: 1 } },
    );
    expect(JSON.parse((rejected.events.at(-1) as ResultEvent).info)).toEqual({ status: 422, body: { detail: 'nope' } });
    expect(rejected.sent?.toString()).toBe('{"x":1}');

    const broken = await runAgent({ status: 500, json: { error: 'RuntimeError', errors: 'CUDA out of memory' } });
    expect(broken.events.at(-1)).toMatchObject({ type: 'error', kind: 'sd_error', status: 500, retryable: true });
    expect((broken.events.at(-1) as ErrorEvent).message).toMatch(/CUDA out of memory/);

    const big = { blob: 'x'.repeat(INLINE_BODY_BYTES + 10) };
    const params = await storeLargeBody(
      { method: 'POST', path: '/sdapi/v1/png-info', body: big },
      { store, user: 'alice', taskId: 'task1' },
    );
    expect(params.body).toBeUndefined();
    expect(params.bodyKey).toMatch(/^inputs\/alice\/task1\/[0-9a-f]{8}-body\.json$/);
    const small = await storeLargeBody(
      { method: 'POST', path: '/x', body: { a: 1 } },
      { store, user: 'a', taskId: 't' },
    );
    expect(small).toEqual({ method: 'POST', path: '/x', body: { a: 1 } });
    const fromStore = await runAgent({ status: 200, json: {} }, params);
    expect(JSON.parse(fromStore.sent!.toString())).toEqual(big);
    const foreign = await runAgent({ status: 200, json: {} }, { ...params, bodyKey: 'inputs/bob/t/x-body.json' });
    expect(foreign.events.at(-1)).toMatchObject({ type: 'error', kind: 'bad_input', retryable: false });
  });
});

/** Runs one passthrough invoke for user alice, task task1, against an SD that answers `answer`. */
async function runAgent(
  answer: { status: number; json: unknown },
  params: Record<string, unknown> = { method: 'POST', path: '/sdapi/v1/png-info' },
) {
  let sent: Buffer | undefined;
  const sd = {
    async passthrough(_method: string, _path: string, _type: string | undefined, body: Buffer | undefined) {
      sent = body;
      const result: PassthroughResult = {
        status: answer.status,
        contentType: 'application/json',
        body: Buffer.from(JSON.stringify(answer.json)),
      };
      return result;
    },
    async progress() {
      return { progress: 0, eta_relative: 0, state: {}, current_image: null };
    },
    async interrupt() {},
  } as unknown as SdClient;
  const runner = new PassthroughRunner({
    sd,
    store: async () => store,
    ensureCheckpoint: async () => {},
    model: 'm.safetensors',
    logger: pino({ level: 'silent' }),
  });
  const events: AgentEvent[] = [];
  const request = { taskId: 'task1', user: 'alice', kind: 'passthrough', model: 'm.safetensors', params };
  await runner.run(request, (e) => events.push(e), new AbortController().signal);
  return { events, sent };
}
