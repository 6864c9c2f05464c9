/**
 * Blue/green model switch (src/library/models/blue-green.ts) with real models, stores and sockets:
 * search answers throughout a reindex, an item indexed meanwhile gets both embeddings, after
 * the switch every item has the new model's embedding, a killed `longclip reindex --to-model`
 * resumes where it stopped, and on Postgres a second node switches with the store.
 *
 * The second model is models/demo with another model id and another image normalisation
 * (mean/std): same weights and dimensions, but every image embedding differs, so "embedded by
 * the new model" can be checked vector by vector against the new model's own output.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import supertest from "supertest";
import { PROJECT_ROOT, type Settings } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary, type LongclipLibrary } from "../src/library/library.ts";
import { buildApp } from "../src/server/app.ts";
import type { ItemStore } from "../src/store/types.ts";
import { tempDir } from "./api-helpers.ts";
import {
  assertAllEmbeddedBy,
  backgroundErrors,
  modelsUnder,
  NEXT_ID,
  openLibrary,
  pngs,
  postgresNodeStore,
  until,
  upload,
} from "./helpers/blue-green.ts";
import { runCli } from "./helpers/cli.ts";
import { patternPng, testSettings } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";

/** Searches `http` in a loop until stopped; every answer's status is kept. */
function searchLoop(http: supertest.Agent) {
  const statuses: number[] = [];
  let stop = false;
  const running = (async () => {
    while (!stop) {
      try {
        const response = await http
          .post("/search")
          .send({ query: "a pattern of coloured squares", k: 5 });
        statuses.push(response.status);
        if (response.status !== 200) console.log("search answered", response.status, response.body);
      } catch (error) {
        statuses.push(-1);
        console.log("search failed", String(error));
      }
    }
  })();
  return {
    statuses,
    async stop() {
      stop = true;
      await running;
    },
  };
}

describe("blue/green reindex on SQLite, over HTTP", () => {
  test("search answers throughout; an item indexed meanwhile gets both; a manual switch puts every item on the new model", async () => {
    const root = tempDir("blue-green-api-");
    const { served, next } = modelsUnder(root);
    const settings = testSettings(served, path.join(root, "data"));
    const library = await openLibrary(settings);
    const app = buildApp(settings, library, {});
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    const http = supertest(url);
    const images = new Map<string, Buffer>();
    let searches: ReturnType<typeof searchLoop> | undefined;
    try {
      const first = await pngs(1, 24);
      for (const [i, bytes] of first.entries()) images.set(`item-${i}`, bytes);
      const indexed = await upload(http, [...images]);
      assert.equal(indexed.status, 200, JSON.stringify(indexed.body));
      const oldModel = (await http.get("/stats")).body.model_id as string;

      assert.equal((await http.get("/reindex")).status, 404);
      const none = await http.post("/reindex/switch");
      assert.equal(none.status, 409, JSON.stringify(none.body));
      assert.equal(none.body.error.code, "no_reindex");
      const outside = await http.post("/reindex").send({ model_dir: "../../etc" });
      assert.equal(outside.status, 403);
      assert.equal(outside.body.error.code, "path_outside_models");
      const same = await http.post("/reindex").send({ model_dir: "demo" });
      assert.equal(same.status, 409, JSON.stringify(same.body));

      searches = searchLoop(http);
      const started = await http.post("/reindex").send({ model_dir: "next", switch: "manual" });
      assert.equal(started.status, 202, JSON.stringify(started.body));
      assert.equal(started.body.model_id, NEXT_ID);
      // indexed while the reindex runs: embedded by both models
      const late = await patternPng(1000, 96);
      images.set("late", late);
      const added = await upload(http, [["late", late]]);
      assert.equal(added.body.results[0].status, "indexed");
      const waiting = await until("the run to complete", async () => {
        const status = (await http.get("/reindex")).body;
        return status.state === "waiting_for_switch" ? status : undefined;
      });
      assert.equal(waiting.done, 25);
      assert.equal(waiting.failed, 0);
      assert.equal(waiting.total, 25);
      const store = (library as LongclipLibrary).store;
      const lateItem = await store.getById("late");
      assert.ok(lateItem);
      assert.equal((await store.embeddingsOf(oldModel, [lateItem.label])).length, 1);
      assert.equal(await store.countStaging(NEXT_ID), 25, "the late item is staged too");
      assert.equal((await http.get("/stats")).body.model_id, oldModel, "no switch before asked");

      const switched = await http.post("/reindex/switch");
      assert.equal(switched.status, 200, JSON.stringify(switched.body));
      assert.equal(switched.body.state, "switched");
      await new Promise((resolve) => setTimeout(resolve, 300)); // searches on the new model
      await searches.stop();
      const bad = searches.statuses.filter((status) => status !== 200);
      console.log(
        `searches during the reindex: ${searches.statuses.length}, not 200: ${bad.length}`,
      );
      assert.ok(searches.statuses.length >= 10, `only ${searches.statuses.length} searches`);
      assert.deepEqual(bad, []);

      assert.equal((await http.get("/stats")).body.model_id, NEXT_ID);
      assert.equal(await store.countEmbeddings(oldModel), 0, "the old generation is dropped");
      await assertAllEmbeddedBy(store, images, next, settings);
      const found = await http.post("/search/image").attach("image", late, "late.png");
      assert.equal(found.status, 200, JSON.stringify(found.body));
      assert.equal(found.body.hits[0].id, "late");
    } finally {
      await searches?.stop();
      await app.close();
    }
  });
});

