import sharp from 'sharp';
import { hash32, seededRandom } from './random.js';

// The simulator's "diffusion": a cheap, deterministic picture. Soft coloured blobs over a gradient, whose palette
// comes from the prompt and checkpoint (the style) and whose layout comes from the seed (with the variation seed
// mixed in by its strength). An image whose sampling was cut short carries noise in proportion to the steps left.
// img2img blends the init image with the pattern by denoising strength. No claim is made that this resembles
// what a diffusion model would draw.

export interface PatternSpec {
  width: number;
  height: number;
  seed: number;
  subseed: number;
  subseedStrength: number;
  /** Hash of what sets the look: prompt, negative prompt, checkpoint, VAE. */
  style: number;
  /** Hash of the sampling settings (sampler, scheduler, steps, cfg…): they nudge the layout. */
  detail: number;
  cfgScale: number;
  /** Fraction of sampling done, 0..1: below 1 the picture is noisy. */
  done: number;
}

type Rgb = [number, number, number];

interface Blob {
  x: number;
  y: number;
  r: number;
  color: number;
  strength: number;
}

const BLOBS = 7;

function hsv(h: number, s: number, v: number): Rgb {
  const i = Math.floor(h * 6);
  const f = h * 6 - i;
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const table: Rgb[] = [
    [v, t, p],
    [q, v, p],
    [p, v, t],
    [p, q, v],
    [t, p, v],
    [v, p, q],
  ];
  const [r, g, b] = table[((i % 6) + 6) % 6];
  return [r * 255, g * 255, b * 255];
}

/** Four colours from the style hash; a higher CFG scale gives more saturated colours, as it tends to. */
function palette(style: number, cfgScale: number): Rgb[] {
  const rnd = seededRandom(style);
  const hue = rnd();
  const saturation = Math.min(0.9, Math.max(0.2, 0.3 + cfgScale / 25));
  const offsets = [0, 0.08 + rnd() * 0.1, 0.45 + rnd() * 0.1, 0.6 + rnd() * 0.15];
  return offsets.map((o, i) => hsv((hue + o) % 1, saturation * (0.7 + 0.3 * rnd()), 0.35 + 0.15 * i + rnd() * 0.15));
}

function layout(seed: number, detail: number): Blob[] {
  const rnd = seededRandom(hash32('layout', seed));
  const nudge = seededRandom(hash32('detail', detail, seed));
  return Array.from({ length: BLOBS }, (_, i) => ({
    x: rnd() + (nudge() - 0.5) * 0.04,
    y: rnd() + (nudge() - 0.5) * 0.04,
    r: 0.08 + rnd() * 0.3,
    color: (i + Math.floor(rnd() * 4)) % 4,
    strength: 0.45 + rnd() * 0.5,
  }));
}

const lerp = (a: number, b: number, t: number) => a + (b - a) * t;

function mixLayouts(a: Blob[], b: Blob[], t: number): Blob[] {
  if (t <= 0) return a;
  return a.map((blob, i) => ({
    x: lerp(blob.x, b[i].x, t),
    y: lerp(blob.y, b[i].y, t),
    r: lerp(blob.r, b[i].r, t),
    color: t < 0.5 ? blob.color : b[i].color,
    strength: lerp(blob.strength, b[i].strength, t),
  }));
}

/** A fast integer hash of a pixel index, for noise. */
function pixelNoise(i: number, salt: number): number {
  let h = (i ^ salt) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return ((h ^ (h >>> 16)) >>> 0) / 4294967296 - 0.5;
}

