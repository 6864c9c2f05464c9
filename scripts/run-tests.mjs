/**
 * `npm test`: the training package's pytest suite, then the TypeScript suite (node --test,
 * every test/*.test.ts, test/fast/*.test.ts and test/e2e/*.test.ts, or the files given as
 * arguments), then one line
 * for a person: how many passed, failed and were skipped (skipped suites included), and why.
 *
 * Without a Python that has torch and pytest, the Python suite is skipped with one line that
 * says what to install, and the TypeScript suite still runs. The exit code is 1 when anything
 * failed.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const PYTHON = path.join(ROOT, "scripts", "python");
const INSTALL_PYTHON =
  "install Debian's python3-torch and python3-pytest (apt-get install python3-torch python3-onnx python3-pil python3-numpy python3-pytest libopenblas0-pthread), or pip install torch onnx pillow numpy pytest in a venv and set LONGCLIP_PYTHON";

/** Runs a command with its output passed through; resolves with its exit code and stdout. */
function run(command, args, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["inherit", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (chunk) => {
      out += chunk.toString();
      process.stdout.write(chunk);
    });
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), out }));
  });
}

/** The pytest suite's counts, or the reason it was skipped. */
async function pythonSuite() {
  const probe = spawnSync(PYTHON, ["-c", "import torch, pytest"], { cwd: ROOT, stdio: "ignore" });
  if (probe.status !== 0) {
    const which = process.env.LONGCLIP_PYTHON
      ? `LONGCLIP_PYTHON=${process.env.LONGCLIP_PYTHON} has no torch or no pytest`
      : "no Python with torch and pytest found (scripts/python)";
    const reason = `Python suite: ${which}; ${INSTALL_PYTHON}`;
    console.log(`\nPython suite skipped: ${which}; ${INSTALL_PYTHON}.\n`);
    return { passed: 0, failed: 0, skippedTests: 0, skippedSuites: 1, reasons: { [reason]: 1 } };
  }
  console.log("\n== Python suite (training/tests, pytest)\n");
  const { code, out } = await run(path.join(ROOT, "scripts", "pytest"), []);
  const counts = { passed: 0, failed: 0, skipped: 0, error: 0 };
  const summary = out.trim().split("\n").pop() ?? "";
  for (const [, n, what] of summary.matchAll(/(\d+) (passed|failed|skipped|errors?)/g)) {
    counts[what.startsWith("error") ? "error" : what] += Number(n);
  }
  // A run that fails without a count (a collection error) is still a failure.
  const failed = counts.failed + counts.error || (code !== 0 ? 1 : 0);
  return {
    passed: counts.passed,
    failed,
    skippedTests: counts.skipped,
    skippedSuites: 0,
    reasons: counts.skipped > 0 ? { "pytest skips (see its output)": counts.skipped } : {},
  };
}

function testFiles(args) {
  if (args.length > 0) return args;
  return ["test", path.join("test", "fast"), path.join("test", "e2e")].flatMap((dir) =>
    readdirSync(path.join(ROOT, dir))
      .filter((name) => name.endsWith(".test.ts"))
      .sort()
      .map((name) => path.join(dir, name)),
  );
}

/** The TypeScript suite: node --test with the usual report, and the summary reporter's counts. */
async function typescriptSuite(files) {
  console.log("\n== TypeScript suite (node --test)\n");
  const dir = mkdtempSync(path.join(os.tmpdir(), "longclip-test-summary-"));
  const summaryFile = path.join(dir, "summary.json");
  try {
    const { code } = await run(process.execPath, [
      "--import",
      "tsx",
      "--test",
      "--test-concurrency=1",
      `--test-reporter=${process.stdout.isTTY ? "spec" : "tap"}`,
      "--test-reporter-destination=stdout",
      "--test-reporter=./scripts/test-summary-reporter.mjs",
      `--test-reporter-destination=${summaryFile}`,
      ...files,
    ]);
    let summary;
    try {
      summary = JSON.parse(readFileSync(summaryFile, "utf8"));
    } catch {
      summary = { passed: 0, failed: 0, skippedTests: 0, skippedSuites: 0, reasons: {} };
    }
    if (code !== 0 && summary.failed === 0) summary.failed = 1;
    return summary;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The last line: counts, then each skip reason with how many it skipped. */
export function summaryLine(parts) {
  const sum = (key) => parts.reduce((n, part) => n + (part[key] ?? 0), 0);
  const tests = sum("skippedTests");
  const suites = sum("skippedSuites");
  const reasons = new Map();
  for (const part of parts) {
    for (const [reason, n] of Object.entries(part.reasons ?? {})) {
      reasons.set(reason, (reasons.get(reason) ?? 0) + n);
    }
  }
  const why = [...reasons]
    .sort((a, b) => b[1] - a[1])
    .map(([reason, n]) => `${n} × ${reason}`)
    .join("; ");
  const notes = parts.flatMap((part) => part.notes ?? []);
  return [
    `npm test: ${sum("passed")} passed, ${sum("failed")} failed, ${tests + suites} skipped`,
    ` (${plural(tests, "test")}, ${plural(suites, "suite")})`,
    why ? `. Skipped: ${why}` : "",
    notes.length > 0 ? `. Notes: ${notes.join("; ")}` : "",
  ].join("");
}

async function main() {
  const args = process.argv.slice(2);
  const parts = [];
  if (args.length === 0) parts.push(await pythonSuite());
  const typescript = await typescriptSuite(testFiles(args));
  parts.push(typescript);
  const failures = typescript.failures ?? [];
  if (failures.length > 0) console.log(`\nFailed: ${failures.join("; ")}`);
  console.log(`\n${summaryLine(parts)}`);
  process.exitCode = parts.some((part) => part.failed > 0) ? 1 : 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
