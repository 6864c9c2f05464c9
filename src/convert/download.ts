/**
 * Downloads one file over HTTP(S) into `dest`, resumably: bytes arrive in `dest.partial`, a
 * second attempt asks for the rest with a Range request, and the file is renamed into place
 * only after its size (expected, or announced by the server) and its sha256 (expected, or the
 * hub's X-Linked-Etag for LFS files) check out. A bad download is deleted, not kept.
 */
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { get as httpGet, type IncomingMessage } from "node:http";
import { get as httpsGet } from "node:https";
import { AppError } from "../core/errors.ts";

export interface DownloadRequest {
  readonly url: string;
  readonly dest: string;
  /** Published size in bytes, when known. */
  readonly size?: number;
  /** Published sha256 (hex), when known. */
  readonly sha256?: string;
  /** Called as bytes arrive: (bytes so far, total or undefined). */
  readonly onProgress?: (done: number, total: number | undefined) => void;
}

export interface DownloadResult {
  readonly bytes: number;
  readonly sha256: string;
  /** Bytes that were already on disk from an interrupted download. */
  readonly resumedFrom: number;
  /** Where the expected sha256 came from, if any was checked. */
  readonly checkedAgainst?: "published" | "hub";
}

const MAX_REDIRECTS = 10;
/** Largest file a download writes when no size is known (Long-CLIP-L's checkpoint is 1.7 GB). */
export const MAX_DOWNLOAD_BYTES = 8 * 1024 ** 3;
const SHA256 = /^[0-9a-f]{64}$/;

function failed(url: string, problem: string, status?: number): AppError {
  return new AppError(
    "download_failed",
    `downloading ${url} failed: ${problem}. Run the same command again: it resumes where it stopped`,
    { url, ...(status ? { status } : {}) },
  );
}

function corrupt(url: string, problem: string): AppError {
  return new AppError(
    "download_corrupt",
    `the download of ${url} is not the published file: ${problem}. The partial file was deleted; run the command again, and if it repeats, check LONGCLIP_HUB_URL or the source`,
    { url },
  );
}

/** Errors of a connection that never opened: nothing was downloaded, so nothing resumes. */
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

function connectionError(url: string, error: NodeJS.ErrnoException): AppError {
  if (error.code === undefined || !UNREACHABLE.has(error.code)) return failed(url, error.message);
  const { origin } = new URL(url);
  return new AppError(
    "host_unreachable",
    `${origin} cannot be reached (${error.code}): check the network connection and the address`,
    { url, origin, cause: error.code },
  );
}

interface Opened {
  response: IncomingMessage;
  hubSha?: string;
  hubSize?: number;
}

function header(response: IncomingMessage, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** A hub's LFS sha256: X-Linked-Etag (before a redirect) or an ETag that is one. */
function hubSha256(response: IncomingMessage): string | undefined {
  for (const name of ["x-linked-etag", "etag"]) {
    const value = header(response, name)?.replace(/^W\//, "").replace(/"/g, "").toLowerCase();
    if (value && SHA256.test(value)) return value;
  }
  return undefined;
}

function request(url: string, start: number): Promise<IncomingMessage> {
  const target = new URL(url);
  const send =
    target.protocol === "https:" ? httpsGet : target.protocol === "http:" ? httpGet : undefined;
  if (!send) return Promise.reject(failed(url, `unsupported protocol ${target.protocol}`));
  return new Promise((resolve, reject) => {
    send(target, { headers: start > 0 ? { range: `bytes=${start}-` } : {} }, resolve).on(
      "error",
      (error) => reject(connectionError(url, error)),
    );
  });
}

/**
 * GET with redirects followed by hand, so the hub's X-Linked-* headers are seen. node:http
 * rather than fetch: fetch's body stream drops the chunks it has queued when the connection
 * breaks (Node.js 22 lost ~35 KB of 100 KB that had arrived), and every received byte must
 * reach the partial file for the next attempt to resume at the right offset.
 */
async function get(url: string, start: number): Promise<Opened> {
  let current = url;
  let hubSha: string | undefined;
  let hubSize: number | undefined;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const response = await request(current, start);
    hubSha ??= hubSha256(response);
    const linkedSize = Number(header(response, "x-linked-size"));
    if (hubSize === undefined && Number.isSafeInteger(linkedSize) && linkedSize > 0)
      hubSize = linkedSize;
    const status = response.statusCode ?? 0;
    const location = header(response, "location");
    if (status >= 300 && status < 400 && location) {
      response.destroy();
      current = new URL(location, current).toString();
      continue;
    }
    return { response, ...(hubSha ? { hubSha } : {}), ...(hubSize ? { hubSize } : {}) };
  }
  throw failed(url, `more than ${MAX_REDIRECTS} redirects`);
}

/**
 * Appends the body to `file` as it arrives (flowing mode: every chunk received is handed over
 * before the stream reports a broken connection), and resolves once it is all on disk, or
 * rejects after what did arrive is on disk.
 */
function receive(
  response: IncomingMessage,
  file: string,
  append: boolean,
  onChunk: (chunk: Buffer) => void,
  /** Bytes this response may deliver; past them it is cut off (a server that streams on). */
  limit: number,
): Promise<void> {
  let received = 0;
  return new Promise((resolve, reject) => {
    const out = createWriteStream(file, { flags: append ? "a" : "w" });
    let broken: Error | undefined;
    out.on("error", (error) => {
      broken ??= error;
      response.destroy();
    });
    // Never paused: a paused response keeps chunks in its buffer, and a broken connection
    // discards that buffer. The file is written faster than a network delivers, so what waits
    // in the write stream stays small.
    response.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit) {
        broken ??= new TooLong(limit);
        response.destroy();
        return;
      }
      onChunk(chunk);
      out.write(chunk);
    });
    response.on("error", (error) => {
      broken ??= error;
    });
    response.on("close", () => {
      if (!response.complete) broken ??= new Error("the connection closed early");
      out.end(() => (broken ? reject(broken) : resolve()));
    });
  });
}