describe("blue/green reindex and files indexed by path", () => {
  test("a file replaced by a symbolic link since it was indexed fails alone with image_changed", async () => {
    const root = tempDir("blue-green-paths-");
    const { served, next } = modelsUnder(root);
    const media = path.join(root, "media");
    mkdirSync(media);
    const [a, b, secret] = await pngs(2000, 3);
    writeFileSync(path.join(media, "a.png"), a as Buffer);
    writeFileSync(path.join(media, "b.png"), b as Buffer);
    writeFileSync(path.join(root, "secret.png"), secret as Buffer);
    const settings = testSettings(served, path.join(root, "data"), { mediaRoot: media });
    const library = await openLibrary(settings);
    try {
      const indexed = await library.index([
        { id: "a", path: path.join(media, "a.png") },
        { id: "b", path: path.join(media, "b.png") },
      ]);
      assert.deepEqual(
        indexed.map((result) => result.status),
        ["indexed", "indexed"],
      );
      // After indexing, b.png becomes a link to a file outside the media root.
      rmSync(path.join(media, "b.png"));
      symlinkSync(path.join(root, "secret.png"), path.join(media, "b.png"));
      await library.startReindex(next, "manual");
      const status = await until("the run to complete", async () => {
        const current = library.reindexStatus();
        return current?.state === "waiting_for_switch" ? current : undefined;
      });
      assert.equal(status.done, 1);
      assert.equal(status.failed, 1);
      assert.deepEqual(
        status.failures.map((failure) => [failure.id, failure.code]),
        [["b", "image_changed"]],
      );
      const store = (library as LongclipLibrary).store;
      assert.equal(await store.countStaging(NEXT_ID), 1, "only a.png is embedded by the new model");
    } finally {
      await library.close();
    }
  });
});

/** A copy of `from` named `name` beside it, with `change` applied to its config.json. */
function variantOf(from: string, name: string, change: (config: Record<string, unknown>) => void) {
  const dir = path.join(path.dirname(from), name);
  mkdirSync(dir, { recursive: true });
  for (const file of ["config.json", "vision.onnx", "text.onnx", "vocab.txt"]) {
    copyFileSync(path.join(from, file), path.join(dir, file));
  }
  const config = JSON.parse(readFileSync(path.join(from, "config.json"), "utf8"));
  config.model_id = `${NEXT_ID}-${name}`;
  change(config);
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  return dir;
}

