/**
 * A fuzz pass over the JSON and multipart endpoints of `longclip serve` (a child process, so a
 * crash shows as an exit): random and mutated valid requests generated with fast-check (wide
 * filters, long texts read in windows, large compositions with extreme weights included),
 * bounded in count and time. The only assertions: no 5xx, no crash, counts consistent (SQLite
 * rows, the HNSW index, /stats, /items), nothing acknowledged lost.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { multipart, type Part, tempDir } from "./api-helpers.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { patternPng } from "./helpers/library-fixtures.ts";
import { type LongclipProcess, startServe, stopProcess } from "./helpers/longclip-process.ts";
import { mutatedBytes } from "./helpers/mutate.ts";

/** Fixed seed: a failure reproduces; change it to explore further. */
const SEED = 20260115;

interface Sent {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

const text = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "binary", maxLength: 40 }),
  fc.constantFrom("", ".", "..", "../etc/passwd", "a/../../x", "%00", "\u0000", "ü".repeat(200)),
);
const json = fc.jsonValue({ maxDepth: 4 });
const filterKey = fc.oneof(text, fc.constantFrom(".", ".a", "a.b", "$", "a[0]", '"', "'"));
/** Filters near and past the limits: up to 40 keys, lists of up to 120 values (issue 24). */
const wideFilter = fc.dictionary(
  fc.oneof(fc.stringMatching(/^k[0-9]{1,2}$/), filterKey),
  fc.oneof(
    json,
    fc.record(
      {
        $in: fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.constant(null)), {
          maxLength: 120,
        }),
        $nin: fc.array(fc.oneof(fc.string({ maxLength: 8 }), fc.double()), { maxLength: 120 }),
        $gte: fc.oneof(fc.integer(), fc.constantFrom("2024-01-01", "2024-02-30")),
        $exists: fc.oneof(fc.boolean(), json),
      },
      { requiredKeys: [] },
    ),
  ),
  { maxKeys: 40 },
);

/** Paragraphs of up to ~40 sentences: past 248 tokens, and past the window caps with chunk. */
const longText = fc
  .tuple(
    fc.integer({ min: 1, max: 40 }),
    fc.constantFrom("A red circle. ", "Two blue squares sit low; ", "ü! "),
  )
  .map(([count, sentence]) => sentence.repeat(count));
/** Compositions near and past the limits: many parts, long texts, huge and odd weights. */
const compose = fc.array(
  fc.record(
    {
      text: fc.oneof(text, longText, json),
      item_id: fc.oneof(text, json),
      weight: fc.oneof(fc.double(), fc.constantFrom(0, -0, 1e200, -1e200, 1e-300, 1e308), json),
    },
    { requiredKeys: [] },
  ),
  { maxLength: 20 },
);

