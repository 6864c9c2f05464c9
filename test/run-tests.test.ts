/**
 * npm test's summary (scripts/run-tests.mjs, scripts/test-summary-reporter.mjs): counts from
 * node:test's events, skipped suites counted as suites, reasons grouped, notes passed on.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
// @ts-expect-error: plain JavaScript without declarations
import { summaryLine } from "../scripts/run-tests.mjs";
// @ts-expect-error: plain JavaScript without declarations
import summaryReporter from "../scripts/test-summary-reporter.mjs";

async function* events(list: { type: string; data: Record<string, unknown> }[]) {
  yield* list;
}

test("the reporter counts tests, skipped suites, failures and reasons", async () => {
  const suite = { type: "suite" };
  const out: string[] = [];
  for await (const chunk of summaryReporter(
    events([
      { type: "test:pass", data: { name: "a", file: "x", skip: "no shared", details: suite } },
      { type: "test:pass", data: { name: "b", file: "x", details: {} } },
      { type: "test:pass", data: { name: "c", file: "x", skip: "no shared", details: {} } },
      { type: "test:pass", data: { name: "d", file: "x", skip: true, details: {} } },
      { type: "test:fail", data: { name: "e", file: "y", details: {} } },
      { type: "test:fail", data: { name: "s", file: "y", details: suite } },
      { type: "test:fail", data: { name: "hooked", file: "z", details: suite } },
      { type: "test:diagnostic", data: { message: "summary: Postgres 15 (native)" } },
      { type: "test:diagnostic", data: { message: "tests 4" } },
    ]),
  )) {
    out.push(chunk as string);
  }
  assert.equal(out.length, 1);
  const summary = JSON.parse(out[0] as string);
  assert.deepEqual(
    { ...summary, failures: summary.failures.length },
    {
      passed: 1,
      failed: 2,
      skippedTests: 2,
      skippedSuites: 1,
      todo: 0,
      reasons: { "no shared": 2, skipped: 1 },
      notes: ["Postgres 15 (native)"],
      failures: 2,
    },
  );
});

test("the last line adds up the suites and says why things were skipped", () => {
  const line = summaryLine([
    { passed: 10, failed: 0, skippedTests: 0, skippedSuites: 1, reasons: { "no torch": 1 } },
    {
      passed: 200,
      failed: 1,
      skippedTests: 3,
      skippedSuites: 2,
      reasons: { "official outputs": 4, "needs root": 1 },
      notes: ["Postgres: native 15"],
    },
  ]);
  assert.equal(
    line,
    "npm test: 210 passed, 1 failed, 6 skipped (3 tests, 3 suites). Skipped: 4 × official outputs; 1 × no torch; 1 × needs root. Notes: Postgres: native 15",
  );
});
