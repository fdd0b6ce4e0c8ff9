import { readFile } from 'node:fs/promises';
import { type Command, InvalidArgumentError } from 'commander';
import { CliError } from './api.js';
import {
  action,
  clientCommand,
  clientFor,
  collectField,
  collectList,
  type GlobalOptions,
  parseInteger,
  parseNumber,
  parsePositiveInteger,
  usageExit,
} from './options.js';
import { fields, printJson, printLines, table } from './output.js';

// sdflow functions update | delete | restart | options (admin), attached to the `functions` command, and sdflow
// options get | set: the caller's WebUI settings, applied to their generations as override_settings.

interface BatchAnswer {
  status: string;
  failFuncList?: string[];
  errMsg?: string;
}

interface DeleteAnswer {
  status: string;
  fails: { functionName: string; message: string }[];
}

interface FunctionOptionsAnswer {
  functionName: string;
  model: string;
  options: Record<string, unknown>;
}

interface OptionsAnswer {
  version: number;
  data: Record<string, unknown>;
}

interface UpdateOptions extends GlobalOptions {
  model?: string[];
  function?: string[];
  env?: Record<string, string>;
  extraArgs?: string;
  timeout?: number;
  maxInstances?: number;
  keepAlive?: number;
  minInstances?: number;
  prewarmQueueDepth?: number;
  image?: string;
  cpu?: number;
  memory?: number;
  gpuMemory?: number;
  instanceType?: string;
  set?: Record<string, unknown>;
}

/** `--env NAME=value`, repeatable; the value is kept as a string. */
function collectEnv(entry: string, previous: Record<string, string> | undefined): Record<string, string> {
  const eq = entry.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError('expected NAME=value');
  return { ...previous, [entry.slice(0, eq).trim()]: entry.slice(eq + 1) };
}

/** The batch update body from the flags; `--set field=JSON` carries the rest (vpcConfig, nasConfig, …). */
function updateBody(o: UpdateOptions): Record<string, unknown> {
  const body: Record<string, unknown> = {
    ...o.set,
    models: o.model,
    functions: o.function,
    env: o.env,
    extraArgs: o.extraArgs,
    timeout: o.timeout,
    maxInstances: o.maxInstances,
    keepAliveS: o.keepAlive,
    minInstances: o.minInstances,
    prewarmQueueDepth: o.prewarmQueueDepth,
    image: o.image,
    cpu: o.cpu,
    memorySize: o.memory,
    gpuMemorySize: o.gpuMemory,
    instanceType: o.instanceType,
  };
  return Object.fromEntries(Object.entries(body).filter(([, v]) => v !== undefined));
}