class TooLong extends Error {
  constructor(readonly limit: number) {
    super(`the server sent more than the ${limit} bytes announced`);
  }
}

/** The first byte of a 206's Content-Range (`bytes 100-199/200`), or undefined. */
function rangeStart(response: IncomingMessage): number | undefined {
  const match = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(header(response, "content-range") ?? "");
  return match ? Number(match[1]) : undefined;
}

async function hashFile(file: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
}

export async function download(request: DownloadRequest): Promise<DownloadResult> {
  const { url, dest } = request;
  const partial = `${dest}.partial`;
  let start = existsSync(partial) ? statSync(partial).size : 0;
  if (request.size !== undefined && start > request.size) {
    await rm(partial, { force: true });
    start = 0;
  }
  const { response, hubSha, hubSize } = await get(url, start);
  const status = response.statusCode ?? 0;
  if (status === 416 && start > 0) {
    // The partial file may be complete: only when its size is known and matches, else it is
    // dropped (a 416 says nothing about what the partial file holds).
    response.destroy();
    const size = request.size ?? hubSize;
    if (size !== start) {
      await rm(partial, { force: true });
      throw failed(
        url,
        `the server refused to resume at byte ${start} (HTTP 416); run again to download from the start`,
      );
    }
  } else if (status === 206 && rangeStart(response) !== start) {
    response.destroy();
    await rm(partial, { force: true });
    throw failed(
      url,
      `the server answered a resume from byte ${start} with Content-Range "${header(response, "content-range") ?? ""}"; run again to download from the start`,
    );
  } else if (status !== 200 && status !== 206) {
    response.destroy();
    const hint = status === 404 ? " (not found: check the model name, repository id or URL)" : "";
    throw failed(url, `HTTP ${status}${hint}`, status);
  }
  const resumed = status === 206 || status === 416 ? start : 0;
  const length = Number(header(response, "content-length") ?? Number.NaN);
  const total =
    request.size ??
    hubSize ??
    (status !== 416 && Number.isSafeInteger(length) ? resumed + length : undefined);
  const hash = createHash("sha256");
  if (resumed > 0) await hashFile(partial, hash);
  let done = resumed;
  if (status === 200 || status === 206) {
    try {
      const limit = (total ?? MAX_DOWNLOAD_BYTES) - resumed;
      await receive(
        response,
        partial,
        resumed > 0,
        (chunk) => {
          hash.update(chunk);
          done += chunk.length;
          request.onProgress?.(done, total);
        },
        limit,
      );
    } catch (error) {
      if (error instanceof TooLong) {
        await rm(partial, { force: true });
        throw corrupt(url, `${error.message} (${total ?? MAX_DOWNLOAD_BYTES} in all)`);
      }
      throw failed(url, `the connection broke after ${done} bytes (${(error as Error).message})`);
    }
  }
  const bytes = statSync(partial).size;
  if (total !== undefined && bytes !== total) {
    if (bytes > total) await rm(partial, { force: true });
    if (bytes < total) throw failed(url, `got ${bytes} of ${total} bytes`);
    throw corrupt(url, `${bytes} bytes where ${total} were expected`);
  }
  const sha256 = hash.digest("hex");
  const expected = request.sha256?.toLowerCase() ?? hubSha;
  if (expected && sha256 !== expected) {
    await rm(partial, { force: true });
    throw corrupt(url, `sha256 ${sha256}, expected ${expected}`);
  }
  await rename(partial, dest);
  return {
    bytes,
    sha256,
    resumedFrom: resumed,
    ...(expected
      ? { checkedAgainst: request.sha256 ? ("published" as const) : ("hub" as const) }
      : {}),
  };
}
