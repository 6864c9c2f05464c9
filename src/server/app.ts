/**
 * The HTTP layer: routes generated from openapi.yaml, each translating HTTP to one Library
 * call and back. Validation, serialisation, authentication and readiness gating all follow
 * the document (schemas, `security`, documented 503s), so the spec and the server cannot drift.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { realpathSync } from "node:fs";
import path from "node:path";
import { performance } from "node:perf_hooks";
import fastifyMultipart from "@fastify/multipart";
import fastifySwagger, { type StaticDocumentSpec } from "@fastify/swagger";
import fastifySwaggerUi from "@fastify/swagger-ui";
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  type RouteOptions,
} from "fastify";
import {
  componentSchemas,
  loadSpec,
  type OpenApiDocument,
  type Schemas,
  specOperations,
} from "../api/spec.ts";
import type { Settings } from "../config.ts";
import { AppError } from "../errors.ts";
import type { JobService } from "../jobs/service.ts";
import type { Hit, IndexInput, IndexResult, Item, Library } from "../library/types.ts";
import type { JobSummary } from "../store/jobs.ts";
import type { TextTokenizer } from "../tokenize/types.ts";
import { errorBody, toAppError } from "./errors.ts";
import { type AppMetrics, createMetrics } from "./metrics.ts";
import { listField, type MultipartForm, parseJson, readMultipart } from "./multipart.ts";
import { assertValid, createValidators, type SpecValidators } from "./validation.ts";
import { keptChars, WEB_OPERATIONS, webUi } from "./web.ts";

export interface AppOptions {
  /** The model's tokenizer, for POST /tokenize (503 not_ready without one). */
  tokenizer?: TextTokenizer;
  /** Jobs (POST /jobs and friends); 503 not_ready without. */
  jobs?: JobService;
  /** fastify's logger option: false (tests), true, or pino options (serve). */
  logger?: FastifyServerOptions["logger"];
  /** The OpenAPI document; loaded from openapi.yaml when absent. */
  spec?: OpenApiDocument;
}

type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** Operations served by plugins rather than by a handler here. */
const PLUGIN_OPERATIONS = new Set<string>(["docs", ...WEB_OPERATIONS]);

const registeredRoutes = new WeakMap<FastifyInstance, { method: string; url: string }[]>();

/** Every route the app registered (method, url), plugins' included, for the spec coverage test. */
export function routesOf(app: FastifyInstance): { method: string; url: string }[] {
  return registeredRoutes.get(app) ?? [];
}

export function imageUrl(id: string): string {
  return `/items/${encodeURIComponent(id)}/image`;
}

function toHit(hit: Hit): Schemas["Hit"] {
  return {
    id: hit.id,
    score: hit.score,
    rank: hit.rank,
    metadata: hit.metadata,
    image_url: imageUrl(hit.id),
  };
}

function mediaType(request: FastifyRequest): string | undefined {
  const header = request.headers["content-type"];
  return header?.split(";")[0]?.trim().toLowerCase() || undefined;
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

function isInside(root: string, target: string): boolean {
  const rel = path.relative(root, target);
  return rel !== "" && !rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel);
}

function realOrSelf(file: string): string {
  try {
    return realpathSync(file);
  } catch {
    return file;
  }
}

type Slot = { input: IndexInput } | { failed: IndexResult };

