/**
 * Client input that gave a 5xx or a wrong answer (issue 24, finding 7), on both backends over
 * HTTP: U+0000 in metadata, a filter value or a job path is a 400 with its code on SQLite and
 * PostgreSQL alike (Postgres's jsonb cannot hold it; it gave 500 there and was stored on
 * SQLite), and a `compose` weight of 1e200 ranks as a weight of 1 would (it gave 200 with no
 * hits on SQLite and 500 on Postgres); nothing stored is lost. Job metadata is checked at POST /jobs
 * (finding 9), not when every item fails with it.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import supertest from "supertest";
import { JobService } from "../src/jobs/service.ts";
import type { LongclipLibrary } from "../src/library/library.ts";
import { buildApp } from "../src/server/app.ts";
import { multipart, startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { patternPng } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres } from "./helpers/postgres.ts";

for (const backend of ["sqlite", "postgres"] as const) {
  describe(`U+0000 and huge compose weights on ${backend}`, () => {
    let postgres: TestPostgres | undefined;
    let server: TestServer;
    /** The same library behind an app that creates jobs (none runs here). */
    let jobApp: ReturnType<typeof buildApp> | undefined;
    let jobHttp: supertest.Agent;
    const mediaRoot = tempDir("longclip-nul-media-");

    before(async () => {
      if (backend === "postgres") postgres = await startPostgres();
      mkdirSync(path.join(mediaRoot, "photos"));
      writeFileSync(path.join(mediaRoot, "photos", "a.png"), await patternPng(7));
      server = await startTestApp({
        mediaRoot,
        ...(postgres ? { databaseUrl: postgres.url } : {}),
      });
      const form = multipart([
        { name: "images", value: await patternPng(1), filename: "one.png" },
        { name: "ids", value: "one" },
        { name: "metadata", value: JSON.stringify({ caption: "a first pattern" }) },
        { name: "images", value: await patternPng(2), filename: "two.png" },
        { name: "ids", value: "two" },
        { name: "metadata", value: JSON.stringify({ caption: "a second pattern" }) },
      ]);
      const jobs = new JobService((server.library as LongclipLibrary).store.jobs, server.settings);
      jobApp = buildApp(server.settings, server.library, { jobs });
      jobHttp = supertest(await jobApp.listen({ host: "127.0.0.1", port: 0 }));
      const indexed = await server.http.post("/index").set(form.headers).send(form.payload);
      assert.equal(indexed.status, 200, indexed.text);
    });
    after(async () => {
      await server?.app.close();
      await jobApp?.close();
      await postgres?.stop();
    });

    test("U+0000 in metadata, a filter value or a job path is a 400 with its code", async () => {
      const { http } = server;
      const nulMetadata = [{ caption: "a\u0000b" }, { "a\u0000b": 1 }, { deep: ["x\u0000"] }];
      for (const metadata of nulMetadata) {
        const form = multipart([
          { name: "images", value: await patternPng(3), filename: "three.png" },
          { name: "metadata", value: JSON.stringify(metadata) },
        ]);
        const res = await http.post("/index").set(form.headers).send(form.payload);
        const result = res.body.results?.[0] ?? res.body;
        const code = result.error?.code;
        assert.equal(code, "invalid_metadata", `${JSON.stringify(metadata)}: ${res.text}`);
      }
      const byPath = await http
        .post("/index")
        .send({ items: [{ path: "photos/a.png", metadata: { caption: "\u0000" } }] });
      assert.equal(byPath.body.results?.[0]?.error?.code, "invalid_metadata", byPath.text);

      for (const filter of [{ caption: "a\u0000" }, { caption: { $in: ["x", "\u0000"] } }]) {
        const res = await http.post("/search").send({ query: "a pattern", filter });
        assert.equal(res.status, 400, `${JSON.stringify(filter)}: ${res.text}`);
        assert.match(res.body.error.code, /^(invalid_filter|validation_failed)$/);
      }
      const jobPath = await jobHttp.post("/jobs").send({ paths: ["photos/a\u0000.png"] });
      assert.equal(jobPath.status, 400, jobPath.text);
      assert.equal(jobPath.body.error.code, "validation_failed");
      const jobMetadata = await jobHttp
        .post("/jobs")
        .send({ paths: ["photos"], metadata: { album: "x\u0000" } });
      assert.equal(jobMetadata.status, 400, jobMetadata.text);
      assert.equal(jobMetadata.body.error.code, "invalid_metadata");

      const items = await http.get("/items");
      assert.equal(items.status, 200, items.text);
      assert.deepEqual(items.body.items.map((item: { id: string }) => item.id).sort(), [
        "one",
        "two",
      ]);
    });

    test("a compose weight of 1e200 or 1e-200 ranks as a weight of 1; weights near the float64 limit still answer", async () => {
      const { http } = server;
      const search = (weight: number) =>
        http.post("/search").send({
          compose: [
            { text: "a pattern of squares", weight },
            { item_id: "one", weight: weight / 2 },
          ],
          k: 2,
        });
      const unit = await search(1);
      assert.equal(unit.status, 200, unit.text);
      assert.equal(unit.body.hits.length, 2);
      for (const weight of [1e200, 1e-200]) {
        const scaled = await search(weight);
        assert.equal(scaled.status, 200, `${weight}: ${scaled.text}`);
        assert.deepEqual(
          scaled.body.hits.map((hit: { id: string; score: number }) => [hit.id, hit.score]),
          unit.body.hits.map((hit: { id: string; score: number }) => [hit.id, hit.score]),
          String(weight),
        );
      }
      const overflow = await http.post("/search").send({
        compose: [
          { text: "a pattern", weight: 1.5e308 },
          { text: "a pattern of squares", weight: 1.5e308 },
        ],
      });
      assert.equal(overflow.status, 200, overflow.text);
    });
  });
}
