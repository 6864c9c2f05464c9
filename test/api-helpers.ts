/**
 * HTTP test helpers: a real library over the demo model (models/demo) behind the real app,
 * listening on a loopback port with a supertest client for it, and a hand-built multipart
 * encoder (so tests can also send the malformed bodies a browser never would).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { deflateSync } from "node:zlib";
import type { FastifyInstance } from "fastify";
import supertest from "supertest";
import { loadSettings, type Settings } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary } from "../src/library/index.ts";
import type { Library } from "../src/library/types.ts";
import { buildApp } from "../src/server/app.ts";
import { DEMO_MODEL_DIR } from "./helpers/demo-model.ts";

export interface Part {
  name: string;
  value: string | Buffer;
  filename?: string;
  contentType?: string;
}

export function multipart(parts: readonly Part[]): {
  payload: Buffer;
  headers: Record<string, string>;
} {
  const boundary = `----longclip-test-${randomBytes(8).toString("hex")}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`;
    if (part.filename !== undefined) head += `; filename="${part.filename}"`;
    head += "\r\n";
    if (part.contentType !== undefined) head += `Content-Type: ${part.contentType}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`), Buffer.from(part.value), Buffer.from("\r\n"));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    payload: Buffer.concat(chunks),
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
  };
}

const tempDirs: string[] = [];
process.once("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh directory under the OS temp dir, removed when the test process exits. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/**
 * A valid PNG of width × height, all black: a few dozen KiB that decode to width × height
 * pixels (a decompression bomb at 20000 × 20000). 1-bit greyscale by default, or 8-bit RGB
 * (`rgb`), which decodes as a photo does. `tag` goes into a tEXt chunk, so copies differ in
 * content hash but not in pixels. Built directly because encoding hundreds of megapixels
 * through an image library takes a minute and gigabytes.
 */
export function bombPng(
  width: number,
  height: number,
  options: { rgb?: boolean; tag?: string } = {},
): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = options.rgb ? 8 : 1; // bit depth
  header[9] = options.rgb ? 2 : 0; // RGB or greyscale
  const key = `${width}x${height}:${options.rgb ? "rgb" : "grey"}`;
  let idat = compressedRows.get(key);
  if (idat === undefined) {
    const row = 1 + (options.rgb ? width * 3 : Math.ceil(width / 8)); // filter byte + pixels
    idat = deflateSync(Buffer.alloc(row * height), { level: 9 });
    compressedRows.set(key, idat);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    ...(options.tag === undefined
      ? []
      : [chunk("tEXt", Buffer.from(`Comment\0${options.tag}`, "latin1"))]),
    chunk("IDAT", idat),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Compressed all-black pixel data by size and type, made once. */
const compressedRows = new Map<string, Buffer>();

export interface TestServer {
  app: FastifyInstance;
  library: Library;
  settings: Settings;
  /** Where it listens: http://127.0.0.1:PORT. */
  url: string;
  /** supertest over a real socket to `url`. */
  http: supertest.Agent;
}

/**
 * The real app over a real library (SQLite + HNSW in a temp dir, the demo model unless
 * `extra.modelDir` names another; `extra.databaseUrl` puts the library in Postgres),
 * listening on a free loopback port; `app.close()` stops it.
 */
export async function startTestApp(extra: Partial<Settings> = {}): Promise<TestServer> {
  const modelDir = extra.modelDir ?? DEMO_MODEL_DIR;
  const settings = loadSettings(
    {
      modelDir,
      dataDir: tempDir("longclip-api-data-"),
      threads: 1,
      imageBatchSize: 4,
      indexSaveIntervalMs: 0,
      ...extra,
    },
    {},
  );
  const encoder = await Encoder.load(modelDir, settings);
  const library = await createLibrary(settings, encoder);
  const app = buildApp(settings, library, { tokenizer: encoder.tokenizer });
  const url = await app.listen({ host: "127.0.0.1", port: 0 });
  return { app, library, settings, url, http: supertest(url) };
}
