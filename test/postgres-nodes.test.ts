/**
 * Several stateless nodes on one Postgres (the test Postgres: native, or PGlite): `longclip serve`
 * processes and `longclip worker` processes, as users run them, killed and cut off from their
 * database. After each fault the invariants are checked in the database itself: what was
 * acknowledged is there, once, whole (embedding, and bytes for uploads).
 */
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { patternPng, tempDir } from "./helpers/library-fixtures.ts";
import {
  type LongclipProcess,
  startLongclip,
  startServe,
  stopProcess,
} from "./helpers/longclip-process.ts";
import {
  freePort,
  startPostgres,
  startRefusingPostgres,
  type TestPostgres,
} from "./helpers/postgres.ts";

const MODEL = path.join(PROJECT_ROOT, "models", "demo");
const root = tempDir("postgres-nodes-");
const media = path.join(root, "media");
const processes: LongclipProcess[] = [];
let db: TestPostgres;

after(async () => {
  await Promise.all(processes.map((p) => stopProcess(p, "SIGKILL")));
  await db?.stop();
  rmSync(root, { recursive: true, force: true });
});

/** Keeps a started process for the final SIGKILL. */
async function tracked(starting: Promise<LongclipProcess>): Promise<LongclipProcess> {
  const started = await starting;
  processes.push(started);
  return started;
}

/** What every process of the cluster starts with: the model, its own data directory, the database. */
function clusterArgs(name: string, url = db.url): string[] {
  return ["--model", MODEL, "--data", path.join(root, name), "--database-url", url];
}

function serveNode(name: string, extra: readonly string[] = []) {
  const args = [...clusterArgs(name), "--media-root", media, "--image-batch-size", "4"];
  return tracked(startServe([...args, ...extra]));
}

async function json<T>(response: Response): Promise<T> {
  return (await response.json()) as T;
}

async function upload(url: string, seeds: readonly number[]) {
  const form = new FormData();
  for (const seed of seeds) {
    form.append("images", new Blob([await patternPng(seed)], { type: "image/png" }), `${seed}.png`);
    form.append("ids", `s-${seed}`);
  }
  return fetch(`${url}/index`, { method: "POST", body: form });
}

async function topHit(url: string, seed: number, exact = false): Promise<string | undefined> {
  const form = new FormData();
  form.append("image", new Blob([await patternPng(seed)], { type: "image/png" }), "q.png");
  const response = await fetch(`${url}/search/image?k=1&exact=${exact}`, {
    method: "POST",
    body: form,
  });
  assert.equal(response.status, 200, await response.clone().text());
  return (await json<{ hits: { id: string }[] }>(response)).hits[0]?.id;
}

/** The invariants, read from the database: no content twice, no item without its parts. */
async function checkDatabase(): Promise<number> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows } = await client.query<{
      items: string;
      distinct_sha: string;
      without_embedding: string;
      upload_without_bytes: string;
    }>(`SELECT count(*) AS items, count(DISTINCT sha256) AS distinct_sha,
          count(*) FILTER (WHERE embedding IS NULL OR model_id IS NULL) AS without_embedding,
          count(*) FILTER (WHERE source = 'upload' AND NOT EXISTS
            (SELECT 1 FROM longclip.originals o WHERE o.sha256 = i.sha256)) AS upload_without_bytes
        FROM longclip.items i`);
    const row = rows[0];
    assert.ok(row);
    assert.equal(row.distinct_sha, row.items, "no content is stored twice");
    assert.equal(Number(row.without_embedding), 0, "every item has its embedding");
    assert.equal(Number(row.upload_without_bytes), 0, "every upload has its bytes");
    return Number(row.items);
  } finally {
    await client.end();
  }
}

async function until<T>(what: string, check: () => Promise<T | undefined>, seconds = 90) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

