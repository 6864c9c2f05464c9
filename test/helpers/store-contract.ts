/**
 * The storage seam's contract: one suite that every backend (SQLite + HNSW, Postgres +
 * pgvector) must pass, so the library behaves the same on either.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { isAppError } from "../../src/core/errors.ts";
import type { Filter, ItemOrder } from "../../src/core/types.ts";
import { WORKER_LOST } from "../../src/store/jobs.ts";
import type { ItemStore } from "../../src/store/types.ts";
import { cosine } from "../../src/vector-index/exact.ts";
import { filterArbitrary, metadataArbitrary, referenceMatches } from "./filter-reference.ts";
import { partsContract } from "./store-contract-parts.ts";
import { type ContractOptions, freshStores, MODEL, newItem, vectorOf } from "./store-items.ts";

export { type ContractOptions, newItem, vectorOf } from "./store-items.ts";

/** Every page of a listing, `size` items a page, from the first cursor to the last. */
async function walkPages(store: ItemStore, size: number, order: ItemOrder) {
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: { items: { id: string }[]; nextCursor: string | null } = await store.listItems(
      cursor,
      size,
      order,
    );
    seen.push(...page.items.map((item) => item.id));
    cursor = page.nextCursor;
    pages++;
  } while (cursor !== null);
  return { seen, pages };
}

async function ids(store: ItemStore, filter: Filter): Promise<string[]> {
  const hits = await store.nearest({ vector: vectorOf(0), k: 100, exact: true, filter }, "m1");
  return hits.map((h) => h.item.id).sort();
}

function code(expected: string) {
  return (e: unknown) => isAppError(e) && e.code === expected;
}

