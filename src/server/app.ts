/**
 * The HTTP layer: routes generated from openapi.yaml, each translating HTTP to one Library
 * call and back. Validation, serialisation, authentication and readiness gating all follow
 * the document (schemas, `security`, documented 503s), so the spec and the server cannot drift.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import fastifyMultipart from "@fastify/multipart";
import fastifySwagger, { type StaticDocumentSpec } from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
  type RouteOptions,
} from "fastify";
import { componentSchemas, loadSpec, specOperations } from "../api/spec.ts";
import { AppError } from "../core/errors.ts";
import type { Settings } from "../core/settings.ts";
import type { Library } from "../library/types.ts";
import { errorBody, toAppError } from "./errors.ts";
import { registerGuards } from "./guards.ts";
import { createMetrics } from "./metrics.ts";
import { type AppOptions, type Handlers, mediaType, type RouteContext } from "./routes/context.ts";
import { itemHandlers } from "./routes/items.ts";
import { jobHandlers } from "./routes/jobs.ts";
import { reindexHandlers } from "./routes/reindex.ts";
import { searchHandlers } from "./routes/search.ts";
import { systemHandlers } from "./routes/system.ts";
import { createValidators } from "./validation.ts";
import { WEB_OPERATIONS, webUi } from "./web.ts";

export type { AppOptions } from "./routes/context.ts";

/** Operations served by plugins rather than by a handler here. */
const PLUGIN_OPERATIONS = new Set<string>(["docs", ...WEB_OPERATIONS]);

const registeredRoutes = new WeakMap<FastifyInstance, { method: string; url: string }[]>();

