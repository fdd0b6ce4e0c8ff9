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

/** Lays images out in A1111's grid: rows = round(sqrt(n)), cols = ceil(n / rows). */
export function gridRaw(
  images: Buffer[],
  width: number,
  height: number,
): { raw: Buffer; width: number; height: number } {
  const rows = Math.max(1, Math.min(images.length, Math.round(Math.sqrt(images.length))));
  const cols = Math.ceil(images.length / rows);
  const gw = cols * width;
  const gh = rows * height;
  const raw = Buffer.alloc(gw * gh * 3);
  images.forEach((img, n) => {
    const ox = (n % cols) * width;
    const oy = Math.floor(n / cols) * height;
    for (let y = 0; y < height; y++) img.copy(raw, ((oy + y) * gw + ox) * 3, y * width * 3, (y + 1) * width * 3);
  });
  return { raw, width: gw, height: gh };
}