export function registerFunctionAdminCommands(functions: Command): void {
  clientCommand(
    functions
      .command('update')
      .description('apply resources to the functions of some checkpoints, some functions, or all (admin)'),
  )
    .option('--model <name>', 'a checkpoint whose function to update (repeatable)', collectList)
    .option('--function <name>', 'a function to update (repeatable); with neither, all functions', collectList)
    .option('--env <NAME=value>', 'an environment variable for the instances (repeatable)', collectEnv)
    .option('--extra-args <args>', 'WebUI launch arguments')
    .option('--timeout <s>', 'seconds one request may run on an instance', parsePositiveInteger)
    .option('--max-instances <n>', 'instances per function, at most', parsePositiveInteger)
    .option('--keep-alive <s>', 'seconds an idle instance is kept', parseNumber)
    .option('--min-instances <n>', 'instances kept started (FC: provisioned), at most maxInstances', parseInteger)
    .option('--prewarm-queue-depth <n>', 'tasks waiting for the checkpoint that start a pre-warm', parsePositiveInteger)
    .option('--image <image>', 'container image (recorded for the cloud runtime)')
    .option('--cpu <n>', 'vCPUs (recorded)', parseNumber)
    .option('--memory <MB>', 'memory in MB (recorded)', parsePositiveInteger)
    .option('--gpu-memory <MB>', 'GPU memory in MB (recorded)', parsePositiveInteger)
    .option('--instance-type <type>', 'GPU instance type (recorded)')
    .option('--set <field=JSON>', 'any other resource field, e.g. nasConfig={...} (repeatable)', collectField)
    .action(
      action(async (o: UpdateOptions) => {
        const body = updateBody(o);
        const answer = await clientFor(o).call<BatchAnswer>('POST', '/batch_update_sd_resource', {
          body,
          accept: [404, 500],
        });
        if (o.json) printJson(answer.body);
        else if (answer.body.status === 'success') printLines('updated');
        else printLines(answer.body.errMsg ?? `failed: ${(answer.body.failFuncList ?? []).join(', ')}`);
        return answer.body.status === 'success' ? 0 : 1;
      }),
    );

  clientCommand(functions.command('delete').description('delete functions and their records (admin)'))
    .argument('<names...>', 'function names, or checkpoint names whose functions to delete')
    .action(
      action(async (names: string[], o: GlobalOptions) => {
        const answer = await clientFor(o).call<DeleteAnswer>('POST', '/del/sd/functions', {
          body: { functions: names },
          accept: [404, 500],
        });
        if (o.json) printJson(answer.body);
        else if (answer.body.fails.length === 0) printLines(`deleted ${names.length}`);
        else {
          printLines(
            table(
              ['FAILED', 'WHY'],
              answer.body.fails.map((f) => [f.functionName, f.message]),
            ),
          );
        }
        return answer.body.fails.length === 0 ? 0 : 1;
      }),
    );

  clientCommand(functions.command('restart').description("recycle every function's instances (admin)")).action(
    action(async (o: GlobalOptions) => {
      const answer = await clientFor(o).call<{ status: string }>('POST', '/restart');
      if (o.json) printJson(answer.body);
      else printLines('restarting: idle instances stop now, busy ones after their request');
      return 0;
    }),
  );

  clientCommand(
    functions
      .command('options')
      .description("show one function's WebUI settings, or merge --set ones into them (admin); null resets one"),
  )
    .argument('<name>', 'a function name, or the checkpoint name of its function')
    .option('--set <key=value>', 'a WebUI setting; the value is JSON when it parses (repeatable)', collectField)
    .action(
      action(async (name: string, o: GlobalOptions & { set?: Record<string, unknown> }) => {
        const path = `/functions/${encodeURIComponent(name)}/options`;
        const client = clientFor(o);
        const answer = o.set
          ? await client.call<FunctionOptionsAnswer>('POST', path, { body: o.set })
          : await client.call<FunctionOptionsAnswer>('GET', path);
        if (o.json) printJson(answer.body);
        else
          printLines(
            fields([
              ['function', answer.body.functionName],
              ['model', answer.body.model],
              ['options', JSON.stringify(answer.body.options, null, 2).split('\n')],
            ]),
          );
        return 0;
      }),
    );
}

function printOptions(o: GlobalOptions, answer: OptionsAnswer): void {
  if (o.json) printJson(answer);
  else
    printLines(
      fields([
        ['version', String(answer.version)],
        ['data', JSON.stringify(answer.data, null, 2).split('\n')],
      ]),
    );
}

export function registerOptionsCommands(program: Command): void {
  const options = usageExit(
    program.command('options').description('your WebUI settings, applied to your generations as override_settings'),
  );

  clientCommand(options.command('get').description('show your latest options, or one version'))
    .argument('[version]', 'a version number', parsePositiveInteger)
    .action(
      action(async (version: number | undefined, o: GlobalOptions) => {
        const path = version === undefined ? '/options' : `/options/${version}`;
        printOptions(o, (await clientFor(o).call<OptionsAnswer>('GET', path)).body);
        return 0;
      }),
    );

  clientCommand(options.command('set').description('store a new version of your options'))
    .option('--set <key=value>', 'a WebUI setting; the value is JSON when it parses (repeatable)', collectField)
    .option('--file <json>', 'a JSON file holding the settings object (--set entries are applied on top)')
    .action(
      action(async (o: GlobalOptions & { set?: Record<string, unknown>; file?: string }) => {
        let data: Record<string, unknown> = {};
        if (o.file) {
          try {
            data = JSON.parse(await readFile(o.file, 'utf8')) as Record<string, unknown>;
          } catch (err) {
            throw new CliError(`cannot read options from ${o.file}: ${(err as Error).message}`, 2);
          }
        }
        data = { ...data, ...o.set };
        if (Object.keys(data).length === 0) throw new CliError('nothing to store: give --set key=value or --file', 2);
        printOptions(o, (await clientFor(o).call<OptionsAnswer>('POST', '/options', { body: { data } })).body);
        return 0;
      }),
    );
}
