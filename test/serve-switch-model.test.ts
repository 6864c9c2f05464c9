/**
 * Switching models is `longclip serve --model NEW` on the same data directory (issue 26,
 * item 1): the server re-embeds the library with the new model by itself, logs its progress,
 * says how far it is on /ready (503, Retry-After, one line), logs no error for that expected
 * state, and ends ready with the new model searching every item.
 */
import assert from "node:assert/strict";
import { cpSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { PROJECT_ROOT } from "../src/core/settings.ts";
import { tempDir } from "./api-helpers.ts";
import { startServe, stopProcess } from "./helpers/longclip-process.ts";

const DEMO = path.join(PROJECT_ROOT, "models", "demo");

test("serve --model NEW on a library of another model re-embeds it and becomes ready", {
  timeout: 300_000,
}, async () => {
  const root = tempDir("longclip-switch-");
  const data = path.join(root, "data");
  // Stopped as soon as it says it serves: it shuts down cleanly even then.
  const first = await startServe(["--model", DEMO, "--data", data]);
  assert.equal(await stopProcess(first), 0);

  // Another model: the demo's weights under another model id (a library cannot tell them apart).
  const other = path.join(root, "other-model");
  cpSync(DEMO, other, { recursive: true });
  const config = JSON.parse(readFileSync(path.join(other, "config.json"), "utf8"));
  config.model_id = "longclip-demo-other";
  writeFileSync(path.join(other, "config.json"), JSON.stringify(config));

  const second = await startServe(["--model", other, "--data", data]);
  try {
    const address = second.url;
    const notReady: string[] = [];
    for (const deadline = Date.now() + 120_000; ; ) {
      const response = await fetch(`${address}/ready`);
      if (response.status === 200) break;
      assert.equal(response.status, 503);
      assert.ok(response.headers.get("retry-after"), "Retry-After");
      const body = (await response.json()) as { error: { code: string; message: string } };
      notReady.push(body.error.message);
      assert.ok(Date.now() < deadline, `never ready: ${notReady.at(-1)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const message of notReady) {
      assert.match(
        message,
        /^not ready: re-embedding the library with model longclip-demo-other: \d+ of 36 items/,
      );
    }
    const log = second.log();
    const progress = log.filter((l) => l.msg?.startsWith("re-embedding: "));
    assert.ok(progress.length >= 2 && progress.every((l) => l.total === 36), JSON.stringify(log));
    assert.equal(log.find((l) => l.msg === "re-embedded the library: ready")?.embedded, 36);
    assert.deepEqual(
      log.filter((l) => l.level >= 50),
      [],
      "the expected state is no error",
    );
    const search = await fetch(`${address}/search`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "a red circle", k: 3 }),
    });
    assert.equal(search.status, 200);
    assert.equal(((await search.json()) as { hits: unknown[] }).hits.length, 3);
  } finally {
    await stopProcess(second);
  }
});
