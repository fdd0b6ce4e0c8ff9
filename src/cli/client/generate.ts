import { readFile, stat } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import type { ExtraImagesRequest, Img2ImgRequest, Txt2ImgRequest } from '../../api/schemas.js';
import { CliError, type GenerationBody, type GenerationKind, type SdflowClient, type SubmitAnswer } from './api.js';
import { followTask } from './follow.js';
import {
  action,
  clientCommand,
  clientFor,
  collectField,
  collectList,
  type GlobalOptions,
  parseInteger,
  parseNumber,
} from './options.js';
import { printJson, printLines } from './output.js';
import { exitCodeFor, reportResult } from './results.js';

// sdflow txt2img / img2img / upscale: submit async, follow the task with a progress bar, then download the images.

interface TaskOptions extends GlobalOptions {
  set?: Record<string, unknown>;
  out: string;
  download: boolean;
  async?: boolean;
  taskId?: string;
}

interface SdOptions extends TaskOptions {
  model?: string;
  vae?: string;
  negative?: string;
  steps?: number;
  width?: number;
  height?: number;
  seed?: number;
  batch?: number;
  iter?: number;
  cfg?: number;
  sampler?: string;
}

interface Img2ImgOptions extends SdOptions {
  init: string[];
  mask?: string;
  denoise?: number;
}

interface UpscaleOptions extends TaskOptions {
  scale: number;
  upscaler: string;
  model?: string;
}

/** Drops the options that were not given, so the API's (A1111's) defaults apply. */
function given<T extends Record<string, unknown>>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function addTaskOptions(cmd: Command): Command {
  return cmd
    .option(
      '--set <key=value>',
      'an extra A1111 field, value parsed as JSON (else a string); repeatable; named options win',
      collectField,
    )
    .option('--out <dir>', 'directory to save the images in, as <taskId>_<n>.png', '.')
    .option('--no-download', 'print the object keys and signed URLs instead of downloading')
    .option('--async', 'submit and print the taskId without waiting')
    .option('--task-id <id>', 'choose the taskId (sent in the taskId header)');
}

function addSdOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--model <name>',
        'the checkpoint to render with (default: yours, the sd_model_checkpoint of your A1111 options, else the default)',
      ).env('SDFLOW_MODEL'),
    )
    .option('--vae <name>', 'the VAE to use (sd_vae)')
    .option('--negative <prompt>', 'negative prompt')
    .option('--steps <n>', 'sampling steps', parseNumber)
    .option('--width <px>', 'image width', parseNumber)
    .option('--height <px>', 'image height', parseNumber)
    .option('--seed <n>', 'seed; -1 picks one', parseInteger)
    .option('--batch <n>', 'images per batch (batch_size)', parseNumber)
    .option('--iter <n>', 'batches (n_iter)', parseNumber)
    .option('--cfg <x>', 'CFG scale', parseNumber)
    .option('--sampler <name>', 'sampler name');
}

/**
 * The checkpoint of a request without --model: the caller's, as `GET /sdapi/v1/options` names it (the default's
 * when they chose none). Platform routes take a name, so the CLI resolves it and sends it.
 */
async function callersCheckpoint(client: SdflowClient): Promise<string> {
  const { body } = await client.call<Record<string, unknown>>('GET', '/sdapi/v1/options');
  const title = body.sd_model_checkpoint;
  if (typeof title !== 'string' || !title.trim()) {
    throw new CliError('no checkpoint to render with: none is loaded and you chose none; pass --model');
  }
  // A1111's title is the name and ` [short hash]`.
  return title.replace(/\s*\[[0-9a-fA-F]{8,64}\]$/, '');
}

function sdFields(prompt: string, o: SdOptions, model: string): Txt2ImgRequest {
  return {
    ...o.set,
    ...given({
      sd_vae: o.vae,
      negative_prompt: o.negative,
      steps: o.steps,
      width: o.width,
      height: o.height,
      seed: o.seed,
      batch_size: o.batch,
      n_iter: o.iter,
      cfg_scale: o.cfg,
      sampler_name: o.sampler,
    }),
    stable_diffusion_model: model,
    prompt,
  };
}

const looksLikePath = (value: string) => /^(\.{1,2}[\\/]|[\\/~])/.test(value) || /^[A-Za-z]:[\\/]/.test(value);

/** A local file is sent as base64; anything else is passed on as an object key (or base64 the caller made). */
async function imageInput(value: string, option: string): Promise<string> {
  const info = await stat(value).catch(() => undefined);
  if (info?.isFile()) return (await readFile(value)).toString('base64');
  if (info) throw new CliError(`${option}: ${value} is not a file`);
  if (looksLikePath(value)) throw new CliError(`${option}: no such file ${value}`);
  return value;
}

