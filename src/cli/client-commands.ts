import type { Command } from 'commander';
import { registerBenchCommand } from './bench/command.js';
import { registerFunctionCommands, registerModelCommands } from './client/catalog.js';
import { registerOptionsCommands } from './client/function-admin.js';
import { registerGenerationCommands } from './client/generate.js';
import { registerTaskCommands } from './client/tasks.js';

/** Client commands (txt2img, img2img, upscale, tasks, models, functions, options, bench) against a running API. */
export function registerClientCommands(program: Command): void {
  registerGenerationCommands(program);
  registerTaskCommands(program);
  registerModelCommands(program);
  registerFunctionCommands(program);
  registerOptionsCommands(program);
  registerBenchCommand(program);
}
