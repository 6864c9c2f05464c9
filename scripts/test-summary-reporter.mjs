/**
 * A node:test reporter that writes nothing for a person: it counts what ran (tests passed,
 * failed, skipped; skipped suites, whose tests never start, counted as suites) and why things
 * were skipped, and yields one JSON object at the end for scripts/run-tests.mjs. Diagnostics
 * that start with "summary: " (a test's note for the final line, e.g. which Postgres ran) are
 * passed on.
 */
export default async function* summaryReporter(source) {
  const counts = { passed: 0, failed: 0, skippedTests: 0, skippedSuites: 0, todo: 0 };
  const reasons = new Map();
  const notes = new Set();
  const failedLeavesByFile = new Map();
  const failedSuites = [];
  const failures = [];
  for await (const event of source) {
    const data = event.data ?? {};
    if (event.type === "test:diagnostic") {
      const message = String(data.message ?? "");
      if (message.startsWith("summary: ")) notes.add(message.slice("summary: ".length));
      continue;
    }
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const suite = data.details?.type === "suite";
    if (data.skip) {
      if (suite) counts.skippedSuites++;
      else counts.skippedTests++;
      const reason =
        typeof data.skip === "string" ? data.skip.replace(/^skipped: /, "") : "skipped";
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      continue;
    }
    if (data.todo) {
      counts.todo++;
      continue;
    }
    if (suite) {
      // A suite fails for its tests (counted below) or for itself (a hook, its file).
      if (event.type === "test:fail") failedSuites.push(data);
      continue;
    }
    if (event.type === "test:pass") {
      counts.passed++;
    } else {
      counts.failed++;
      failedLeavesByFile.set(data.file, (failedLeavesByFile.get(data.file) ?? 0) + 1);
      failures.push(`${data.name} (${data.file ?? "?"})`);
    }
  }
  for (const suite of failedSuites) {
    if (!failedLeavesByFile.get(suite.file)) {
      counts.failed++;
      failures.push(`suite ${suite.name} (${suite.file ?? "?"})`);
    }
  }
  yield `${JSON.stringify({
    ...counts,
    reasons: Object.fromEntries(reasons),
    notes: [...notes],
    failures,
  })}\n`;
}
