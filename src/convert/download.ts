/**
 * Downloads one file over HTTP(S) into `dest`, resumably: bytes arrive in `dest.partial`, a
 * second attempt asks for the rest with a Range request, and the file is renamed into place
 * only after its size (expected, or announced by the server) and its sha256 (expected, or the
 * hub's X-Linked-Etag for LFS files) check out. A bad download is deleted, not kept.
 */
import { createHash } from "node:crypto";
import { createReadStream, existsSync, statSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { AppError } from "../errors.ts";

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
const SHA256 = /^[0-9a-f]{64}$/;

function failed(url: string, problem: string, status?: number): AppError {
  return new AppError(
    "download_failed",
    `downloading ${url} failed: ${problem}. Run the same command again: it resumes where it stopped`,
    502,
    { url, ...(status ? { status } : {}) },
  );
}

function corrupt(url: string, problem: string): AppError {
  return new AppError(
    "download_corrupt",
    `the download of ${url} is not the published file: ${problem}. The partial file was deleted; run the command again, and if it repeats, check LONGCLIP_HUB_URL or the source`,
    502,
    { url },
  );
}

/** A hub's LFS sha256: X-Linked-Etag (before a redirect) or an ETag that is one. */
function hubSha256(headers: Headers): string | undefined {
  for (const name of ["x-linked-etag", "etag"]) {
    const value = headers.get(name)?.replace(/^W\//, "").replace(/"/g, "").toLowerCase();
    if (value && SHA256.test(value)) return value;
  }
  return undefined;
}

interface Opened {
  response: Response;
  hubSha?: string;
  hubSize?: number;
}

/** GET with redirects followed by hand, so the hub's X-Linked-* headers are seen. */
async function get(url: string, start: number): Promise<Opened> {
  let current = url;
  let hubSha: string | undefined;
  let hubSize: number | undefined;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    let response: Response;
    try {
      response = await fetch(current, {
        redirect: "manual",
        headers: start > 0 ? { range: `bytes=${start}-` } : {},
      });
    } catch (error) {
      throw failed(
        url,
        (error as Error).cause ? String((error as Error).cause) : (error as Error).message,
      );
    }
    hubSha ??= hubSha256(response.headers);
    const linkedSize = Number(response.headers.get("x-linked-size"));
    if (hubSize === undefined && Number.isSafeInteger(linkedSize) && linkedSize > 0)
      hubSize = linkedSize;
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      current = new URL(location, current).toString();
      continue;
    }
    return { response, ...(hubSha ? { hubSha } : {}), ...(hubSize ? { hubSize } : {}) };
  }
  throw failed(url, `more than ${MAX_REDIRECTS} redirects`);
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
  if (response.status === 416 && start > 0) {
    // the partial file is already complete (or longer than the file): check it as it is
    await response.body?.cancel();
  } else if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel();
    const hint =
      response.status === 404 ? " (not found: check the model name, repository id or URL)" : "";
    throw failed(url, `HTTP ${response.status}${hint}`, response.status);
  }
  const resumed = response.status === 206 ? start : response.status === 416 ? start : 0;
  const length = Number(response.headers.get("content-length"));
  const total =
    request.size ??
    hubSize ??
    (response.status !== 416 && Number.isSafeInteger(length) ? resumed + length : undefined);
  const hash = createHash("sha256");
  if (resumed > 0) await hashFile(partial, hash);
  let done = resumed;
  if (response.status === 200 || response.status === 206) {
    if (!response.body) throw failed(url, "the response has no body");
    // written chunk by chunk, so every byte received is on disk when the connection breaks
    const handle = await open(partial, resumed > 0 ? "a" : "w");
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        await handle.write(chunk);
        hash.update(chunk);
        done += chunk.length;
        request.onProgress?.(done, total);
      }
    } catch (error) {
      throw failed(url, `the connection broke after ${done} bytes (${(error as Error).message})`);
    } finally {
      await handle.close();
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
