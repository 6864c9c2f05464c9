/**
 * Issue 24, finding 9: six `POST /reindex/switch` calls at the same moment on two nodes of one
 * native Postgres, with uploads arriving during the switch. One switch happens and every call
 * gets the same answer: 200 with the switched status (a call that comes just after another's
 * switch is that success, not `409 no_reindex`); every upload during the switch is indexed, and
 * afterwards every item, those uploads included, is embedded by the new model.
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import supertest from "supertest";
import type { LongclipLibrary } from "../src/library/library.ts";
import { buildApp } from "../src/server/app.ts";
import { tempDir } from "./api-helpers.ts";
import {
  assertAllEmbeddedBy,
  modelsUnder,
  NEXT_ID,
  openLibrary,
  pngs,
  postgresNodeStore,
  until,
  upload,
} from "./helpers/blue-green.ts";
import { testSettings } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres, testPostgresKind } from "./helpers/postgres.ts";

const SWITCH_CALLS = 6;
const UPLOADS = 8;
/** Uploads start this far apart, so that some land before, during and after the swap. */
const UPLOAD_SPACING_MS = 60;

let postgres: TestPostgres | undefined;
const native = testPostgresKind().kind === "native";

before(async () => {
  if (native) postgres = await startPostgres();
});
after(() => postgres?.stop());

test("six concurrent switch calls on two nodes: one switch, six 200s, and every upload during it is indexed with the new model", {
  skip: native ? false : "needs a native PostgreSQL (the race is between its connections)",
}, async () => {
  const db = postgres as TestPostgres;
  const root = tempDir("switch-race-");
  const { served, next } = modelsUnder(root);
  const settings = testSettings(served, path.join(root, "data"), { databaseUrl: db.url });
  const nodes: LongclipLibrary[] = [];
  for (let i = 0; i < 2; i++)
    nodes.push(await openLibrary(settings, await postgresNodeStore(db, settings)));
  const [nodeA, nodeB] = nodes as [LongclipLibrary, LongclipLibrary];
  const apps = nodes.map((node) => buildApp(settings, node, {}));
  const http = await Promise.all(
    apps.map(async (app) => supertest(await app.listen({ host: "127.0.0.1", port: 0 }))),
  );
  const images = new Map<string, Buffer>();
  try {
    const first = await pngs(5000, 12);
    await nodeA.index(
      first.map((bytes, i) => {
        images.set(`item-${i}`, bytes);
        return { id: `item-${i}`, bytes };
      }),
    );
    await nodeA.startReindex(next, "manual");
    await until("node A's run to wait for the switch", async () =>
      nodeA.reindexStatus()?.state === "waiting_for_switch" ? true : undefined,
    );
    await until("node B to follow the run", async () =>
      nodeB.nextModelId() === NEXT_ID ? true : undefined,
    );

    const during = await pngs(5100, UPLOADS);
    const switches = Promise.all(
      Array.from({ length: SWITCH_CALLS }, (_, i) =>
        (http[i % 2] as supertest.Agent).post("/reindex/switch").then((response) => response),
      ),
    );
    const uploads = Promise.all(
      during.map(async (bytes, i) => {
        await new Promise((resolve) => setTimeout(resolve, i * UPLOAD_SPACING_MS));
        const id = `during-${i}`;
        images.set(id, bytes);
        return upload(http[i % 2] as supertest.Agent, [[id, bytes]]).then((response) => response);
      }),
    );
    const [switched, added] = await Promise.all([switches, uploads]);

    const answers = switched.map(
      (response) => `${response.status} ${JSON.stringify(response.body)}`,
    );
    const indexed = added.map((response) => `${response.status} ${JSON.stringify(response.body)}`);
    console.log(`switch answers:\n  ${answers.join("\n  ")}`);
    console.log(`upload answers:\n  ${indexed.join("\n  ")}`);
    for (const response of switched) {
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.state, "switched", JSON.stringify(response.body));
      assert.equal(response.body.model_id, NEXT_ID);
    }
    for (const response of added) {
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.results[0].status, "indexed", JSON.stringify(response.body));
    }
    // A call that comes after the switch (as one a moment late does) answers the same, on
    // the node that switched and on the other: the run it asks about switched.
    for (const client of http) {
      const late = await client.post("/reindex/switch");
      assert.equal(late.status, 200, JSON.stringify(late.body));
      assert.equal(late.body.state, "switched");
      assert.equal(late.body.model_id, NEXT_ID);
    }
    // Both nodes answered the switch, so both serve the new model now.
    for (const client of http) assert.equal((await client.get("/stats")).body.model_id, NEXT_ID);
    assert.equal((await nodeA.store.model())?.modelId, NEXT_ID);
    await assertAllEmbeddedBy(nodeA.store, images, next, settings);
  } finally {
    await Promise.all(apps.map((app) => app.close()));
    await Promise.all(nodes.map((node) => node.close()));
  }
});
