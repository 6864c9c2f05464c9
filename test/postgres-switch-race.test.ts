/**
 * Issue 24, finding 9: six `POST /reindex/switch` calls at the same moment on two nodes of one
 * native Postgres, with uploads arriving during the switch. One switch happens and every call
 * gets the same answer: 200 with the switched status (a call that comes just after another's
 * switch is that success, not `409 no_reindex`); every upload during the switch is indexed, and
 * afterwards every item, those uploads included, is embedded by the new model.
 *
 * The second test puts the switch, deterministically, between the two reads of a node's 2 s
 * store check (the store's model, then its recorded run) while an upload on that node is
 * embedding with the next model: the check must adopt the next model, not close it under the
 * upload (which then failed with `encoder_closed`).
 */
import assert from "node:assert/strict";
import path from "node:path";
import { after, before, test } from "node:test";
import supertest from "supertest";
import type { Settings } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import type { Embedder } from "../src/encode/types.ts";
import type { LongclipLibrary } from "../src/library/library.ts";
import { buildApp } from "../src/server/app.ts";
import type { ItemStore } from "../src/store/types.ts";
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
import { withBeforeImages } from "./helpers/embedders.ts";
import { patternPng, testSettings } from "./helpers/library-fixtures.ts";
import { startPostgres, type TestPostgres, testPostgresKind } from "./helpers/postgres.ts";

/** Node A indexes `bytes` (kept in `images`), then runs a manual reindex until it waits to switch. */
async function waitingRun(
  nodeA: LongclipLibrary,
  bytes: readonly Buffer[],
  images: Map<string, Buffer>,
  next: string,
): Promise<void> {
  await nodeA.index(
    bytes.map((image, i) => {
      images.set(`item-${i}`, image);
      return { id: `item-${i}`, bytes: image };
    }),
  );
  await nodeA.startReindex(next, "manual");
  await until("node A's run to wait for the switch", async () =>
    nodeA.reindexStatus()?.state === "waiting_for_switch" ? true : undefined,
  );
}

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
    await waitingRun(nodeA, first, images, next);
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

/** Holds the next call that passes it once armed: `entered` when it arrives, `release()` to go on. */
class Hold {
  private armed = false;
  private signal = (): void => {};
  private go = (): void => {};
  entered: Promise<void> = Promise.resolve();
  private released: Promise<void> = Promise.resolve();

  arm(): void {
    this.armed = true;
    this.entered = new Promise((resolve) => {
      this.signal = resolve;
    });
    this.released = new Promise((resolve) => {
      this.go = resolve;
    });
  }

  async pass(): Promise<void> {
    if (!this.armed) return;
    this.armed = false;
    this.signal();
    await this.released;
  }

  release(): void {
    this.go();
  }
}

/** `store` whose reads of the recorded run wait at `hold` first. */
function heldReindexReads(store: ItemStore, hold: Hold): ItemStore {
  return new Proxy(store, {
    get(target, key) {
      if (key === "reindexTarget") {
        return async () => {
          await hold.pass();
          return target.reindexTarget();
        };
      }
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * Loads models from their directories, counting the loads of the next model (and those in
 * progress); the next model's image embedding waits at `hold`.
 */
function heldNextModel(settings: Settings, hold: Hold) {
  const counts = { loads: 0, loading: 0 };
  const load = async (dir: string): Promise<Embedder> => {
    counts.loading++;
    const encoder = await Encoder.load(dir, settings).finally(() => {
      counts.loading--;
    });
    if (encoder.modelId !== NEXT_ID) return encoder;
    counts.loads++;
    return withBeforeImages(encoder, () => hold.pass());
  };
  return { load, counts };
}

test("a store check that straddles the switch adopts the next model; an upload embedding with it meanwhile is indexed", {
  skip: native ? false : "needs a native PostgreSQL (the race is between its connections)",
  timeout: 180_000,
}, async () => {
  const db = postgres as TestPostgres;
  await db.reset();
  const root = tempDir("switch-check-race-");
  const { served, next } = modelsUnder(root);
  const settings = testSettings(served, path.join(root, "data"), { databaseUrl: db.url });
  const check = new Hold();
  const embed = new Hold();
  const nodeA = await openLibrary(settings, await postgresNodeStore(db, settings));
  const storeB = heldReindexReads(await postgresNodeStore(db, settings), check);
  const loader = heldNextModel(settings, embed);
  const nodeB = await openLibrary(settings, storeB, loader.load);
  const appB = buildApp(settings, nodeB, {});
  const httpB = supertest(await appB.listen({ host: "127.0.0.1", port: 0 }));
  const images = new Map<string, Buffer>();
  try {
    const first = await pngs(6000, 4);
    await waitingRun(nodeA, first, images, next);
    await until("node B to follow the run", async () =>
      nodeB.nextModelId() === NEXT_ID && loader.counts.loading === 0 ? true : undefined,
    );

    // An upload on node B embeds with both models: it waits inside the next model's run.
    const held = await patternPng(6100, 96);
    images.set("held", held);
    embed.arm();
    const uploading = upload(httpB, [["held", held]]).then((response) => response);
    await embed.entered;
    // Node B's next check has read the store's (old) model and waits to read the run.
    check.arm();
    await check.entered;
    await nodeA.switchReindex();
    check.release();
    await until("node B to serve the new model", async () =>
      (await nodeB.stats()).modelId === NEXT_ID ? true : undefined,
    );
    embed.release();
    const added = await uploading;
    assert.equal(added.status, 200, JSON.stringify(added.body));
    assert.equal(added.body.results[0].status, "indexed", JSON.stringify(added.body));
    await assertAllEmbeddedBy(nodeA.store, images, next, settings);
    // Its checks (every 2 s, each slower than that while a model loads) never overlap: node B
    // loaded the next model once, and adopted that one at the switch.
    assert.equal(loader.counts.loads, 1);
  } finally {
    check.release();
    embed.release();
    await appB.close();
    await nodeB.close();
    await nodeA.close();
  }
});
