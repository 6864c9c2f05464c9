/**
 * Which video container a file is, from its first bytes (never from its name): an ISO base
 * media file (MP4, MOV) starts with an `ftyp` box, Matroska and WebM with an EBML header
 * whose DocType names them. HEIF/AVIF images are ISO files too: their brands keep them images.
 */

export type VideoContainer = "mp4" | "mov" | "webm" | "matroska";

/** The content type an original of each container is served with. */
export const VIDEO_CONTENT_TYPES: Record<VideoContainer, string> = {
  mp4: "video/mp4",
  mov: "video/quicktime",
  webm: "video/webm",
  matroska: "video/x-matroska",
};

/** File name extensions of videos: walks pick them up, and a file so named must be one. */
export const VIDEO_EXTENSIONS: ReadonlySet<string> = new Set([
  ".mp4",
  ".m4v",
  ".mov",
  ".webm",
  ".mkv",
]);

/** Major brands of still images (HEIF, AVIF) in an `ftyp` box: decoded as images, not here. */
const IMAGE_BRANDS = new Set([
  "avif",
  "avis",
  "heic",
  "heix",
  "heim",
  "heis",
  "hevc",
  "hevx",
  "hevm",
  "hevs",
  "mif1",
  "msf1",
]);

const EBML_MAGIC = Buffer.from([0x1a, 0x45, 0xdf, 0xa3]);
/** The EBML id of DocType, followed by its size as a one-byte vint. */
const DOCTYPE_ID = Buffer.from([0x42, 0x82]);

/** The container of `bytes`, or undefined when they are not a video this server reads. */
export function videoContainer(bytes: Uint8Array): VideoContainer | undefined {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, 64));
  if (head.length >= 12 && head.toString("latin1", 4, 8) === "ftyp") {
    const brand = head.toString("latin1", 8, 12);
    if (IMAGE_BRANDS.has(brand)) return undefined;
    return brand === "qt  " ? "mov" : "mp4";
  }
  if (head.length >= 8 && head.subarray(0, 4).equals(EBML_MAGIC)) {
    const at = head.indexOf(DOCTYPE_ID, 4);
    if (at < 0 || at + 3 > head.length) return undefined;
    const sizeByte = head[at + 2] as number;
    // A one-byte vint has its top bit set; the low seven bits are the length.
    if ((sizeByte & 0x80) === 0) return undefined;
    const docType = head.toString("latin1", at + 3, at + 3 + (sizeByte & 0x7f));
    if (docType === "webm") return "webm";
    if (docType === "matroska") return "matroska";
  }
  return undefined;
}

/** True when a file's name says it is a video (its bytes decide whether it is one). */
export function hasVideoExtension(name: string | undefined): boolean {
  if (name === undefined) return false;
  const dot = name.lastIndexOf(".");
  return dot >= 0 && VIDEO_EXTENSIONS.has(name.slice(dot).toLowerCase());
}
