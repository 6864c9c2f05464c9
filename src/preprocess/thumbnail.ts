/**
 * Thumbnails of stored images (the web page's result grid): decoded as ingest decodes (failOn
 * "error", under the pixel limit), turned upright by EXIF, fitted inside a square, as WebP.
 */
import sharp from "sharp";

/** A WebP at most `size` pixels wide and high, never enlarged; throws what sharp throws. */
export function thumbnail(bytes: Buffer, size: number, maxImagePixels: number): Promise<Buffer> {
  // failOn "error" as ingest decodes: what ingest accepted, a thumbnail can show.
  return sharp(bytes, { limitInputPixels: maxImagePixels, failOn: "error" })
    .rotate()
    .resize(size, size, { fit: "inside", withoutEnlargement: true })
    .webp({ quality: 80 })
    .toBuffer();
}
