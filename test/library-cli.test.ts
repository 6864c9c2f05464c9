/** `longclip index` / `search` / `reindex` as functions, with the real tiny model. */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { runDuplicates } from "../src/cli/duplicates.ts";
import { parseFilter, parseMeta, runIndex, runReindex, runSearch } from "../src/cli/index-cmd.ts";
import { isAppError } from "../src/core/errors.ts";
import { collectImageFiles } from "../src/library/ingest/files.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { patternPng, relabelStoredModel, tempDir } from "./helpers/library-fixtures.ts";

const root = tempDir("library-cli-test-");
after(() => rmSync(root, { recursive: true, force: true }));

function capture() {
  let text = "";
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      done();
    },
  });
  return { stream, text: () => text };
}

function io() {
  const out = capture();
  const err = capture();
  return { io: { out: out.stream, err: err.stream }, out: out.text, err: err.text };
}

const photos = path.join(root, "photos");

before(async () => {
  mkdirSync(path.join(photos, "b", "c"), { recursive: true });
  writeFileSync(path.join(photos, "a.png"), await patternPng(1));
  writeFileSync(path.join(photos, "b", "two.PNG"), await patternPng(2));
  writeFileSync(path.join(photos, "b", "c", "three.png"), await patternPng(3));
  writeFileSync(path.join(photos, "b", "copy.png"), await patternPng(1));
  writeFileSync(path.join(photos, "b", "broken.jpg"), Buffer.from("not a jpeg"));
  writeFileSync(path.join(photos, "notes.txt"), "not an image");
  symlinkSync(photos, path.join(photos, "b", "loop"));
});

describe("collectImageFiles", () => {
  test("walks directories recursively by extension, in order, without following dir links", async () => {
    const extra = path.join(root, "single.txt");
    writeFileSync(extra, "explicit files are taken as given");
    const { files, missing } = await collectImageFiles([photos, extra, path.join(root, "nope")]);
    assert.deepEqual(
      files.map((f) => path.relative(root, f)),
      [
        "photos/a.png",
        "photos/b/broken.jpg",
        "photos/b/c/three.png",
        "photos/b/copy.png",
        "photos/b/two.PNG",
        "single.txt",
      ],
    );
    assert.deepEqual(missing, [path.join(root, "nope")]);
  });

  test("--meta pairs", () => {
    assert.deepEqual(parseMeta(["album=trip", "note=a=b"]), { album: "trip", note: "a=b" });
    assert.throws(
      () => parseMeta(["novalue"]),
      (e: unknown) => isAppError(e),
    );
  });

  test("--filter conditions: operators, numbers for ranges, JSON, one key's conditions AND", () => {
    assert.deepEqual(
      parseFilter([
        "year>=2020",
        "year<2024",
        "city!=Paris",
        "n=5",
        "taken<=2024-06-01",
        '{"tags": {"$in": ["a", "b"]}, "pinned": true}',
      ]),
      {
        year: { $gte: 2020, $lt: 2024 },
        city: { $ne: "Paris" },
        n: { $eq: "5" },
        taken: { $lte: "2024-06-01" },
        tags: { $in: ["a", "b"] },
        pinned: { $eq: true },
      },
    );
    assert.equal(parseFilter([]), undefined);
    for (const bad of ["novalue", "{not json"]) {
      assert.throws(
        () => parseFilter([bad]),
        (e: unknown) => isAppError(e) && e.code === "invalid_setting",
      );
    }
  });
});

