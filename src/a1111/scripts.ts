// The scripts of AUTOMATIC1111 stable-diffusion-webui v1.10.1 (commit 82a973c) as its API sees them, with the UI
// built (`--api`; with `--nowebui` A1111 never sets its scripts up and lists none). Data only.
//
// Sources, at that commit: modules/api/api.py (get_scripts_list, script_name_to_index), modules/scripts.py (load
// order, which scripts get a name), the built-in scripts/*.py, modules/processing_scripts/*.py and the built-in
// extensions' scripts, and scripts/xyz_grid.py's axis_options (with the hypertile extension's additions).

export type ScriptTab = 'txt2img' | 'img2img';

/**
 * GET /sdapi/v1/scripts: the name of every script of a tab that has a name, selectable and always-on alike, in
 * load order. A name is the lowercased title, set when the script's UI is made; hypertile has no UI and keeps its
 * class attribute "Hypertile"; the prompt comments script has neither and is not listed.
 */
export const A1111_SCRIPT_NAMES: Readonly<Record<ScriptTab, readonly string[]>> = {
  txt2img: [
    'prompt matrix',
    'prompts from file or textbox',
    'x/y/z plot',
    'extra options',
    'Hypertile',
    'refiner',
    'sampler',
    'seed',
  ],
  img2img: [
    'img2img alternative test',
    'loopback',
    'outpainting mk2',
    "poor man's outpainting",
    'prompt matrix',
    'prompts from file or textbox',
    'sd upscale',
    'x/y/z plot',
    'extra options',
    'Hypertile',
    'soft inpainting',
    'refiner',
    'sampler',
    'seed',
  ],
};

export interface SelectableScript {
  title: string;
  tabs: readonly ScriptTab[];
  /**
   * The values of the script's UI controls, in script_args order (what A1111 runs with when no script_args are
   * sent). Info texts shown in the UI take a place too; they are null here. Choices the UI passes as an index are
   * given as their index.
   */
  defaults: readonly unknown[];
}

/**
 * The scripts script_name can select (A1111 matches their titles case-insensitively). "Custom code" is left out:
 * it is hidden unless A1111 runs with --allow-code.
 */
export const A1111_SELECTABLE_SCRIPTS: readonly SelectableScript[] = [
  {
    title: 'img2img alternative test',
    tabs: ['img2img'],
    // info, override sampler, override prompt, original prompt, original negative prompt, override steps,
    // decode steps, override strength, decode CFG scale, randomness, sigma adjustment
    defaults: [null, true, true, '', '', true, 50, true, 1.0, 0.0, false],
  },
  // loops, final denoising strength, denoising curve, append interrogated prompt
  { title: 'Loopback', tabs: ['img2img'], defaults: [4, 0.5, 'Linear', 'None'] },
  {
    title: 'Outpainting mk2',
    tabs: ['img2img'],
    // info, pixels to expand, mask blur, directions, fall-off exponent, color variation
    defaults: [null, 128, 8, ['left', 'right', 'up', 'down'], 1.0, 0.05],
  },
  {
    title: "Poor man's outpainting",
    tabs: ['img2img'],
    // pixels to expand, mask blur, masked content (index), directions
    defaults: [128, 4, 0, ['left', 'right', 'up', 'down']],
  },
  {
    title: 'Prompt matrix',
    tabs: ['txt2img', 'img2img'],
    // put variable parts at start, different seed per picture, prompt type, joining char, grid margins
    defaults: [false, false, 'positive', 'comma', 0],
  },
  {
    title: 'Prompts from file or textbox',
    tabs: ['txt2img', 'img2img'],
    // iterate seed every line, same random seed for all lines, insert prompts at, list of prompt inputs
    defaults: [false, false, 'start', ''],
  },
  // info, tile overlap, upscaler (an index into GET /sdapi/v1/upscalers, or a name), scale factor
  { title: 'SD upscale', tabs: ['img2img'], defaults: [null, 64, 0, 2.0] },
  {
    title: 'X/Y/Z plot',
    tabs: ['txt2img', 'img2img'],
    // x type, x values, x values (dropdown), the same for y and z, draw legend, include sub images, include sub
    // grids, keep -1 for seeds, vary seeds for x, y, z, grid margins, use text inputs instead of dropdowns
    defaults: [1, '', [], 0, '', [], 0, '', [], true, false, false, false, false, false, false, 0, false],
  },
];

