/**
 * The error catalog (src/core/errors.ts) is the one place a code's HTTP status and meaning are
 * defined: AppError takes its status from it, and what openapi.yaml and the README say of the
 * codes agrees with it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { parse } from "yaml";
import {
  AppError,
  deserializeError,
  ERRORS,
  type ErrorCode,
  errorOf,
  ITEM_FAILURES,
  isErrorCode,
  serializeError,
} from "../src/core/errors.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";

const CODES = Object.keys(ERRORS) as ErrorCode[];

/** The statuses a code may be answered with: its own and the catalog's alternatives. */
function statusesOf(code: ErrorCode): readonly number[] {
  const spec: { status: number; otherStatuses?: readonly number[] } = ERRORS[code];
  return [spec.status, ...(spec.otherStatuses ?? [])];
}

test("every code has an HTTP error status and a one-line meaning", () => {
  for (const code of CODES) {
    assert.match(code, /^[a-z]+(_[a-z]+)*$/, code);
    const { status, meaning } = ERRORS[code];
    assert.ok(status >= 400 && status <= 599, `${code}: ${status}`);
    assert.ok(meaning.length > 0 && meaning.length <= 100 && !meaning.includes("\n"), code);
  }
  for (const [code, meaning] of Object.entries(ITEM_FAILURES)) {
    assert.ok(!isErrorCode(code), `${code} is an item's failure or a response, not both`);
    assert.ok(meaning.length > 0 && meaning.length <= 100, code);
  }
});

test("AppError takes its status from the catalog; only the catalog's alternatives override it", () => {
  assert.equal(new AppError("queue_full", "wait").status, 429);
  assert.equal(new AppError("storage_error", "full").status, 507);
  assert.equal(new AppError("no_reindex", "none").status, 409);
  assert.equal(new AppError("no_reindex", "none", undefined, 404).status, 404);
  assert.equal(new AppError("bad_request", "no", undefined, 405).status, 405);
  // @ts-expect-error: a code outside the catalog does not compile (one cast past it is a 500).
  assert.equal(new AppError("no_such_code", "x").status, 500);
  // @ts-expect-error: nor does a status the catalog does not give the code.
  assert.equal(new AppError("queue_full", "x", undefined, 500).status, 500);
  assert.ok(isErrorCode("not_found"));
  assert.ok(!isErrorCode("toString"), "inherited names are not codes");
});

test("an error crosses a worker boundary with its code, status and details", () => {
  const error = new AppError("no_reindex", "none", { at: 1 }, 404);
  const revived = deserializeError(structuredClone(serializeError(error)));
  assert.ok(revived instanceof AppError);
  assert.deepEqual(
    [revived.code, revived.message, revived.status, revived.details],
    ["no_reindex", "none", 404, { at: 1 }],
  );
  assert.deepEqual(
    errorOf(Object.assign(new Error("x"), { code: "ENOSPC" })).code,
    "storage_error",
  );
});

interface Operation {
  responses?: Record<string, { description?: string; $ref?: string }>;
  parameters?: { name?: string; $ref?: string }[];
}

test("openapi.yaml's error responses name catalog codes, each under a status the catalog gives it", () => {
  const spec = parse(readFileSync(path.join(PROJECT_ROOT, "openapi.yaml"), "utf8")) as {
    paths: Record<string, Record<string, Operation>>;
    components: {
      responses: Record<string, { description: string }>;
      schemas: Record<string, unknown>;
      parameters: Record<string, { name: string }>;
    };
  };
  // Snake-case words in backticks that are not codes must be names of the API (fields, parameters).
  const text = JSON.stringify(spec.components.schemas);
  const apiNames = new Set([
    ...[...text.matchAll(/"([a-z_]+)":/g)].map((m) => m[1]),
    ...Object.values(spec.components.parameters).map((p) => p.name),
  ]);
  const wrong: string[] = [];
  let named = 0;
  for (const [route, operations] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (!/^[45]\d\d$/.test(status)) continue;
        const ref = response.$ref?.replace("#/components/responses/", "");
        const description =
          ref === undefined
            ? (response.description ?? "")
            : spec.components.responses[ref]?.description;
        assert.ok(description, `${method} ${route} ${status} has a description`);
        for (const [, word = ""] of description.matchAll(/`([a-z]+(?:_[a-z]+)+|[a-z]+)`/g)) {
          if (isErrorCode(word)) {
            named++;
            if (!statusesOf(word).includes(Number(status))) {
              wrong.push(
                `${method.toUpperCase()} ${route} ${status}: ${word} is ${ERRORS[word].status}`,
              );
            }
          } else if (word.includes("_") && !apiNames.has(word)) {
            wrong.push(`${method.toUpperCase()} ${route} ${status}: ${word} is no code`);
          }
        }
      }
    }
  }
  assert.ok(named > 50, `codes were found (${named})`);
  assert.deepEqual(wrong, []);
});

test("the README's codes are catalog codes with the statuses it gives them", () => {
  const readme = readFileSync(path.join(PROJECT_ROOT, "README.md"), "utf8");
  const wrong: string[] = [];
  // "`409 image_changed`" anywhere.
  for (const [, status = "", code = ""] of readme.matchAll(/`(\d{3})\s+([a-z_]+)`/g)) {
    if (!isErrorCode(code)) wrong.push(`${status} ${code}: no code`);
    else if (!statusesOf(code).includes(Number(status))) wrong.push(`${status} ${code}`);
  }
  // The list under "Every error has one shape": a status, then the codes it has until the next.
  const start = readme.indexOf("Every error has one shape");
  const list = readme.slice(start, readme.indexOf("\n\n", start));
  let status: number | undefined;
  let listed = 0;
  for (const [, word = ""] of list.matchAll(/`([^`]+)`/g)) {
    const [first = "", second] = word.split(/\s+/);
    if (/^\d{3}$/.test(first)) status = Number(first);
    const code = /^\d{3}$/.test(first) ? second : first;
    if (code === undefined || !/^[a-z]+(_[a-z]+)+$|^[a-z]+$/.test(code)) continue;
    if (Object.hasOwn(ITEM_FAILURES, code)) {
      listed++;
      continue;
    }
    if (!isErrorCode(code)) {
      wrong.push(`${code}: no code`);
      continue;
    }
    listed++;
    if (status === undefined || !statusesOf(code).includes(status)) wrong.push(`${status} ${code}`);
  }
  assert.ok(listed > 20, `the list was read (${listed} codes)`);
  assert.deepEqual(wrong, []);
});
