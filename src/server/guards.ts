/**
 * Request guards that run before any route: the Host allow-list (DNS rebinding), cross-site
 * write refusal and CORS for allowed origins, and byte accounting of every request body as it
 * streams (chunked bodies included), against the per-request limit and the server-wide budget
 * of bytes held in memory.
 */
import { isIP } from "node:net";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import { Budget } from "../util/budget.ts";
import { bodyTooLarge, jsonTooLarge } from "./errors.ts";
import { mediaType } from "./routes/context.ts";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", "[::]"]);

function listSetting(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((entry) => entry.trim().toLowerCase())
    .filter((entry) => entry !== "");
}

/** The host name of a Host header ("[::1]:8080" → "[::1]"), lower-case; undefined if malformed. */
function hostName(header: string): string | undefined {
  try {
    return new URL(`http://${header}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * Whether the server answers to `host`: IP literals (a rebinding attack needs a domain name),
 * localhost, the listen address, and --allowed-hosts (exact names, `.example.com` for a domain
 * and its subdomains, `*` for any).
 */
export function hostChecker(settings: Pick<Settings, "host" | "allowedHosts">) {
  const allowed = listSetting(settings.allowedHosts);
  const listen = settings.host.toLowerCase();
  if (!WILDCARD_HOSTS.has(listen)) allowed.push(listen);
  const any = allowed.includes("*");
  return (header: string | undefined): boolean => {
    if (any || header === undefined) return true;
    const name = hostName(header);
    if (name === undefined) return false;
    if (isIP(name.replace(/^\[|\]$/g, "")) !== 0) return true;
    if (name === "localhost" || name.endsWith(".localhost")) return true;
    return allowed.some((entry) =>
      entry.startsWith(".") ? name === entry.slice(1) || name.endsWith(entry) : name === entry,
    );
  };
}

/** Whether `origin` may call this server cross-site (--cors-origins: exact origins or `*`). */
export function originChecker(settings: Pick<Settings, "corsOrigins">) {
  const allowed = listSetting(settings.corsOrigins).map((o) => o.replace(/\/+$/, ""));
  return (origin: string): boolean =>
    allowed.includes("*") || allowed.includes(origin.toLowerCase());
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.toLowerCase();
  } catch {
    return false;
  }
}

function crossSite(message: string): AppError {
  return new AppError("cross_site_request", message);
}

export function registerGuards(app: FastifyInstance, settings: Settings): { buffered: Budget } {
  const hostAllowed = hostChecker(settings);
  const corsAllowed = originChecker(settings);

  app.addHook("onRequest", async (request: FastifyRequest, reply: FastifyReply) => {
    const host = request.headers.host;
    if (!hostAllowed(host)) {
      throw new AppError(
        "host_not_allowed",
        `this server does not answer to the host "${String(host).slice(0, 100)}"; add it with --allowed-hosts (LONGCLIP_ALLOWED_HOSTS)`,
      );
    }
    const origin = request.headers.origin;
    const fetchSite = request.headers["sec-fetch-site"];
    const foreign = origin !== undefined && !sameOrigin(origin, host);
    const allowedOrigin = foreign && corsAllowed(origin);
    if (allowedOrigin) {
      reply
        .header("access-control-allow-origin", origin)
        .header("vary", "Origin")
        .header("access-control-expose-headers", "retry-after, www-authenticate");
    }
    if (request.method === "OPTIONS" && request.headers["access-control-request-method"]) {
      if (!allowedOrigin) {
        throw crossSite(
          `cross-origin requests from ${String(origin)} are not allowed; start the server with --cors-origins ${String(origin)} (LONGCLIP_CORS_ORIGINS) to allow them`,
        );
      }
      return reply
        .status(204)
        .header("access-control-allow-methods", "GET, POST, DELETE")
        .header("access-control-allow-headers", "content-type, x-api-key, authorization")
        .header("access-control-max-age", "600")
        .send();
    }
    if (SAFE_METHODS.has(request.method)) return;
    // A page on another site can send a form or a fetch without preflight: refuse the write
    // unless its origin is allowed. Browsers send Origin on cross-origin writes, and
    // Sec-Fetch-Site on every request.
    const siteForeign =
      origin === undefined && (fetchSite === "cross-site" || fetchSite === "same-site");
    if ((foreign && !allowedOrigin) || siteForeign) {
      throw crossSite(
        `a write from another site (${origin ?? fetchSite}) was refused; call the API from this server's own page, a non-browser client, or allow the origin with --cors-origins (LONGCLIP_CORS_ORIGINS)`,
      );
    }
  });

  // Every byte of every body is counted as it arrives, before any parser buffers it.
  const buffered = new Budget(
    Math.max(1, settings.maxBufferedBytes),
    0,
    () => new AppError("server_busy", "busy"),
  );
  app.addHook("onRequest", async (request, reply) => {
    const multipart = mediaType(request) === "multipart/form-data";
    const limit = multipart
      ? settings.maxRequestBytes
      : Math.min(settings.maxJsonBytes, settings.maxRequestBytes);
    const tooLarge = () => (multipart ? bodyTooLarge(limit) : jsonTooLarge(limit));
    const declared = Number(request.headers["content-length"] ?? 0);
    if (declared > limit) {
      reply.header("connection", "close");
      throw tooLarge();
    }
    if (request.headers["transfer-encoding"] === undefined && !(declared > 0)) return;
    const raw = request.raw;
    let received = 0;
    let held = 0;
    let refused = false;
    const refuse = (error: AppError) => {
      refused = true;
      // The rest of the body is not read: the connection closes after the answer.
      reply.header("connection", "close");
      raw.pause();
      raw.emit("error", error);
    };
    // The parsers (fastify's, busboy) see the error and answer it; this one keeps an error with
    // no other listener from being thrown.
    raw.on("error", () => {});
    // Paused first, so that listening does not start the flow before a parser pipes the body.
    raw.pause();
    raw.on("data", (chunk: Buffer) => {
      if (refused) return;
      received += chunk.length;
      // fastify's own parser counts JSON bodies against bodyLimit; busboy counts nothing.
      if (multipart && received > limit) return refuse(tooLarge());
      if (!buffered.tryAcquire(chunk.length)) {
        reply.header("retry-after", "2");
        return refuse(
          new AppError(
            "server_busy",
            `the server holds ${settings.maxBufferedBytes} bytes of uploads already (maxBufferedBytes, LONGCLIP_MAX_BUFFERED_BYTES); retry shortly`,
            { retryAfterSeconds: 2 },
          ),
        );
      }
      held += chunk.length;
    });
    // The bytes are held (as buffers or parsed values) until the answer is sent.
    reply.raw.once("close", () => {
      buffered.release(held);
      held = 0;
    });
  });
  return { buffered };
}
