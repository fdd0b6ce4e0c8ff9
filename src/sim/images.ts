import sharp from 'sharp';
import { apiError } from './errors.js';

// Input images: base64, with or without a `data:image/...;base64,` prefix, as A1111 accepts them. URLs are never
// fetched. An input that does not decode is a 422 naming the field.

export interface DecodedImage {
  bytes: Buffer;
  width: number;
  height: number;
}

const DATA_URL = /^data:[^,]*?;base64,/i;
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Decodes one base64 image field; `field` names it in the error. */
export async function decodeImage(value: unknown, field: string): Promise<DecodedImage> {
  if (typeof value !== 'string' || value.trim() === '')
    throw apiError(422, `${field}: an image is required (base64 PNG/JPEG/WebP)`);
  const text = value.trim();
  if (/^https?:\/\//i.test(text)) throw apiError(422, `${field}: image URLs are not fetched; send the image as base64`);
  const b64 = text.replace(DATA_URL, '').replace(/\s+/g, '');
  if (!BASE64.test(b64)) throw apiError(422, `${field}: not valid base64`);
  const bytes = Buffer.from(b64, 'base64');
  try {
    const meta = await sharp(bytes).metadata();
    if (!meta.width || !meta.height) throw new Error('no dimensions');
    return { bytes, width: meta.width, height: meta.height };
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw apiError(422, `${field}: invalid encoded image, it does not decode as an image (${why})`);
  }
}

export type Fit = 'fill' | 'cover' | 'contain';

/** The image as raw RGB at exactly width × height. */
export async function toRawRgb(img: DecodedImage, width: number, height: number, fit: Fit = 'fill'): Promise<Buffer> {
  return sharp(img.bytes)
    .removeAlpha()
    .toColourspace('srgb')
    .resize(width, height, { fit, kernel: 'lanczos3', background: { r: 0, g: 0, b: 0 } })
    .removeAlpha()
    .raw()
    .toBuffer();
}

/** The image as one byte per pixel (greyscale) at exactly width × height, blurred by `blur` pixels (a mask). */
export async function toRawMask(img: DecodedImage, width: number, height: number, blur: number): Promise<Buffer> {
  let pipeline = sharp(img.bytes)
    .flatten({ background: { r: 0, g: 0, b: 0 } })
    .greyscale()
    .resize(width, height, { fit: 'fill' });
  if (blur > 0) pipeline = pipeline.blur(Math.max(0.3, blur / 2));
  return pipeline.extractChannel(0).raw().toBuffer();
}
