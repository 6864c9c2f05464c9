/**
 * Hardening of what the server stores and reads back, against the real app on a loopback
 * socket: files swapped for symbolic links after indexing, items the store refuses inside a
 * batch, a full disk under the HNSW save and SQLite, crash leftovers, and what error messages
 * reveal. Each test is an attack or accident that did harm before its fix (issue 15).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import supertest from "supertest";
import { loadSettings } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { createLibrary } from "../src/library/index.ts";
import { buildApp } from "../src/server/app.ts";
import { openStore } from "../src/store/open.ts";
import type { ItemStore, NewItem } from "../src/store/types.ts";
import { HnswIndex } from "../src/vector-index/hnsw.ts";
import { multipart, type Part, startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { demoModelWithoutGallery } from "./helpers/demo-model.ts";
import { patternPng } from "./helpers/library-fixtures.ts";

type Result = { id: string; status: string; error?: { code: string; message: string } };

function upload(server: TestServer, parts: Part[]) {
  const body = multipart(parts);
  return server.http.post("/index").set(body.headers).send(body.payload);
}

function deepMetadata(levels: number): string {
  return `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`;
}

describe("hardening: stored items and files", () => {
  let server: TestServer;
  let media: string;
  const outside = tempDir("longclip-outside-");

  before(async () => {
    media = tempDir("longclip-media-");
    server = await startTestApp({ mediaRoot: media });
  });
  after(async () => {
    await server?.app.close();
  });

  const indexPath = async (file: string): Promise<Result> => {
    const res = await server.http.post("/index").send({ items: [{ path: file }] });
    assert.equal(res.status, 200, res.text);
    return res.body.results[0] as Result;
  };

  test("a file swapped for a symbolic link (or changed) is not served", async () => {
    mkdirSync(path.join(media, "album"));
    const photo = path.join(media, "album", "photo.png");
    const original = await patternPng(101, 64);
    writeFileSync(photo, original);
    const result = await indexPath("album/photo.png");
    assert.equal(result.status, "indexed", JSON.stringify(result));
    const url = `/items/${result.id}/image`;
    const first = await server.http.get(url).buffer(true);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, original);

    const secret = path.join(outside, "secret.txt");
    writeFileSync(secret, "TOP SECRET: the server's private key\n");
    const expectRefused = async (what: string) => {
      for (const target of [url, `/items/${result.id}/thumbnail?size=32`]) {
        const res = await server.http.get(target).buffer(true);
        assert.equal(res.status, 409, `${what}, ${target}: ${res.status} ${res.text}`);
        assert.equal(res.body.error.code, "image_changed", what);
        assert.doesNotMatch(res.text, /TOP SECRET/);
        assert.ok(!res.text.includes(media), "the message shows no server path");
      }
    };

    // 1. The file itself becomes a link to a file outside the media root.
    rmSync(photo);
    symlinkSync(secret, photo);
    await expectRefused("a link in place of the file");
    // 2. A directory on its path becomes a link to another directory with the same name in it.
    rmSync(photo);
    writeFileSync(photo, original);
    renameSync(path.join(media, "album"), path.join(media, "album.real"));
    copyFileSync(secret, path.join(outside, "photo.png"));
    symlinkSync(outside, path.join(media, "album"));
    await expectRefused("a link in place of a directory");
    // 3. The same name, other bytes of the same size.
    rmSync(path.join(media, "album"));
    renameSync(path.join(media, "album.real"), path.join(media, "album"));
    const tampered = Buffer.from(original);
    tampered[tampered.length - 20] = (tampered[tampered.length - 20] as number) ^ 0xff;
    writeFileSync(photo, tampered);
    await expectRefused("changed bytes");
    // Restored, it is served again.
    writeFileSync(photo, original);
    assert.equal((await server.http.get(url)).status, 200);
  });

  test("a file whose name starts with '..' inside the media root can be indexed", async () => {
    writeFileSync(path.join(media, "..dots.png"), await patternPng(102));
    const result = await indexPath("..dots.png");
    assert.equal(result.status, "indexed", JSON.stringify(result));
  });

  test("a missing file's error does not show the server's paths", async () => {
    const file = path.join(media, "gone.png");
    writeFileSync(file, await patternPng(103));
    const result = await indexPath("gone.png");
    rmSync(file);
    const res = await server.http.get(`/items/${result.id}/image`);
    assert.equal(res.status, 404);
    assert.equal(res.body.error.code, "image_missing");
    assert.ok(!res.text.includes(media), res.text);
  });

  test("metadata nested 2,000 levels deep fails only its own item", async () => {
    const before = (await server.http.get("/stats")).body.items as number;
    const parts: Part[] = [];
    for (let i = 0; i < 9; i++) {
      parts.push({ name: "images", value: await patternPng(200 + i), filename: `m${i}.png` });
    }
    for (let i = 0; i < 9; i++) {
      parts.push({ name: "metadata", value: i === 4 ? deepMetadata(2000) : `{"n": ${i}}` });
    }
    const res = await upload(server, parts);
    assert.equal(res.status, 200, res.text);
    const results = res.body.results as Result[];
    assert.deepEqual(
      results.map((r) => r.status),
      [
        "indexed",
        "indexed",
        "indexed",
        "indexed",
        "failed",
        "indexed",
        "indexed",
        "indexed",
        "indexed",
      ],
      JSON.stringify(results),
    );
    assert.equal(results[4]?.error?.code, "invalid_metadata");
    assert.equal((await server.http.get("/stats")).body.items, before + 8);
  });
});

describe("hardening: a chunk the store refuses is retried item by item", {}, () => {
  test("only the item the store refuses fails", async () => {
    const modelDir = demoModelWithoutGallery();
    const settings = loadSettings(
      {
        modelDir,
        dataDir: tempDir("longclip-retry-"),
        threads: 1,
        imageBatchSize: 4,
        indexSaveIntervalMs: 0,
      },
      {},
    );
    const encoder = await Encoder.load(modelDir, settings);
    const real = await openStore(settings);
    // The real SQLite store, refusing any transaction that holds the item "poison" (as
    // SQLite refused metadata past its JSON depth limit).
    const store = new Proxy(real, {
      get(target, key, receiver) {
        if (key === "insertItems") {
          return (entries: readonly NewItem[], modelId: string) => {
            if (entries.some((e) => e.id === "poison")) {
              return Promise.reject(new Error("malformed JSON"));
            }
            return target.insertItems(entries, modelId);
          };
        }
        const value = Reflect.get(target, key, receiver);
        return typeof value === "function" ? value.bind(target) : value;
      },
    }) as ItemStore;
    const library = await createLibrary(settings, encoder, { store });
    const app = buildApp(settings, library);
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    try {
      const parts: Part[] = [];
      for (let i = 0; i < 4; i++) {
        parts.push({ name: "images", value: await patternPng(300 + i), filename: `r${i}.png` });
      }
      for (const id of ["a1", "poison", "a3", "a4"]) parts.push({ name: "ids", value: id });
      const body = multipart(parts);
      const res = await supertest(url).post("/index").set(body.headers).send(body.payload);
      assert.equal(res.status, 200, res.text);
      const statuses = (res.body.results as Result[]).map((r) => `${r.id}:${r.status}`);
      assert.deepEqual(statuses, ["a1:indexed", "poison:failed", "a3:indexed", "a4:indexed"]);
      assert.equal((await supertest(url).get("/stats")).body.items, 3);
    } finally {
      await app.close();
    }
  });
});

describe("hardening: crash leftovers", () => {
  test("orphaned originals/**/*.tmp files are removed at start, recent ones kept", async () => {
    const dataDir = tempDir("longclip-orphans-");
    const shard = path.join(dataDir, "originals", "ab");
    mkdirSync(shard, { recursive: true });
    const old = path.join(shard, "abcdef.123.x1.tmp");
    const fresh = path.join(shard, "abcdef.456.x2.tmp");
    writeFileSync(old, Buffer.alloc(1000));
    writeFileSync(fresh, Buffer.alloc(1000));
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(old, twoHoursAgo, twoHoursAgo);
    const server = await startTestApp({ dataDir });
    try {
      assert.equal(existsSync(old), false, "an orphan from a crash is removed");
      assert.equal(existsSync(fresh), true, "a write that may be in progress is kept");
    } finally {
      await server.app.close();
    }
  });
});