/** Every route the app registered (method, url), plugins' included, for the spec coverage test. */
export function routesOf(app: FastifyInstance): { method: string; url: string }[] {
  return registeredRoutes.get(app) ?? [];
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** The key from `x-api-key` or `Authorization: Bearer`. */
function presentedKey(request: FastifyRequest): string | undefined {
  const header = request.headers["x-api-key"];
  if (typeof header === "string" && header !== "") return header;
  const auth = request.headers.authorization;
  const match = auth ? /^Bearer\s+(.+)$/i.exec(auth) : null;
  return match?.[1]?.trim();
}

/** Requests that clients and the page repeat (probes, polling, thumbnails): logged at debug. */
const REPEATED_ROUTES = new Set([
  "GET /health",
  "GET /ready",
  "GET /metrics",
  "GET /stats",
  "POST /tokenize",
  "GET /jobs",
  "GET /reindex",
  "GET /items/:id/thumbnail",
]);

/** One log line per answered request: `GET /search 200 12 ms`. */
function logRequest(request: FastifyRequest, reply: FastifyReply): void {
  const route = `${request.method} ${request.routeOptions.url ?? ""}`;
  const ms = Math.round(reply.elapsedTime);
  const log = REPEATED_ROUTES.has(route) ? request.log.debug : request.log.info;
  log.call(
    request.log,
    { method: request.method, url: request.url, statusCode: reply.statusCode, responseTime: ms },
    `${request.method} ${request.url} ${reply.statusCode} ${ms} ms`,
  );
}

/**
 * What the log says about an error answer besides its request line. A state the server
 * expects (not ready yet, busy, database away, disk full) is a warning without a stack; only
 * an unexpected error (500 internal_error, a bug) is an error with its stack.
 */
function logErrorAnswer(request: FastifyRequest, error: unknown, answer: AppError): void {
  if (answer.code === "internal_error") {
    request.log.error({ err: error }, "request failed");
  } else if (answer.status >= 500 && answer.code !== "not_ready") {
    request.log.warn({ code: answer.code }, answer.message);
  }
}

/**
 * Reads that `--api-key-reads on` puts behind the API key too: what a library holds and what
 * its searches cost (issue 24). Items and their images stay open, for the web page's <img> tags.
 */
const KEYED_READS: ReadonlySet<string> = new Set([
  "searchText",
  "searchImage",
  "explainMatch",
  "duplicates",
  "listJobs",
  "getJob",
  "getReindex",
  "metrics",
]);

export function buildApp(
  settings: Settings,
  library: Library,
  options: AppOptions = {},
): FastifyInstance {
  const spec = options.spec ?? loadSpec();
  const schemas = componentSchemas(spec);
  const validators = createValidators(schemas);
  const metrics = createMetrics(library);
  let closing = false;

  const requestTimeout = settings.requestTimeoutMs;
  const app = Fastify({
    ...(options.loggerInstance !== undefined
      ? { loggerInstance: options.loggerInstance }
      : { logger: options.logger ?? false }),
    // One line per request, written below (fastify's own are two, at info for every poll).
    logController: new LogController({ disableRequestLogging: true }),
    // JSON bodies (multipart counts against maxRequestBytes in ./guards.ts and ./multipart.ts).
    bodyLimit: Math.min(settings.maxJsonBytes, settings.maxRequestBytes),
    // Slow or idle clients are cut off: a request must arrive within requestTimeoutMs, its
    // headers (from the moment a connection opens) within headersTimeoutMs, and a kept-alive
    // connection idle between requests closes after idleTimeoutMs. No socket inactivity
    // timeout: a long batch being worked on sends nothing, and must not be cut.
    requestTimeout,
    keepAliveTimeout: settings.idleTimeoutMs || 5_000,
    http: {
      headersTimeout:
        requestTimeout > 0
          ? Math.min(settings.headersTimeoutMs, requestTimeout)
          : settings.headersTimeoutMs,
      // How often node checks those timeouts (its default, 30 s, would stretch them).
      connectionsCheckingInterval: 1_000,
    },
    // Requests node cannot parse (bad framing, oversized headers) get the one shape too.
    clientErrorHandler: (error, socket) => {
      if (!socket.writable) return;
      const timedOut = (error as NodeJS.ErrnoException).code === "ERR_HTTP_REQUEST_TIMEOUT";
      const appError = timedOut
        ? new AppError(
            "request_timeout",
            `the request did not arrive within ${settings.requestTimeoutMs} ms (requestTimeoutMs, LONGCLIP_REQUEST_TIMEOUT_MS)`,
          )
        : new AppError("bad_request", "the request could not be parsed as HTTP/1.1");
      const body = JSON.stringify(errorBody(appError));
      socket.end(
        `HTTP/1.1 ${appError.status} ${timedOut ? "Request Timeout" : "Bad Request"}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
    // Malformed URLs (/items/%ZZ) get the one error shape too.
    frameworkErrors: (error, _request, reply) => {
      (reply as FastifyReply)
        .status(400)
        .send(
          errorBody(
            new AppError(
              "bad_request",
              `the request URL could not be read (${error.code}); percent-encode it correctly`,
            ),
          ),
        );
    },
    // Ids may be up to 128 characters (the Id schema), percent-encoded longer; fastify's default is 100.
    routerOptions: { maxParamLength: 256 },
    // While draining, requests get this app's own not_ready error (one error shape) rather
    // than fastify's built-in 503 body.
    return503OnClosing: false,
  });
  const routes: { method: string; url: string }[] = [];
  registeredRoutes.set(app, routes);
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) routes.push({ method: String(method), url: route.url });
  });

  for (const schema of schemas) app.addSchema(schema);
  app.setValidatorCompiler(validators.compiler);

  app.setErrorHandler((error, request, reply) => {
    const appError = toAppError(error, settings);
    logErrorAnswer(request, error, appError);
    const retry = appError.details?.retryAfterSeconds;
    if (appError.status === 429 || retry !== undefined) {
      reply.header("retry-after", String(Math.max(1, Math.ceil(Number(retry ?? 1)))));
    }
    return reply.status(appError.status).send(errorBody(appError));
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(
        errorBody(
          new AppError(
            "not_found",
            `no route ${request.method} ${request.url.split("?")[0]}; the API is listed at /docs`,
          ),
        ),
      ),
  );

  // Connections past the cap are closed at once by node.
  app.server.maxConnections = settings.maxConnections || Number.POSITIVE_INFINITY;
  const { buffered } = registerGuards(app, settings);
  // No answer may be sniffed as another type (JSON read as HTML, /docs assets).
  app.addHook("onSend", async (_request, reply) => {
    reply.header("x-content-type-options", "nosniff");
  });
  app.addHook("onResponse", async (request, reply) => {
    logRequest(request, reply);
    metrics.observeRequest(
      request.method,
      request.routeOptions.url ?? "unmatched",
      reply.statusCode,
      reply.elapsedTime / 1000,
    );
  });
  app.addHook("preClose", async () => {
    closing = true;
  });
  app.addHook("onClose", async () => {
    await library.close();
  });

  app.register(fastifyMultipart, { throwFileSizeLimit: false });
  app.register(fastifySwagger, {
    mode: "static",
    // The document is openapi.yaml parsed as is; @fastify/swagger's types only know 3.0.
    specification: { document: spec as unknown as StaticDocumentSpec["document"] },
  });
  app.register(fastifySwaggerUi, { routePrefix: "/docs", uiConfig: { validatorUrl: null } });
  app.register(webUi, { settings, library, spec });

  const context: RouteContext = {
    settings,
    library,
    metrics,
    validators,
    spec,
    options,
    buffered,
    isClosing: () => closing,
  };
  const handlers: Handlers = {
    ...itemHandlers(context),
    ...searchHandlers(context),
    ...jobHandlers(context),
    ...reindexHandlers(context),
    ...systemHandlers(context),
  };
  for (const op of specOperations(spec)) {
    if (PLUGIN_OPERATIONS.has(op.operationId)) continue;
    const handler = handlers[op.operationId];
    if (handler === undefined) {
      throw new Error(`openapi.yaml operation ${op.operationId} has no handler in src/server`);
    }
    const onRequest: NonNullable<RouteOptions["onRequest"]> = [];
    const keyed = op.secured || (settings.apiKeyReads === "on" && KEYED_READS.has(op.operationId));
    if (keyed && settings.apiKey) {
      const expected = digest(settings.apiKey);
      onRequest.push(async (request, reply) => {
        const key = presentedKey(request);
        if (key === undefined || !timingSafeEqual(digest(key), expected)) {
          reply.header("www-authenticate", 'Bearer realm="longclip"');
          throw new AppError(
            "unauthorized",
            "this endpoint needs the server's API key in the x-api-key header or as Authorization: Bearer <key>",
          );
        }
      });
    }
    if (op.requestContentTypes.length > 0) {
      const accepted = op.requestContentTypes;
      onRequest.push(async (request) => {
        const type = mediaType(request);
        if (type === undefined || !accepted.includes(type)) {
          throw new AppError(
            "unsupported_media_type",
            `${op.method.toUpperCase()} ${op.path} takes ${accepted.join(" or ")}, not ${type ?? "a body without Content-Type"}`,
          );
        }
      });
    }
    // While the server drains for shutdown, library calls would meet a closing store.
    if ("503" in ((op.schema.response as object | undefined) ?? {}) && op.operationId !== "ready") {
      onRequest.push(async () => {
        if (closing) {
          throw new AppError(
            "not_ready",
            "the server is shutting down; retry on another instance or after its restart",
          );
        }
      });
    }
    app.route({
      method: op.method.toUpperCase() as "GET",
      url: op.url,
      schema: op.schema,
      onRequest,
      handler,
    });
  }
  return app;
}
