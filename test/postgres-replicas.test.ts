/**
 * Read replicas on a real streaming standby (`pg_basebackup -R` of the native test Postgres,
 * tools/bench/native-standby.ts), through the storage seam: two stores on one primary and one
 * standby stand for two API nodes. The rule under test (src/store/postgres/replicas.ts): a node
 * reads its own writes at once, any node reads every write acknowledged `MAX_LAG_MS` before;
 * a replica past the bound, or dead, serves nothing, and no read fails because of it. And the
 * whole storage contract holds on a store that reads from a replica.
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import { loadSettings, PROJECT_ROOT } from "../src/core/settings.ts";
import { openStore } from "../src/store/open.ts";
import { PostgresStore } from "../src/store/postgres/store.ts";
import type { ItemStore, NewItem, StoreServer } from "../src/store/types.ts";
import { startNativeStandby, type TestStandby } from "../tools/bench/native-standby.ts";
import { patternPng, tempDir } from "./helpers/library-fixtures.ts";
import { type LongclipProcess, startServe, stopProcess } from "./helpers/longclip-process.ts";
import { startPostgres, type TestPostgres, testPostgresKind } from "./helpers/postgres.ts";
import { newItem, storeContract } from "./helpers/store-contract.ts";

const MAX_LAG_MS = 2_000;
const MODEL = { modelId: "m1", dims: 8 };
const PARAMETERS = { m: 16, efConstruction: 64, efSearch: 64, vectorType: "halfvec" as const };

const native = testPostgresKind().kind === "native";
const skip = native
  ? false
  : "a streaming standby needs the native test Postgres (PGlite has none)";

/** One primary and its standby for the whole file; each part starts from a reset schema. */
let primary: TestPostgres;
let standby: TestStandby;
before(async () => {
  if (!native) return;
  primary = await startPostgres();
  standby = await startNativeStandby(primary);
});
after(async () => {
  await standby?.stop();
  await primary?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function replicaOf(store: ItemStore): StoreServer {
  const found = store.health().servers?.find((server) => server.role === "replica");
  assert.ok(found, "the store reports its replica");
  return found;
}

function readsOf(store: ItemStore, role: StoreServer["role"]): number {
  return store.health().servers?.find((server) => server.role === role)?.reads ?? 0;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

/** Whether an exact search (every row, no index) on `store` finds `id`. */
async function finds(store: ItemStore, item: NewItem): Promise<boolean> {
  const hits = await store.nearest({ vector: item.vector, k: 3, exact: true }, MODEL.modelId);
  return hits.some((hit) => hit.item.id === item.id);
}

describe("read replicas (native primary + streaming standby)", { skip }, () => {
  /** The node that writes, and another node that only reads. */
  let writer: PostgresStore;
  let reader: PostgresStore;
  let next = 1_000;
  const fresh = (original?: Buffer): NewItem => {
    const item = newItem(next++);
    return original === undefined ? item : { ...item, source: "upload", path: undefined, original };
  };

  const open = (url: string, readUrls: string[]) =>
    PostgresStore.open({ url, readUrls, readMaxLagMs: MAX_LAG_MS, ...PARAMETERS });

  before(async () => {
    await primary.reset();
    writer = await open(primary.url, [standby.url]);
    reader = await open(primary.url, [standby.url]);
    await writer.setModel(MODEL);
    await writer.insertItems([fresh(), fresh()], MODEL.modelId);
    await until("the reader finds its replica current", () => replicaOf(reader).state === "up");
  });
  after(async () => {
    await writer?.close();
    await reader?.close();
  });

  test("a node reads its own write at once; another node within the bound, from the replica", async () => {
    const item = fresh(Buffer.from("original bytes"));
    const [outcome] = await writer.insertItems([item], MODEL.modelId);
    const acknowledged = performance.now();
    assert.equal(outcome?.status, "inserted");
    assert.ok(await finds(writer, item), "the writing node finds what it acknowledged at once");
    assert.equal((await writer.listItems(null, 100)).items.at(-1)?.id, item.id);

    await sleep(MAX_LAG_MS - (performance.now() - acknowledged));
    const replicaReads = readsOf(reader, "replica");
    assert.ok(await finds(reader, item), "another node finds it once the bound has passed");
    assert.deepEqual(await reader.readOriginal(item.sha256), item.original);
    assert.ok(
      readsOf(reader, "replica") > replicaReads,
      `the replica served the reads (${JSON.stringify(reader.health().servers)})`,
    );
  });

  test("a replica behind the bound serves no reads; it does again once it catches up", async () => {
    await standby.pauseReplay();
    try {
      const item = fresh(Buffer.from("written while the replica is paused"));
      await writer.insertItems([item], MODEL.modelId);
      const acknowledged = performance.now();
      // Read-your-writes, whatever the replica: the writing node goes to the primary.
      assert.ok(await finds(writer, item));
      // Another node may miss it within the bound; reads that need the row fall back to the
      // primary: the stored item's bytes and embedding are there at once.
      const stored = await reader.getById(item.id);
      assert.ok(stored !== undefined);
      assert.deepEqual(await reader.readOriginal(item.sha256), item.original);
      assert.equal((await reader.embeddingsOf(MODEL.modelId, [stored.label])).length, 1);

      await sleep(MAX_LAG_MS - (performance.now() - acknowledged));
      const replicaReads = readsOf(reader, "replica");
      assert.ok(await finds(reader, item), "past the bound the reader finds it (on the primary)");
      assert.equal(readsOf(reader, "replica"), replicaReads, "the paused replica served nothing");
      await until("the reader reports the replica lagging", () => {
        const replica = replicaOf(reader);
        return replica.state === "lagging" && (replica.lagBytes ?? 0) > 0;
      });
    } finally {
      await standby.resumeReplay();
    }
    await until("the replica is current again", () => replicaOf(reader).state === "up");
    const replicaReads = readsOf(reader, "replica");
    await until("the replica serves reads again", async () => {
      await reader.nearest({ vector: newItem(1).vector, k: 3 }, MODEL.modelId);
      return readsOf(reader, "replica") > replicaReads;
    });
  });

  test("a replica that dies is taken out of rotation without a failed read, and comes back", async () => {
    const item = fresh();
    await writer.insertItems([item], MODEL.modelId);
    await sleep(MAX_LAG_MS);
    let searches = 0;
    let failures = 0;
    let stop = false;
    // Four clients searching on the reading node while its replica is killed under them.
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) {
        try {
          if (!(await finds(reader, item))) failures++;
          searches++;
        } catch (error) {
          failures++;
          process.stderr.write(`search failed: ${String(error)}\n`);
        }
      }
    });
    try {
      await until("searches are under way", () => searches >= 20);
      await standby.kill();
      await until("the replica is reported down", () => replicaOf(reader).state === "down");
      const primaryReads = readsOf(reader, "primary");
      const replicaReads = readsOf(reader, "replica");
      const during = searches;
      await until("searches go on without the replica", () => searches >= during + 20);
      assert.ok(readsOf(reader, "primary") >= primaryReads + 20);
      assert.equal(readsOf(reader, "replica"), replicaReads);

      await standby.restart();
      await until("the replica is back in rotation", () => replicaOf(reader).state === "up");
      await until(
        "the replica serves reads again",
        () => readsOf(reader, "replica") > replicaReads,
      );
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    assert.equal(failures, 0, `${failures} of ${searches} searches failed or missed the item`);
  });

  test("a bound of 0 sends every read to the primary", async () => {
    const strict = await PostgresStore.open({
      url: primary.url,
      readUrls: [standby.url],
      readMaxLagMs: 0,
      ...PARAMETERS,
    });
    try {
      await until("the replica is probed", () => replicaOf(strict).state !== "starting");
      for (let i = 0; i < 5; i++) {
        await strict.nearest({ vector: newItem(1).vector, k: 3 }, MODEL.modelId);
      }
      assert.equal(readsOf(strict, "replica"), 0);
      assert.ok(readsOf(strict, "primary") >= 5);
    } finally {
      await strict.close();
    }
  });

  test("a read URL that names no standby of the primary serves no reads", async () => {
    const wrong = await open(primary.url, [primary.url]);
    try {
      await until("the store rejects it", () => replicaOf(wrong).state === "not_a_replica");
      await wrong.nearest({ vector: newItem(1).vector, k: 3 }, MODEL.modelId);
      assert.equal(readsOf(wrong, "replica"), 0);
      assert.match(replicaOf(wrong).reason ?? "", /not a standby/);
    } finally {
      await wrong.close();
    }
  });
});

describe("the storage contract with a streaming replica", { skip }, () => {
  const opened: PostgresStore[] = [];
  const reopen = async () => {
    const store = await PostgresStore.open({
      url: primary.url,
      readUrls: [standby.url],
      readMaxLagMs: MAX_LAG_MS,
      ...PARAMETERS,
    });
    opened.push(store);
    return store;
  };
  storeContract("Postgres + pgvector, reads on a streaming replica", {
    async open() {
      await primary.reset();
      return reopen();
    },
    reopen,
  });
  // The suite writes and reads at once, so its reads mostly go to the primary (the replica has
  // not replayed the node's own writes yet): which server answered each is timing. Here the
  // reads the suite makes are repeated until the replica answers them, each answer checked.
  test("once the replica has replayed a node's writes, it serves the contract's reads, and they agree", async () => {
    await primary.reset();
    const store = await reopen();
    await store.setModel(MODEL);
    const paris = newItem(1, { city: "Paris" });
    const upload: NewItem = {
      ...newItem(3),
      source: "upload",
      path: undefined,
      original: Buffer.from("x"),
    };
    await store.insertItems([paris, newItem(2, { city: "Oslo" }), upload], MODEL.modelId);
    const labels = (await store.listItems(null, 10)).items.map((item) => item.label);
    const reads: [string, () => Promise<unknown>, (answer: unknown) => boolean][] = [
      [
        "a filtered search",
        () =>
          store.nearest({ vector: paris.vector, k: 2, filter: { city: "Paris" } }, MODEL.modelId),
        (hits) =>
          (hits as { item: { id: string } }[]).map((hit) => hit.item.id).join() === "item-1",
      ],
      [
        "an item page",
        () => store.listItems(null, 10),
        (page) => (page as { items: { id: string }[] }).items.length === 3,
      ],
      [
        "an original",
        () => store.readOriginal(upload.sha256),
        (bytes) => Buffer.from("x").equals(bytes as Buffer),
      ],
      [
        "stored embeddings",
        () => store.embeddingsOf(MODEL.modelId, labels),
        (rows) => (rows as unknown[]).length === 3,
      ],
    ];
    for (const [what, read, right] of reads) {
      await until(`the replica serves ${what}`, async () => {
        const served = readsOf(store, "replica");
        const answer = await read();
        assert.ok(right(answer), `${what}: ${JSON.stringify(answer)}`);
        return readsOf(store, "replica") > served;
      });
    }
  });
});

describe("longclip serve with --database-read-url", { skip }, () => {
  let node: LongclipProcess | undefined;
  const root = tempDir("replica-serve-");
  before(() => primary.reset());
  after(async () => {
    if (node !== undefined) await stopProcess(node);
    rmSync(root, { recursive: true, force: true });
  });

  test("an upload is found at once by the node that took it; /ready and /metrics show the replicas", async () => {
    // The flag given twice (two replicas; here the same standby twice), the bound from the
    // variable.
    node = await startServe(
      [
        "--model",
        path.join(PROJECT_ROOT, "models", "demo"),
        "--data",
        root,
        "--database-url",
        primary.url,
        "--database-read-url",
        standby.url,
        "--database-read-url",
        standby.url.replace("127.0.0.1", "localhost"),
      ],
      { LONGCLIP_DATABASE_READ_MAX_LAG_MS: String(MAX_LAG_MS) },
    );
    const url = node.url;
    type Ready = { database?: { name: string; role: string; state: string; reads?: number }[] };
    const ready = async () => (await (await fetch(`${url}/ready`)).json()) as Ready;
    await until("both replicas are up", async () => {
      const replicas = (await ready()).database?.filter((server) => server.role === "replica");
      return replicas?.length === 2 && replicas.every((server) => server.state === "up");
    });
    const database = (await ready()).database ?? [];
    assert.deepEqual(
      database.map((server) => server.role),
      ["primary", "replica", "replica"],
    );
    assert.ok(
      database.every((server) => !server.name.includes("postgres:")),
      "no credentials",
    );

    for (let round = 0; round < 3; round++) {
      const seed = 900 + round;
      const form = new FormData();
      form.append("images", new Blob([await patternPng(seed)], { type: "image/png" }), "a.png");
      form.append("ids", `r-${seed}`);
      const indexed = await fetch(`${url}/index`, { method: "POST", body: form });
      assert.equal(indexed.status, 200, await indexed.clone().text());
      const query = new FormData();
      query.append("image", new Blob([await patternPng(seed)], { type: "image/png" }), "q.png");
      const found = await fetch(`${url}/search/image?k=1`, { method: "POST", body: query });
      assert.equal(found.status, 200);
      const hits = ((await found.json()) as { hits: { id: string }[] }).hits;
      assert.equal(hits[0]?.id, `r-${seed}`, "read-your-writes through HTTP");
      const image = await fetch(`${url}/items/r-${seed}/image`);
      assert.equal(image.status, 200);
    }
    await until("a replica serves a search", async () => {
      await fetch(`${url}/search`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ query: "a pattern", k: 3 }),
      });
      return ((await ready()).database ?? []).some(
        (server) => server.role === "replica" && (server.reads ?? 0) > 0,
      );
    });
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      metrics,
      /longclip_database_server_up\{server="127\.0\.0\.1:\d+\/postgres",role="replica"\} 1/,
    );
    assert.match(metrics, /longclip_database_server_up\{server="[^"]+",role="primary"\} 1/);
    assert.match(metrics, /longclip_database_server_lag_bytes\{[^}]*role="replica"\} \d+/);
    assert.match(metrics, /longclip_database_server_reads_total\{[^}]*role="replica"\} [1-9]/);
  });
});

test("--database-read-url without --database-url, or not a postgres:// URL, is a clear error", async () => {
  const dataDir = tempDir("replica-settings-");
  try {
    const replicasOnly = loadSettings(
      { dataDir },
      { LONGCLIP_DATABASE_READ_URL: "postgres://h/db" },
    );
    await assert.rejects(
      openStore(replicasOnly),
      (error) =>
        isAppError(error) &&
        error.code === "invalid_setting" &&
        /--database-url/.test(error.message),
    );
    await assert.rejects(
      PostgresStore.open({ url: "postgres://h/db", readUrls: ["mysql://h/db"], ...PARAMETERS }),
      (error) =>
        isAppError(error) &&
        error.code === "invalid_database_url" &&
        /--database-read-url/.test(error.message),
    );
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
