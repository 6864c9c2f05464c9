/**
 * The storage contract for items with many vectors (src/store/parts.ts): parts stored with
 * their item, searches ranking items by their best vector (each once, with the part that won),
 * filters, delete, reopening, reindex staging and blue/green. Run by storeContract on every
 * backend. Expected rankings are computed here from the vectors as inserted.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Filter } from "../../src/core/types.ts";
import type {
  ItemStore,
  NewItem,
  NewPart,
  PartLocator,
  ScoredItem,
  StoredPart,
} from "../../src/store/types.ts";
import { cosine } from "../../src/vector-index/exact.ts";
import { type ContractOptions, freshStores, newItem, vectorOf } from "./store-items.ts";

function region(seed: number, x = 1, y = 2, width = 5, height = 6): NewPart {
  return { kind: "region", box: { x, y, width, height }, vector: vectorOf(seed) };
}

function frame(seed: number, t: number): NewPart {
  return { kind: "frame", t, vector: vectorOf(seed) };
}

/** `base` moved a little towards a direction of its own (a vector near `base`). */
function near(base: Float32Array, seed: number, amount = 0.05): Float32Array {
  const noise = vectorOf(seed);
  return base.map((x, i) => x + amount * (noise[i] as number));
}

function withParts(n: number, parts: NewPart[], metadata: Record<string, unknown> = {}): NewItem {
  return { ...newItem(n, metadata), parts };
}

/** The locator of a part, as a hit's match names it. */
function locator(part: NewPart): PartLocator {
  return part.kind === "region" ? { kind: "region", box: part.box } : { kind: "frame", t: part.t };
}

interface Expected {
  id: string;
  score: number;
  /** The part that wins (none: the whole image). */
  part?: number;
}

/** A part's index: its own (a stored part's), else its position. */
function indexOf(part: NewPart, position: number): number {
  return (part as Partial<StoredPart>).index ?? position;
}

/** Items ranked by their best vector, computed from the entries as inserted. */
function reference(entries: readonly NewItem[], query: Float32Array, k: number): Expected[] {
  return entries
    .map((entry, order) => {
      let best: Expected = { id: entry.id, score: cosine(query, entry.vector) };
      (entry.parts ?? []).forEach((part, position) => {
        const score = cosine(query, part.vector);
        if (score > best.score) best = { id: entry.id, score, part: indexOf(part, position) };
      });
      return { best, order };
    })
    .sort((a, b) => b.best.score - a.best.score || a.order - b.order)
    .slice(0, k)
    .map(({ best }) => best);
}

/** A search's hits as the reference states them: id, score, and the winning part. */
function assertHits(
  hits: readonly ScoredItem[],
  expected: readonly Expected[],
  entries: readonly NewItem[],
  what: string,
): void {
  assert.deepEqual(
    hits.map((hit) => hit.item.id),
    expected.map((e) => e.id),
    `${what}: the items`,
  );
  hits.forEach((hit, i) => {
    const want = expected[i] as Expected;
    assert.ok(Math.abs(hit.score - want.score) < 1e-5, `${what}: score of ${hit.item.id}`);
    if (want.part === undefined) {
      assert.equal(hit.match, undefined, `${what}: ${hit.item.id} matched as a whole`);
      return;
    }
    const part = entries
      .find((e) => e.id === want.id)
      ?.parts?.find((p, position) => indexOf(p, position) === want.part) as NewPart;
    const { score, ...where } = hit.match ?? { score: Number.NaN };
    assert.deepEqual(
      where,
      { ...locator(part), index: want.part },
      `${what}: ${hit.item.id}'s part`,
    );
    assert.ok(Math.abs(score - want.score) < 1e-5, `${what}: the part's score`);
  });
}

