/**
 * Nearest-neighbour search on a real Postgres + pgvector (native where it runs): a filtered
 * search returns k items whenever k items match, even when every matching item lies far from
 * the query, beyond what pgvector's iterative index scan visits (hnsw.max_scan_tuples); and a
 * search costs one statement (one round trip) once its connection has the search's settings.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import pg from "pg";
import { toSql } from "pgvector";
import { EXACT_FILTER_LIMIT } from "../src/store/filter.ts";
import { MAX_SCAN_TUPLES } from "../src/store/postgres/search.ts";
import { PostgresStore } from "../src/store/postgres/store.ts";
import { xorshift32 } from "../tools/bench/random.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";
import { startStatementGate } from "./helpers/statement-gate.ts";

const DIMS = 8;
/** More near items than the walk visits, and more far ones than the exact path takes. */
const NEAR = MAX_SCAN_TUPLES + 10_000;
const FAR = EXACT_FILTER_LIMIT + 500;

let postgres: TestPostgres;
before(async () => {
  postgres = await startPostgres();
});
after(() => postgres?.stop());

/** Seeded noise, so the expected answer is the same on every run. */
function noise(seed: number): () => number {
  const next = xorshift32(seed);
  return () => (next() / 0xffffffff - 0.5) * 0.2;
}

test("a filtered search whose matching items all lie far from the query still returns k of them, the nearest", async () => {
  const random = noise(7);
  // Near items around +e1, far ones (group 1) around -e1; the query is +e1.
  const rows = Array.from({ length: NEAR + FAR }, (_, i) => {
    const far = i >= NEAR;
    const vector = Array.from(
      { length: DIMS },
      (_, d) => (d === 0 ? (far ? -1 : 1) : 0) + random(),
    );
    return { id: `i${i}`, group: far ? 1 : 0, vector };
  });
  const query = Float32Array.from({ length: DIMS }, (_, d) => (d === 0 ? 1 : 0));
  // The expected answer, by brute force here: the 10 far items of highest cosine to the query.
  const cosine = (v: number[]) => (v[0] as number) / Math.hypot(...v);
  const expected = rows
    .filter((row) => row.group === 1)
    .sort((a, b) => cosine(b.vector) - cosine(a.vector))
    .slice(0, 10)
    .map((row) => row.id);

  const open = () =>
    PostgresStore.open({
      url: postgres.url,
      vectorType: "halfvec",
      m: 16,
      efConstruction: 64,
      efSearch: 0,
    });
  const store = await open();
  try {
    await store.setModel({ modelId: "m", dims: DIMS });
    // A bulk load (as a migration would make it), then the index built once by the product.
    const client = new pg.Client({ connectionString: postgres.url });
    await client.connect();
    try {
      await client.query("DROP INDEX longclip.items_embedding_hnsw");
      await client.query("DELETE FROM longclip.meta WHERE key = 'hnsw_index'");
      for (let start = 0; start < rows.length; start += 5_000) {
        const batch = rows.slice(start, start + 5_000);
        await client.query(
          `INSERT INTO longclip.items (id, sha256, metadata, content_type, width, height, bytes, source, path, model_id, embedding)
           SELECT id, md5(id), jsonb_build_object('group', g), 'image/png', 1, 1, 1, 'path', id, 'm', e::vector
           FROM unnest($1::text[], $2::int[], $3::text[]) AS t(id, g, e)`,
          [batch.map((r) => r.id), batch.map((r) => r.group), batch.map((r) => toSql(r.vector))],
        );
      }
      await client.query("ANALYZE longclip.items");
    } finally {
      await client.end();
    }
    await store.prepare();

    // A range filter (no index serves it), matching more items than the exact path scans.
    const hits = await store.nearest({ vector: query, k: 10, filter: { group: { $gte: 1 } } }, "m");
    assert.equal(hits.length, 10, `a filtered search returned ${hits.length} of 10 matching items`);
    assert.deepEqual(
      hits.map((hit) => hit.item.id),
      expected,
    );
    // Unfiltered, the index answers (the nearest are near items).
    const plain = await store.nearest({ vector: query, k: 10 }, "m");
    assert.equal(plain.length, 10);
    assert.ok(plain.every((hit) => hit.item.metadata.group === 0));
  } finally {
    await store.close();
  }
});

test("a search is one statement once its pooled connection has the search's settings, and finds what an exact scan finds", async () => {
  await postgres.reset();
  const gate = await startStatementGate(postgres.url);
  const store = await PostgresStore.open({
    url: gate.url,
    vectorType: "halfvec",
    m: 16,
    efConstruction: 64,
    efSearch: 0,
    poolSize: 2,
  });
  try {
    await store.setModel({ modelId: "m", dims: DIMS });
    const random = noise(11);
    const vectors = Array.from({ length: 200 }, () =>
      Float32Array.from({ length: DIMS }, () => random()),
    );
    await store.insertItems(
      vectors.map((vector, i) => ({
        id: `v${i}`,
        sha256: createHash("sha256").update(`v${i}`).digest("hex"),
        metadata: { n: i },
        contentType: "image/png",
        width: 1,
        height: 1,
        bytes: 1,
        source: "path" as const,
        path: `v${i}.png`,
        vector,
      })),
      "m",
    );
    const search = async (vector: Float32Array, k: number, exact = false) =>
      (await store.nearest({ vector, k, exact }, "m")).map((hit) => hit.item.id);
    // The first searches of each pooled connection set its session (and read the table's size).
    await Promise.all([
      search(vectors[0] as Float32Array, 10),
      search(vectors[1] as Float32Array, 10),
    ]);
    const before = gate.statements();
    for (let i = 0; i < 6; i++) {
      const vector = vectors[i] as Float32Array;
      assert.deepEqual(await search(vector, 10), await search(vector, 10, true));
    }
    // 12 searches: 12 statements (a BEGIN with SET LOCAL, the query and a COMMIT would be 36).
    assert.equal(gate.statements() - before, 12);
    // Another depth wants another ef_search: one statement more on each connection it reaches.
    const deeper = gate.statements();
    const vector = vectors[7] as Float32Array;
    const walked = await store.nearest({ vector, k: 50 }, "m");
    const exact = await store.nearest({ vector, k: 50, exact: true }, "m");
    assert.deepEqual(
      walked.map((hit) => hit.item.id),
      exact.map((hit) => hit.item.id),
    );
    // Scores by the full vectors and a full-precision query (a half-precision one differs ~1e-5).
    for (const [i, hit] of walked.entries()) {
      assert.ok(Math.abs(hit.score - (exact[i]?.score ?? 0)) < 1e-9, `score of ${hit.item.id}`);
    }
    assert.ok(gate.statements() - deeper <= 4, `${gate.statements() - deeper} statements`);

    // bench:scale's "as before" rows: a transaction per search, three statements each.
    const asBefore = await PostgresStore.open({
      url: gate.url,
      vectorType: "halfvec",
      m: 16,
      efConstruction: 64,
      efSearch: 0,
      transactionPerSearch: true,
    });
    try {
      await asBefore.nearest({ vector, k: 10 }, "m");
      const start = gate.statements();
      const hits = await asBefore.nearest({ vector, k: 10 }, "m");
      assert.equal(gate.statements() - start, 3);
      assert.deepEqual(
        hits.map((hit) => hit.item.id),
        exact.slice(0, 10).map((hit) => hit.item.id),
      );
    } finally {
      await asBefore.close();
    }
  } finally {
    await store.close();
    await gate.close();
  }
});