function jsonRequests(): fc.Arbitrary<Sent> {
  const body = (value: fc.Arbitrary<unknown>) => value.map((v) => JSON.stringify(v));
  const search = fc.record(
    {
      query: fc.oneof(text, json, longText),
      compose,
      long_query: fc.oneof(fc.constantFrom("truncate", "chunk"), json),
      k: fc.oneof(fc.integer({ min: -5, max: 2000 }), fc.double(), text),
      exact: fc.oneof(fc.boolean(), json),
      truncate: fc.oneof(fc.boolean(), json),
      filter: fc.oneof(fc.dictionary(filterKey, json, { maxKeys: 3 }), json, wideFilter),
      mode: fc.constantFrom("vector", "keyword", "hybrid"),
    },
    { requiredKeys: [] },
  );
  const indexPaths = fc.record(
    {
      items: fc.oneof(
        fc.array(
          fc.record(
            {
              path: fc.oneof(text, fc.constantFrom("good.png", "sub/../good.png", "missing.png")),
              id: fc.oneof(text, json),
              metadata: json,
            },
            { requiredKeys: [] },
          ),
          { maxLength: 4 },
        ),
        json,
      ),
    },
    { requiredKeys: [] },
  );
  const raw = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
    body(json),
    fc.constantFrom('{"query": "a', "[]", "null", "{}", '{"query":"x","k":1e309}'),
  );
  const post = (url: string, payload: fc.Arbitrary<string | Buffer>) =>
    fc.record({
      method: fc.constant("POST"),
      url: fc.constant(url),
      headers: fc.constantFrom<Record<string, string>>(
        { "content-type": "application/json" },
        { "content-type": "application/json; charset=utf-8" },
        { "content-type": "text/plain" },
      ),
      body: payload,
    });
  const idPath = fc.oneof(
    text,
    fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 32, maxLength: 32 }),
  );
  return fc.oneof(
    post("/search", fc.oneof(body(search), raw)),
    post("/index", fc.oneof(body(indexPaths), raw)),
    post("/tokenize", fc.oneof(body(fc.record({ text: fc.oneof(text, json) })), raw)),
    post("/jobs", fc.oneof(body(fc.record({ paths: fc.array(text, { maxLength: 3 }) })), raw)),
    fc.record({
      method: fc.constant("GET"),
      url: fc
        .tuple(fc.oneof(text, json.map(String)), fc.oneof(text, fc.integer().map(String)))
        .map(
          ([cursor, limit]) =>
            `/items?cursor=${encodeURIComponent(cursor)}&limit=${encodeURIComponent(limit)}`,
        ),
    }),
    fc.record({
      method: fc.constantFrom("GET", "DELETE"),
      url: idPath.map((id) => `/items/${encodeURIComponent(id)}`),
    }),
    fc.record({
      method: fc.constant("GET"),
      url: fc
        .tuple(idPath, fc.oneof(fc.integer({ min: -10, max: 5000 }).map(String), text))
        .map(
          ([id, size]) =>
            `/items/${encodeURIComponent(id)}/thumbnail?size=${encodeURIComponent(size)}`,
        ),
    }),
  );
}

function multipartRequests(valid: Buffer[]): fc.Arbitrary<Sent> {
  const file = fc.oneof(...valid.map(mutatedBytes));
  const part: fc.Arbitrary<Part> = fc.oneof(
    fc.record({
      name: fc.constantFrom("images", "image", "other"),
      value: file,
      filename: fc.constantFrom("a.png", "", "../../x.png", "ä.jpg"),
      contentType: fc.constantFrom("image/png", "application/octet-stream", "text/plain"),
    }),
    fc.record({
      name: fc.constantFrom("ids", "metadata", "other"),
      value: fc.oneof(
        text,
        json.map((v) => JSON.stringify(v)),
      ),
    }),
  );
  const rarely = <T>(arbitrary: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary });
  // Mostly well-formed uploads (images, then matching ids or metadata), sometimes anything.
  const upload = fc
    .tuple(
      fc.array(file, { minLength: 1, maxLength: 4 }),
      rarely(fc.array(text, { minLength: 1, maxLength: 4 })),
      rarely(
        fc.array(
          json.map((v) => JSON.stringify(v)),
          { minLength: 1, maxLength: 4 },
        ),
      ),
    )
    .map(([files, ids, metadata]) => [
      ...files.map((value, i) => ({ name: "images", value, filename: `f${i}.png` })),
      ...(ids ?? []).map((value) => ({ name: "ids", value })),
      ...(metadata ?? []).map((value) => ({ name: "metadata", value })),
    ]);
  const form = fc
    .oneof(
      { weight: 3, arbitrary: upload },
      { weight: 1, arbitrary: fc.array(part, { minLength: 0, maxLength: 6 }) },
    )
    .map((parts) => multipart(parts));
  return fc
    .tuple(
      fc.constantFrom("/index", "/search/image", "/search/image?k=3", "/search/image?k=0"),
      form,
      // Sometimes the encoded body itself is cut or corrupted.
      rarely(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }))),
      rarely(fc.nat()),
    )
    .map(([url, encoded, flip, cut]) => {
      let payload = Buffer.from(encoded.payload);
      if (flip !== null && payload.length > 0) payload[flip[0] % payload.length] = flip[1];
      if (cut !== null) payload = payload.subarray(0, cut % (payload.length + 1));
      return { method: "POST", url, headers: encoded.headers, body: payload };
    });
}

