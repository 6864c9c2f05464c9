/**
 * The web UI: the single page at `/` (built from web/ into dist/web/index.html, scripts and
 * styles inlined so the page is one document), and small thumbnails for its result grid.
 * Both routes take their schemas from openapi.yaml like every other route.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { type OpenApiDocument, specOperations } from "../api/spec.ts";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import type { Library } from "../library/types.ts";
import { thumbnail } from "../preprocess/thumbnail.ts";
import type { TextTokenizer } from "../tokenize/types.ts";
import { LruCache } from "../util/lru-cache.ts";
import { itemNotFound } from "./errors.ts";
import type { PageConfig } from "./page-config.ts";
import { buildWeb, PAGE_FILE, pageIsStale, WEB_SOURCE_DIR } from "./web-page.ts";

/** openapi.yaml operations served by this plugin rather than by app.ts's handlers. */
export const WEB_OPERATIONS = ["webUi", "getItemThumbnail"] as const;

/** Where the built page receives the server's limits (see web/index.html). */
const CONFIG_SLOT = "<!--longclip-config-->";

export interface WebOptions {
  settings: Settings;
  library: Library;
  spec: OpenApiDocument;
}

/**
 * The built page, built first when missing or stale (a fresh clone needs no extra step).
 * A stale page that cannot be rebuilt (a read-only install) is served as it is.
 */
async function loadPage(log: FastifyBaseLogger): Promise<string> {
  if (pageIsStale()) {
    const missing = (why: string) =>
      new AppError(
        "web_ui_missing",
        `the web UI is not built (${PAGE_FILE} is missing) and ${why}; run npm run build:web in a full checkout`,
      );
    if (!existsSync(WEB_SOURCE_DIR)) {
      if (!existsSync(PAGE_FILE)) throw missing("its sources are absent");
    } else {
      try {
        await buildWeb();
      } catch (error) {
        log.error({ err: error }, "building the web UI failed");
        if (!existsSync(PAGE_FILE)) throw missing("building it failed (see the server log)");
      }
    }
  }
  return readFileSync(PAGE_FILE, "utf8");
}

/** True when an If-None-Match header lists this ETag (weak or strong) or is `*`. */
function matchesEtag(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header
    .split(",")
    .map((tag) => tag.trim().replace(/^W\//, ""))
    .some((tag) => tag === etag || tag === "*");
}

/** JSON that is safe inside a <script> element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

function sha256Base64(text: string): string {
  return createHash("sha256").update(text, "utf8").digest("base64");
}

/**
 * A Content-Security-Policy that allows the page's own inline script and style (by hash)
 * and nothing from another origin: the page can never make an external request.
 */
export function contentSecurityPolicy(html: string): string {
  const hashes = (tag: string) =>
    [...html.matchAll(new RegExp(`<${tag}(?: [^>]*)?>([\\s\\S]*?)</${tag}>`, "g"))]
      .filter((m) => !/type="application\/json"/.test(m[0]))
      .map((m) => `'sha256-${sha256Base64(m[1] ?? "")}'`)
      .join(" ");
  return [
    "default-src 'none'",
    `script-src ${hashes("script")}`,
    `style-src ${hashes("style")}`,
    "img-src 'self' blob: data:",
    // The detail view plays a video item's original.
    "media-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

const THUMBNAIL_CACHE_ENTRIES = 512;

/**
 * Where the query would be cut: the length of the longest prefix of `text` ending at a
 * whitespace boundary (or the whole text) whose tokens all fit the context. Token counts of
 * such prefixes only grow with their length (words are tokenized independently), so a
 * binary search over the boundaries finds it with a handful of encodes.
 */
export function keptChars(tokenizer: TextTokenizer, text: string): number {
  if (!tokenizer.encode(text).truncated) return text.length;
  const ends: number[] = [];
  for (const match of text.matchAll(/\S(?=\s)/g)) ends.push(match.index + 1);
  let lo = 0;
  let hi = ends.length - 1;
  let best = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const end = ends[mid] as number;
    if (tokenizer.encode(text.slice(0, end)).truncated) {
      hi = mid - 1;
    } else {
      best = end;
      lo = mid + 1;
    }
  }
  return best;
}

export const webUi: FastifyPluginAsync<WebOptions> = async (app, { settings, library, spec }) => {
  const operations = new Map(specOperations(spec).map((op) => [op.operationId, op]));
  const operation = (id: (typeof WEB_OPERATIONS)[number]) => {
    const op = operations.get(id);
    if (op === undefined) throw new Error(`openapi.yaml has no operation ${id}`);
    return op;
  };
  const config: PageConfig = {
    maxBatchItems: settings.maxBatchItems,
    maxImageBytes: settings.maxImageBytes,
    maxRequestBytes: settings.maxRequestBytes,
    maxQueryChars: settings.maxQueryChars,
    maxK: settings.maxK,
    jobs: settings.mediaRoot !== undefined,
  };
  let page: Promise<{ html: string; csp: string }> | undefined;
  const servedPage = () => {
    page ??= loadPage(app.log).then(
      (built) => {
        const html = built.replace(
          CONFIG_SLOT,
          `<script type="application/json" id="longclip-config">${scriptJson(config)}</script>`,
        );
        return { html, csp: contentSecurityPolicy(html) };
      },
      (error: unknown) => {
        page = undefined;
        throw error;
      },
    );
    return page;
  };

  const ui = operation("webUi");
  app.route({
    method: "GET",
    url: ui.url,
    schema: ui.schema,
    handler: async (_request, reply) => {
      const { html, csp } = await servedPage();
      return reply
        .type("text/html; charset=utf-8")
        .header("content-security-policy", csp)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cache-control", "no-cache")
        .send(html);
    },
  });

  // Thumbnails are keyed by content hash and size, so a re-used id never shows a stale image.
  const cache = new LruCache<string, Buffer>(THUMBNAIL_CACHE_ENTRIES);
  const thumbnailOperation = operation("getItemThumbnail");
  app.route({
    method: "GET",
    url: thumbnailOperation.url,
    schema: thumbnailOperation.schema,
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const { id } = request.params as { id: string };
      const { size } = request.query as { size: number };
      const item = await library.getItem(id);
      if (item === undefined) {
        throw itemNotFound(id);
      }
      const key = `${item.sha256}:${size}`;
      const etag = `"${item.sha256.slice(0, 32)}-${size}"`;
      reply
        .header("etag", etag)
        .header("cache-control", "private, max-age=3600")
        .header("x-content-type-options", "nosniff");
      if (matchesEtag(request.headers["if-none-match"], etag)) return reply.status(304).send();
      let bytes = cache.get(key);
      if (bytes === undefined) {
        // Decoding shares the server's pixel budget with ingest and image search (memory).
        const release = await library.admitDecode(item.width * item.height);
        try {
          // A video's thumbnail is its first frame.
          const image = item.contentType.startsWith("video/")
            ? await library.readFrame(id, 0)
            : (await library.readImage(id))?.bytes;
          if (image === undefined) {
            throw itemNotFound(id);
          }
          try {
            bytes = await thumbnail(image, size, settings.maxImagePixels);
          } catch (error) {
            throw new AppError(
              "thumbnail_failed",
              `the stored image of item "${id}" could not be decoded for a thumbnail (${(error as Error).message}); GET /items/{id}/image has the original, or re-index it`,
            );
          }
        } finally {
          release();
        }
        cache.set(key, bytes);
      }
      return reply.type("image/webp").send(bytes);
    },
  });
};
