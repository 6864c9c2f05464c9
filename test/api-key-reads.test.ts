/**
 * `--api-key-reads on` (issue 24, finding 10): with an API key set, searches, duplicates, jobs,
 * the reindex status and metrics need the key too; off (the default), reads stay open.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startTestApp, type TestServer } from "./api-helpers.ts";

const KEY = "test-key-0123456789";

/** Each keyed read, as a request on `http`. */
function reads(server: TestServer) {
  const { http } = server;
  return {
    "POST /search": () => http.post("/search").send({ query: "a pattern" }),
    "GET /duplicates": () => http.get("/duplicates"),
    "GET /jobs": () => http.get("/jobs"),
    "GET /jobs/{id}": () => http.get("/jobs/job-none"),
    "GET /reindex": () => http.get("/reindex"),
    "GET /metrics": () => http.get("/metrics"),
  };
}

for (const mode of ["on", "off"] as const) {
  describe(`--api-key-reads ${mode}`, () => {
    let server: TestServer;
    before(async () => {
      server = await startTestApp({ apiKey: KEY, apiKeyReads: mode });
    });
    after(async () => {
      await server?.app.close();
    });

    test(mode === "on" ? "reads need the key" : "reads stay open", async () => {
      for (const [name, send] of Object.entries(reads(server))) {
        const res = await send();
        if (mode === "on") {
          assert.equal(res.status, 401, `${name}: ${res.text}`);
          assert.equal(res.body.error.code, "unauthorized", name);
        } else {
          assert.notEqual(res.status, 401, `${name}: ${res.text}`);
        }
      }
      if (mode === "on") {
        const keyed = await server.http
          .post("/search")
          .set("x-api-key", KEY)
          .send({ query: "a pattern" });
        assert.equal(keyed.status, 200, keyed.text);
        const bearer = await server.http.get("/metrics").set("authorization", `Bearer ${KEY}`);
        assert.equal(bearer.status, 200);
      }
      // Items stay open either way (the web page's <img> tags send no key).
      assert.equal((await server.http.get("/items")).status, 200);
      assert.equal((await server.http.get("/health")).status, 200);
    });
  });
}