describe("blue/green reindex to a bad model directory (issue 24, finding 6)", () => {
  test("a model that disagrees with its graph or cannot load is refused with a 4xx before any run; a recorded run that fails for its model is shown failed and never retried", async () => {
    const root = tempDir("blue-green-bad-model-");
    const { served } = modelsUnder(root);
    variantOf(served, "wide", (config) => {
      config.embed_dim = 128; // the graph outputs 64
    });
    variantOf(served, "huge-images", (config) => {
      config.image_resolution = 4096; // the graph takes 64×64
    });
    const broken = variantOf(served, "broken", () => {});
    writeFileSync(path.join(broken, "vision.onnx"), "not an ONNX file");
    const settings = testSettings(served, path.join(root, "data"));
    const encoder = await Encoder.load(settings.modelDir, settings);
    let loads = 0;
    const library = await createLibrary(settings, encoder, {
      loadModel: (dir) => {
        loads++;
        return Encoder.load(dir, settings);
      },
      onBackgroundError: (error) => console.log(`background error: ${String(error)}`),
    });
    const app = buildApp(settings, library, {});
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    const http = supertest(url);
    try {
      const indexed = await upload(
        http,
        (await pngs(3000, 4)).map((png, i) => [`i${i}`, png]),
      );
      assert.equal(indexed.status, 200, JSON.stringify(indexed.body));
      for (const dir of ["wide", "huge-images", "broken"]) {
        const started = await http.post("/reindex").send({ model_dir: dir });
        assert.equal(started.status, 400, `${dir}: ${JSON.stringify(started.body)}`);
        assert.equal(started.body.error.code, "model_invalid", dir);
      }
      assert.equal((await http.get("/reindex")).status, 404, "no run was recorded");
      assert.equal(await library.store.reindexTarget(), undefined);

      // A run recorded by a node that went quiet, to a model this node cannot load: taken over
      // once, recorded as failed with its error, and not tried again.
      await library.store.setReindexTarget({
        modelId: `${NEXT_ID}-broken`,
        dims: 64,
        modelDir: broken,
        switchMode: "auto",
        startedAt: Date.now() - 60_000,
        heartbeatAt: Date.now() - 60_000,
        complete: false,
      });
      loads = 0;
      const failed = await until("the recorded run to fail", async () => {
        const status = (await http.get("/reindex")).body;
        return status.state === "failed" ? status : undefined;
      });
      assert.equal(failed.error.code, "model_invalid", JSON.stringify(failed));
      await new Promise((resolve) => setTimeout(resolve, 5_000)); // two store checks later
      assert.equal(loads, 1, "the failed run was tried again");
      assert.equal((await http.get("/reindex")).body.state, "failed");
      const switched = await http.post("/reindex/switch");
      assert.equal(switched.status, 409, JSON.stringify(switched.body));
      assert.equal(switched.body.error.code, "model_invalid");
      assert.equal(loads, 1, "a switch does not retry a run that failed for its model");
      // search still answers on the served model
      const search = await http.post("/search").send({ query: "a pattern", k: 2 });
      assert.equal(search.status, 200, JSON.stringify(search.body));
    } finally {
      await app.close();
    }
  });
});

