import { openAsBlob } from 'node:fs';
import { access } from 'node:fs/promises';
import { basename } from 'node:path';
import { type Command, Option } from 'commander';
import { networkReason } from '../../http-util.js';
import { MODEL_TYPES } from '../../records.js';
import { ApiError, CliError, ConnectionError, type ModelView } from './api.js';
import { action, clientCommand, clientFor, type GlobalOptions } from './options.js';
import { fields, printJson, printLines } from './output.js';

// sdflow models register | update | delete (admin). A local file is uploaded as a multipart form streamed from
// disk (a file-backed Blob), so a checkpoint of many gigabytes is never read into memory.

interface RegistrationAnswer extends ModelView {
  workflowId?: string;
}

interface ChangeOptions extends GlobalOptions {
  type?: string;
  file?: string;
  ossPath?: string;
  wait?: boolean;
}

const typeOption = () => new Option('--type <type>', 'the model type').choices(MODEL_TYPES);

/** A model's fields, one per line: the registry's, plus the registration's workflow when there is one. */
export function printModel(m: ModelView & { workflowId?: string }): void {
  printLines(
    fields([
      ['name', m.name],
      ['type', m.type],
      ['status', m.status],
      ['message', m.message],
      ['ossPath', m.ossPath],
      ['etag', m.etag],
      ['workflow', m.workflowId],
      ['registered', m.registeredTime],
      ['modified', m.lastModificationTime],
    ]),
  );
}

/** Sends a multipart form with `fields` first and the file last, streamed from disk. */
async function sendForm(
  o: GlobalOptions,
  method: string,
  path: string,
  formFields: Record<string, string>,
  file: string,
): Promise<RegistrationAnswer> {
  try {
    await access(file);
  } catch {
    throw new CliError(`cannot read ${file}`);
  }
  const form = new FormData();
  for (const [name, value] of Object.entries(formFields)) form.append(name, value);
  form.append('file', await openAsBlob(file), basename(file));
  const base = o.url.replace(/\/+$/, '');
  let res: Response;
  try {
    res = await fetch(base + path, {
      method,
      body: form,
      headers: { accept: 'application/json', ...(o.key ? { authorization: `Bearer ${o.key}` } : {}) },
    });
  } catch (err) {
    throw new ConnectionError(`upload to ${base} failed: ${networkReason(err)}`);
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the text is the message.
  }
  if (res.status >= 400) {
    const message = (body as { message?: unknown } | null)?.message;
    throw new ApiError(
      res.status,
      typeof message === 'string' ? message : `${method} ${path}: HTTP ${res.status}`,
      body,
    );
  }
  return body as RegistrationAnswer;
}

/** JSON or upload, and `?wait=true` when asked: a waited-for registration has no client-side timeout. */
async function change(o: ChangeOptions, method: 'POST' | 'PUT', path: string, json: Record<string, unknown>) {
  const target = o.wait ? `${path}?wait=true` : path;
  if (o.file) {
    const formFields = Object.fromEntries(
      Object.entries(json).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    );
    return sendForm(o, method, target, formFields, o.file);
  }
  const answer = await clientFor(o).call<RegistrationAnswer>(method, target, {
    body: { ...json, ...(o.ossPath ? { ossPath: o.ossPath } : {}) },
    timeoutMs: o.wait ? null : undefined,
  });
  return answer.body;
}

function report(o: ChangeOptions, m: RegistrationAnswer): number {
  if (o.json) printJson(m);
  else printModel(m);
  return 0;
}

function exclusiveSource(o: ChangeOptions): void {
  if (o.file && o.ossPath) throw new CliError('give either --file or --oss-path, not both', 2);
}

export function registerModelAdminCommands(models: Command): void {
  clientCommand(
    models
      .command('register')
      .description('register a model: upload a local file (--file) or name an object in the store (--oss-path)'),
  )
    .argument('<name>', 'the model file name, e.g. my-lora.safetensors')
    .addOption(typeOption().makeOptionMandatory())
    .option('--file <path>', 'a local model file to upload')
    .option('--oss-path <key>', 'the object key of a file already in the store')
    .option('--wait', 'wait until the model is loaded (or failed)')
    .action(
      action(async (name: string, o: ChangeOptions) => {
        exclusiveSource(o);
        if (!o.file && !o.ossPath) throw new CliError('give --file <path> or --oss-path <key>', 2);
        return report(o, await change(o, 'POST', '/models', { type: o.type, name }));
      }),
    );

  clientCommand(
    models
      .command('update')
      .description('update a model: a new file or type re-registers it and recycles the instances using it'),
  )
    .argument('<name>')
    .addOption(typeOption())
    .option('--file <path>', 'a new local file to upload')
    .option('--oss-path <key>', 'a new file, already in the store')
    .option('--wait', 'wait until the model is loaded again (or failed)')
    .action(
      action(async (name: string, o: ChangeOptions) => {
        exclusiveSource(o);
        const path = `/models/${encodeURIComponent(name)}`;
        return report(o, await change(o, 'PUT', path, o.type ? { type: o.type } : {}));
      }),
    );

  clientCommand(models.command('delete').description('delete a model: new requests for it get 404'))
    .argument('<name>')
    .action(
      action(async (name: string, o: GlobalOptions) => {
        const answer = await clientFor(o).call<ModelView>('DELETE', `/models/${encodeURIComponent(name)}`);
        if (o.json) printJson(answer.body);
        else printLines(`deleted ${answer.body.name}`);
        return 0;
      }),
    );
}
