import type { Command } from 'commander';
import { registerFunctionAdminCommands } from './function-admin.js';
import { printModel, registerModelAdminCommands } from './model-admin.js';
import { action, clientCommand, clientFor, type GlobalOptions, usageExit } from './options.js';
import { printJson, printLines, table } from './output.js';

// sdflow models list | get, and sdflow functions list. The admin subcommands attach to the `models` and
// `functions` commands these return (models register | update | delete: model-admin.ts; functions update | delete |
// restart: function-admin.ts).

interface ModelListOptions extends GlobalOptions {
  type?: string;
  status?: string;
}

export function registerModelCommands(program: Command): Command {
  const models = usageExit(program.command('models').description('the model registry: checkpoints, VAEs, LoRAs, …'));

  clientCommand(models.command('list').description('list registered models'))
    .option('--type <type>', 'only this type: stableDiffusion, sdVae, lora or controlNet')
    .option('--status <status>', 'only this status: registering, loading, loaded, failed, unloaded or deleted')
    .action(
      action(async (o: ModelListOptions) => {
        const list = await clientFor(o).models({ type: o.type, status: o.status });
        if (o.json) printJson(list);
        else if (list.length === 0) printLines('no models');
        else {
          printLines(
            table(
              ['NAME', 'TYPE', 'STATUS', 'MODIFIED'],
              list.map((m) => [
                m.name,
                m.type,
                m.message ? `${m.status} (${m.message})` : m.status,
                m.lastModificationTime,
              ]),
            ),
          );
        }
        return 0;
      }),
    );

  clientCommand(models.command('get').description('show one model'))
    .argument('<name>')
    .action(
      action(async (name: string, o: GlobalOptions) => {
        const m = await clientFor(o).model(name);
        if (o.json) printJson(m);
        else printModel(m);
        return 0;
      }),
    );

  registerModelAdminCommands(models);
  return models;
}

export function registerFunctionCommands(program: Command): Command {
  const functions = usageExit(program.command('functions').description('the GPU functions, one per checkpoint'));

  clientCommand(functions.command('list').description('list the functions and the checkpoint each serves')).action(
    action(async (o: GlobalOptions) => {
      const answer = await clientFor(o).functions();
      if (o.json) printJson(answer);
      else if (answer.functions.length === 0) printLines("no functions yet: a checkpoint's first task creates one");
      else {
        printLines(
          table(
            ['FUNCTION', 'MODEL'],
            answer.functions.map((f) => [f.functionName, f.model]),
          ),
        );
      }
      return 0;
    }),
  );

  registerFunctionAdminCommands(functions);
  return functions;
}