describe("stateless nodes on one Postgres", () => {
  let a: LongclipProcess;
  let b: LongclipProcess;

  before(async () => {
    mkdirSync(path.join(media, "photos"), { recursive: true });
    for (let seed = 500; seed < 524; seed++) {
      writeFileSync(path.join(media, "photos", `p${seed}.png`), await patternPng(seed));
    }
    db = await startPostgres(path.join(root, "pgdata"));
    a = await serveNode("node-a");
    b = await serveNode("node-b");
  });

  test("what one node acknowledges, the other finds at once; a delete on one is a delete on all", async () => {
    const response = await upload(a.url, [1, 2, 3]);
    assert.equal(response.status, 200);
    const { results } = await json<{ results: { id: string; status: string }[] }>(response);
    assert.deepEqual(
      results.map((r) => r.status),
      ["indexed", "indexed", "indexed"],
    );
    assert.equal(await topHit(b.url, 2), "s-2");
    const image = await fetch(`${b.url}/items/s-2/image`);
    assert.equal(image.status, 200);
    assert.deepEqual(Buffer.from(await image.arrayBuffer()), await patternPng(2));
    const [statsA, statsB] = await Promise.all(
      [a, b].map(async (node) =>
        json<{ items: number; backend: string }>(await fetch(`${node.url}/stats`)),
      ),
    );
    assert.equal(statsA?.backend, "postgres");
    assert.equal(statsA?.items, statsB?.items, "/stats agrees on every node");

    assert.equal((await fetch(`${b.url}/items/s-3`, { method: "DELETE" })).status, 200);
    assert.equal((await fetch(`${a.url}/items/s-3`)).status, 404);
    assert.equal((await fetch(`${a.url}/items/s-3/image`)).status, 404);
    assert.notEqual(await topHit(a.url, 3, true), "s-3");
    // The same bytes again on the other node: a duplicate, not a second copy.
    const again = await json<{ results: { status: string }[] }>(await upload(b.url, [1]));
    assert.equal(again.results[0]?.status, "duplicate");
    await checkDatabase();
  });

  test("a node SIGKILLed mid-batch loses nothing it acknowledged and leaves no half item", async () => {
    const victim = await serveNode("node-c");
    const acked = new Set<string>();
    let seed = 100;
    const sender = async () => {
      for (;;) {
        const seeds = [seed++, seed++, seed++];
        const response = await upload(victim.url, seeds).catch(() => undefined);
        if (response === undefined) return;
        if (response.status !== 200) continue;
        for (const r of (await json<{ results: { id: string; status: string }[] }>(response))
          .results) {
          if (r.status !== "failed") acked.add(r.id);
        }
      }
    };
    const senders = [sender(), sender()];
    await until("6 acknowledged items", async () => (acked.size >= 6 ? true : undefined));
    victim.child.kill("SIGKILL");
    await Promise.all(senders);
    assert.equal(await victim.exited, "SIGKILL");
    const stored = await checkDatabase();
    assert.ok(stored > 0);
    for (const id of acked) {
      const item = await fetch(`${b.url}/items/${id}`);
      assert.equal(item.status, 200, `acknowledged ${id} is stored`);
      assert.equal(await topHit(b.url, Number(id.slice(2)), true), id);
    }
  });

  test("a job run by two workers, one SIGKILLed mid-chunk: every file indexed once", async () => {
    const worker = (name: string) =>
      tracked(
        startLongclip(
          [
            "worker",
            ...clusterArgs(name),
            "--media-root",
            media,
            "--threads",
            "1",
            "--image-batch-size",
            "3",
            "--job-lease-ms",
            "2000",
          ],
          "worker started",
        ),
      );
    const created = await fetch(`${b.url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ paths: ["photos"], metadata: { album: "photos" } }),
    });
    assert.equal(created.status, 202, await created.clone().text());
    const job = await json<{ id: string; state: string; counts: { total: number } }>(created);
    assert.equal(job.counts.total, 24);
    assert.equal(job.state, "queued");
    const [w1, w2] = await Promise.all([worker("w1"), worker("w2")]);
    await until("some progress", async () => {
      const now = await json<{ counts: { indexed: number } }>(
        await fetch(`${a.url}/jobs/${job.id}`),
      );
      return now.counts.indexed >= 3 ? true : undefined;
    });
    w1?.child.kill("SIGKILL");
    const done = await until(
      "the job to finish",
      async () => {
        const now = await json<{
          state: string;
          counts: Record<string, number>;
          failed_codes: Record<string, number>;
          rate: number;
        }>(await fetch(`${a.url}/jobs/${job.id}`));
        return now.state === "done" ? now : undefined;
      },
      180,
    );
    assert.equal(done.counts.indexed, 24, JSON.stringify(done));
    assert.equal(done.counts.failed, 0, JSON.stringify(done.failed_codes));
    assert.equal(done.counts.duplicate, 0);
    assert.ok(done.rate > 0);
    await checkDatabase();
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const { rows } = await client.query<{ n: string }>(
      'SELECT count(*) AS n FROM longclip.items WHERE metadata @> \'{"album": "photos"}\'',
    );
    await client.end();
    assert.equal(Number(rows[0]?.n), 24, "each file once");
    const list = await json<{ jobs: { id: string }[] }>(await fetch(`${b.url}/jobs`));
    assert.equal(list.jobs[0]?.id, job.id);
    await stopProcess(w2 as LongclipProcess);
  });

  test("the database goes away under load: 503 database_unavailable, then recovery by itself", async () => {
    const statuses = new Map<number, number>();
    const codes = new Set<string>();
    let running = true;
    const load = async (node: LongclipProcess) => {
      while (running) {
        const response = await fetch(`${node.url}/search`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ query: "a red circle", k: 3 }),
        }).catch(() => undefined);
        if (response === undefined) continue;
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        if (response.status === 503) {
          codes.add((await json<{ error: { code: string } }>(response)).error.code);
          assert.ok(Number(response.headers.get("retry-after")) >= 1);
        } else await response.arrayBuffer();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const loads = [load(a), load(b)];
    await new Promise((resolve) => setTimeout(resolve, 500));
    await db.stop();
    const notReady = await until("/ready to say the database is gone", async () => {
      const response = await fetch(`${a.url}/ready`);
      if (response.status !== 503) return undefined;
      return json<{ error: { message: string } }>(response);
    });
    assert.match(notReady.error.message, /database is unreachable/);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await db.restart();
    for (const node of [a, b]) {
      await until("the node to be ready again", async () =>
        (await fetch(`${node.url}/ready`)).status === 200 ? true : undefined,
      );
    }
    running = false;
    await Promise.all(loads);
    assert.ok((statuses.get(200) ?? 0) > 0);
    assert.ok((statuses.get(503) ?? 0) > 0, "some searches met the outage");
    assert.deepEqual([...codes], ["database_unavailable"]);
    assert.deepEqual(
      [...statuses.keys()].filter((s) => s !== 200 && s !== 503),
      [],
      "no other status, no 5xx but the documented 503",
    );
    assert.equal(a.child.exitCode, null, "node a did not crash");
    assert.equal(b.child.exitCode, null, "node b did not crash");
    assert.equal(await topHit(b.url, 2), "s-2", "what was stored before is there after");
    await checkDatabase();
  });
});

describe("starting against a bad or absent database", () => {
  test("an invalid URL or refused credentials are clear start-up errors", async (t) => {
    // Closed afterwards: a server left listening keeps this file's process (and npm test) alive.
    const refusing = await startRefusingPostgres();
    t.after(() => refusing.close());
    for (const [url, code] of [
      ["mysql://x@127.0.0.1/db", "invalid_database_url"],
      [refusing.url, "database_auth_failed"],
    ] as const) {
      await assert.rejects(
        startServe([
          "--model",
          MODEL,
          "--data",
          path.join(root, `bad-${code}`),
          "--database-url",
          url,
        ]),
        (error: Error) => {
          assert.match(error.message, new RegExp(`error \\[${code}\\]`));
          assert.doesNotMatch(error.message, /\n\s+at /, "no stack trace");
          assert.doesNotMatch(error.message, /:wrong@/, "the password is not printed");
          return true;
        },
      );
    }
  });

  test("a database that is not up yet: the node serves /ready 503, then becomes ready", async () => {
    const port = await freePort();
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const node = await tracked(startServe(clusterArgs("late", url)));
    const ready = await fetch(`${node.url}/ready`);
    assert.equal(ready.status, 503);
    assert.match((await json<{ error: { message: string } }>(ready)).error.message, /database/);
    const search = await fetch(`${node.url}/items`);
    assert.equal(search.status, 503);
    assert.equal(
      (await json<{ error: { code: string } }>(search)).error.code,
      "database_unavailable",
    );
    const late = await startPostgres(undefined, port);
    try {
      await until("the node to be ready", async () =>
        (await fetch(`${node.url}/ready`)).status === 200 ? true : undefined,
      );
      assert.equal((await fetch(`${node.url}/items`)).status, 200);
    } finally {
      await stopProcess(node);
      await late.stop();
    }
  });
});
