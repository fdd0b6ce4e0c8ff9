import type { Command } from 'commander';

/** Client commands (txt2img, img2img, upscale, tasks, models, functions, bench) against a running API. */
export function registerClientCommands(_program: Command): void {}
