/** What every route module gets: the settings, the library and the server's shared parts. */
import type {
  FastifyBaseLogger,
  FastifyReply,
  FastifyRequest,
  FastifyServerOptions,
} from "fastify";
import type { OpenApiDocument } from "../../api/spec.ts";
import type { Settings } from "../../core/settings.ts";
import type { JobService } from "../../jobs/service.ts";
import type { Library } from "../../library/types.ts";
import type { TextTokenizer } from "../../tokenize/types.ts";
import type { Budget } from "../../util/budget.ts";
import type { AppMetrics } from "../metrics.ts";
import type { SpecValidators } from "../validation.ts";

export interface AppOptions {
  /** The model's tokenizer, for POST /tokenize (503 not_ready without one). */
  tokenizer?: TextTokenizer;
  /** Jobs (POST /jobs and friends); 503 not_ready without. */
  jobs?: JobService;
  /** fastify's logger option: false (tests), true, or pino options. */
  logger?: FastifyServerOptions["logger"];
  /** A logger to use instead (serve's, see ../logger.ts); wins over `logger`. */
  loggerInstance?: FastifyBaseLogger;
  /** The OpenAPI document; loaded from openapi.yaml when absent. */
  spec?: OpenApiDocument;
}

export interface RouteContext {
  settings: Settings;
  library: Library;
  metrics: AppMetrics;
  validators: SpecValidators;
  spec: OpenApiDocument;
  options: AppOptions;
  /** Bytes of bodies and image reads held in memory now, across requests (maxBufferedBytes). */
  buffered: Budget;
  /** True once the server started draining for shutdown. */
  isClosing: () => boolean;
}

export type Handler = (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;

/** Handlers by openapi.yaml operationId. */
export type Handlers = Record<string, Handler>;

export function imageUrl(id: string): string {
  return `/items/${encodeURIComponent(id)}/image`;
}

/** The request's media type, lower-case and without parameters. */
export function mediaType(request: FastifyRequest): string | undefined {
  const header = request.headers["content-type"];
  return header?.split(";")[0]?.trim().toLowerCase() || undefined;
}

export function idParam(request: FastifyRequest): string {
  return (request.params as { id: string }).id;
}

/** Milliseconds since `started`, rounded to 0.01, for `took_ms`. */
export function tookMs(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}