describe("index, search, reindex commands", () => {
  test("index reports failures and skips what is indexed; search prints ranked hits", async () => {
    const flags = { model: demoModelWithoutGallery(), data: path.join(root, "data"), threads: "1" };
    const first = io();
    assert.equal(await runIndex([photos], { ...flags, meta: ["album=trip"] }, first.io), 1);
    assert.match(first.err(), /indexed 3, already indexed 1, failed 1 of 5 files/);
    assert.match(first.err(), /broken\.jpg: \[unsupported_image\]/);

    const second = io();
    assert.equal(await runIndex([path.join(photos, "b", "c")], flags, second.io), 0);
    assert.match(second.err(), /indexed 0, already indexed 1, failed 0 of 1 files/);

    const search = io();
    assert.equal(
      await runSearch("a mosaic of squares", { ...flags, k: "2", json: true }, search.io),
      0,
    );
    const result = JSON.parse(search.out()) as {
      hits: { rank: number; metadata: unknown }[];
      query: { max_tokens: number };
    };
    assert.deepEqual(
      result.hits.map((h) => h.rank),
      [1, 2],
    );
    // The --meta pairs, and the file's name and path (outside any media root: its full path).
    const metadata = result.hits[0]?.metadata as Record<string, unknown>;
    assert.equal(metadata.album, "trip");
    assert.ok(String(metadata.path).startsWith(`${photos}${path.sep}`), String(metadata.path));
    assert.equal(metadata.filename, path.basename(String(metadata.path)));
    assert.equal(result.query.max_tokens, 248);

    const text = io();
    assert.equal(await runSearch("squares", { ...flags, k: "3", exact: true }, text.io), 0);
    assert.equal(text.out().trim().split("\n").length, 3);
    assert.match(text.out(), /^ {2}1 {2}-?\d\.\d{4} {2}\S+ {2}\/.*\.png$/m);

    const bad = io();
    assert.equal(await runSearch("x", { ...flags, k: "0" }, bad.io), 2, "a usage error");
    assert.match(bad.err(), /error \[invalid_setting\]: --k /);
    const tooMany = io();
    assert.equal(await runSearch("x", { ...flags, k: "100000" }, tooMany.io), 2);
    assert.match(tooMany.err(), /error \[k_out_of_range\]/);

    // Options: the second page of the exact ranking, and a cutoff, match the full ranking.
    const all = io();
    assert.equal(
      await runSearch("squares", { ...flags, k: "3", exact: true, json: true }, all.io),
      0,
    );
    const ranking = (JSON.parse(all.out()) as { hits: { id: string; score: number }[] }).hits;
    const paged = io();
    assert.equal(
      await runSearch(
        "squares",
        {
          ...flags,
          k: "2",
          offset: "1",
          exact: true,
          json: true,
          filter: ["album=trip"],
          minScore: String(ranking[2]?.score),
          longQuery: "chunk",
        },
        paged.io,
      ),
      0,
    );
    assert.deepEqual(
      (JSON.parse(paged.out()) as { hits: { id: string; rank: number }[] }).hits.map((h) => [
        h.id,
        h.rank,
      ]),
      [
        [ranking[1]?.id, 2],
        [ranking[2]?.id, 3],
      ],
    );
    const badFilter = io();
    assert.equal(await runSearch("x", { ...flags, filter: ["n>soon"] }, badFilter.io), 2);
    assert.match(badFilter.err(), /validation_failed.*filter\.n\.\$gt/);
  });

  test("after a model change, search says to reindex, and reindex fixes it", async () => {
    const flags = {
      model: demoModelWithoutGallery(),
      data: path.join(root, "data2"),
      threads: "1",
    };
    assert.equal(await runIndex([path.join(photos, "a.png")], flags, io().io), 0);
    await relabelStoredModel(flags.data, "previous-model", 64);

    const refused = io();
    assert.equal(await runSearch("x", flags, refused.io), 1);
    assert.match(refused.err(), /\[model_mismatch\].*longclip reindex/);

    const reindex = io();
    assert.equal(await runReindex(flags, reindex.io), 0);
    assert.match(reindex.err(), /re-embedded 1 of 1 items/);
    const search = io();
    assert.equal(await runSearch("x", { ...flags, json: true }, search.io), 0);
    assert.equal((JSON.parse(search.out()) as { hits: unknown[] }).hits.length, 1);
  });

  test("search --mode keyword and hybrid; duplicates lists near-duplicate groups", async () => {
    const flags = {
      model: demoModelWithoutGallery(),
      data: path.join(root, "data3"),
      threads: "1",
    };
    const dir = path.join(root, "near");
    mkdirSync(dir);
    const original = await patternPng(5, 96);
    writeFileSync(path.join(dir, "x.png"), original);
    writeFileSync(path.join(dir, "x-small.png"), await sharp(original).resize(64).png().toBuffer());
    writeFileSync(path.join(dir, "y.png"), await patternPng(6, 96));
    assert.equal(await runIndex([dir], { ...flags, meta: ["caption=a zorblat kite"] }, io().io), 0);

    const keyword = io();
    assert.equal(await runSearch("zorblat", { ...flags, mode: "keyword" }, keyword.io), 0);
    assert.equal(keyword.out().trim().split("\n").length, 3);
    assert.match(keyword.out(), /^ {2}1 {2}-?\d\.\d{4} {2}\S+ {2}\/.*\.png {2}\(keyword #1\)$/m);
    const hybrid = io();
    assert.equal(await runSearch("zorblat", { ...flags, mode: "hybrid", k: "1" }, hybrid.io), 0);
    assert.match(hybrid.out(), /\(vector #1, keyword #[1-3]\)$/m);
    const bad = io();
    assert.equal(await runSearch("x", { ...flags, mode: "fuzzy" }, bad.io), 2);
    assert.match(bad.err(), /\[invalid_setting\]: --mode is vector, keyword, hybrid/);

    // Whatever the tiny model scores, the groups are those of the pairs at the threshold.
    const dupes = io();
    assert.equal(await runDuplicates({ ...flags, threshold: "0.5", json: true }, dupes.io), 0);
    const groups = dupes
      .out()
      .trim()
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as { ids: string[]; max_score: number });
    assert.match(dupes.err(), new RegExp(`^${groups.length} groups of near-duplicates`));
    for (const group of groups) {
      assert.ok(group.ids.length >= 2 && group.max_score >= 0.5);
    }
    const refused = io();
    assert.equal(await runDuplicates({ ...flags, threshold: "1.5" }, refused.io), 2);
    assert.match(refused.err(), /\[invalid_setting\]: --threshold/);
  });
});
