/**
 * Keyword and hybrid search, near-duplicate groups and `near_duplicate_of` through the HTTP
 * API (supertest over a real socket), on both storage backends, with the demo model and
 * images of its gallery. Expected rankings and groups are computed here from the API's own
 * vector and keyword rankings and from an all-pairs scan of the stored embeddings.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { Response } from "supertest";
import type { components } from "../src/api/types.gen.ts";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import type { LongclipLibrary } from "../src/library/library.ts";
import { cosine } from "../src/vector-index/exact.ts";
import { multipart, startTestApp, type TestServer } from "./api-helpers.ts";
import { tempDir } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";

type S = components["schemas"];

const GALLERY = path.join(DEFAULT_SETTINGS.modelDir, "gallery");
const manifest = JSON.parse(readFileSync(path.join(GALLERY, "gallery.json"), "utf8")) as {
  items: { file: string; caption: string }[];
};
/** Eight scenes: two groups of four that share their first sentence. */
const SCENES = manifest.items.slice(0, 8);
const THRESHOLD = 0.97;

async function copies(): Promise<{ id: string; bytes: Buffer; of: string }[]> {
  const first = readFileSync(path.join(GALLERY, SCENES[0]?.file as string));
  const second = readFileSync(path.join(GALLERY, SCENES[5]?.file as string));
  return [
    // Re-encoded at a lower JPEG quality; resized to 60% and stored as PNG.
    { id: "copy-reencoded", bytes: await sharp(first).jpeg({ quality: 55 }).toBuffer(), of: "s0" },
    {
      id: "copy-resized",
      bytes: await sharp(second)
        .resize({ width: Math.round(((await sharp(second).metadata()).width ?? 224) * 0.6) })
        .png()
        .toBuffer(),
      of: "s5",
    },
  ];
}

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`search modes and near-duplicates over HTTP (${backend})`, () => {
    let server: TestServer;
    let postgres: TestPostgres | undefined;
    const http = () => server.http;
    const search = (body: object) => http().post("/search").send(body);
    const upload = (
      files: { id: string; bytes: Buffer; filename: string; metadata?: object }[],
    ) => {
      const form = multipart(
        files.flatMap((file) => [
          { name: "images", value: file.bytes, filename: file.filename, contentType: "image/jpeg" },
          { name: "ids", value: file.id },
          { name: "metadata", value: JSON.stringify(file.metadata ?? {}) },
        ]),
      );
      return http().post("/index").set(form.headers).send(form.payload);
    };
    const expectError = (res: Response, status: number, code: string) => {
      assert.equal(res.status, status, res.text);
      assert.equal((res.body as S["Error"]).error.code, code, res.text);
    };

    const mediaRoot = tempDir("longclip-media-");

    before(async () => {
      if (backend === "postgres") postgres = await startPostgres();
      server = await startTestApp({
        modelDir: DEFAULT_SETTINGS.modelDir,
        nearDuplicateThreshold: THRESHOLD,
        mediaRoot,
        ...(postgres ? { databaseUrl: postgres.url } : {}),
      });
      const res = await upload(
        SCENES.map((scene, i) => ({
          id: `s${i}`,
          bytes: readFileSync(path.join(GALLERY, scene.file)),
          filename: `scene-${i}.jpg`,
          // The made-up tag is a word no image can show.
          metadata:
            i === 6 ? { caption: scene.caption, tags: ["zorblat"] } : { caption: scene.caption },
        })),
      );
      assert.equal(res.status, 200, res.text);
      const results = (res.body as S["IndexResponse"]).results;
      assert.deepEqual(
        results.map((r) => r.status),
        SCENES.map(() => "indexed"),
      );
    });
    after(async () => {
      await server?.app.close();
      await postgres?.stop();
    });

    test("an upload keeps its file name as metadata and keyword search finds it", async () => {
      const item = (await http().get("/items/s3")).body as S["Item"];
      assert.equal(item.metadata.filename, "scene-3.jpg");
      // A file name given in the metadata wins over the upload's.
      const bytes = readFileSync(path.join(GALLERY, manifest.items[30]?.file as string));
      const named = await upload([
        { id: "named", bytes, filename: "dir/other.jpg", metadata: { filename: "given.jpg" } },
      ]);
      assert.equal(named.status, 200, named.text);
      assert.equal(
        ((await http().get("/items/named")).body as S["Item"]).metadata.filename,
        "given.jpg",
      );
      await http().delete("/items/named");
      const res = await search({
        query: "scene 3",
        mode: "keyword",
        k: 3,
        text_fields: ["filename"],
      });
      assert.equal(res.status, 200, res.text);
      // Every file name has "scene" and "jpg"; only one has "3".
      assert.equal((res.body as S["SearchResponse"]).hits[0]?.id, "s3");
    });

    test("a file indexed by path keeps its name and path as metadata; keyword search finds both", async () => {
      const folder = path.join(mediaRoot, "trips", "kelpwood");
      mkdirSync(folder, { recursive: true });
      const scene = manifest.items[31]?.file as string;
      writeFileSync(
        path.join(folder, "quorvex-pier.jpg"),
        await sharp(readFileSync(path.join(GALLERY, scene)))
          .jpeg({ quality: 70 })
          .toBuffer(),
      );
      const indexed = await http()
        .post("/index")
        .send({ items: [{ id: "by-path", path: "trips/kelpwood/quorvex-pier.jpg" }] });
      assert.equal(indexed.status, 200, indexed.text);
      assert.equal((indexed.body as S["IndexResponse"]).results[0]?.status, "indexed");
      try {
        const item = (await http().get("/items/by-path")).body as S["Item"];
        assert.equal(item.metadata.filename, "quorvex-pier.jpg");
        assert.equal(item.metadata.path, "trips/kelpwood/quorvex-pier.jpg");
        // The file's name and its folder's name, with the default text fields.
        for (const word of ["quorvex", "kelpwood"]) {
          const res = await search({ query: word, mode: "keyword", k: 3 });
          assert.equal(res.status, 200, res.text);
          assert.deepEqual(
            (res.body as S["SearchResponse"]).hits.map((h) => h.id),
            ["by-path"],
            word,
          );
        }
      } finally {
        await http().delete("/items/by-path");
      }
    });

    test("keyword mode: only items whose text fields hold the word, scores still cosine", async () => {
      const res = await search({ query: "zorblat", mode: "keyword", k: 10 });
      assert.equal(res.status, 200, res.text);
      const hits = (res.body as S["SearchResponse"]).hits;
      assert.deepEqual(
        hits.map((h) => [h.id, h.rank, h.keyword_rank]),
        [["s6", 1, 1]],
      );
      assert.equal(hits[0]?.vector_rank, undefined);
      const vector = (await search({ query: "zorblat", k: 8, exact: true }))
        .body as S["SearchResponse"];
      const same = vector.hits.find((h) => h.id === "s6");
      assert.ok(
        Math.abs((same?.score ?? 0) - (hits[0]?.score ?? 0)) < 1e-4,
        "cosine, as vector mode",
      );
      // Not a searched field → nothing; words that are not in any field → nothing.
      const tagsOff = await search({ query: "zorblat", mode: "keyword", text_fields: ["caption"] });
      assert.deepEqual((tagsOff.body as S["SearchResponse"]).hits, []);
    });

    test("hybrid mode is the reciprocal rank fusion of the vector and keyword rankings", async () => {
      const query = `${SCENES[2]?.caption} zorblat`;
      const ranks = async (mode: "vector" | "keyword") => {
        const hits = (
          (await search({ query, mode, k: 20, exact: true })).body as S["SearchResponse"]
        ).hits;
        return new Map(hits.map((h) => [h.id, h.rank]));
      };
      const vectorRanks = await ranks("vector");
      const keywordRanks = await ranks("keyword");
      const ids = [...new Set([...vectorRanks.keys(), ...keywordRanks.keys()])];
      const fused = (id: string) =>
        (vectorRanks.has(id) ? 1 / (60 + (vectorRanks.get(id) as number)) : 0) +
        (keywordRanks.has(id) ? 1 / (60 + (keywordRanks.get(id) as number)) : 0);
      const expected = ids.sort((a, b) => fused(b) - fused(a)).slice(0, 5);

      const res = await search({ query, mode: "hybrid", k: 5, exact: true });
      assert.equal(res.status, 200, res.text);
      const hits = (res.body as S["SearchResponse"]).hits;
      assert.deepEqual(
        hits.map((h) => h.id),
        expected,
      );
      for (const hit of hits) {
        assert.equal(hit.vector_rank, vectorRanks.get(hit.id) ?? null, hit.id);
        assert.equal(hit.keyword_rank, keywordRanks.get(hit.id) ?? null, hit.id);
        assert.ok(Math.abs((hit.fused_score ?? 0) - fused(hit.id)) < 1e-12);
      }
    });

    test("bad mode or text fields are 400 validation_failed", async () => {
      expectError(await search({ query: "x", mode: "fuzzy" }), 400, "validation_failed");
      expectError(await search({ query: "x", text_fields: ["a.b"] }), 400, "validation_failed");
      expectError(await search({ query: "x", text_fields: "caption" }), 400, "validation_failed");
    });

    test("near-duplicates: new copies are flagged at indexing and grouped by GET /duplicates", async () => {
      const made = await copies();
      const res = await upload(made.map((c) => ({ ...c, filename: `${c.id}.jpg` })));
      assert.equal(res.status, 200, res.text);
      const results = (res.body as S["IndexResponse"]).results;
      for (const [i, copy] of made.entries()) {
        assert.equal(results[i]?.status, "indexed");
        assert.equal(results[i]?.near_duplicate_of, copy.of, JSON.stringify(results[i]));
        assert.ok((results[i]?.near_duplicate_score ?? 0) >= THRESHOLD);
      }

      // The reference: every pair of stored embeddings, linked at the threshold, components.
      const library = server.library as LongclipLibrary;
      const stored = (await library.listItems(null, 100)).items;
      const modelId = (await library.stats()).modelId;
      const labels = await Promise.all(
        stored.map(async (item) => (await library.store.getById(item.id))?.label as number),
      );
      const vectors = await library.store.embeddingsOf(modelId, labels);
      const byLabel = new Map(vectors.map((row) => [row.label, row.vector]));
      const group = new Map(stored.map((item) => [item.id, item.id]));
      const find = (id: string): string =>
        group.get(id) === id ? id : find(group.get(id) as string);
      stored.forEach((a, i) => {
        stored.forEach((b, j) => {
          if (j <= i) return;
          const score = cosine(
            byLabel.get(labels[i] as number) as Float32Array,
            byLabel.get(labels[j] as number) as Float32Array,
          );
          if (score >= THRESHOLD) group.set(find(b.id), find(a.id));
        });
      });
      const expected = new Map<string, string[]>();
      for (const item of stored)
        expected.set(find(item.id), [...(expected.get(find(item.id)) ?? []), item.id]);
      const expectedGroups = [...expected.values()].filter((ids) => ids.length > 1);

      const page = (await http().get(`/duplicates?threshold=${THRESHOLD}`))
        .body as S["DuplicatesResponse"];
      assert.deepEqual(
        page.groups.map((g) => g.ids),
        expectedGroups,
      );
      for (const copy of made) {
        assert.ok(
          page.groups.some((g) => g.ids.includes(copy.id) && g.ids.includes(copy.of)),
          copy.id,
        );
      }
      assert.ok(page.groups.every((g) => g.max_score >= THRESHOLD && g.max_score <= 1 + 1e-6));
      assert.equal(page.next_cursor, null);

      // One group a page: the cursor walks them in order.
      const walked: string[][] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/duplicates?threshold=${THRESHOLD}&limit=1${cursor ? `&cursor=${cursor}` : ""}`;
        const next = (await http().get(url)).body as S["DuplicatesResponse"];
        walked.push(...next.groups.map((g) => g.ids));
        cursor = next.next_cursor;
      } while (cursor !== null && walked.length < 20);
      assert.deepEqual(walked, expectedGroups);

      // A new different image is not flagged.
      const other = readFileSync(path.join(GALLERY, manifest.items[20]?.file as string));
      const single = (await upload([{ id: "s20", bytes: other, filename: "x.jpg" }]))
        .body as S["IndexResponse"];
      assert.equal(single.results[0]?.near_duplicate_of, undefined);
    });

    test("GET /duplicates refuses a bad threshold, limit or cursor", async () => {
      expectError(await http().get("/duplicates?threshold=0"), 400, "validation_failed");
      // Below minDuplicateThreshold (0.5): a scan would keep nearly every pair.
      expectError(await http().get("/duplicates?threshold=0.1"), 400, "validation_failed");
      expectError(await http().get("/duplicates?threshold=1.5"), 400, "validation_failed");
      expectError(await http().get("/duplicates?threshold=abc"), 400, "validation_failed");
      expectError(await http().get("/duplicates?limit=0"), 400, "validation_failed");
      expectError(await http().get("/duplicates?cursor=%21%21"), 400, "invalid_cursor");
    });
  });
}