/**
 * How X/Y/Z plot reads an axis's values: as integers or floats (with "1-5", "1-5 (+2)" and "1-5 [3]" ranges), as
 * text, or as every ordering of the listed words. `choices`: the values come from the dropdown argument unless
 * "use text inputs" is set.
 */
export interface XyzAxis {
  label: string;
  type: 'int' | 'float' | 'str' | 'permutations';
  choices: boolean;
  /** Only on this tab; both when absent. */
  tab?: ScriptTab;
}

const axis = (label: string, type: XyzAxis['type'], choices = false, tab?: ScriptTab): XyzAxis => ({
  label,
  type,
  choices,
  tab,
});

const XYZ_AXES: readonly XyzAxis[] = [
  axis('Nothing', 'str'),
  axis('Seed', 'int'),
  axis('Var. seed', 'int'),
  axis('Var. strength', 'float'),
  axis('Steps', 'int'),
  axis('Hires steps', 'int', false, 'txt2img'),
  axis('CFG Scale', 'float'),
  axis('Image CFG Scale', 'float', false, 'img2img'),
  axis('Prompt S/R', 'str'),
  axis('Prompt order', 'permutations'),
  axis('Sampler', 'str', true, 'txt2img'),
  axis('Hires sampler', 'str', true, 'txt2img'),
  axis('Sampler', 'str', true, 'img2img'),
  axis('Checkpoint name', 'str', true),
  axis('Negative Guidance minimum sigma', 'float'),
  axis('Sigma Churn', 'float'),
  axis('Sigma min', 'float'),
  axis('Sigma max', 'float'),
  axis('Sigma noise', 'float'),
  axis('Schedule type', 'str', true),
  axis('Schedule min sigma', 'float'),
  axis('Schedule max sigma', 'float'),
  axis('Schedule rho', 'float'),
  axis('Beta schedule alpha', 'float'),
  axis('Beta schedule beta', 'float'),
  axis('Eta', 'float'),
  axis('Clip skip', 'int'),
  axis('Denoising', 'float'),
  axis('Initial noise multiplier', 'float'),
  axis('Extra noise', 'float'),
  axis('Hires upscaler', 'str', true, 'txt2img'),
  axis('Cond. Image Mask Weight', 'float', false, 'img2img'),
  axis('VAE', 'str', true),
  axis('Styles', 'str', true),
  axis('UniPC Order', 'int'),
  axis('Face restore', 'str'),
  axis('Token merging ratio', 'float'),
  axis('Token merging ratio high-res', 'float'),
  axis('Always discard next-to-last sigma', 'str', true),
  axis('SGM noise multiplier', 'str', true),
  axis('Refiner checkpoint', 'str', true),
  axis('Refiner switch at', 'float'),
  axis('RNG source', 'str', true),
  axis('FP8 mode', 'str', true),
  axis('Size', 'str'),
  // Added by the hypertile extension.
  axis('[Hypertile] Unet First pass Enabled', 'str', true),
  axis('[Hypertile] Unet Second pass Enabled', 'str', true),
  axis('[Hypertile] Unet Max Depth', 'int', true),
  axis('[Hypertile] Unet Max Tile Size', 'int'),
  axis('[Hypertile] Unet Swap Size', 'int'),
  axis('[Hypertile] VAE Enabled', 'str', true),
  axis('[Hypertile] VAE Max Depth', 'int', true),
  axis('[Hypertile] VAE Max Tile Size', 'int'),
  axis('[Hypertile] VAE Swap Size', 'int'),
];

/** The axis types of a tab, in the order x_type, y_type and z_type index them. */
export function xyzAxes(tab: ScriptTab): XyzAxis[] {
  return XYZ_AXES.filter((a) => a.tab === undefined || a.tab === tab);
}
