/**
 * openapi.yaml as the server's single source of truth: loads the document and turns each
 * operation into a fastify route schema (params, querystring, JSON body, JSON responses) that
 * points at the document's component schemas, registered once under their own names.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "yaml";
import { PROJECT_ROOT } from "../core/settings.ts";
import type { components } from "./types.gen.ts";

export type Schemas = components["schemas"];

export const SPEC_PATH = path.join(PROJECT_ROOT, "openapi.yaml");

export const HTTP_METHODS = ["get", "put", "post", "delete", "patch", "head", "options"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

type JsonObject = Record<string, unknown>;

export interface OpenApiDocument extends JsonObject {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
  components: {
    schemas: Record<string, JsonObject>;
    parameters?: Record<string, JsonObject>;
    responses?: Record<string, JsonObject>;
  };
}

export interface SpecOperation {
  operationId: string;
  method: HttpMethod;
  /** The OpenAPI path, e.g. `/items/{id}`. */
  path: string;
  /** The fastify path, e.g. `/items/:id`. */
  url: string;
  /** True when the operation lists security requirements (an API key, when one is set). */
  secured: boolean;
  /** Media types of the request body, empty when the operation takes none. */
  requestContentTypes: string[];
  /** The fastify route schema: $refs point at `Name#`, the component schemas' $ids. */
  schema: JsonObject;
}

export function loadSpec(file = SPEC_PATH): OpenApiDocument {
  return parse(readFileSync(file, "utf8")) as OpenApiDocument;
}

const COMPONENT_SCHEMA_REF = "#/components/schemas/";

/** Rewrites `#/components/schemas/X` refs to `X#` so they resolve against registered schemas. */
function rewriteRefs(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(rewriteRefs);
  if (value === null || typeof value !== "object") return value;
  const out: JsonObject = {};
  for (const [key, child] of Object.entries(value)) {
    if (key === "$ref" && typeof child === "string" && child.startsWith(COMPONENT_SCHEMA_REF)) {
      out[key] = `${child.slice(COMPONENT_SCHEMA_REF.length)}#`;
    } else {
      out[key] = rewriteRefs(child);
    }
  }
  return out;
}

/** The component schemas with `$id` set to their name, ready for fastify.addSchema / ajv. */
export function componentSchemas(doc: OpenApiDocument): JsonObject[] {
  return Object.entries(doc.components.schemas).map(([name, schema]) => ({
    $id: name,
    ...(rewriteRefs(schema) as JsonObject),
  }));
}

/** Follows a `#/components/<kind>/<name>` reference (parameters, responses). */
function deref(doc: OpenApiDocument, value: unknown): JsonObject {
  const node = value as JsonObject;
  const ref = node.$ref;
  if (typeof ref !== "string" || ref.startsWith(COMPONENT_SCHEMA_REF)) return node;
  const [, , kind, name] = ref.split("/");
  const table = (doc.components as Record<string, Record<string, JsonObject> | undefined>)[
    kind ?? ""
  ];
  const target = table?.[name ?? ""];
  if (target === undefined) throw new Error(`openapi.yaml: unresolved reference ${ref}`);
  return target;
}

function parameterSchema(params: JsonObject[]): JsonObject | undefined {
  if (params.length === 0) return undefined;
  const properties: JsonObject = {};
  const required: string[] = [];
  for (const param of params) {
    const name = String(param.name);
    properties[name] = rewriteRefs(param.schema ?? {});
    if (param.required === true) required.push(name);
  }
  return { type: "object", properties, required, additionalProperties: false };
}

/** Every operation of the document, with its fastify route schema. */
export function specOperations(doc: OpenApiDocument): SpecOperation[] {
  const operations: SpecOperation[] = [];
  for (const [specPath, pathItem] of Object.entries(doc.paths)) {
    const shared = ((pathItem.parameters as unknown[] | undefined) ?? []).map((p) => deref(doc, p));
    for (const method of HTTP_METHODS) {
      const op = pathItem[method] as JsonObject | undefined;
      if (op === undefined) continue;
      const own = ((op.parameters as unknown[] | undefined) ?? []).map((p) => deref(doc, p));
      const params = [...shared, ...own];
      const schema: JsonObject = {};
      const pathParams = parameterSchema(params.filter((p) => p.in === "path"));
      const query = parameterSchema(params.filter((p) => p.in === "query"));
      if (pathParams) schema.params = pathParams;
      if (query) schema.querystring = query;

      const body = op.requestBody ? deref(doc, op.requestBody) : undefined;
      const content = (body?.content ?? {}) as Record<string, JsonObject>;
      const json = content["application/json"];
      // Only JSON bodies go through the validator; multipart parts are read and checked by
      // the handlers (against the same component schemas) as they stream in.
      if (json)
        schema.body = { content: { "application/json": { schema: rewriteRefs(json.schema) } } };

      const responses: JsonObject = {};
      for (const [status, raw] of Object.entries((op.responses ?? {}) as JsonObject)) {
        const response = deref(doc, raw);
        const media = (response.content ?? {}) as Record<string, JsonObject>;
        const jsonResponse = media["application/json"];
        if (jsonResponse?.schema) responses[status] = rewriteRefs(jsonResponse.schema);
      }
      if (Object.keys(responses).length > 0) schema.response = responses;

      operations.push({
        operationId: String(op.operationId),
        method,
        path: specPath,
        url: specPath.replace(/\{([^}]+)\}/g, ":$1"),
        secured: Array.isArray(op.security) && op.security.length > 0,
        requestContentTypes: Object.keys(content),
        schema,
      });
    }
  }
  return operations;
}