export function partsContract(options: ContractOptions): void {
  const { fresh, withFresh } = freshStores(options);

  /** Both ways to search, each checked against the reference. */
  const searchBothWays = async (
    store: ItemStore,
    entries: readonly NewItem[],
    query: Float32Array,
    k: number,
    what: string,
  ) => {
    const expected = reference(entries, query, k);
    for (const exact of [true, false]) {
      const hits = await store.nearest({ vector: query, k, exact }, "m1");
      assertHits(hits, expected, entries, `${what} (${exact ? "exact" : "index"})`);
    }
  };

  test("parts: stored with their item in order; a search ranks items by their best vector, each once, naming the part", async () => {
    await withFresh(async (store) => {
      const entries = [
        withParts(1, [region(101), frame(102, 2.5)]),
        newItem(2),
        withParts(3, [region(301, 0, 0, 13, 20), region(302, 4, 4, 2, 3), frame(303, 0)]),
        ...Array.from({ length: 12 }, (_, i) => newItem(10 + i)),
      ];
      const outcomes = await store.insertItems(entries, "m1");
      assert.ok(outcomes.every((o) => o.status === "inserted"));
      const labels = outcomes.map((o) => (o.status === "inserted" ? o.label : -1));
      const parts = await store.partsOf("m1", labels);
      assert.deepEqual([...parts.keys()].sort(), [labels[0], labels[2]].sort());
      const three = parts.get(labels[2] as number) ?? [];
      assert.deepEqual(
        three.map((p) => p.index),
        [0, 1, 2],
      );
      assert.deepEqual(three[1], { ...region(302, 4, 4, 2, 3), index: 1 });
      assert.deepEqual(parts.get(labels[0] as number)?.[1], { ...frame(102, 2.5), index: 1 });
      assert.equal((await store.partsOf("other", labels)).size, 0);
      assert.equal(await store.countEmbeddings("m1"), entries.length, "items, not vectors");
      assert.equal((await store.indexStats()).size, entries.length + 5, "every vector is indexed");
      await store.prepare();
      // A part's own vector finds its item first, through that part.
      const byPart = await store.nearest({ vector: vectorOf(302), k: 1 }, "m1");
      assert.equal(byPart[0]?.item.id, "item-3");
      assert.deepEqual(byPart[0]?.match?.kind, "region");
      for (const seed of [302, 102, 2, 1000, 2000, 3000]) {
        await searchBothWays(store, entries, vectorOf(seed), 6, `query ${seed}`);
      }
      const all = await store.nearest({ vector: vectorOf(5), k: 100 }, "m1");
      assert.equal(all.length, entries.length, "every item once");
      assert.equal(new Set(all.map((hit) => hit.item.id)).size, entries.length);
    });
  });

  test("parts: k distinct items even when one item's parts are all the nearest vectors", async () => {
    await withFresh(async (store) => {
      const query = vectorOf(7777);
      // Item 1's 30 parts lie near the query; the other items' vectors do not.
      const crowd = Array.from({ length: 30 }, (_, i) => ({
        ...region(0, i % 5, i % 7, 5, 6),
        vector: near(query, 500 + i),
      }));
      const entries = [
        withParts(1, crowd),
        ...Array.from({ length: 20 }, (_, i) => newItem(100 + i)),
      ];
      await store.insertItems(entries, "m1");
      await store.prepare();
      for (const k of [1, 4, 10]) {
        await searchBothWays(store, entries, query, k, `k ${k}`);
      }
    });
  });

  test("parts: a filter applies to the item, its parts with it, by the exact scan and by the walk", async () => {
    for (const exactFilterLimit of [undefined, 0]) {
      const store = await fresh(exactFilterLimit === undefined ? undefined : { exactFilterLimit });
      try {
        const query = vectorOf(4242);
        const entries = Array.from({ length: 40 }, (_, i) =>
          withParts(
            i + 1,
            i % 4 === 0 ? [{ ...region(0), vector: near(query, 900 + i, 0.2 + i / 100) }] : [],
            { color: i % 2 === 0 ? "red" : "blue" },
          ),
        );
        await store.insertItems(entries, "m1");
        await store.prepare();
        const how = exactFilterLimit === 0 ? "walk" : "exact scan";
        for (const [filter, color] of [
          [{ color: "red" }, "red"],
          [{ color: "blue" }, "blue"],
        ] as [Filter, string][]) {
          const kept = entries.filter((e) => e.metadata.color === color);
          const hits = await store.nearest({ vector: query, k: 5, filter }, "m1");
          assertHits(hits, reference(kept, query, 5), kept, `${color} (${how})`);
        }
      } finally {
        await store.close();
      }
    }
  });

  test("parts: deleting an item deletes its parts, from search and from the index", async () => {
    await withFresh(async (store) => {
      const entries = [withParts(1, [region(11), frame(12, 1)]), newItem(2), newItem(3)];
      const outcomes = await store.insertItems(entries, "m1");
      const label = outcomes[0]?.status === "inserted" ? outcomes[0].label : -1;
      await store.prepare();
      assert.equal(
        (await store.nearest({ vector: vectorOf(11), k: 1 }, "m1"))[0]?.item.id,
        "item-1",
      );
      await store.deleteById("item-1");
      assert.equal((await store.partsOf("m1", [label])).size, 0);
      assert.equal((await store.indexStats()).size, 2);
      const left = entries.slice(1);
      for (const seed of [11, 12])
        await searchBothWays(store, left, vectorOf(seed), 5, `after delete ${seed}`);
    });
  });

  test("parts: kept across reopening, and later items' parts never take an earlier one's place", async () => {
    const first = [
      withParts(1, [region(21), region(22)]),
      newItem(2),
      withParts(3, [frame(23, 4)]),
    ];
    const store = await fresh();
    try {
      await store.insertItems(first, "m1");
      await store.prepare();
      await store.flush();
    } finally {
      await store.close();
    }
    const again = await options.reopen();
    const second = [withParts(4, [region(24), frame(25, 9)]), newItem(5)];
    try {
      await searchBothWays(again, first, vectorOf(22), 3, "reopened");
      await again.insertItems(second, "m1");
      await again.deleteById("item-2");
    } finally {
      await again.close();
    }
    const third = await options.reopen();
    try {
      const entries = [first[0], first[2], ...second] as NewItem[];
      await third.prepare();
      for (const seed of [21, 22, 23, 24, 25]) {
        await searchBothWays(third, entries, vectorOf(seed), 5, `reopened twice, ${seed}`);
      }
      assert.equal((await third.indexStats()).size, 4 + 5);
    } finally {
      await third.close();
    }
  });

  test("parts: a reindex stages their new embeddings by index; parts left without one are dropped at the swap", async () => {
    await withFresh(async (store) => {
      const entries = [
        withParts(1, [region(31), frame(32, 3), region(35, 2, 2, 3, 3)]),
        withParts(2, [region(33)]),
        newItem(3),
      ];
      const outcomes = await store.insertItems(entries, "m1");
      const labels = outcomes.map((o) => (o.status === "inserted" ? o.label : -1));
      const [l1, l2, l3] = labels as [number, number, number];
      await store.clearStaging();
      // What a reindex does: list the items' parts, embed them again, stage them.
      const listed = await store.partsOf("m1", labels);
      assert.deepEqual(
        listed.get(l1)?.map((p) => p.index),
        [0, 1, 2],
      );
      await store.putStaging(
        [
          {
            label: l1,
            vector: vectorOf(41),
            parts: [
              { index: 2, vector: vectorOf(43) },
              { index: 0, vector: vectorOf(42) },
            ],
          },
          { label: l2, vector: vectorOf(44) },
          { label: l3, vector: vectorOf(45) },
        ],
        "m2",
      );
      await store.swapStaging({ modelId: "m2", dims: 8 });
      const parts = await store.partsOf("m2", labels);
      assert.deepEqual(parts.get(l1), [
        { ...region(42), index: 0 },
        { ...region(43, 2, 2, 3, 3), index: 2 },
      ]);
      assert.equal(parts.get(l2), undefined, "item 2's part had no new embedding");
      assert.equal((await store.partsOf("m1", labels)).size, 0);
      assert.equal((await store.indexStats()).size, 3 + 2);
      const left: StoredPart[] = [
        { ...region(42), index: 0 },
        { ...region(43, 2, 2, 3, 3), index: 2 },
      ];
      const now: NewItem[] = [
        { ...newItem(1), vector: vectorOf(41), parts: left },
        { ...newItem(2), vector: vectorOf(44) },
        { ...newItem(3), vector: vectorOf(45) },
      ];
      for (const seed of [42, 43, 32, 33]) {
        const expected = reference(now, vectorOf(seed), 3);
        for (const exact of [true, false]) {
          const hits = await store.nearest({ vector: vectorOf(seed), k: 3, exact }, "m2");
          assertHits(hits, expected, now, `after the swap, ${seed}`);
        }
      }
      // A second reindex lists the parts left, by their index, and keeps them.
      await store.putStaging(
        [...(parts.get(l1) ?? [])].map((part) => ({
          label: l1,
          vector: vectorOf(47),
          parts: [part],
        })),
        "m3",
      );
      await store.swapStaging({ modelId: "m3", dims: 8 });
      assert.deepEqual(
        (await store.partsOf("m3", labels)).get(l1)?.map((p) => p.index),
        [0, 2],
      );
    });
  });

  test("parts: a reindex under the same model drops the parts an item staged without and adds its new ones", async () => {
    await withFresh(async (store) => {
      const entries = [withParts(1, [region(61), region(62, 3, 3, 2, 2)]), newItem(2), newItem(3)];
      const outcomes = await store.insertItems(entries, "m1");
      const labels = outcomes.map((o) => (o.status === "inserted" ? o.label : -1));
      const [l1, l2, l3] = labels as [number, number, number];
      // A reindex in place with the live model: item 1 keeps part 1 only (--regions changed),
      // item 2 gains two regions, item 3 is not staged (it failed) and keeps what it had.
      await store.clearStaging();
      await store.putStaging(
        [
          { label: l1, vector: vectorOf(63), parts: [{ index: 1, vector: vectorOf(64) }] },
          {
            label: l2,
            vector: vectorOf(65),
            newParts: [region(66, 0, 0, 4, 4), region(67, 4, 4, 4, 4)],
          },
        ],
        "m1",
      );
      await store.swapStaging({ modelId: "m1", dims: 8 });
      const parts = await store.partsOf("m1", labels);
      assert.deepEqual(parts.get(l1), [{ ...region(64, 3, 3, 2, 2), index: 1 }]);
      assert.deepEqual(parts.get(l2), [
        { ...region(66, 0, 0, 4, 4), index: 0 },
        { ...region(67, 4, 4, 4, 4), index: 1 },
      ]);
      assert.equal(parts.get(l3), undefined);
      assert.equal((await store.indexStats()).size, 3 + 1 + 2);
      // Item 1's part keeps index 1 (a StoredPart: the index a hit names).
      const kept: StoredPart[] = [{ ...region(64, 3, 3, 2, 2), index: 1 }];
      const now: NewItem[] = [
        { ...newItem(1), vector: vectorOf(63), parts: kept },
        {
          ...newItem(2),
          vector: vectorOf(65),
          parts: [region(66, 0, 0, 4, 4), region(67, 4, 4, 4, 4)],
        },
        newItem(3),
      ];
      for (const seed of [61, 64, 66, 67]) {
        for (const exact of [true, false]) {
          const hits = await store.nearest({ vector: vectorOf(seed), k: 3, exact }, "m1");
          assertHits(hits, reference(now, vectorOf(seed), 3), now, `seed ${seed}, exact ${exact}`);
        }
      }
      // A new part keeps its place at the next reindex (another model), by its index.
      await store.putStaging(
        [{ label: l2, vector: vectorOf(68), parts: [{ index: 1, vector: vectorOf(69) }] }],
        "m2",
      );
      await store.swapStaging({ modelId: "m2", dims: 8 });
      assert.deepEqual((await store.partsOf("m2", labels)).get(l2), [
        { ...region(69, 4, 4, 4, 4), index: 1 },
      ]);
    });
  });

  test("parts: blue/green: an item indexed meanwhile stages its parts' next embeddings too", async () => {
    await withFresh(async (store) => {
      const staged = { modelId: "m2", vector: vectorOf(51), parts: [vectorOf(52)] };
      const [outcome] = await store.insertItems([{ ...withParts(1, [region(53)]), staged }], "m1");
      const label = outcome?.status === "inserted" ? outcome.label : -1;
      assert.deepEqual((await store.partsOf("m1", [label])).get(label)?.[0]?.vector, vectorOf(53));
      await store.swapStaging({ modelId: "m2", dims: 8 });
      const [part] = (await store.partsOf("m2", [label])).get(label) ?? [];
      assert.deepEqual(part, { ...region(52), index: 0 });
      const [hit] = await store.nearest({ vector: vectorOf(52), k: 1 }, "m2");
      assert.equal(hit?.match?.index, 0);
      // The library switched meanwhile: the staged embeddings are the live ones at once.
      const [late] = await store.insertItems(
        [
          {
            ...withParts(2, [frame(54, 1)]),
            staged: { modelId: "m2", vector: vectorOf(55), parts: [vectorOf(56)] },
          },
        ],
        "m1",
      );
      const lateLabel = late?.status === "inserted" ? late.label : -1;
      assert.deepEqual((await store.partsOf("m2", [lateLabel])).get(lateLabel), [
        { ...frame(56, 1), index: 0 },
      ]);
    });
  });

  test("parts: a wholeImage search (near-duplicates) ranks by the items' own vectors only", async () => {
    await withFresh(async (store) => {
      const query = vectorOf(8888);
      const entries = [
        withParts(1, [{ ...region(0), vector: query }], { keep: true }),
        newItem(2, { keep: true }),
        { ...newItem(3, { keep: true }), vector: near(query, 3, 0.5) },
        ...Array.from({ length: 12 }, (_, i) =>
          withParts(10 + i, [{ ...region(0), vector: near(query, 40 + i, 0.1) }], { keep: i < 6 }),
        ),
      ];
      await store.insertItems(entries, "m1");
      await store.prepare();
      const wholes = entries.map(({ parts: _parts, ...entry }) => entry);
      for (const [filter, kept] of [
        [undefined, wholes],
        [{ keep: true }, wholes.filter((e) => e.metadata.keep === true)],
      ] as [Filter | undefined, NewItem[]][]) {
        const expected = reference(kept, query, 4);
        for (const exact of [true, false]) {
          const hits = await store.nearest(
            { vector: query, k: 4, exact, wholeImage: true, ...(filter ? { filter } : {}) },
            "m1",
          );
          assertHits(
            hits,
            expected,
            kept,
            `whole images (${exact ? "exact" : "index"}, ${JSON.stringify(filter)})`,
          );
        }
      }
      // The same search with parts finds item 1 by its part first.
      const [first] = await store.nearest({ vector: query, k: 1 }, "m1");
      assert.equal(first?.item.id, "item-1");
    });
  });

  test("parts: a part that cannot be kept as given refuses the batch, and nothing is stored", async () => {
    await withFresh(async (store) => {
      const bad: NewItem[] = [
        withParts(1, [region(61, 5, 5, 100, 2)]),
        // Boxes are whole pixels (src/core/box.ts, as POST /search/image checks them).
        withParts(5, [region(66, 1.5, 2, 4, 4)]),
        withParts(2, [{ ...region(62), vector: new Float32Array(4) }]),
        withParts(3, [frame(63, -1)]),
        {
          ...withParts(4, [region(64)]),
          staged: { modelId: "m2", vector: vectorOf(65), parts: [] },
        },
      ];
      for (const entry of bad) {
        await assert.rejects(store.insertItems([newItem(9), entry], "m1"), /part|box|staged/);
        assert.equal(await store.count(), 0, entry.id);
      }
    });
  });
}