/**
 * After an async submit: prints the new taskId (`--async`), or follows the task with a progress bar (the first
 * Ctrl-C cancels it) and reports its outcome, downloading the images into `out`.
 */
export async function printOrFollow(
  client: SdflowClient,
  submitted: SubmitAnswer,
  o: GlobalOptions & { async?: boolean; out?: string },
  started: number,
): Promise<number> {
  if (o.async) {
    if (o.json) printJson(submitted);
    else printLines(submitted.taskId);
    return 0;
  }
  const { result, interrupted } = await followTask(client, submitted.taskId, {
    json: o.json === true,
    interruptCancels: true,
  });
  await reportResult(client, result, { json: o.json, out: o.out, elapsedMs: performance.now() - started });
  return exitCodeFor(result, interrupted);
}

async function runTask(
  kind: GenerationKind,
  body: (client: SdflowClient) => Promise<GenerationBody>,
  o: TaskOptions,
): Promise<number> {
  const client = clientFor(o);
  const started = performance.now();
  const { body: submitted } = await client.submit(kind, await body(client), { async: true, taskId: o.taskId });
  return printOrFollow(client, submitted, { ...o, out: o.download ? o.out : undefined }, started);
}

/** A txt2img body, with the checkpoint --model names or the caller's. */
async function txt2imgBody(client: SdflowClient, prompt: string, o: SdOptions): Promise<Txt2ImgRequest> {
  return sdFields(prompt, o, o.model ?? (await callersCheckpoint(client)));
}

export function registerGenerationCommands(program: Command): void {
  addTaskOptions(
    addSdOptions(
      clientCommand(
        program
          .command('txt2img')
          .description('generate images from a prompt, with a progress bar, and download them')
          .argument('<prompt>', 'the prompt'),
      ),
    ),
  )
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  sdflow txt2img "a lighthouse at dusk" --model sdflow-demo-v1.safetensors --steps 20 --out ./images\n' +
        '  sdflow txt2img "a lighthouse at dusk"   (your checkpoint, set with POST /sdapi/v1/options, else the default)\n' +
        '  sdflow txt2img "a fox" --model m.safetensors --set restore_faces=true --set styles=\'["film"]\' --async',
    )
    .action(
      action(async (prompt: string, o: SdOptions) => runTask('txt2img', (client) => txt2imgBody(client, prompt, o), o)),
    );

  addTaskOptions(
    addSdOptions(
      clientCommand(
        program
          .command('img2img')
          .description('generate images from a prompt and init images (local files or object keys)')
          .argument('<prompt>', 'the prompt'),
      ),
    ),
  )
    .requiredOption(
      '--init <file|key>',
      'an init image: a local file (sent as base64) or an object key; repeatable',
      collectList,
    )
    .option('--mask <file|key>', 'an inpainting mask: a local file or an object key')
    .option('--denoise <x>', 'denoising strength, 0..1', parseNumber)
    .action(
      action(async (prompt: string, o: Img2ImgOptions) => {
        const init = await Promise.all(o.init.map((v) => imageInput(v, '--init')));
        const mask = o.mask === undefined ? undefined : await imageInput(o.mask, '--mask');
        return runTask(
          'img2img',
          async (client): Promise<Img2ImgRequest> => ({
            ...(await txt2imgBody(client, prompt, o)),
            init_images: init,
            ...given({ denoising_strength: o.denoise, mask }),
          }),
          o,
        );
      }),
    );

  addTaskOptions(
    clientCommand(
      program
        .command('upscale')
        .description('upscale one image (a local file or an object key) with an A1111 upscaler')
        .argument('<image>', 'a local file (sent as base64) or an object key'),
    ),
  )
    .option('--scale <x>', 'upscaling factor', parseNumber, 2)
    .option('--upscaler <name>', 'A1111 upscaler (upscaler_1)', 'Lanczos')
    .option('--model <name>', "the checkpoint whose function runs the upscale (default: the API's default)")
    .action(
      action(async (image: string, o: UpscaleOptions) => {
        const body: ExtraImagesRequest = {
          ...o.set,
          image: await imageInput(image, 'image'),
          resize_mode: 0,
          upscaling_resize: o.scale,
          upscaler_1: o.upscaler,
          ...given({ stable_diffusion_model: o.model }),
        };
        return runTask('extra_images', async () => body, o);
      }),
    );
}