function isoOrNull(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function toJob(job: JobSummary): Schemas["Job"] {
  return {
    id: job.id,
    state: job.state,
    created_at: new Date(job.createdAt).toISOString(),
    started_at: isoOrNull(job.startedAt),
    finished_at: isoOrNull(job.finishedAt),
    counts: job.counts,
    failed_codes: job.failedCodes,
    rate: job.rate,
    eta_seconds: job.etaSeconds,
  };
}

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

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: settings.maxRequestBytes,
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
    // An unreachable database is a condition, not a bug: a warning, and clients are told when to retry.
    if (appError.code === "database_unavailable") request.log.warn(appError.message);
    else if (appError.status >= 500) request.log.error({ err: error }, "request failed");
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
            404,
          ),
        ),
      ),
  );

  app.addHook("onRequest", async (request) => {
    const length = Number(request.headers["content-length"] ?? 0);
    if (length > settings.maxRequestBytes) {
      throw toAppError({ code: "FST_ERR_CTP_BODY_TOO_LARGE" }, settings);
    }
  });
  app.addHook("onResponse", async (request, reply) => {
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

  const handlers = createHandlers(
    settings,
    library,
    metrics,
    validators,
    spec,
    options,
    () => closing,
  );
  for (const op of specOperations(spec)) {
    if (PLUGIN_OPERATIONS.has(op.operationId)) continue;
    const handler = handlers[op.operationId];
    if (handler === undefined) {
      throw new Error(`openapi.yaml operation ${op.operationId} has no handler in src/server`);
    }
    const onRequest: NonNullable<RouteOptions["onRequest"]> = [];
    if (op.secured && settings.apiKey) {
      const expected = digest(settings.apiKey);
      onRequest.push(async (request, reply) => {
        const key = presentedKey(request);
        if (key === undefined || !timingSafeEqual(digest(key), expected)) {
          reply.header("www-authenticate", 'Bearer realm="longclip"');
          throw new AppError(
            "unauthorized",
            "this endpoint needs the server's API key in the x-api-key header or as Authorization: Bearer <key>",
            401,
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
            415,
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
            503,
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

function createHandlers(
  settings: Settings,
  library: Library,
  metrics: AppMetrics,
  validators: SpecValidators,
  spec: OpenApiDocument,
  options: AppOptions,
  isClosing: () => boolean,
): Record<string, Handler> {
  // The library stores resolved paths; items show them relative to the resolved media root.
  const realMediaRoot =
    settings.mediaRoot === undefined ? undefined : realOrSelf(settings.mediaRoot);
  const validId = validators.component("Id");
  const validMetadata = validators.component("Metadata");

  // The library checks search inputs itself (empty query, length, k); only /tokenize, which
  // does not reach the library, needs the length limit here.
  const checkQueryLength = (text: string) => {
    if (text.length > settings.maxQueryChars) {
      throw new AppError(
        "query_too_long",
        `the text has ${text.length} characters; the limit is ${settings.maxQueryChars} (maxQueryChars, LONGCLIP_MAX_QUERY_CHARS)`,
      );
    }
  };
  const toItem = (item: Item): Schemas["Item"] => {
    const out: Schemas["Item"] = {
      id: item.id,
      metadata: item.metadata,
      content_type: item.contentType,
      width: item.width,
      height: item.height,
      bytes: item.bytes,
      sha256: item.sha256,
      source: item.source,
      created_at: item.createdAt,
      image_url: imageUrl(item.id),
    };
    if (item.path !== undefined) {
      const root = realMediaRoot;
      out.path = root && isInside(root, item.path) ? path.relative(root, item.path) : item.path;
    }
    return out;
  };
  const idParam = (request: FastifyRequest) => (request.params as { id: string }).id;
  const jobService = () => {
    if (options.jobs === undefined) {
      throw new AppError("not_ready", "this server was started without jobs", 503);
    }
    return options.jobs;
  };
  const jobNotFound = (id: string) =>
    new AppError("not_found", `no job with id "${id}"; GET /jobs lists the jobs`, 404);
  const notFound = (id: string) =>
    new AppError("not_found", `no item with id "${id}"; GET /items lists the stored ids`, 404);

  const uploadSlots = (form: MultipartForm): Slot[] => {
    if (form.files.length === 0) {
      throw new AppError(
        "validation_failed",
        'no file in the field "images"; send one or more image files as images',
      );
    }
    const ids = listField(form, "ids", (raw) => raw);
    const metadata = listField(form, "metadata", (raw) => parseJson(raw, "metadata"));
    for (const [name, values] of [
      ["ids", ids],
      ["metadata", metadata],
    ] as const) {
      if (values.length > 0 && values.length !== form.files.length) {
        throw new AppError(
          "validation_failed",
          `${values.length} ${name} for ${form.files.length} files; send one per file, in file order`,
        );
      }
    }
    for (const [i, id] of ids.entries()) assertValid(validId, id, `ids/${i}`);
    for (const [i, meta] of metadata.entries()) assertValid(validMetadata, meta, `metadata/${i}`);
    return form.files.map((file, i): Slot => {
      const id = ids[i] as string | undefined;
      if (file.tooLarge) {
        return {
          failed: {
            id: id ?? "",
            status: "failed",
            error: {
              code: "image_too_large",
              message: `${file.filename || "file"} is larger than ${settings.maxImageBytes} bytes (maxImageBytes, LONGCLIP_MAX_IMAGE_BYTES)`,
            },
          },
        };
      }
      const input: IndexInput = {
        bytes: file.bytes,
        filename: file.filename,
        contentType: file.contentType,
      };
      if (id !== undefined) input.id = id;
      const meta = metadata[i] as Schemas["Metadata"] | undefined;
      if (meta !== undefined) input.metadata = meta;
      return { input };
    });
  };

  const pathSlots = (body: Schemas["IndexPathsRequest"]): Slot[] => {
    if (body.items.length > settings.maxBatchItems) {
      throw new AppError(
        "too_many_items",
        `${body.items.length} items in one request; the limit is ${settings.maxBatchItems} (maxBatchItems, LONGCLIP_MAX_BATCH_ITEMS); split the batch`,
        413,
      );
    }
    const root = settings.mediaRoot;
    if (root === undefined) {
      throw new AppError(
        "path_indexing_disabled",
        "indexing by path is disabled: start the server with --media-root DIR (LONGCLIP_MEDIA_ROOT), or upload the files as multipart",
        403,
      );
    }
    const realRoot = realOrSelf(root);
    return body.items.map((item, i) => {
      const resolved = path.resolve(root, item.path);
      if (!isInside(root, resolved) || !isInside(realRoot, realOrSelf(resolved))) {
        throw new AppError(
          "path_outside_media_root",
          `items/${i}/path "${item.path}" is outside the media root; only files under the media root can be indexed by path, nothing was indexed`,
          403,
        );
      }
      const input: IndexInput = { path: resolved };
      if (item.id !== undefined) input.id = item.id;
      if (item.metadata !== undefined) input.metadata = item.metadata;
      return { input };
    });
  };

  return {
    async indexImages(request) {
      const slots =
        mediaType(request) === "multipart/form-data"
          ? uploadSlots(
              await readMultipart(request, settings, {
                fileField: "images",
                maxFiles: settings.maxBatchItems,
                allowedFields: ["ids", "metadata"],
              }),
            )
          : pathSlots(request.body as Schemas["IndexPathsRequest"]);
      const inputs = slots.flatMap((slot) => ("input" in slot ? [slot.input] : []));
      const indexed = inputs.length ? await metrics.time("index", () => library.index(inputs)) : [];
      let next = 0;
      const results = slots.map((slot) => {
        if ("failed" in slot) return slot.failed;
        const result = indexed[next++];
        if (result === undefined)
          throw new Error("library.index returned fewer results than inputs");
        return result;
      });
      metrics.countIndexResults(results.map((r) => r.status));
      return { results } satisfies Schemas["IndexResponse"];
    },

    async searchText(request) {
      const body = request.body as Schemas["SearchRequest"];
      const started = performance.now();
      const result = await metrics.time("search_text", () =>
        library.searchText(body.query, {
          k: body.k,
          exact: body.exact,
          truncate: body.truncate,
          ...(body.filter ? { filter: body.filter } : {}),
        }),
      );
      return {
        hits: result.hits.map(toHit),
        query: result.query,
        took_ms: Math.round((performance.now() - started) * 100) / 100,
      } satisfies Schemas["SearchResponse"];
    },

    async searchImage(request) {
      const query = request.query as { k: number; exact: boolean };
      const started = performance.now();
      const form = await readMultipart(request, settings, {
        fileField: "image",
        maxFiles: 1,
        allowedFields: [],
      });
      const file = form.files[0];
      if (file === undefined) {
        throw new AppError("validation_failed", 'no file in the field "image"; send one image');
      }
      if (file.tooLarge) {
        throw new AppError(
          "image_too_large",
          `the image is larger than ${settings.maxImageBytes} bytes (maxImageBytes, LONGCLIP_MAX_IMAGE_BYTES)`,
          413,
        );
      }
      const result = await metrics.time("search_image", () =>
        library.searchImage(file.bytes, { k: query.k, exact: query.exact }),
      );
      return {
        hits: result.hits.map(toHit),
        took_ms: Math.round((performance.now() - started) * 100) / 100,
      } satisfies Schemas["ImageSearchResponse"];
    },

    async tokenize(request) {
      const { text } = request.body as Schemas["TokenizeRequest"];
      const tokenizer = options.tokenizer;
      if (tokenizer === undefined) {
        throw new AppError(
          "not_ready",
          "this server was started without a tokenizer; restart it with a model directory",
          503,
        );
      }
      checkQueryLength(text);
      const tokens = tokenizer.encode(text);
      return {
        ids: Array.from(tokens.ids),
        tokens: tokens.tokens,
        truncated: tokens.truncated,
        max_tokens: tokenizer.contextLength,
        kept_chars: keptChars(tokenizer, text),
      } satisfies Schemas["TokenizeResponse"];
    },

    async listItems(request) {
      const query = request.query as { cursor?: string; limit: number };
      const page = await library.listItems(query.cursor ?? null, query.limit);
      return {
        items: page.items.map(toItem),
        next_cursor: page.nextCursor,
      } satisfies Schemas["ItemPage"];
    },

    async getItem(request) {
      const id = idParam(request);
      const item = await library.getItem(id);
      if (item === undefined) throw notFound(id);
      return toItem(item);
    },

    async deleteItem(request) {
      const id = idParam(request);
      if (!(await library.deleteItem(id))) throw notFound(id);
      return { id, deleted: true } satisfies Schemas["DeleteResponse"];
    },

    async getItemImage(request, reply) {
      const id = idParam(request);
      const image = await library.readImage(id);
      if (image === undefined) throw notFound(id);
      return reply
        .type(image.contentType)
        .header("x-content-type-options", "nosniff")
        .header("cache-control", "private, no-cache")
        .send(image.bytes);
    },

    async createJob(request, reply) {
      const body = request.body as Schemas["JobRequest"];
      const job = await jobService().create(body);
      return reply.status(202).send(toJob(job));
    },

    async listJobs(request) {
      const { limit } = request.query as { limit: number };
      const jobs = await jobService().list(limit);
      return { jobs: jobs.map(toJob) } satisfies Schemas["JobList"];
    },

    async getJob(request) {
      const id = idParam(request);
      const job = await jobService().get(id);
      if (job === undefined) throw jobNotFound(id);
      return { ...toJob(job), failures: job.failures } satisfies Schemas["Job"];
    },

    async cancelJob(request) {
      const id = idParam(request);
      const job = await jobService().cancel(id);
      if (job === undefined) throw jobNotFound(id);
      return toJob(job);
    },

    async health() {
      return { status: "ok" } satisfies Schemas["Health"];
    },

    async ready() {
      if (isClosing() || !library.ready()) {
        throw new AppError(
          "not_ready",
          isClosing()
            ? "the server is shutting down"
            : `not ready: ${library.notReadyReason() ?? "the library is starting"}`,
          503,
          { retryAfterSeconds: 5 },
        );
      }
      return { status: "ready" } satisfies Schemas["Ready"];
    },

    async stats() {
      const s = await library.stats();
      return {
        items: s.items,
        model_id: s.modelId,
        dims: s.dims,
        device: s.device,
        backend: s.backend,
        index: {
          type: s.index.type,
          space: s.index.space,
          m: s.index.m,
          ef_construction: s.index.efConstruction,
          ef_search: s.index.efSearch,
          capacity: s.index.capacity,
          size: s.index.size,
        },
        queue: { pending: s.queue.pending, capacity: s.queue.capacity },
      } satisfies Schemas["Stats"];
    },

    async metrics(_request, reply) {
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },

    async openapi() {
      return spec;
    },
  };
}
