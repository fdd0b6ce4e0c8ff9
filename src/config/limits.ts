import { bytesOfMb, int, num } from './schemas.js';
import { group, setting } from './setting.js';

/** What one generation request may ask for: the API refuses more. */
export const limits = group({
  maxWidth: setting({ env: 'SDFLOW_MAX_WIDTH', schema: int(2048, 8), meaning: 'Largest width of a request.' }),
  maxHeight: setting({ env: 'SDFLOW_MAX_HEIGHT', schema: int(2048, 8), meaning: 'Largest height of a request.' }),
  maxSteps: setting({ env: 'SDFLOW_MAX_STEPS', schema: int(500, 1), meaning: 'Most sampling steps of a request.' }),
  maxImagesPerTask: setting({
    env: 'SDFLOW_MAX_IMAGES_PER_TASK',
    schema: int(16, 1),
    meaning: 'Most images of one task (batch_size x n_iter).',
  }),
  maxPromptChars: setting({
    env: 'SDFLOW_MAX_PROMPT_CHARS',
    schema: int(8000, 1),
    meaning: 'Longest prompt and negative prompt.',
  }),
  maxInputImages: setting({
    env: 'SDFLOW_MAX_INPUT_IMAGES',
    schema: int(8, 1),
    meaning: 'Most input images of one request.',
  }),
  maxInputImageBytes: setting({
    env: 'SDFLOW_MAX_INPUT_IMAGE_MB',
    schema: num(20, 0.001),
    meaning: 'Largest input image.',
    map: bytesOfMb,
  }),
  maxInputPixels: setting({
    env: 'SDFLOW_MAX_INPUT_PIXELS',
    schema: int(4096 * 4096, 1),
    meaning: 'Most pixels of an input image.',
  }),
});
