import { A1111_SELECTABLE_SCRIPTS } from '../../a1111/scripts.js';
import { apiError } from '../errors.js';
import type { Planner, ScriptInput, ScriptPlan } from './common.js';
import { img2imgAlternativeTest, loopback, outpaintingMk2 } from './img2img.js';
import { promptMatrix, promptsFromFile } from './prompts.js';
import { poorMansOutpainting, sdUpscale } from './tiles.js';
import { xyzPlot } from './xyz.js';

export type { ScriptPlan, ScriptRunContext } from './common.js';

// The scripts script_name selects, run the way A1111 1.10.1's scripts/*.py run them: each is planned before the
// job queues (its arguments checked, its passes counted) and then run holding the lock, making its images through
// A1111's process_images once per pass, so timing, progress and interrupt work as for any job. Image counts and
// sizes are A1111's; grids are plain (no label text), and tiles are pasted without A1111's seam blending.

const PLANNERS: Record<string, Planner> = {
  'img2img alternative test': img2imgAlternativeTest,
  Loopback: loopback,
  'Outpainting mk2': outpaintingMk2,
  "Poor man's outpainting": poorMansOutpainting,
  'Prompt matrix': promptMatrix,
  'Prompts from file or textbox': promptsFromFile,
  'SD upscale': sdUpscale,
  'X/Y/Z plot': xyzPlot,
};

/**
 * The script named by script_name, planned. As A1111, the title matches case-insensitively among the tab's
 * selectable scripts, and any other name is a 422. Missing script_args take the script's defaults (A1111 would
 * shift the next script's arguments into their places).
 */
export function planScript(input: Omit<ScriptInput, 'args'>): ScriptPlan {
  const { script_name: name, script_args: args } = input.job.request;
  const wanted = String(name).toLowerCase();
  const script = A1111_SELECTABLE_SCRIPTS.find(
    (s) => s.tabs.includes(input.job.kind) && s.title.toLowerCase() === wanted,
  );
  if (!script) throw apiError(422, `Script '${name}' not found`);
  const padded = [...args, ...script.defaults.slice(args.length)];
  return { title: script.title, ...PLANNERS[script.title]({ ...input, args: padded }) };
}