describe("blue/green reindex from the command line", () => {
  test("a killed longclip reindex --to-model resumes where it stopped", async () => {
    const root = tempDir("blue-green-cli-");
    const { served, next } = modelsUnder(root);
    const dataDir = path.join(root, "data");
    const settings = testSettings(served, dataDir, { imageBatchSize: 1 });
    const images = new Map<string, Buffer>();
    const library = await openLibrary(settings);
    try {
      const bytes = await pngs(1, 120);
      for (const [i, b] of bytes.entries()) images.set(`item-${i}`, b);
      for (let start = 0; start < bytes.length; start += 40) {
        const results = await library.index(
          bytes.slice(start, start + 40).map((b, k) => ({ id: `item-${start + k}`, bytes: b })),
        );
        assert.ok(results.every((r) => r.status === "indexed"));
      }
    } finally {
      await library.close();
    }
    const flags = ["--model", served, "--data", dataDir, "--threads", "1"];
    // kill -9 the first run once some (not all) items have their new embedding
    const db = new Database(path.join(dataDir, "library.sqlite"), { readonly: true });
    const staged = () =>
      (db.prepare("SELECT count(*) AS n FROM embeddings_staging").get() as { n: number }).n;
    const first = spawn(
      process.execPath,
      [
        path.join(PROJECT_ROOT, "bin", "longclip.js"),
        "reindex",
        "--to-model",
        next,
        "--image-batch-size",
        "1",
        ...flags,
      ],
      { cwd: PROJECT_ROOT, stdio: ["ignore", "ignore", "pipe"] },
    );
    let firstErr = "";
    first.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      firstErr += chunk;
    });
    const exited = new Promise((resolve) =>
      first.on("exit", (code, signal) => resolve(signal ?? code)),
    );
    let atKill = 0;
    await until(
      "the first items to be staged",
      async () => {
        atKill = staged();
        return atKill > 0 ? true : undefined;
      },
      120_000,
    );
    first.kill("SIGKILL");
    assert.equal(await exited, "SIGKILL", firstErr);
    atKill = staged();
    db.close();
    assert.ok(atKill > 0 && atKill < 120, `staged at the kill: ${atKill} of 120`);

    const second = await runCli(["reindex", "--to-model", next, ...flags]);
    assert.equal(second.code, 0, second.stderr);
    const progress = [...second.stderr.matchAll(/reindex: (\d+)\/(\d+) items/g)].map((m) =>
      Number(m[1]),
    );
    console.log(`killed at ${atKill}/120 staged; the rerun reported ${progress.join(", ")}`);
    assert.ok((progress[0] ?? 0) >= atKill, `resumed at ${progress[0]}, not from 0`);
    assert.match(second.stderr, /switched to longclip-demo-renormalised-test/);

    const after = await openLibrary(testSettings(next, dataDir));
    try {
      await assertAllEmbeddedBy(after.store, images, next, settings);
    } finally {
      await after.close();
    }
  });
});