/** Mounts a tmpfs of `size` at a fresh directory; undefined when this process cannot. */
function mountTmpfs(size: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const dir = tempDir("longclip-tmpfs-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" });
    return dir;
  } catch {
    return undefined;
  }
}

/** Writes filler files until the file system is full. */
function fill(dir: string): void {
  for (let i = 0, size = 1 << 20; size >= 1; i++) {
    try {
      writeFileSync(path.join(dir, `filler-${i}`), Buffer.alloc(size));
    } catch {
      rmSync(path.join(dir, `filler-${i}`), { force: true });
      size >>= 1;
    }
  }
}

const tmpfsProbe = mountTmpfs("1m");
if (tmpfsProbe !== undefined) execFileSync("umount", [tmpfsProbe]);
const SKIP_TMPFS =
  tmpfsProbe === undefined
    ? "needs root and permission to mount a tmpfs (to fill a small file system); run as root"
    : false;

describe("hardening: a full disk", { skip: SKIP_TMPFS }, () => {
  test("an HNSW save on a full disk keeps the old index; SQLite full is storage_error", async () => {
    const dataDir = mountTmpfs("8m") as string;
    const media = tempDir("longclip-media-");
    const server = await startTestApp({ dataDir, mediaRoot: media });
    try {
      const parts = async (from: number, n: number) => {
        const out: Part[] = [];
        for (let i = 0; i < n; i++) {
          out.push({ name: "images", value: await patternPng(from + i), filename: `d${i}.png` });
        }
        return out;
      };
      const first = await upload(server, await parts(400, 6));
      assert.ok(
        (first.body.results as Result[]).every((r) => r.status === "indexed"),
        first.text,
      );
      await server.library.flush();
      const indexDir = path.join(dataDir, "index");
      const [indexName] = (await import("node:fs")).readdirSync(indexDir);
      const indexFile = path.join(indexDir, indexName as string);
      const goodBytes = readFileSync(indexFile);
      assert.ok(goodBytes.length > 0);

      const second = await upload(server, await parts(500, 6));
      assert.ok(
        (second.body.results as Result[]).every((r) => r.status === "indexed"),
        second.text,
      );
      fill(dataDir);
      await assert.rejects(server.library.flush(), "a save that did not fit is reported");
      assert.deepEqual(readFileSync(indexFile), goodBytes, "the previous index file is intact");
      const dims = Number((await server.http.get("/stats")).body.dims);
      const reloaded = HnswIndex.load(indexFile, {
        dims,
        m: 16,
        efConstruction: 200,
        efSearch: 100,
      });
      assert.equal(reloaded.size, 6);
      const metrics = await server.http.get("/metrics");
      assert.match(metrics.text, /^longclip_index_save_failures [1-9]/m);

      // Writes on the full disk: a clear storage_error, nothing half-stored.
      writeFileSync(path.join(media, "late.png"), await patternPng(600));
      const byPath = await server.http.post("/index").send({ items: [{ path: "late.png" }] });
      assert.equal(byPath.status, 200, byPath.text);
      assert.equal(byPath.body.results[0].error?.code, "storage_error", byPath.text);
      const uploaded = await upload(server, await parts(700, 1));
      assert.equal(uploaded.body.results[0].error?.code, "storage_error", uploaded.text);
      assert.equal((await server.http.get("/stats")).body.items, 12);

      // Space again: the save goes through and nothing acknowledged was lost.
      for (const name of (await import("node:fs")).readdirSync(dataDir)) {
        if (name.startsWith("filler-")) rmSync(path.join(dataDir, name));
      }
      await server.library.flush();
      assert.ok(statSync(indexFile).size > goodBytes.length);
      const page = await server.http.get("/items?limit=100");
      assert.equal(page.body.items.length, 12);
    } finally {
      await server.app.close();
      execFileSync("umount", [dataDir]);
    }
  });
});