/** Renders the pattern as raw RGB (width × height × 3 bytes). */
export function renderPattern(spec: PatternSpec): Buffer {
  const { width, height } = spec;
  const colors = palette(spec.style, spec.cfgScale);
  const blobs = mixLayouts(layout(spec.seed, spec.detail), layout(spec.subseed, spec.detail), spec.subseedStrength);
  const angle = seededRandom(hash32('angle', spec.seed))() * Math.PI * 2;
  const [dx, dy] = [Math.cos(angle), Math.sin(angle)];
  const scale = Math.min(width, height);
  const noise = (1 - Math.min(Math.max(spec.done, 0), 1)) * 160 + 2;
  const salt = hash32('noise', spec.seed, spec.subseedStrength > 0 ? spec.subseed : '', spec.detail);
  const out = Buffer.allocUnsafe(width * height * 3);
  const [c0, c1] = colors;
  const px = blobs.map((b) => b.x * width);
  const py = blobs.map((b) => b.y * height);
  const inv = blobs.map((b) => 1 / (b.r * scale) ** 2);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const g = Math.min(Math.max(0.5 + ((x / width - 0.5) * dx + (y / height - 0.5) * dy), 0), 1);
      let r = lerp(c0[0], c1[0], g);
      let gr = lerp(c0[1], c1[1], g);
      let b = lerp(c0[2], c1[2], g);
      for (let k = 0; k < BLOBS; k++) {
        const ddx = x - px[k];
        const ddy = y - py[k];
        const f = 1 / (1 + (ddx * ddx + ddy * ddy) * inv[k]);
        const w = f * f * blobs[k].strength;
        const c = colors[blobs[k].color];
        r += (c[0] - r) * w;
        gr += (c[1] - gr) * w;
        b += (c[2] - b) * w;
      }
      const i = (y * width + x) * 3;
      const n = pixelNoise(y * width + x, salt) * noise;
      out[i] = Math.min(255, Math.max(0, r + n));
      out[i + 1] = Math.min(255, Math.max(0, gr + n));
      out[i + 2] = Math.min(255, Math.max(0, b + n));
    }
  }
  return out;
}

/**
 * img2img: init × (1 − strength) + pattern × strength, per pixel. With a mask (one byte per pixel, 255 = repaint),
 * pixels outside the mask keep the init image.
 */
export function blendWithInit(pattern: Buffer, init: Buffer, strength: number, mask?: Buffer): Buffer {
  const out = Buffer.allocUnsafe(pattern.length);
  for (let i = 0; i < pattern.length; i++) {
    const s = mask ? (strength * mask[Math.floor(i / 3)]) / 255 : strength;
    out[i] = Math.round(init[i] * (1 - s) + pattern[i] * s);
  }
  return out;
}

/** Blends two same-sized raw images: a × (1 − t) + b × t. */
export function blendRaw(a: Buffer, b: Buffer, t: number): Buffer {
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.round(a[i] * (1 - t) + b[i] * t);
  return out;
}

/** Encodes raw RGB as a PNG. */
export function encodePng(raw: Buffer, width: number, height: number): Promise<Buffer> {
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** A raw RGB image and its size. */
export interface RawImage {
  raw: Buffer;
  width: number;
  height: number;
}

/**
 * Lays images out in A1111's grid: rows = round(sqrt(n)) unless given, cols = ceil(n / rows), each cell the size
 * of the largest image (smaller ones centred), empty cells white (A1111's default grid_background_color).
 */
export function gridRaw(images: RawImage[], rows = Math.round(Math.sqrt(images.length))): RawImage {
  const rowCount = Math.max(1, Math.min(images.length, rows));
  const cols = Math.ceil(images.length / rowCount);
  const cellW = Math.max(...images.map((i) => i.width));
  const cellH = Math.max(...images.map((i) => i.height));
  const grid: RawImage = {
    raw: Buffer.alloc(cols * cellW * rowCount * cellH * 3, 255),
    width: cols * cellW,
    height: rowCount * cellH,
  };
  images.forEach((img, n) => {
    const x = (n % cols) * cellW + Math.floor((cellW - img.width) / 2);
    const y = Math.floor(n / cols) * cellH + Math.floor((cellH - img.height) / 2);
    pasteRaw(grid, img, x, y);
  });
  return grid;
}

/** `src` pasted onto `dst` (changed in place) with its top-left corner at x, y; what falls outside is dropped. */
export function pasteRaw(dst: RawImage, src: RawImage, x: number, y: number): RawImage {
  const x0 = Math.max(0, x);
  const x1 = Math.min(dst.width, x + src.width);
  if (x1 <= x0) return dst;
  for (let row = Math.max(0, y); row < Math.min(dst.height, y + src.height); row++) {
    const from = ((row - y) * src.width + (x0 - x)) * 3;
    src.raw.copy(dst.raw, (row * dst.width + x0) * 3, from, from + (x1 - x0) * 3);
  }
  return dst;
}

/** The width × height region at x, y of `src`, black where it lies outside (as PIL's crop). */
export function cropRaw(src: RawImage, x: number, y: number, width: number, height: number): RawImage {
  return pasteRaw({ raw: Buffer.alloc(width * height * 3), width, height }, src, -x, -y);
}

/** A lanczos resize to exactly width × height. */
export async function resizeRaw(src: RawImage, width: number, height: number): Promise<RawImage> {
  const raw = await sharp(src.raw, { raw: { width: src.width, height: src.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { raw, width, height };
}
