/**
 * A model hub served from 127.0.0.1 for `longclip pull` (LONGCLIP_HUB_URL): files by URL path,
 * LFS files redirected to a "CDN" path with the X-Linked-Etag and X-Linked-Size headers the
 * Hugging Face hub sends, resumable by `Range: bytes=N-`, and a download that breaks once on
 * demand. Nothing here reaches the internet.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface HubFile {
  data: Buffer;
  /** The sha256 the hub announces in X-Linked-Etag (LFS files). */
  linkedSha?: string;
  /** The first GET sends the headers, this many bytes, then drops the connection. */
  breakAfter?: number;
}

export interface FakeHub {
  /** Its base URL, for LONGCLIP_HUB_URL. */
  readonly url: string;
  /** What it serves, by URL path (`/ORG/REPO/resolve/main/FILE`); add to it at any time. */
  readonly files: Map<string, HubFile>;
  /** "PATH RANGE" of every Range request it answered, in order. */
  readonly ranges: string[];
  close(): Promise<void>;
}

export async function startFakeHub(): Promise<FakeHub> {
  const files = new Map<string, HubFile>();
  const ranges: string[] = [];
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", "http://hub");
    // LFS files are redirected to a "CDN" path, as the hub does; X-Linked-* stay on the redirect.
    const cdn = url.pathname.startsWith("/cdn/");
    const key = cdn ? url.pathname.slice(4) : url.pathname;
    const file = files.get(key);
    if (!file) {
      response.writeHead(404).end("not found");
      return;
    }
    if (!cdn && file.linkedSha) {
      response.writeHead(302, {
        location: `/cdn${key}`,
        "x-linked-etag": `"${file.linkedSha}"`,
        "x-linked-size": String(file.data.length),
      });
      response.end();
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(request.headers.range ?? "");
    if (range) ranges.push(`${key} ${request.headers.range}`);
    const start = range ? Number(range[1]) : 0;
    const body = file.data.subarray(start);
    response.writeHead(range ? 206 : 200, {
      "content-length": String(body.length),
      ...(range
        ? { "content-range": `bytes ${start}-${file.data.length - 1}/${file.data.length}` }
        : {}),
    });
    if (file.breakAfter !== undefined && !range) {
      const cut = file.breakAfter;
      file.breakAfter = undefined;
      response.write(body.subarray(0, cut), () => response.destroy());
      return;
    }
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    files,
    ranges,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
