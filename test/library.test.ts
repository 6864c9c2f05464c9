/**
 * The library end to end with the demo Long-CLIP (models/demo), real SQLite, real HNSW and
 * real image decoding.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import type { Settings } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import type { Embedder } from "../src/encode/types.ts";
import { createLibrary, type LongclipLibrary } from "../src/library/index.ts";
import type { SqliteStore } from "../src/store/sqlite/store.ts";
import { cosine } from "../src/vector-index/exact.ts";
import { DEMO_MODEL_DIR, sampleImage } from "./helpers/demo-model.ts";
import { withBeforeImages } from "./helpers/embedders.ts";
import {
  patternPng,
  relabelStoredModel,
  tempDir,
  testSettings,
} from "./helpers/library-fixtures.ts";

const root = tempDir("library-test-");
after(() => rmSync(root, { recursive: true, force: true }));

let modelDir = "";
let images: Buffer[] = [];
let counter = 0;

async function open(extra: Partial<Settings> = {}, dataDir?: string) {
  counter++;
  const settings = testSettings(modelDir, dataDir ?? path.join(root, `lib-${counter}`), extra);
  const encoder = await Encoder.load(settings.modelDir, settings);
  return { library: await createLibrary(settings, encoder), settings, encoder };
}

function code(expected: string) {
  return (e: unknown) => isAppError(e) && e.code === expected;
}

describe("library", () => {
  before(async () => {
    modelDir = DEMO_MODEL_DIR;
    images = await Promise.all(Array.from({ length: 12 }, (_, i) => patternPng(i + 1)));
  });

  test("a repeated query is served from the query cache, a new one goes to the encoder", async () => {
    for (const [size, expected] of [
      [8, 2],
      [0, 3],
    ] as const) {
      const { library, encoder } = await open({ queryCacheSize: size });
      try {
        await library.index([{ id: "one", bytes: images[0] as Buffer }]);
        const before = encoder.stats().textsEncoded;
        const first = await library.searchText("a mosaic of coloured squares", { k: 1 });
        const again = await library.searchText("a mosaic of coloured squares", { k: 1 });
        await library.searchText("another query", { k: 1 });
        assert.equal(encoder.stats().textsEncoded - before, expected);
        assert.deepEqual(again, first);
      } finally {
        await library.close();
      }
    }
  });

  test("a text query is tokenized once: its length is checked and it is embedded from the same tokens", async () => {
    const settings = testSettings(modelDir, path.join(root, "tokenized-once"));
    const inner = await Encoder.load(settings.modelDir, settings);
    // Every tokenization of a text: asked for, or done by the encoder inside embedTexts.
    const tokenized: string[] = [];
    const counting: Embedder = {
      config: inner.config,
      modelId: inner.modelId,
      dims: inner.dims,
      tokenize: (text) => {
        tokenized.push(text);
        return inner.tokenize(text);
      },
      embedTexts: (texts) => {
        tokenized.push(...texts);
        return inner.embedTexts(texts);
      },
      embedTokenized: (rows) => inner.embedTokenized(rows),
      embedPixels: (pixels) => inner.embedPixels(pixels),
      stats: () => inner.stats(),
      close: () => inner.close(),
    };
    const library = await createLibrary(settings, counting);
    try {
      await library.index([{ id: "one", bytes: images[0] as Buffer }]);
      const query = "a mosaic of coloured squares";
      const { hits, query: info } = await library.searchText(query, { k: 1, truncate: false });
      assert.equal(hits[0]?.id, "one");
      assert.equal(info.tokens, inner.tokenize(query).tokens);
      assert.deepEqual(tokenized, [query]);
    } finally {
      await library.close();
    }
  });

  test("ingest: indexed, duplicates by content, id conflicts, bad files fail alone", async () => {
    const { library, settings } = await open();
    try {
      const first = await library.index([
        { id: "a", bytes: images[0] as Buffer, metadata: { group: "x" } },
        { bytes: images[1] as Buffer },
        { id: "c", bytes: Buffer.from("not an image") },
        { id: "d", bytes: images[0] as Buffer },
        { id: "bad id!", bytes: images[2] as Buffer },
        { id: "e", bytes: Buffer.alloc(0) },
      ]);
      assert.deepEqual(
        first.map((r) => [r.status, r.error?.code]),
        [
          ["indexed", undefined],
          ["indexed", undefined],
          ["failed", "unsupported_image"],
          ["duplicate", undefined],
          ["failed", "invalid_id"],
          ["failed", "image_empty"],
        ],
      );
      assert.equal(first[3]?.id, "a", "a duplicate names the item that holds the content");
      assert.match(first[1]?.id as string, /^[0-9a-f]{32}$/, "generated ids are content based");

      const second = await library.index([
        { id: "a", bytes: images[3] as Buffer },
        { id: "zzz", bytes: images[1] as Buffer },
      ]);
      assert.deepEqual(second[0]?.error?.code, "id_conflict");
      assert.deepEqual(second[1], { id: first[1]?.id, status: "duplicate" });
      assert.equal((await library.stats()).items, 2);
      assert.equal((await library.stats()).index.size, 2);

      const item = await library.getItem("a");
      assert.equal(item?.contentType, "image/png");
      assert.equal(item?.width, 48);
      assert.equal(item?.source, "upload");
      assert.deepEqual(item?.metadata, { group: "x" });
      assert.equal(Object.hasOwn(item ?? {}, "label"), false);
      const original = await library.readImage("a");
      assert.deepEqual(original?.bytes, images[0]);
      const sha = item?.sha256 as string;
      assert.ok(
        existsSync(path.join(settings.dataDir, "originals", sha.slice(0, 2), sha.slice(2))),
      );
    } finally {
      await library.close();
    }
  });

  test("concurrent calls with the same bytes index them once", async () => {
    const { library } = await open();
    try {
      const [x, y] = await Promise.all([
        library.index([{ bytes: images[4] as Buffer }, { bytes: images[5] as Buffer }]),
        library.index([{ bytes: images[5] as Buffer }, { bytes: images[4] as Buffer }]),
      ]);
      const statuses = [...(x ?? []), ...(y ?? [])].map((r) => r.status).sort();
      assert.deepEqual(statuses, ["duplicate", "duplicate", "indexed", "indexed"]);
      assert.equal((await library.stats()).items, 2);
    } finally {
      await library.close();
    }
  });

  test("search: image query finds itself; scores are cosines of stored embeddings; exact = HNSW here", async () => {
    const { library, encoder } = await open();
    try {
      const results = await library.index(
        images
          .slice(0, 10)
          .map((bytes, i) => ({ id: `img${i}`, bytes, metadata: { even: i % 2 === 0, i } })),
      );
      assert.ok(results.every((r) => r.status === "indexed"));
      const byImage = await library.searchImage(images[3] as Buffer, { k: 3 });
      assert.equal(byImage.hits[0]?.id, "img3");
      assert.ok(Math.abs((byImage.hits[0]?.score as number) - 1) < 1e-4);

      const query = "a long description of a colourful mosaic of squares ".repeat(3);
      const text = await library.searchText(query, { k: 10 });
      const exact = await library.searchText(query, { k: 10, exact: true });
      assert.deepEqual(
        text.hits.map((h) => h.id),
        exact.hits.map((h) => h.id),
        "10 items: HNSW with ef 100 is exact",
      );
      assert.deepEqual(
        text.hits.map((h) => h.rank),
        Array.from({ length: 10 }, (_, i) => i + 1),
      );
      // Independent check of the scores: the query embedding against the stored vectors.
      const [q] = await encoder.embedTexts([query]);
      const vectors = new Map(
        [...(library.store as SqliteStore).iterateEmbeddings((await library.stats()).modelId)].map(
          (r) => [r.label, r.vector],
        ),
      );
      for (const hit of text.hits) {
        const label = (await library.store.getById(hit.id))?.label as number;
        const expected = cosine(q?.embedding as Float32Array, vectors.get(label) as Float32Array);
        assert.ok(Math.abs(hit.score - expected) < 1e-5, `${hit.id}: ${hit.score} vs ${expected}`);
      }
      for (let i = 1; i < text.hits.length; i++) {
        assert.ok((text.hits[i - 1]?.score as number) >= (text.hits[i]?.score as number));
      }
      assert.deepEqual(text.query, {
        tokens: q?.tokens,
        truncated: false,
        max_tokens: 248,
        chunks: 1,
      });

      const filtered = await library.searchText(query, { k: 10, filter: { even: true } });
      assert.deepEqual(filtered.hits.map((h) => h.id).sort(), [
        "img0",
        "img2",
        "img4",
        "img6",
        "img8",
      ]);
      const one = await library.searchText(query, { k: 10, filter: { i: 7 } });
      assert.deepEqual(
        one.hits.map((h) => [h.id, h.rank]),
        [["img7", 1]],
      );
    } finally {
      await library.close();
    }
  });

  test("search input errors: empty, too long, k out of range, bad filter", async () => {
    const { library } = await open();
    try {
      await library.index([{ bytes: images[0] as Buffer }]);
      await assert.rejects(library.searchText("   ", { k: 5 }), code("empty_query"));
      await assert.rejects(library.searchText("x", { k: 0 }), code("k_out_of_range"));
      await assert.rejects(library.searchText("x", { k: 1001 }), code("k_out_of_range"));
      await assert.rejects(library.searchText("x", { k: 1.5 }), code("k_out_of_range"));
      await assert.rejects(
        library.searchText("x".repeat(20_000), { k: 5 }),
        code("query_too_long"),
      );
      await assert.rejects(
        library.searchText("x", { k: 5, filter: { "bad key": 1 } }),
        code("invalid_filter"),
      );
      const long = "word ".repeat(300);
      await assert.rejects(
        library.searchText(long, { k: 5, truncate: false }),
        code("query_too_long"),
      );
      const cut = await library.searchText(long, { k: 5 });
      assert.equal(cut.query.truncated, true);
      assert.ok(cut.query.tokens > 248);
      assert.equal(cut.hits.length, 1);
      await assert.rejects(
        library.searchImage(Buffer.from("nope"), { k: 5 }),
        code("unsupported_image"),
      );
      assert.equal((await library.stats()).items, 1, "errors leave the data intact");
    } finally {
      await library.close();
    }
  });

  test("path items: under the media root only, symlinks resolved, missing files reported", async () => {
    const media = path.join(root, "media");
    const outside = path.join(root, "outside");
    mkdirSync(path.join(media, "sub"), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(media, "sub", "one.png"), images[6] as Buffer);
    writeFileSync(path.join(outside, "secret.png"), images[7] as Buffer);
    symlinkSync(path.join(outside, "secret.png"), path.join(media, "link.png"));
    const { library } = await open({ mediaRoot: media });
    try {
      const results = await library.index([
        { id: "one", path: "sub/one.png" },
        { path: path.join(outside, "secret.png") },
        { path: "../outside/secret.png" },
        { path: "link.png" },
        { path: "sub/missing.png" },
        { path: "sub" },
        { path: path.join(outside, "does-not-exist.png") },
      ]);
      assert.deepEqual(
        results.map((r) => r.error?.code ?? r.status),
        [
          "indexed",
          "path_outside_media_root",
          "path_outside_media_root",
          "path_outside_media_root",
          "file_not_found",
          "not_a_file",
          "path_outside_media_root",
        ],
      );
      const item = await library.getItem("one");
      assert.equal(item?.source, "path");
      assert.equal(item?.path, path.join(media, "sub", "one.png"));
      assert.deepEqual((await library.readImage("one"))?.bytes, images[6]);
    } finally {
      await library.close();
    }
    const noRoot = await open();
    try {
      const [r] = await noRoot.library.index([{ path: path.join(media, "sub", "one.png") }]);
      assert.equal(r?.error?.code, "path_indexing_disabled");
    } finally {
      await noRoot.library.close();
    }
  });

  test("a media root given through a symlink: absolute paths may name it as configured", async () => {
    const real = path.join(root, "media-real");
    const outside = path.join(root, "media-outside");
    mkdirSync(real, { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(path.join(real, "one.png"), images[8] as Buffer);
    writeFileSync(path.join(outside, "two.png"), images[9] as Buffer);
    const configured = path.join(root, "media-link");
    symlinkSync(real, configured);
    const { library } = await open({ mediaRoot: configured });
    try {
      const results = await library.index([
        { id: "via-link", path: path.join(configured, "one.png") },
        { path: "../media-outside/two.png" },
        { path: path.join(outside, "two.png") },
      ]);
      assert.deepEqual(
        results.map((r) => r.error?.code ?? r.status),
        ["indexed", "path_outside_media_root", "path_outside_media_root"],
      );
      assert.equal((await library.getItem("via-link"))?.path, path.join(real, "one.png"));
    } finally {
      await library.close();
    }
  });

  test("path items are checked on the open file: a FIFO is refused at once, the byte limit holds", async () => {
    const media = path.join(root, "media-open-checks");
    mkdirSync(media, { recursive: true });
    // Opening a FIFO for reading would wait for a writer; the read must not hang on one.
    execFileSync("mkfifo", [path.join(media, "pipe.png")]);
    const image = images[3] as Buffer;
    writeFileSync(path.join(media, "at-limit.png"), image);
    writeFileSync(path.join(media, "over-limit.png"), Buffer.concat([image, Buffer.alloc(1)]));
    const { library } = await open({ mediaRoot: media, maxImageBytes: image.length });
    try {
      const results = await library.index([
        { path: "pipe.png" },
        { path: "over-limit.png" },
        { path: "at-limit.png" },
      ]);
      assert.deepEqual(
        results.map((r) => r.error?.code ?? r.status),
        ["not_a_file", "image_too_large", "indexed"],
      );
    } finally {
      await library.close();
    }
  });

  test("delete and cursor pagination", async () => {
    const { library, settings } = await open();
    try {
      await library.index(images.slice(0, 5).map((bytes, i) => ({ id: `p${i}`, bytes })));
      const sha = (await library.getItem("p2"))?.sha256 as string;
      const original = path.join(settings.dataDir, "originals", sha.slice(0, 2), sha.slice(2));
      assert.ok(existsSync(original));
      assert.equal(await library.deleteItem("p2"), true);
      assert.ok(!existsSync(original), "the uploaded original goes with the item");
      assert.equal(await library.deleteItem("p2"), false);
      assert.equal(await library.getItem("p2"), undefined);
      assert.equal(await library.readImage("p2"), undefined);
      const hits = await library.searchImage(images[2] as Buffer, { k: 10 });
      assert.ok(!hits.hits.some((h) => h.id === "p2"));
      assert.equal(hits.hits.length, 4);
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const page = await library.listItems(cursor, 2);
        ids.push(...page.items.map((i) => i.id));
        cursor = page.nextCursor;
      } while (cursor !== null);
      assert.deepEqual(ids, ["p0", "p1", "p3", "p4"]);
      // The same bytes can come back after a delete, as a new item.
      const [again] = await library.index([{ id: "p2", bytes: images[2] as Buffer }]);
      assert.equal(again?.status, "indexed");
      assert.deepEqual((await library.readImage("p2"))?.bytes, images[2]);
    } finally {
      await library.close();
    }
  });

  test("restart: the saved index is reconciled with SQLite both ways; a corrupt file is rebuilt", async () => {
    const dataDir = path.join(root, "restart");
    const first = await open({}, dataDir);
    await first.library.index(images.slice(0, 4).map((bytes, i) => ({ id: `r${i}`, bytes })));
    await first.library.close();
    const indexDir = path.join(dataDir, "index");
    const [file] = (await import("node:fs")).readdirSync(indexDir);
    const indexFile = path.join(indexDir, file as string);
    const stale = `${indexFile}.stale`;
    copyFileSync(indexFile, stale);

    const second = await open({}, dataDir);
    await second.library.index(images.slice(4, 7).map((bytes, i) => ({ id: `s${i}`, bytes })));
    await second.library.deleteItem("r1");
    await second.library.close();
    // Put back the index saved before the last session: it lacks s0..s2 and still has r1.
    copyFileSync(stale, indexFile);

    const third = await open({}, dataDir);
    try {
      assert.equal((await third.library.stats()).index.size, 6);
      assert.equal((await third.library.stats()).items, 6);
      for (const [id, bytes] of [
        ["s1", images[5]],
        ["r0", images[0]],
      ] as const) {
        const { hits } = await third.library.searchImage(bytes as Buffer, { k: 6 });
        assert.equal(hits[0]?.id, id);
        assert.ok(!hits.some((h) => h.id === "r1"));
      }
    } finally {
      await third.library.close();
    }

    writeFileSync(indexFile, Buffer.alloc(64, 1));
    const fourth = await open({}, dataDir);
    try {
      assert.equal((await fourth.library.stats()).index.size, 6, "rebuilt from SQLite");
      const { hits } = await fourth.library.searchImage(images[6] as Buffer, { k: 1 });
      assert.equal(hits[0]?.id, "s2");
    } finally {
      await fourth.library.close();
    }
  });

  test("--preprocess fast records its own model id: switching modes is a reindex", async () => {
    const dataDir = path.join(root, "preprocess-mode");
    const exact = await open({}, dataDir);
    await exact.library.index(images.slice(0, 2).map((bytes, i) => ({ id: `p${i}`, bytes })));
    const exactId = (await exact.library.stats()).modelId;
    assert.equal(exactId, exact.encoder.modelId);
    await exact.library.close();

    const fast = await open({ preprocess: "fast" }, dataDir);
    try {
      assert.equal(fast.library.state(), "needs_reindex");
      await assert.rejects(
        fast.library.index([{ bytes: images[5] as Buffer }]),
        code("model_mismatch"),
      );
      assert.equal(await fast.library.reindex(), 2);
      assert.equal((await fast.library.store.model())?.modelId, `${exactId}+preprocess-fast`);
      const { hits } = await fast.library.searchImage(images[1] as Buffer, { k: 1 });
      assert.equal(hits[0]?.id, "p1");
    } finally {
      await fast.library.close();
    }
    const back = await open({}, dataDir);
    try {
      assert.equal(back.library.state(), "needs_reindex");
    } finally {
      await back.library.close();
    }
  });

  test("--preprocess fast reads long queries as exact does: refused past 248 tokens, or in windows", async () => {
    const { library } = await open({ preprocess: "fast" });
    try {
      await library.index([{ bytes: images[0] as Buffer }]);
      const long = "word ".repeat(300);
      await assert.rejects(
        library.searchText(long, { k: 5, truncate: false }),
        code("query_too_long"),
      );
      const sentences = "A small red circle sits in the corner. ".repeat(40);
      const chunked = await library.searchText(sentences, { k: 5, longQuery: "chunk" });
      assert.ok((chunked.query.chunks ?? 0) > 1, `read in ${chunked.query.chunks} window(s)`);
    } finally {
      await library.close();
    }
  });

  test("model change: refused until reindex, then every item is re-embedded and searchable", async () => {
    const dataDir = path.join(root, "model-change");
    const first = await open({}, dataDir);
    await first.library.index(images.slice(0, 3).map((bytes, i) => ({ id: `m${i}`, bytes })));
    const modelId = (await first.library.stats()).modelId;
    await first.library.close();
    await relabelStoredModel(dataDir, "other-model-000000000000", 64);

    const second = await open({}, dataDir);
    const library: LongclipLibrary = second.library;
    try {
      assert.equal(library.state(), "needs_reindex");
      assert.equal(library.ready(), false);
      await assert.rejects(library.searchText("x", { k: 1 }), (e: unknown) => {
        return (
          isAppError(e) &&
          e.code === "model_mismatch" &&
          e.status === 409 &&
          /longclip reindex/.test(e.message)
        );
      });
      await assert.rejects(library.index([{ bytes: images[9] as Buffer }]), code("model_mismatch"));
      const progress: number[] = [];
      const count = await library.reindex((done) => progress.push(done));
      assert.equal(count, 3);
      assert.equal(progress.at(-1), 3);
      assert.equal(library.state(), "ready");
      assert.equal((await library.store.model())?.modelId, modelId);
      assert.equal(await library.store.countEmbeddings("other-model-000000000000"), 0);
      const { hits } = await library.searchImage(images[1] as Buffer, { k: 1 });
      assert.equal(hits[0]?.id, "m1");
    } finally {
      await library.close();
    }
  });

  test("a full ingest queue answers queue_full with a retry hint; searches still get through", async () => {
    const { library } = await open({ maxQueueDepth: 4, imageBatchSize: 2 });
    try {
      await library.index([{ bytes: images[0] as Buffer }]);
      let bulkDone = false;
      const bulk = library.index(images.slice(1, 9).map((bytes) => ({ bytes })));
      bulk.then(() => {
        bulkDone = true;
      });
      await assert.rejects(
        library.index([{ bytes: images[10] as Buffer }]),
        (e: unknown) =>
          isAppError(e) &&
          e.code === "queue_full" &&
          e.status === 429 &&
          Number(e.details?.retryAfterSeconds) >= 1,
      );
      const search = await library.searchText("a mosaic", { k: 3 });
      assert.ok(search.hits.length >= 1);
      // Queries jump the queue: the search ran between two ingest chunks, not after all four.
      assert.equal(bulkDone, false, "the search did not wait for the whole bulk ingest");
      assert.ok((await bulk).every((r) => r.status === "indexed"));
      assert.equal((await library.stats()).queue.pending, 0);
    } finally {
      await library.close();
    }
  });

  test("images of several kinds index and find themselves", async () => {
    const names = ["hopper.jpg", "shapes.png", "rgba.png", "grayscale.png"];
    const { library } = await open();
    try {
      const results = await library.index(
        names.map((name) => ({ id: name, bytes: sampleImage(name) })),
      );
      assert.ok(
        results.every((r) => r.status === "indexed"),
        JSON.stringify(results),
      );
      for (const name of names) {
        const { hits } = await library.searchImage(sampleImage(name), { k: 1 });
        assert.equal(hits[0]?.id, name);
      }
    } finally {
      await library.close();
    }
  });

  test("a text search issued while an image chunk is being embedded does not wait for it", async () => {
    const count = 64;
    const settings = testSettings(modelDir, path.join(root, "text-beside-ingest"), {
      imageBatchSize: count,
      maxBatchItems: count,
    });
    const encoder = await Encoder.load(settings.modelDir, settings);
    const finished: string[] = [];
    let search: Promise<unknown> | undefined;
    let library: LongclipLibrary | undefined;
    const embedder = withBeforeImages(encoder, () => {
      search ??= library
        ?.searchText("a mosaic of coloured squares", { k: 3 })
        .then(() => finished.push("search"));
    });
    library = await createLibrary(settings, embedder);
    try {
      const pngs = await Promise.all(Array.from({ length: count }, (_, i) => patternPng(100 + i)));
      const indexed = library
        .index(pngs.map((bytes, i) => ({ id: `p${i}`, bytes })))
        .then(() => finished.push("chunk"));
      await indexed;
      await search;
      // One queue for both towers would hold the search until the chunk is committed.
      assert.deepEqual(finished, ["search", "chunk"]);
    } finally {
      await library.close();
    }
  });
});
