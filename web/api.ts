/**
 * The page's HTTP client: same-origin requests only, the API key from sessionStorage on
 * every request, and every non-2xx answer turned into an ApiError carrying the server's
 * `{error: {code, message}}`.
 */
import type { components } from "../src/api/types.gen.ts";

export type Schemas = components["schemas"];
export type Hit = Schemas["Hit"];
export type Item = Schemas["Item"];
export type IndexResult = Schemas["IndexResult"];

const KEY_STORAGE = "longclip-api-key";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds from a 429's Retry-After header. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function setApiKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

async function toApiError(response: Response): Promise<ApiError> {
  const retry = Number(response.headers.get("retry-after"));
  const retryAfter = Number.isFinite(retry) && retry > 0 ? retry : undefined;
  try {
    const body = (await response.json()) as Partial<Schemas["Error"]>;
    if (body.error && typeof body.error.code === "string") {
      return new ApiError(response.status, body.error.code, body.error.message, retryAfter);
    }
  } catch {
    // Not JSON: a proxy or a crashed server answered; describe the status instead.
  }
  return new ApiError(
    response.status,
    `http_${response.status}`,
    `the server answered ${response.status} ${response.statusText}`,
    retryAfter,
  );
}

export async function request<T>(
  path: string,
  init: RequestInit & { json?: unknown } = {},
): Promise<T> {
  const headers = new Headers(init.headers);
  const key = apiKey();
  if (key) headers.set("x-api-key", key);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(init.json);
  }
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers, body });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "the server could not be reached; is it running?");
  }
  if (!response.ok) throw await toApiError(response);
  return (await response.json()) as T;
}

export function thumbnailUrl(id: string, size = 256): string {
  return `/items/${encodeURIComponent(id)}/thumbnail?size=${size}`;
}

/** The frame of a video item shown at `t` seconds, as JPEG. */
export function frameUrl(id: string, t: number): string {
  return `/items/${encodeURIComponent(id)}/image?t=${t}`;
}

export function itemUrl(id: string): string {
  return `/items/${encodeURIComponent(id)}`;
}

/** "message (code)" as shown in the page's error states. */
export function describe(error: unknown): string {
  if (error instanceof ApiError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}