describe("hardening: fuzzing the API", () => {
  let server: LongclipProcess;
  const acknowledged = new Set<string>();
  const deleted = new Set<string>();
  const answered = new Map<number, number>();

  const send = async (request: Sent): Promise<void> => {
    const res = await fetch(`${server.url}${request.url}`, {
      method: request.method,
      headers: request.headers ?? {},
      ...(request.body === undefined ? {} : { body: request.body }),
      // A request that hangs is a finding too.
      signal: AbortSignal.timeout(30_000),
    });
    const body = await res.text();
    answered.set(res.status, (answered.get(res.status) ?? 0) + 1);
    assert.ok(
      res.status < 500 || (res.status === 503 && body.includes("server_busy")),
      `${request.method} ${request.url} → ${res.status} ${body.slice(0, 300)}`,
    );
    if (res.status >= 400) {
      const parsed = JSON.parse(body) as { error?: { code?: unknown } };
      assert.equal(typeof parsed.error?.code, "string", `error shape: ${body.slice(0, 200)}`);
    }
    if (request.method === "POST" && request.url === "/index" && res.status === 200) {
      for (const r of (JSON.parse(body) as { results: { id: string; status: string }[] }).results) {
        if (r.status === "indexed") acknowledged.add(r.id);
      }
    }
    if (request.method === "DELETE" && res.status === 200) {
      deleted.add(decodeURIComponent(request.url.slice("/items/".length)));
    }
  };

  before(async () => {
    const media = tempDir("longclip-fuzz-media-");
    writeFileSync(path.join(media, "good.png"), await patternPng(900));
    server = await startServe([
      "--model",
      demoModelWithoutGallery(),
      "--data",
      tempDir("longclip-fuzz-"),
      "--media-root",
      media,
    ]);
  });
  after(async () => {
    if (server !== undefined) await stopProcess(server);
  });

  test("random and mutated JSON requests: no 5xx", async () => {
    await fc.assert(fc.asyncProperty(jsonRequests(), send), {
      seed: SEED,
      numRuns: 300,
      interruptAfterTimeLimit: 45_000,
    });
  });

  test("random and mutated multipart uploads: no 5xx", async () => {
    const valid = await Promise.all(
      Array.from({ length: 24 }, (_, i) => patternPng(910 + i, i % 2 === 0 ? 48 : 64)),
    );
    await fc.assert(fc.asyncProperty(multipartRequests(valid), send), {
      seed: SEED,
      numRuns: 200,
      interruptAfterTimeLimit: 60_000,
    });
  });

  test("after the fuzzing: alive, counts consistent, nothing acknowledged lost", async (t) => {
    assert.equal(server.child.exitCode, null, `the server exited:\n${server.stderr()}`);
    const stats = (await (await fetch(`${server.url}/stats`)).json()) as {
      items: number;
      index: { size: number };
    };
    const listed: string[] = [];
    for (let cursor: string | null = null, first = true; first || cursor !== null; first = false) {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const page = (await (await fetch(`${server.url}/items?limit=100${query}`)).json()) as {
        items: { id: string }[];
        next_cursor: string | null;
      };
      listed.push(...page.items.map((i) => i.id));
      cursor = page.next_cursor;
    }
    assert.equal(stats.items, listed.length, "/stats and /items agree");
    assert.equal(stats.index.size, stats.items, "the HNSW index holds every stored item");
    for (const id of acknowledged) {
      if (deleted.has(id)) continue;
      assert.ok(listed.includes(id), `acknowledged item ${id} is gone`);
    }
    assert.ok(acknowledged.size > 0, "the fuzzing indexed something (else it tested little)");
    t.diagnostic(
      `answers by status: ${JSON.stringify(Object.fromEntries([...answered].sort()))}; ${acknowledged.size} items acknowledged, ${stats.items} stored`,
    );
  });
});
