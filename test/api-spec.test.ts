/**
 * openapi.yaml itself: the generated types are current, every error response uses the one
 * error shape, secured operations document 401, and the route schemas compile in the validator.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";
import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";
import { componentSchemas, loadSpec, SPEC_PATH, specOperations } from "../src/api/spec.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { CLIENT_ID, MAX_METADATA_BYTES, MAX_METADATA_DEPTH } from "../src/library/ingest/inputs.ts";
import { parseTextFields } from "../src/library/search/hybrid.ts";
import { MAX_COMPOSE_PARTS } from "../src/library/search/search.ts";
import { createValidators } from "../src/server/validation.ts";
import { MAX_IN_VALUES } from "../src/store/filter.ts";

const spec = loadSpec();
const operations = specOperations(spec);

test("src/api/types.gen.ts is what `npm run gen:api` makes from openapi.yaml", async () => {
  const generated = COMMENT_HEADER + astToString(await openapiTS(pathToFileURL(SPEC_PATH)));
  const committed = readFileSync(path.join(PROJECT_ROOT, "src", "api", "types.gen.ts"), "utf8");
  assert.ok(generated === committed, "types.gen.ts is stale: run npm run gen:api and commit it");
});

test("operation ids are unique and every error response is the Error schema", () => {
  const ids = operations.map((op) => op.operationId);
  assert.equal(new Set(ids).size, ids.length);
  for (const op of operations) {
    const responses = (op.schema.response ?? {}) as Record<string, unknown>;
    for (const [status, schema] of Object.entries(responses)) {
      if (Number(status) >= 400) {
        assert.deepEqual(schema, { $ref: "Error#" }, `${op.operationId} ${status}`);
      }
    }
  }
});

test("secured operations are the writes and document 401", () => {
  const secured = operations.filter((op) => op.secured).map((op) => op.operationId);
  assert.deepEqual(secured.sort(), [
    "cancelJob",
    "createJob",
    "deleteItem",
    "indexImages",
    "startReindex",
    "switchReindex",
  ]);
  for (const op of operations.filter((o) => o.secured)) {
    assert.ok("401" in (op.schema.response as object), `${op.operationId} documents 401`);
  }
});

test("every route schema compiles against the component schemas", () => {
  const validators = createValidators(componentSchemas(spec));
  let compiled = 0;
  for (const op of operations) {
    for (const part of ["params", "querystring"] as const) {
      const schema = op.schema[part];
      if (schema === undefined) continue;
      validators.compiler({ schema, method: op.method, url: op.url, httpPart: part });
      compiled++;
    }
    const body = op.schema.body as { content: Record<string, { schema: object }> } | undefined;
    for (const media of Object.values(body?.content ?? {})) {
      validators.compiler({
        schema: media.schema,
        method: op.method,
        url: op.url,
        httpPart: "body",
      });
      compiled++;
    }
  }
  assert.ok(compiled >= 8);
});

test("the JSON body validator applies the documented defaults and rejects unknown fields", () => {
  const validators = createValidators(componentSchemas(spec));
  const validate = validators.component("SearchRequest");
  const body: Record<string, unknown> = { query: "a cat" };
  assert.equal(validate(body), true);
  assert.deepEqual(body, {
    query: "a cat",
    k: 10,
    offset: 0,
    truncate: true,
    long_query: "truncate",
    exact: false,
    mode: "vector",
  });
  assert.equal(validate({ query: "a cat", k: "10" }), false, "bodies are not coerced");
  assert.equal(validate({ query: "a cat", extra: 1 }), false);
});

test("the library's own shape checks (CLI and library callers) use openapi.yaml's limits", () => {
  // The HTTP layer validates against openapi.yaml; the library checks the same shapes for
  // callers that do not pass through it, so each limit is written twice and must agree.
  interface Schema {
    maxItems?: number;
    maxLength?: number;
    pattern?: string;
    items?: Schema;
    properties?: Record<string, Schema>;
  }
  const schemas = spec.components.schemas as Record<string, Schema>;
  const search = schemas.SearchRequest?.properties ?? {};
  assert.equal(search.compose?.maxItems, MAX_COMPOSE_PARTS, "compose parts");
  const condition = schemas.FilterCondition?.properties ?? {};
  assert.equal(condition.$in?.maxItems, MAX_IN_VALUES, "$in values");
  assert.equal(condition.$nin?.maxItems, MAX_IN_VALUES, "$nin values");

  const id = schemas.Id ?? {};
  const idPattern = new RegExp(id.pattern ?? "");
  const idLimit = id.maxLength ?? 0;
  assert.ok(idLimit > 0, "Id has maxLength");
  for (const candidate of [
    "a".repeat(idLimit),
    "a".repeat(idLimit + 1),
    "a:b.c-d_e",
    "a b",
    "a/b",
    "",
  ]) {
    const openapi =
      candidate.length >= 1 && candidate.length <= idLimit && idPattern.test(candidate);
    assert.equal(CLIENT_ID.test(candidate), openapi, `id of ${candidate.length} characters`);
  }

  const fields = search.text_fields ?? {};
  const most = Array.from({ length: fields.maxItems ?? 0 }, (_, i) => `f${i}`);
  assert.ok(most.length > 0, "text_fields has maxItems");
  assert.deepEqual(parseTextFields(most, "text_fields"), most);
  assert.throws(() => parseTextFields([...most, "one_more"], "text_fields"), {
    code: "validation_failed",
  });
  const source = fields.items?.pattern ?? "";
  const pattern = new RegExp(source);
  const longest = "a".repeat(Number(/\{1,(\d+)\}/.exec(source)?.[1]));
  for (const field of [longest, `${longest}a`, "a.b", "a b", "x-y_Z9"]) {
    const accepted = (() => {
      try {
        parseTextFields([field], "text_fields");
        return true;
      } catch {
        return false;
      }
    })();
    assert.equal(accepted, pattern.test(field), `text field "${field}"`);
  }

  // The metadata limits are prose in the /index errors: the numbers must be the library's.
  const documented = /over (\d+) KiB of JSON or nested over (\d+) levels/.exec(
    readFileSync(SPEC_PATH, "utf8"),
  );
  assert.ok(documented, "openapi.yaml states the metadata limits");
  assert.equal(Number(documented[1]) * 1024, MAX_METADATA_BYTES, "metadata bytes");
  assert.equal(Number(documented[2]), MAX_METADATA_DEPTH, "metadata depth");
});