export function storeContract(name: string, options: ContractOptions): void {
  const { fresh, withFresh } = freshStores(options);

  describe(`storage contract: ${name}`, () => {
    partsContract(options);

    test("a new store has no model; the model is recorded; counts start at zero", async () => {
      const store = await options.open();
      try {
        assert.equal(await store.model(), undefined);
        await store.setModel(MODEL);
        assert.deepEqual(await store.model(), MODEL);
        assert.equal(await store.count(), 0);
        assert.equal(store.health().available, true);
      } finally {
        await store.close();
      }
    });

    test("the sample gallery's seeded mark: absent, then kept across reopening", async () => {
      const store = await fresh();
      try {
        assert.equal(await store.gallerySeeded(), false);
        await store.markGallerySeeded('{"indexed": 2}');
        await store.markGallerySeeded('{"indexed": 0}');
        assert.equal(await store.gallerySeeded(), true);
      } finally {
        await store.close();
      }
      const again = await options.reopen();
      try {
        assert.equal(await again.gallerySeeded(), true);
      } finally {
        await again.close();
      }
    });

    test("insert, read back by id and hash; embeddings round-trip bit-exactly", async () => {
      const store = await fresh();
      try {
        const vector = new Float32Array([0.1, -0.2, 1e-30, 1234.5678, 0, 1, -1, 1 / 3]);
        const outcomes = await store.insertItems(
          [
            { ...newItem(1, { city: "Paris", nested: { a: [1, "x"] } }), vector },
            { ...newItem(2), source: "upload", path: undefined, original: Buffer.from("png-2") },
          ],
          "m1",
        );
        assert.deepEqual(
          outcomes.map((o) => o.status),
          ["inserted", "inserted"],
        );
        const [a, b] = outcomes.map((o) => (o.status === "inserted" ? o.label : -1));
        assert.ok((a as number) > 0 && (b as number) > (a as number), "labels increase");
        const one = await store.getById("item-1");
        assert.equal(one?.label, a);
        assert.deepEqual(one?.metadata, { city: "Paris", nested: { a: [1, "x"] } });
        assert.equal(one?.width, 11);
        assert.equal(one?.path, "/media/1.png");
        assert.equal(one?.source, "path");
        assert.ok(!Number.isNaN(Date.parse(one?.createdAt ?? "")));
        const two = await store.getBySha(newItem(2).sha256);
        assert.equal(two?.id, "item-2");
        assert.equal(two?.path, undefined);
        assert.deepEqual(await store.readOriginal(newItem(2).sha256), Buffer.from("png-2"));
        const rows = await store.embeddingsOf("m1", [a as number, b as number]);
        assert.deepEqual(rows[0]?.vector, vector);
        assert.equal((await store.embeddingsOf("other", [a as number])).length, 0);
        assert.equal(await store.countEmbeddings("m1"), 2);
        assert.equal(await store.count(), 2);
      } finally {
        await store.close();
      }
    });

    test("duplicates by content hash and id conflicts, also within one batch", async () => {
      await withFresh(async (store) => {
        await store.insertItems([newItem(1)], "m1");
        const outcomes = await store.insertItems(
          [
            { ...newItem(1), id: "other-id" },
            { ...newItem(5), id: "item-1" },
            newItem(6),
            { ...newItem(6), id: "again" },
          ],
          "m1",
        );
        assert.deepEqual(outcomes[0], { status: "duplicate", id: "item-1" });
        assert.deepEqual(outcomes[1], { status: "id_conflict" });
        assert.equal(outcomes[2]?.status, "inserted");
        assert.deepEqual(outcomes[3], { status: "duplicate", id: "item-6" });
        assert.equal(await store.count(), 2);
      });
    });

    test("delete removes the item, its embedding and its original; labels are not reused", async () => {
      await withFresh(async (store) => {
        const upload = { ...newItem(2), source: "upload" as const, original: Buffer.from("b") };
        const outcomes = await store.insertItems([newItem(1), upload], "m1");
        const deleted = await store.deleteById("item-2");
        assert.equal(deleted?.id, "item-2");
        assert.equal(await store.deleteById("item-2"), undefined);
        assert.equal(await store.getById("item-2"), undefined);
        assert.equal(await store.countEmbeddings("m1"), 1);
        await assert.rejects(store.readOriginal(upload.sha256));
        const [again] = await store.insertItems([newItem(3)], "m1");
        const last = outcomes[1];
        assert.ok(again?.status === "inserted" && last?.status === "inserted");
        assert.ok(again.label > last.label, "a deleted label is never issued again");
        // The same bytes can come back after a delete.
        assert.equal((await store.insertItems([upload], "m1"))[0]?.status, "inserted");
        assert.deepEqual(await store.readOriginal(upload.sha256), Buffer.from("b"));
      });
    });

    test("nearest by a model the store does not hold is 409 model_mismatch, on every path", async () => {
      await withFresh(async (store) => {
        await store.insertItems([newItem(1), newItem(2)], "m1");
        await store.prepare();
        const mismatch = (e: unknown) =>
          isAppError(e) && e.code === "model_mismatch" && e.status === 409 && /m1/.test(e.message);
        for (const exact of [false, true]) {
          await assert.rejects(store.nearest({ vector: vectorOf(1), k: 1, exact }, "m2"), mismatch);
          await assert.rejects(
            store.nearest({ vector: vectorOf(1), k: 1, exact, filter: { a: 1 } }, "m2"),
            mismatch,
          );
        }
        assert.equal(
          (await store.nearest({ vector: vectorOf(1), k: 1 }, "m1"))[0]?.item.id,
          "item-1",
        );
      });
    });

    test("cursor pagination walks every item once, in insertion order", async () => {
      await withFresh(async (store) => {
        await store.insertItems(
          Array.from({ length: 7 }, (_, i) => newItem(i + 1)),
          "m1",
        );
        const { seen, pages } = await walkPages(store, 3, "oldest");
        assert.equal(pages, 3);
        assert.deepEqual(
          seen,
          Array.from({ length: 7 }, (_, i) => `item-${i + 1}`),
        );
        assert.equal((await store.listItems(null, 7)).nextCursor, null);
        const first = (await store.listItems(null, 1)).items[0];
        assert.deepEqual(
          (await store.itemsAfter(first?.label ?? 0, 2)).map((i) => i.id),
          ["item-2", "item-3"],
        );
        await assert.rejects(store.listItems("not a cursor!", 3), code("invalid_cursor"));
      });
    });

    test("newest first: pages walk every item once, latest stored first; cursors keep their order", async () => {
      await withFresh(async (store) => {
        await store.insertItems(
          Array.from({ length: 7 }, (_, i) => newItem(i + 1)),
          "m1",
        );
        await store.insertItems([newItem(8)], "m1");
        const { seen, pages } = await walkPages(store, 3, "newest");
        assert.equal(pages, 3);
        assert.deepEqual(
          seen,
          Array.from({ length: 8 }, (_, i) => `item-${8 - i}`),
        );
        const newestCursor = (await store.listItems(null, 2, "newest")).nextCursor;
        const oldestCursor = (await store.listItems(null, 2)).nextCursor;
        assert.ok(newestCursor !== null && oldestCursor !== null);
        await assert.rejects(store.listItems(newestCursor, 2), code("invalid_cursor"));
        await assert.rejects(store.listItems(oldestCursor, 2, "newest"), code("invalid_cursor"));
      });
    });

    test("nearest: ANN and exact agree on a small set; scores are cosine similarities", async () => {
      await withFresh(async (store) => {
        const entries = Array.from({ length: 40 }, (_, i) => newItem(i + 1));
        await store.insertItems(entries, "m1");
        await store.prepare();
        const query = vectorOf(1000);
        const exact = await store.nearest({ vector: query, k: 5, exact: true }, "m1");
        const ann = await store.nearest({ vector: query, k: 5 }, "m1");
        assert.deepEqual(
          ann.map((h) => h.item.id),
          exact.map((h) => h.item.id),
        );
        const expected = entries
          .map((e) => ({ id: e.id, score: cosine(query, e.vector) }))
          .sort((x, y) => y.score - x.score)
          .slice(0, 5);
        assert.deepEqual(
          exact.map((h) => h.item.id),
          expected.map((e) => e.id),
        );
        exact.forEach((hit, i) => {
          assert.ok(Math.abs(hit.score - (expected[i]?.score as number)) < 1e-5);
        });
        for (let i = 1; i < ann.length; i++) {
          assert.ok((ann[i - 1]?.score as number) >= (ann[i]?.score as number));
        }
        const all = await store.nearest({ vector: query, k: 100 }, "m1");
        assert.equal(all.length, 40, "k past the item count returns every item");
        const stats = await store.indexStats();
        assert.equal(stats.size, 40);
        assert.equal(stats.type, "hnsw");
      });
    });

    test("metadata filters: equality by key and JSON type, nested keys; bad keys refused", async () => {
      await withFresh(async (store) => {
        await store.insertItems(
          [
            newItem(1, { city: "Paris", year: 2020, color: true, "my-key": "x", nested: { a: 1 } }),
            newItem(2, { city: "Paris", year: "2020", color: 1, none: null, tags: ["a"] }),
            newItem(3, { city: "Rome", year: 2020.0 }),
          ],
          "m1",
        );
        assert.deepEqual(await ids(store, { city: "Paris" }), ["item-1", "item-2"]);
        assert.deepEqual(await ids(store, { year: 2020 }), ["item-1", "item-3"]);
        assert.deepEqual(await ids(store, { year: "2020" }), ["item-2"]);
        assert.deepEqual(await ids(store, { color: true }), ["item-1"]);
        assert.deepEqual(await ids(store, { color: 1 }), ["item-2"]);
        assert.deepEqual(await ids(store, { none: null }), ["item-2"]);
        assert.deepEqual(await ids(store, { "my-key": "x" }), ["item-1"]);
        assert.deepEqual(await ids(store, { "nested.a": 1 }), ["item-1"]);
        assert.deepEqual(await ids(store, { tags: "a" }), [], "a scalar never matches an array");
        assert.deepEqual(await ids(store, { city: "Paris", year: 2020 }), ["item-1"]);
        assert.deepEqual(await ids(store, { city: "Oslo" }), []);
        const ann = await store.nearest(
          { vector: vectorOf(0), k: 10, filter: { city: "Paris" } },
          "m1",
        );
        assert.deepEqual(ann.map((h) => h.item.id).sort(), ["item-1", "item-2"]);
        for (const bad of [
          "",
          "a b",
          "x'); DROP TABLE items; --",
          "k".repeat(65),
          ".",
          ".a",
          "a..b",
        ]) {
          assert.throws(() => store.checkFilter({ [bad]: 1 }), code("invalid_filter"), bad);
        }
        assert.throws(() => store.checkFilter({ a: Number.NaN }), code("invalid_filter"));
        assert.equal(await store.count(), 3);
      });
    });

    test("metadata filter operators: ranges on numbers and ISO dates, $in/$nin, $ne, $exists", async () => {
      await withFresh(async (store) => {
        await store.insertItems(
          [
            newItem(1, { year: 2019, taken: "2024-01-15", city: "Paris", tags: ["a"], n: null }),
            newItem(2, {
              year: 2020,
              taken: "2024-01-15T10:30:00Z",
              city: "Rome",
              cam: { iso: 100 },
            }),
            // The same instant as item 2, written in another zone.
            newItem(3, {
              year: 2021.5,
              taken: "2024-01-15T12:30:00+02:00",
              city: "Oslo",
              cam: { iso: 400 },
            }),
            newItem(4, { year: "2022", taken: "yesterday", city: "Paris" }),
            newItem(5, { taken: "2024-02-30", city: null }),
            newItem(6, { year: true, taken: 20240115 }),
          ],
          "m1",
        );
        const cases: [Filter, number[]][] = [
          [{ year: { $gt: 2019 } }, [2, 3]],
          [{ year: { $gte: 2019, $lt: 2021 } }, [1, 2]],
          [{ year: { $lte: 2019 } }, [1]],
          [{ year: { $ne: 2020 } }, [1, 3, 4, 5, 6]],
          [{ year: { $eq: 2020 } }, [2]],
          [{ year: { $in: [2019, "2022"] } }, [1, 4]],
          [{ year: { $nin: [2019, "2022"] } }, [2, 3, 5, 6]],
          [{ year: { $in: [] } }, []],
          [{ year: { $nin: [] } }, [1, 2, 3, 4, 5, 6]],
          [{ year: { $exists: false } }, [5]],
          [{ n: { $exists: true } }, [1]],
          [{ city: { $eq: null } }, [5]],
          [{ city: { $ne: "Paris" } }, [2, 3, 5, 6]],
          [{ taken: { $gte: "2024-01-15T10:30:00Z" } }, [2, 3]],
          [{ taken: { $gt: "2024-01-15T10:30:00Z" } }, []],
          [{ taken: { $lt: "2024-01-15T11:00" } }, [1, 2, 3]],
          [{ taken: { $gte: "2024-01-01", $lt: "2024-02-01" } }, [1, 2, 3]],
          [{ "cam.iso": { $gte: 200 } }, [3]],
          [{ "cam.iso": { $exists: true } }, [2, 3]],
          [{ tags: { $in: ["a"] } }, []],
          [{ tags: { $exists: true } }, [1]],
          [{ "tags.0": { $exists: true } }, []],
          [{ city: { $in: ["Paris", "Oslo"] }, year: { $gt: 2020 } }, [3]],
        ];
        for (const [filter, expected] of cases) {
          assert.deepEqual(
            await ids(store, filter),
            expected.map((n) => `item-${n}`),
            JSON.stringify(filter),
          );
        }
        const ann = await store.nearest(
          { vector: vectorOf(0), k: 10, filter: { year: { $gt: 2019 } } },
          "m1",
        );
        assert.deepEqual(ann.map((h) => h.item.id).sort(), ["item-2", "item-3"]);

        const refused: [unknown, string][] = [
          [{ year: { $regex: "x" } }, "filter.year.$regex"],
          [{ year: { $in: 5 } }, "filter.year.$in"],
          [{ year: { $in: [{}] } }, "filter.year.$in[0]"],
          [{ year: { $in: Array.from({ length: 101 }, (_, i) => i) } }, "filter.year.$in"],
          [{ year: { $gt: "last week" } }, "filter.year.$gt"],
          [{ year: { $gt: "2024-02-30" } }, "filter.year.$gt"],
          [{ year: { $gt: null } }, "filter.year.$gt"],
          [{ year: { $lte: true } }, "filter.year.$lte"],
          [{ year: { $exists: "yes" } }, "filter.year.$exists"],
          [{ year: { $eq: [1] } }, "filter.year.$eq"],
          [{ "cam.iso": {} }, "filter.cam.iso"],
        ];
        for (const [filter, where] of refused) {
          assert.throws(
            () => store.checkFilter(filter as Filter),
            (e: unknown) =>
              isAppError(e) && e.code === "validation_failed" && e.message.includes(where),
            JSON.stringify(filter),
          );
        }
      });
    });

    test("random filters select what a plain-JavaScript reference selects (fast-check, fixed seed)", async () => {
      await withFresh(async (store) => {
        const metadata = fc.sample(metadataArbitrary, { seed: 24, numRuns: 60 });
        await store.insertItems(
          metadata.map((m, n) => newItem(n, m)),
          "m1",
        );
        let matchedSome = 0;
        await fc.assert(
          fc.asyncProperty(filterArbitrary, async (filter) => {
            const expected = metadata
              .flatMap((m, n) => (referenceMatches(m, filter) ? [`item-${n}`] : []))
              .sort();
            if (expected.length > 0) matchedSome++;
            assert.deepEqual(await ids(store, filter), expected, JSON.stringify(filter));
          }),
          { seed: 24, numRuns: 150 },
        );
        assert.ok(matchedSome > 30, `only ${matchedSome} of 150 filters matched anything`);
      });
    });

    test("a selective filter gets the exact filtered top k; a broad one gets k matching items", async () => {
      // A limit of 1 item: the rule by the filter's estimated share decides, not the limit.
      const store = await options.open({ exactFilterLimit: 1 });
      try {
        await store.setModel(MODEL);
        const count = 1_500;
        const items = Array.from({ length: count }, (_, n) => newItem(n, { bucket: n % 100 }));
        await store.insertItems(items, "m1");
        const query = vectorOf(123_456);
        // The expected answers by brute force here, from the items as inserted.
        const dot = (a: Float32Array, b: Float32Array) =>
          a.reduce((sum, x, i) => sum + x * (b[i] as number), 0);
        const similarity = (v: Float32Array) =>
          dot(query, v) / Math.sqrt(dot(v, v) * dot(query, query));
        const exactTop = (keep: (bucket: number) => boolean) =>
          items
            .filter((item) => keep(item.metadata.bucket as number))
            .sort((a, b) => similarity(b.vector) - similarity(a.vector))
            .slice(0, 10)
            .map((item) => item.id);
        const selective: [Filter, (bucket: number) => boolean][] = [
          [{ bucket: 7 }, (b) => b === 7],
          [{ bucket: { $in: [3, 42] } }, (b) => b === 3 || b === 42],
          [{ bucket: { $lt: 2 } }, (b) => b < 2],
        ];
        for (const [filter, keep] of selective) {
          const hits = await store.nearest({ vector: query, k: 10, filter }, "m1");
          assert.deepEqual(
            hits.map((hit) => hit.item.id),
            exactTop(keep),
            JSON.stringify(filter),
          );
        }
        const broad = await store.nearest(
          { vector: query, k: 10, filter: { bucket: { $lt: 60 } } },
          "m1",
        );
        assert.equal(broad.length, 10);
        assert.ok(broad.every((hit) => (hit.item.metadata.bucket as number) < 60));
      } finally {
        await store.close();
      }
    });

    test("findContent says at once who has the content and whether the id is taken", async () => {
      await withFresh(async (store) => {
        await store.setModel(MODEL);
        await store.insertItems([newItem(1), newItem(2)], "m1");
        const same = await store.findContent(newItem(1).sha256, "item-1");
        assert.equal(same.existing?.id, "item-1");
        assert.equal(same.idTaken, true);
        const otherId = await store.findContent(newItem(1).sha256, "fresh-id");
        assert.deepEqual([otherId.existing?.id, otherId.idTaken], ["item-1", false]);
        const otherContent = await store.findContent(newItem(9).sha256, "item-2");
        assert.deepEqual([otherContent.existing, otherContent.idTaken], [undefined, true]);
        const nothing = await store.findContent(newItem(9).sha256, "item-9");
        assert.deepEqual([nothing.existing, nothing.idTaken], [undefined, false]);
      });
    });

    test("an item embedded by a model the store no longer holds is refused, with its staged one it goes in", async () => {
      await withFresh(async (store) => {
        await store.setModel({ modelId: "new", dims: 8 });
        await assert.rejects(
          store.insertItems([newItem(1)], "old"),
          (e: unknown) => isAppError(e) && e.code === "model_mismatch",
        );
        assert.equal(await store.count(), 0);
        const staged = { modelId: "new", vector: vectorOf(101) };
        const [outcome] = await store.insertItems([{ ...newItem(1), staged }], "old");
        assert.equal(outcome?.status, "inserted");
        const label = outcome?.status === "inserted" ? outcome.label : -1;
        const [row] = await store.embeddingsOf("new", [label]);
        assert.deepEqual([...(row?.vector ?? [])], [...staged.vector]);
        assert.equal(await store.countStaging("new"), 0);
      });
    });

    test("the model is recorded only while no other model's embeddings are stored", async () => {
      await withFresh(async (store) => {
        await store.setModel(MODEL);
        await store.insertItems([newItem(1)], "m1");
        await store.setModel(MODEL); // the same model again: nothing changes
        await assert.rejects(
          store.setModel({ modelId: "m2", dims: 8 }),
          (e: unknown) => isAppError(e) && e.code === "model_mismatch",
        );
        assert.deepEqual(await store.model(), MODEL);
      });
    });

    test("staging an item deleted since it was listed skips it", async () => {
      await withFresh(async (store) => {
        await store.setModel(MODEL);
        const outcomes = await store.insertItems([newItem(1), newItem(2)], "m1");
        const [l1, l2] = outcomes.map((o) => (o.status === "inserted" ? o.label : -1));
        await store.deleteById("item-2");
        await store.putStaging(
          [
            { label: l1 as number, vector: vectorOf(11) },
            { label: l2 as number, vector: vectorOf(12) },
          ],
          "next",
        );
        assert.equal(await store.countStaging("next"), 1);
      });
    });

    test("reindex staging swaps embeddings at once and drops other models' embeddings", async () => {
      await withFresh(async (store) => {
        await store.setModel({ modelId: "old", dims: 8 });
        const outcomes = await store.insertItems([newItem(1), newItem(2), newItem(3)], "old");
        const [l1, l2] = outcomes.map((o) => (o.status === "inserted" ? o.label : -1));
        await store.clearStaging();
        await store.putStaging(
          [
            { label: l1 as number, vector: new Float32Array([9, 9]) },
            { label: l2 as number, vector: new Float32Array([8, 8]) },
          ],
          "new",
        );
        assert.equal(await store.countEmbeddings("new"), 0, "staged rows are not live");
        // A blue/green switch records where the model is, for nodes that follow it.
        await store.swapStaging({ modelId: "new", dims: 2, modelDir: "models/new" });
        assert.deepEqual(await store.model(), { modelId: "new", dims: 2, modelDir: "models/new" });
        assert.equal(await store.countEmbeddings("old"), 0);
        const rows = await store.embeddingsOf("new", [l1 as number, l2 as number]);
        assert.deepEqual(
          rows.map((r) => [r.label, [...r.vector]]),
          [
            [l1, [9, 9]],
            [l2, [8, 8]],
          ],
        );
        assert.equal(await store.count(), 3, "items stay even when one was not re-embedded");
        const hits = await store.nearest({ vector: new Float32Array([1, 1]), k: 5 }, "new");
        assert.deepEqual(hits.map((h) => h.item.id).sort(), ["item-1", "item-2"]);
        // A swap that names no directory (a reindex in place) leaves none recorded.
        await store.swapStaging({ modelId: "new", dims: 2 });
        assert.deepEqual(await store.model(), { modelId: "new", dims: 2 });
      });
    });

    test("blue/green: a target survives reopening, items indexed meanwhile get both embeddings, the switch waits for every item", async () => {
      await withFresh(async (store) => {
        await store.setModel({ modelId: "old", dims: 8 });
        const first = await store.insertItems([newItem(1), newItem(2)], "old");
        const [l1, l2] = first.map((o) => (o.status === "inserted" ? o.label : -1)) as [
          number,
          number,
        ];
        const target = {
          modelId: "new",
          dims: 4,
          modelDir: "/models/new",
          switchMode: "manual" as const,
          startedAt: 1,
          heartbeatAt: 2,
          complete: false,
        };
        await store.setReindexTarget(target);
        assert.deepEqual(await store.reindexTarget(), target);
        // indexed during the reindex: live embedding by the old model, staged by the new one
        const both = await store.insertItems(
          [{ ...newItem(3), staged: { modelId: "new", vector: new Float32Array([3, 0, 0, 1]) } }],
          "old",
        );
        const l3 = both[0]?.status === "inserted" ? both[0].label : -1;
        assert.equal(await store.countEmbeddings("old"), 3);
        assert.equal(await store.countStaging("new"), 1);
        assert.deepEqual(
          (await store.unstagedAfter("new", 0, 10)).map((item) => item.id),
          ["item-1", "item-2"],
        );
        assert.deepEqual(
          (await store.unstagedAfter("new", l1, 10)).map((item) => item.id),
          ["item-2"],
        );
        await store.putStaging([{ label: l1, vector: new Float32Array([1, 0, 0, 0]) }], "new");
        // item-2 has no new embedding: a complete-only switch refuses and changes nothing
        await assert.rejects(
          store.swapStaging({ modelId: "new", dims: 4 }, { requireCompleteExcept: [] }),
          code("reindex_incomplete"),
        );
        assert.deepEqual(await store.model(), { modelId: "old", dims: 8 });
        assert.equal(await store.countStaging("new"), 2);
        const hits = await store.nearest({ vector: vectorOf(2), k: 1 }, "old");
        assert.equal(hits[0]?.item.id, "item-2", "the old generation still serves");
        // ... unless item-2 is one that could not be read
        await store.swapStaging({ modelId: "new", dims: 4 }, { requireCompleteExcept: [l2] });
        assert.deepEqual(await store.model(), { modelId: "new", dims: 4 });
        assert.equal(await store.reindexTarget(), undefined, "the switch clears the target");
        assert.equal(await store.countEmbeddings("old"), 0, "the old generation is dropped");
        assert.deepEqual(
          (await store.embeddingsOf("new", [l1, l2, l3])).map((r) => [r.label, [...r.vector]]),
          [
            [l1, [1, 0, 0, 0]],
            [l3, [3, 0, 0, 1]],
          ],
        );
        // an item embedded with both whose insert lands after the switch: the new one is live
        const late = await store.insertItems(
          [{ ...newItem(4), staged: { modelId: "new", vector: new Float32Array([0, 0, 4, 0]) } }],
          "old",
        );
        const l4 = late[0]?.status === "inserted" ? late[0].label : -1;
        assert.equal(await store.countEmbeddings("old"), 0);
        assert.deepEqual(
          (await store.embeddingsOf("new", [l4])).map((r) => [...r.vector]),
          [[0, 0, 4, 0]],
        );
        const found = await store.nearest({ vector: new Float32Array([0, 0, 1, 0]), k: 1 }, "new");
        assert.equal(found[0]?.item.id, "item-4");
      });
    });

    test("what was committed before close is there after reopening", async () => {
      const store = await fresh();
      await store.insertItems([newItem(1)], "m1");
      await store.close();
      const again = await options.reopen();
      try {
        assert.equal((await again.getById("item-1"))?.sha256, newItem(1).sha256);
        const hits = await again.nearest({ vector: vectorOf(1), k: 1 }, "m1");
        assert.equal(hits[0]?.item.id, "item-1");
      } finally {
        await again.close();
      }
    });

    test("jobs: folders that could not be walked are failed items from the start, never claimed", async () => {
      await withFresh(async (store) => {
        const created = await store.jobs.create({
          id: "job-f",
          paths: ["a.png"],
          failed: [{ path: "deep/x", code: "folder_unreadable", message: "could not be read" }],
          metadata: {},
        });
        assert.equal(created.counts.total, 2);
        assert.equal(created.counts.failed, 1);
        assert.deepEqual(created.failedCodes, { folder_unreadable: 1 });
        assert.deepEqual(await store.jobs.failures("job-f", 10), [
          { path: "deep/x", code: "folder_unreadable", message: "could not be read" },
        ]);
        const claimed = await store.jobs.claim("w1", 10, 60_000, 3);
        assert.deepEqual(
          claimed.map((c) => c.path),
          ["a.png"],
        );
        const only = await store.jobs.create({
          id: "job-g",
          paths: [],
          failed: [{ path: "deep/y", code: "folder_unreadable", message: "m" }],
          metadata: {},
        });
        assert.equal(only.state, "done");
      });
    });

    test("jobs: create, claim in chunks, finish, counts, failures, rate and state", async () => {
      await withFresh(async (store) => {
        const created = await store.jobs.create({
          id: "job-1",
          paths: ["a.png", "b.png", "c.png", "d.png"],
          metadata: { album: "x" },
        });
        assert.equal(created.state, "queued");
        assert.equal(created.counts.total, 4);
        assert.equal(created.counts.pending, 4);
        const first = await store.jobs.claim("w1", 3, 60_000, 3);
        assert.deepEqual(
          first.map((c) => [c.path, c.attempts]),
          [
            ["a.png", 1],
            ["b.png", 1],
            ["c.png", 1],
          ],
        );
        assert.deepEqual(first[0]?.metadata, { album: "x" });
        const second = await store.jobs.claim("w2", 3, 60_000, 3);
        assert.deepEqual(
          second.map((c) => c.path),
          ["d.png"],
          "a claimed item is not claimed again while its lease runs",
        );
        assert.equal((await store.jobs.get("job-1"))?.state, "running");
        await store.jobs.finish("w1", [
          { jobId: "job-1", seq: 0, state: "indexed", itemId: "i-a" },
          { jobId: "job-1", seq: 1, state: "duplicate", itemId: "i-a" },
          { jobId: "job-1", seq: 2, state: "failed", code: "image_corrupt", message: "bad" },
        ]);
        // A worker cannot fail an item another worker holds.
        await store.jobs.finish("w1", [
          { jobId: "job-1", seq: 3, state: "failed", code: "image_corrupt", message: "z" },
        ]);
        let summary = await store.jobs.get("job-1");
        assert.equal(summary?.counts.running, 1);
        assert.equal(summary?.state, "running");
        await store.jobs.finish("w2", [
          { jobId: "job-1", seq: 3, state: "indexed", itemId: "i-d" },
        ]);
        summary = await store.jobs.get("job-1");
        assert.equal(summary?.state, "done");
        assert.deepEqual(
          {
            indexed: summary?.counts.indexed,
            duplicate: summary?.counts.duplicate,
            failed: summary?.counts.failed,
            pending: summary?.counts.pending,
          },
          { indexed: 2, duplicate: 1, failed: 1, pending: 0 },
        );
        assert.deepEqual(summary?.failedCodes, { image_corrupt: 1 });
        assert.equal(summary?.etaSeconds, 0);
        assert.ok((summary?.rate ?? 0) > 0);
        assert.ok(summary?.finishedAt !== null);
        assert.deepEqual(await store.jobs.failures("job-1", 10), [
          { path: "c.png", code: "image_corrupt", message: "bad" },
        ]);
        assert.equal((await store.jobs.claim("w1", 10, 60_000, 3)).length, 0);
        assert.equal(await store.jobs.get("nope"), undefined);
      });
    });

    test("jobs: an expired lease is claimed again; past maxAttempts the item fails as worker_lost", async () => {
      await withFresh(async (store) => {
        await store.jobs.create({ id: "job-2", paths: ["a.png"], metadata: {} });
        const [first] = await store.jobs.claim("dead-worker", 5, 1, 2);
        assert.equal(first?.attempts, 1);
        await new Promise((resolve) => setTimeout(resolve, 20));
        const [second] = await store.jobs.claim("w2", 5, 1, 2);
        assert.equal(second?.path, "a.png");
        assert.equal(second?.attempts, 2);
        // The dead worker's late failure is ignored: the item is no longer its.
        await store.jobs.finish("dead-worker", [
          { jobId: "job-2", seq: 0, state: "failed", code: "decode_failed", message: "late" },
        ]);
        assert.equal((await store.jobs.get("job-2"))?.counts.running, 1);
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.deepEqual(await store.jobs.claim("w3", 5, 60_000, 2), []);
        const summary = await store.jobs.get("job-2");
        assert.equal(summary?.state, "done");
        assert.deepEqual(summary?.failedCodes, { [WORKER_LOST]: 1 });
        // A lease that is extended is not taken over.
        await store.jobs.create({ id: "job-3", paths: ["b.png"], metadata: {} });
        const claimed = await store.jobs.claim("w4", 5, 30, 3);
        await store.jobs.extendLease("w4", claimed, 60_000);
        await new Promise((resolve) => setTimeout(resolve, 60));
        assert.deepEqual(await store.jobs.claim("w5", 5, 60_000, 3), []);
      });
    });

    test("jobs: a late commit by a worker whose lease expired is counted, so counts equal the rows", async () => {
      await withFresh(async (store) => {
        await store.jobs.create({ id: "late", paths: ["a.png", "b.png"], metadata: {} });
        const first = await store.jobs.claim("slow-1", 5, 1, 2);
        assert.equal(first.length, 2);
        await new Promise((resolve) => setTimeout(resolve, 20));
        const second = await store.jobs.claim("slow-2", 5, 1, 2);
        assert.deepEqual(
          second.map((c) => c.attempts),
          [2, 2],
        );
        // a.png: the first worker stores it while the second still holds the item.
        await store.jobs.finish("slow-1", [
          { jobId: "late", seq: 0, state: "indexed", itemId: "id-a" },
        ]);
        let summary = await store.jobs.get("late");
        assert.equal(summary?.counts.indexed, 1);
        assert.equal(summary?.counts.running, 1);
        // Its holder's own outcome for it, arriving after, changes nothing.
        await store.jobs.finish("slow-2", [
          { jobId: "late", seq: 0, state: "failed", code: "decode_failed", message: "x" },
        ]);
        // b.png: every lease expires, the item fails as worker_lost, then a holder stores it.
        await new Promise((resolve) => setTimeout(resolve, 20));
        assert.deepEqual(await store.jobs.claim("w3", 5, 60_000, 2), []);
        summary = await store.jobs.get("late");
        assert.deepEqual(summary?.failedCodes, { [WORKER_LOST]: 1 });
        await store.jobs.finish("slow-1", [
          { jobId: "late", seq: 1, state: "indexed", itemId: "id-b" },
        ]);
        summary = await store.jobs.get("late");
        assert.equal(summary?.state, "done");
        assert.deepEqual(
          { ...summary?.counts },
          { total: 2, pending: 0, running: 0, indexed: 2, duplicate: 0, failed: 0, cancelled: 0 },
        );
        assert.deepEqual(summary?.failedCodes, {});
        assert.deepEqual(await store.jobs.failures("late", 10), []);
      });
    });

    test("jobs: cancel stops what is pending; claimed items finish; a finished job stays done; list is newest first", async () => {
      await withFresh(async (store) => {
        await store.jobs.create({ id: "old", paths: ["x.png"], metadata: {} });
        await new Promise((resolve) => setTimeout(resolve, 5));
        await store.jobs.create({ id: "new", paths: ["a.png", "b.png", "c.png"], metadata: {} });
        const claimed = await store.jobs.claim("w", 2, 60_000, 3);
        assert.deepEqual(
          claimed.map((c) => `${c.jobId}/${c.path}`),
          ["old/x.png", "new/a.png"],
          "older jobs first",
        );
        const cancelled = await store.jobs.cancel("new");
        assert.equal(cancelled?.state, "running", "until its claimed item finishes");
        assert.equal(cancelled?.counts.cancelled, 2);
        assert.deepEqual(await store.jobs.claim("w", 5, 60_000, 3), []);
        await store.jobs.finish("w", [{ jobId: "new", seq: 0, state: "indexed", itemId: "i" }]);
        assert.equal((await store.jobs.get("new"))?.state, "cancelled");
        assert.equal(await store.jobs.cancel("missing"), undefined);
        // A finished job keeps its state (issue 24, finding 9): nothing was left to cancel.
        await store.jobs.finish("w", [{ jobId: "old", seq: 0, state: "indexed", itemId: "o" }]);
        assert.equal((await store.jobs.get("old"))?.state, "done");
        const late = await store.jobs.cancel("old");
        assert.equal(late?.state, "done", "DELETE on a finished job changed its state");
        assert.equal(late?.counts.indexed, 1);
        assert.deepEqual(
          (await store.jobs.list(10)).map((j) => j.id),
          ["new", "old"],
        );
      });
    });

    test("keyword search: text fields of the metadata, stemmed, any word, best first", async () => {
      await withFresh(async (store) => {
        await store.insertItems(
          [
            newItem(1, { caption: "A red umbrella on a beach", tags: ["zorblat", "sea"] }),
            newItem(2, { caption: "Dogs running in a park", filename: "dog_park.jpg" }),
            newItem(3, { caption: "Umbrellas, umbrellas and more umbrellas", album: "zorblat" }),
            newItem(4, { caption: "zorblat", n: 7, tags: [1, 2] }),
            newItem(5, { title: "no caption here" }),
          ],
          "m1",
        );
        const search = async (words: string[], fields = ["caption", "tags", "filename"], k = 10) =>
          (await store.keywordSearch({ words, fields, k })).map((hit) => hit.item.id);
        // A word only in the tags of one item and the caption of another; "album" is not searched.
        assert.deepEqual((await search(["zorblat"])).sort(), ["item-1", "item-4"]);
        // Stemming: "umbrella" finds "umbrellas"; the item that says it three times ranks first.
        assert.deepEqual(await search(["umbrella"]), ["item-3", "item-1"]);
        // Any word may match; an item matching both words beats those matching one.
        const both = await search(["umbrella", "sea"]);
        assert.equal(both[0], "item-1");
        assert.deepEqual(both.slice().sort(), ["item-1", "item-3"]);
        // File names are split into words.
        assert.deepEqual(await search(["dog"]), ["item-2"]);
        // Only the fields asked for; none, or no words, match nothing.
        assert.deepEqual(await search(["zorblat"], ["album"]), ["item-3"]);
        assert.deepEqual(await search(["zorblat"], []), []);
        assert.deepEqual(await search([]), []);
        assert.deepEqual(await search(["caption"], ["title"]), ["item-5"]);
        // k, scores best first, and quotes or operators in a word are only text.
        assert.deepEqual(await search(["umbrella"], undefined, 1), ["item-3"]);
        const scored = await store.keywordSearch({
          words: ["umbrella", "sea"],
          fields: ["caption", "tags"],
          k: 10,
        });
        assert.ok((scored[0]?.score ?? 0) > (scored[1]?.score ?? 0));
        assert.deepEqual(await search(['"', "NOT", "NEAR(x", "*"]), []);
        // A filter restricts the candidates.
        const filtered = await store.keywordSearch({
          words: ["zorblat"],
          fields: ["caption", "tags"],
          k: 10,
          filter: { n: 7 },
        });
        assert.deepEqual(
          filtered.map((hit) => hit.item.id),
          ["item-4"],
        );
      });
    });

    test("keyword search: deleted items leave the text index; it survives reopening", async () => {
      const store = await fresh();
      try {
        await store.insertItems(
          [newItem(1, { caption: "a zorblat kite" }), newItem(2, { tags: ["zorblat"] })],
          "m1",
        );
        await store.deleteById("item-1");
        const words = { words: ["zorblat", "kite"], fields: ["caption", "tags"], k: 10 };
        assert.deepEqual(
          (await store.keywordSearch(words)).map((hit) => hit.item.id),
          ["item-2"],
        );
        await store.close();
        const again = await options.reopen();
        try {
          assert.deepEqual(
            (await again.keywordSearch(words)).map((hit) => hit.item.id),
            ["item-2"],
          );
        } finally {
          await again.close();
        }
      } finally {
        await store.close().catch(() => {});
      }
    });
  });
}