describe("blue/green reindex on Postgres with two nodes", () => {
  let postgres: TestPostgres;
  before(async () => {
    postgres = await startPostgres();
  });
  after(() => postgres?.stop());

  const nodeStore = (settings: Settings) => postgresNodeStore(postgres, settings);

  test("node B answers searches throughout, embeds its new items with both, and switches with the store", async () => {
    const root = tempDir("blue-green-pg-");
    const errorsBefore = backgroundErrors.length;
    const { served, next } = modelsUnder(root);
    const settings = testSettings(served, path.join(root, "data"), {
      databaseUrl: postgres.url,
    });
    const node = async () => openLibrary(settings, await nodeStore(settings));
    const nodeA = await node();
    const nodeB = await node();
    const appB = buildApp(settings, nodeB, {});
    const urlB = await appB.listen({ host: "127.0.0.1", port: 0 });
    const httpB = supertest(urlB);
    const images = new Map<string, Buffer>();
    let searches: ReturnType<typeof searchLoop> | undefined;
    try {
      const bytes = await pngs(1, 24);
      await nodeA.index(
        bytes.map((b, i) => {
          images.set(`item-${i}`, b);
          return { id: `item-${i}`, bytes: b };
        }),
      );
      const oldModel = (await httpB.get("/stats")).body.model_id as string;
      searches = searchLoop(httpB);
      await nodeA.startReindex(next, "manual");
      // node B sees the recorded run within its 2 s check and loads the next model
      await until("node B to load the next model", async () =>
        nodeB.nextModelId() === NEXT_ID ? true : undefined,
      );
      assert.equal((await httpB.get("/reindex")).body.state, "following");
      assert.equal(nodeB.reindexStatus(), undefined, "node B does not run the reindex itself");
      const late = await patternPng(2000, 96);
      images.set("late-b", late);
      const added = await upload(httpB, [["late-b", late]]);
      assert.equal(added.body.results[0].status, "indexed", JSON.stringify(added.body));
      const store = nodeA.store;
      const lateItem = await store.getById("late-b");
      assert.ok(lateItem);
      assert.equal((await store.embeddingsOf(oldModel, [lateItem.label])).length, 1);
      const complete = await until("node A's run to complete", async () => {
        const status = nodeA.reindexStatus();
        return status?.state === "waiting_for_switch" ? status : undefined;
      });
      assert.deepEqual(complete.failures, []);
      assert.equal(await store.countStaging(NEXT_ID), 25, "node B's item is staged too");
      await nodeA.switchReindex();
      await until("node B to switch", async () => {
        const stats = (await httpB.get("/stats")).body;
        return stats.model_id === NEXT_ID ? stats : undefined;
      });
      await new Promise((resolve) => setTimeout(resolve, 300));
      await searches.stop();
      const bad = searches.statuses.filter((status) => status !== 200);
      console.log(
        `node B searches during the reindex: ${searches.statuses.length}, not 200: ${bad.length}`,
      );
      assert.ok(searches.statuses.length >= 10);
      assert.deepEqual(bad, []);
      await assertAllEmbeddedBy(store, images, next, settings);
      const found = await httpB.post("/search/image").attach("image", late, "late.png");
      assert.equal(found.body.hits[0].id, "late-b");
      if (postgres.kind === "native") assert.deepEqual(backgroundErrors.slice(errorsBefore), []);
    } finally {
      await searches?.stop();
      await appB.close();
      await nodeA.close();
    }
  });

  test("nodes that had not followed the run yet follow the switch at their next upload or check; the upload is stored with the new model (issue 25)", async () => {
    const root = tempDir("blue-green-late-");
    const { served, next } = modelsUnder(root);
    const settings = testSettings(served, path.join(root, "data"), {
      databaseUrl: postgres.url,
    });
    const open = () => nodeStore(settings);
    await postgres.reset();
    const nodeA = await openLibrary(settings, await open());
    // Node B's store hides the recorded run, as if its 2 s check had not come yet: it never
    // loads the next model, so it embeds its upload with the old model only.
    const unaware = (store: ItemStore) =>
      new Proxy(store, {
        get(target, key) {
          if (key === "reindexTarget") return async () => undefined;
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    const nodeB = await openLibrary(settings, unaware(await open()));
    // Node C, just as unaware, takes no upload: its own 2 s check finds the switch.
    const nodeC = await openLibrary(settings, unaware(await open()));
    const appB = buildApp(settings, nodeB, {});
    const httpB = supertest(await appB.listen({ host: "127.0.0.1", port: 0 }));
    const images = new Map<string, Buffer>();
    try {
      const bytes = await pngs(3000, 4);
      await nodeA.index(
        bytes.map((b, i) => {
          images.set(`item-${i}`, b);
          return { id: `item-${i}`, bytes: b };
        }),
      );
      await nodeA.startReindex(next, "auto");
      await nodeA.waitForReindex();
      assert.equal(nodeA.reindexStatus()?.state, "switched");
      assert.equal(nodeB.nextModelId(), undefined, "node B did not follow the run");
      const followed = await until("node C to follow the switch at a check", async () => {
        const stats = await nodeC.stats();
        return stats.modelId === NEXT_ID ? stats : undefined;
      });
      assert.equal(followed.items, 4);
      assert.equal(nodeC.state(), "ready");
      const late = await patternPng(3100, 96);
      images.set("late-b", late);
      const added = await upload(httpB, [["late-b", late]]);
      assert.equal(added.status, 200, JSON.stringify(added.body));
      assert.equal(added.body.results[0].status, "indexed", JSON.stringify(added.body));
      assert.equal((await httpB.get("/stats")).body.model_id, NEXT_ID);
      await assertAllEmbeddedBy(nodeA.store, images, next, settings);
      const found = await httpB.post("/search/image").attach("image", late, "late.png");
      assert.equal(found.status, 200, JSON.stringify(found.body));
      assert.equal(found.body.hits[0].id, "late-b");
    } finally {
      await appB.close();
      await nodeC.close();
      await nodeA.close();
    }
  });
});
