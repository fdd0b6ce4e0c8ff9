import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { call, type Stack, startStack } from '../helpers/stack.js';

// A model upload is streamed, never held whole in memory: a 1 GiB LoRA goes through the API while its
// resident memory is sampled every 100 ms, and the stored file's etag is the hash of exactly what was sent.

const DATA_BYTES = 1024 ** 3;
const CHUNK = Buffer.alloc(1024 * 1024);
const RSS_BOUND_MB = 300;
const NAME = 'huge.safetensors';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack();
});

afterAll(async () => {
  await stack?.stop();
});

/** The API process's resident set size in MB, from /proc. */
function rssMb(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}

const HEADER = (() => {
  const json = JSON.stringify({ w: { dtype: 'U8', shape: [DATA_BYTES], data_offsets: [0, DATA_BYTES] } });
  const padded = Buffer.from(json.padEnd(Math.ceil(json.length / 8) * 8, ' '));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(padded.length));
  return Buffer.concat([length, padded]);
})();
const FILE_BYTES = HEADER.length + DATA_BYTES;

/** A safetensors file's bytes, generated as they are sent: header, then one u8 tensor of zeros. */
function* modelFile(hash: ReturnType<typeof createHash>): Generator<Buffer> {
  hash.update(HEADER);
  yield HEADER;
  for (let sent = 0; sent < DATA_BYTES; sent += CHUNK.length) {
    hash.update(CHUNK);
    yield CHUNK;
  }
}

it('a 1 GiB upload keeps the API under the memory bound and stores exactly the bytes sent', async () => {
  const boundary = `sdflow-${randomBytes(8).toString('hex')}`;
  const field = (name: string, value: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const head = Buffer.from(
    `${field('type', 'lora')}${field('name', NAME)}--${boundary}\r\n` +
      `Content-Disposition: form-data; name="file"; filename="${NAME}"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const hash = createHash('sha256');
  function* body() {
    yield head;
    yield* modelFile(hash);
    yield tail;
  }

  const pid = stack.api.child.pid!;
  const baseline = rssMb(pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, 100);

  const started = performance.now();
  const answer = await new Promise<{ status: number; json: any }>((resolve, reject) => {
    const req = request(
      `${stack.url}/models`,
      { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString()) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    pipeline(Readable.from(body(), { objectMode: false }), req).catch(reject);
  });
  const seconds = (performance.now() - started) / 1000;
  clearInterval(sampler);
  peak = Math.max(peak, rssMb(pid));

  expect(answer.status, JSON.stringify(answer.json)).toBe(202);
  const sentMiB = FILE_BYTES / 1024 ** 2;
  console.log(
    `uploaded ${sentMiB.toFixed(0)} MiB in ${seconds.toFixed(1)} s (${(sentMiB / seconds).toFixed(0)} MiB/s); ` +
      `API RSS ${baseline.toFixed(0)} MB before, peak ${peak.toFixed(0)} MB`,
  );
  expect(peak).toBeLessThan(RSS_BOUND_MB);

  const until = Date.now() + 120_000;
  let model = answer.json;
  while (model.status === 'registering' || model.status === 'loading') {
    if (Date.now() > until) throw new Error(`still ${model.status}`);
    await new Promise((r) => setTimeout(r, 200));
    model = (await call(stack.url, 'GET', `/models/${NAME}`)).json;
  }
  expect(model).toMatchObject({ status: 'loaded', type: 'lora', etag: hash.digest('hex') });
  expect(statSync(join(stack.dataDir, 'objects', 'models', 'lora', NAME)).size).toBe(FILE_BYTES);
}, 300_000);
