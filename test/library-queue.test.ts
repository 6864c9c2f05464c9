import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isAppError } from "../src/core/errors.ts";
import { EmbedQueue } from "../src/library/queue.ts";

/** A job that finishes only when the test says so, recording when it started. */
function gate(log: string[], name: string) {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return {
    job: async () => {
      log.push(name);
      await opened;
      return name;
    },
    open: () => open(),
  };
}

describe("EmbedQueue", () => {
  test("runs one job at a time and waiting queries before waiting ingest chunks", async () => {
    const queue = new EmbedQueue(100);
    const log: string[] = [];
    const first = gate(log, "ingest-1");
    const results = [
      queue.run("ingest", 1, first.job),
      queue.run("ingest", 1, async () => {
        log.push("ingest-2");
        return "ingest-2";
      }),
      queue.run("ingest", 1, async () => {
        log.push("ingest-3");
        return "ingest-3";
      }),
      queue.run("query", 1, async () => {
        log.push("query");
        return "query";
      }),
    ];
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(log, ["ingest-1"], "nothing else starts while a job runs");
    first.open();
    assert.deepEqual(await Promise.all(results), ["ingest-1", "ingest-2", "ingest-3", "query"]);
    assert.deepEqual(log, ["ingest-1", "query", "ingest-2", "ingest-3"]);
  });

  test("a failing job does not block the queue", async () => {
    const queue = new EmbedQueue(10);
    const failing = queue.run("ingest", 1, async () => {
      throw new Error("boom");
    });
    const next = queue.run("query", 1, async () => "ok");
    await assert.rejects(failing, /boom/);
    assert.equal(await next, "ok");
  });

  test("admission is bounded per priority; a full ingest side still admits queries", () => {
    const queue = new EmbedQueue(4);
    const big = queue.reserve("ingest", 10);
    assert.equal(queue.pending, 10, "an idle queue accepts a batch larger than its capacity");
    assert.throws(
      () => queue.reserve("ingest", 1),
      (e: unknown) =>
        isAppError(e) &&
        e.code === "queue_full" &&
        e.status === 429 &&
        typeof e.details?.retryAfterSeconds === "number" &&
        (e.details.retryAfterSeconds as number) >= 1,
    );
    const query = queue.reserve("query", 1);
    big.release(7);
    assert.equal(queue.pending, 4);
    const more = queue.reserve("ingest", 1);
    big.release();
    big.release();
    more.release();
    query.release();
    assert.equal(queue.pending, 0);
  });
});
