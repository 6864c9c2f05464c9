/**
 * The README and docs/ cannot go stale without a failing test: every `longclip` command they
 * show names a real command and only flags that command accepts, every `npm run` names a
 * script of package.json, every file path in backticks exists, and every relative link leads
 * to a file (and, with `#anchor`, to a heading) that exists; and every shell command of the
 * README is run by a test or by .ci/run, or says here why it cannot be run on this machine
 * (the internet, a GPU, a container engine with Compose, a multi-hour run).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type { Command } from "commander";
import { EXPORT_USAGE } from "../src/cli/export.ts";
import { buildProgram } from "../src/cli/program.ts";
import { PROJECT_ROOT } from "../src/core/settings.ts";

const DOCS = [
  "README.md",
  ...readdirSync(path.join(PROJECT_ROOT, "docs"))
    .filter((name) => name.endsWith(".md"))
    .map((name) => `docs/${name}`),
];

function read(doc: string): string {
  return readFileSync(path.join(PROJECT_ROOT, doc), "utf8");
}

const FENCED_BLOCK = /^```[^\n]*\n[\s\S]*?^```/gm;

/** A markdown text without its fenced code blocks. */
function proseOf(markdown: string): string {
  return markdown.replace(FENCED_BLOCK, "");
}

/** Lines of fenced code blocks and inline code spans: where the docs show what to type. */
function codeOf(markdown: string): string[] {
  const blocks = [...markdown.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)].flatMap((m) =>
    (m[1] ?? "").split("\n"),
  );
  const prose = proseOf(markdown);
  const spans = [...prose.matchAll(/`([^`\n]+)`/g)].map((m) => m[1] ?? "");
  return [...blocks, ...spans];
}

/** `longclip CMD --flags` as the docs write it: with npx, bin/longclip.js or bare. */
const LONGCLIP =
  /(?:^|[\s(])(?:npx\s+)?(?:longclip|node\s+bin\/longclip\.js)\s+([a-z][\w-]*)([^|;&#\n]*)/g;

interface Mention {
  doc: string;
  command: string;
  flags: string[];
  text: string;
}

function longclipMentions(): Mention[] {
  return DOCS.flatMap((doc) =>
    codeOf(read(doc)).flatMap((line) =>
      [...line.matchAll(LONGCLIP)].map((m) => ({
        doc,
        command: m[1] ?? "",
        // A flag is `--name` at a word start; `--` alone ends the options.
        flags: [...(m[2] ?? "").matchAll(/(?:^|\s)(--[a-z][\w-]*)/g)].map((f) => f[1] ?? ""),
        text: m[0].trim(),
      })),
    ),
  );
}

function flagsOf(command: Command): Set<string> {
  const flags = new Set(["--help"]);
  // export parses its own arguments (its usage text names them); with --python they are the
  // Python exporter's.
  if (command.name() === "export") {
    for (const m of EXPORT_USAGE.matchAll(/--[a-z][\w-]*/g)) flags.add(m[0]);
  }
  for (const option of command.options) {
    if (option.long) flags.add(option.long);
    // commander keeps `--no-x` as its own option; `--x` of a negatable one is accepted too.
    if (option.long?.startsWith("--no-")) flags.add(`--${option.long.slice(5)}`);
  }
  return flags;
}

test("every longclip command the docs show exists and takes the flags they give it", () => {
  const program = buildProgram();
  const commands = new Map(program.commands.map((command) => [command.name(), command]));
  const mentions = longclipMentions();
  assert.ok(mentions.length > 30, `found only ${mentions.length} longclip commands in the docs`);
  const wrong: string[] = [];
  for (const mention of mentions) {
    const command = commands.get(mention.command);
    if (!command) {
      wrong.push(`${mention.doc}: \`${mention.text}\`: no command ${mention.command}`);
      continue;
    }
    if (mention.command === "export" && mention.flags.includes("--python")) continue;
    const known = flagsOf(command);
    for (const flag of mention.flags) {
      if (!known.has(flag))
        wrong.push(`${mention.doc}: \`${mention.text}\`: ${flag} is no flag of ${mention.command}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test("every npm run in the docs names a script of package.json", () => {
  const { scripts } = JSON.parse(read("package.json")) as { scripts: Record<string, string> };
  const wrong: string[] = [];
  let count = 0;
  for (const doc of DOCS) {
    for (const line of codeOf(read(doc))) {
      for (const m of line.matchAll(/npm run\s+([\w:-]+)/g)) {
        count += 1;
        if (!(m[1] && m[1] in scripts)) wrong.push(`${doc}: npm run ${m[1]}`);
      }
    }
  }
  assert.ok(count > 20, `found only ${count} npm run commands`);
  assert.deepEqual(wrong, []);
});

/** Paths of this repository the docs name in backticks: `src/…`, `tools/…`, `test/…`. */
const REPO_PATH = /^(?:src|tools|scripts|test|training|docs|web|models|deploy|bin)\/[\w./-]*[\w/]$/;

test("every repository path the docs name in backticks exists", () => {
  const wrong: string[] = [];
  let count = 0;
  for (const doc of DOCS) {
    const prose = proseOf(read(doc));
    for (const m of prose.matchAll(/`([^`\s]+)`/g)) {
      const name = (m[1] ?? "").replace(/:\d+$/, "");
      if (!REPO_PATH.test(name) || name.includes("*")) continue;
      count += 1;
      if (!existsSync(path.join(PROJECT_ROOT, name))) wrong.push(`${doc}: ${name}`);
    }
  }
  assert.ok(count > 50, `found only ${count} paths`);
  assert.deepEqual(wrong, []);
});

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function anchorsOf(doc: string): Set<string> {
  const text = proseOf(read(doc));
  return new Set([...text.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => anchorOf(m[1] ?? "")));
}

test("every relative link in the docs leads to a file and heading that exist", () => {
  const wrong: string[] = [];
  let count = 0;
  for (const doc of DOCS) {
    const text = proseOf(read(doc));
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1] ?? "";
      if (/^[a-z]+:/.test(target)) continue;
      count += 1;
      const [file, anchor] = target.split("#") as [string, string | undefined];
      const resolved = file === "" ? doc : path.normalize(path.join(path.dirname(doc), file));
      if (!existsSync(path.join(PROJECT_ROOT, resolved))) {
        wrong.push(`${doc}: ${target} (no file ${resolved})`);
        continue;
      }
      if (anchor && resolved.endsWith(".md") && !anchorsOf(resolved).has(anchor)) {
        wrong.push(`${doc}: ${target} (no heading #${anchor} in ${resolved})`);
      }
    }
  }
  assert.ok(count > 30, `found only ${count} relative links`);
  assert.deepEqual(wrong, []);
});

/**
 * Where each shell command of the README runs. `runBy`: the file that runs it (it must contain
 * `fragment`, the command's words as that file writes them); `notRun`: why no test can.
 */
const README_COMMANDS: readonly (
  | { command: RegExp; runBy: string; fragment: string }
  | { command: RegExp; notRun: string }
)[] = [
  { command: /^npm install$/, runBy: ".ci/run", fragment: "npm ci" },
  // readme-first-screen takes these from README.md and runs them through a shell as written
  ...[
    /^npm start$/,
    /^curl -s 127\.0\.0\.1:8080\/search /,
    /^npx longclip pull longclip-l /,
    /^npx longclip serve --model models\/longclip-l$/,
    /^npx longclip export --checkpoint /,
    /^npx longclip serve --device cuda$/,
  ].map((command) => ({
    command,
    runBy: "test/readme-first-screen.test.ts",
    fragment: "sectionCommands(",
  })),
  {
    command: /^ONNXRUNTIME_NODE_INSTALL=cuda12 /,
    notRun: "downloads ONNX Runtime's CUDA build: needs the internet and an NVIDIA GPU",
  },
  {
    command: /^docker build -t longclip \.$/,
    runBy: "scripts/test-docker.sh",
    fragment: "--target runtime",
  },
  {
    command: /^docker run --init -p 8080:8080 /,
    runBy: "scripts/test-docker.sh",
    fragment: "run --detach --init",
  },
  {
    command: /^docker build --build-arg WITH_FFMPEG=yes /,
    notRun:
      "the podman smoke test builds the default image; test/dockerfile.test.ts runs the RUN lines with WITH_FFMPEG=yes and without",
  },
  {
    command: /^docker build --target runtime-cuda /,
    notRun: "its base image is NVIDIA's CUDA runtime, a download this machine cannot make",
  },
  ...[
    /^POSTGRES_PASSWORD=\S+ docker compose up /,
    /^curl http:\/\/localhost:8080\/ready$/,
    /^mkdir -p media && cp -r ~\/Pictures\/trip media\/$/,
    /^curl -X POST http:\/\/localhost:8080\/jobs /,
  ].map((command) => ({
    command,
    notRun:
      "Docker Compose's stack: no Compose engine here (test/compose.test.ts checks compose.yaml against the product; the API calls are tested in test/api.test.ts and test/jobs.test.ts)",
  })),
  // The scale-out nodes: the fault tests' cluster runs these commands (the URL as --database-url,
  // whose variable settings.test.ts reads), on 127.0.0.1 rather than 0.0.0.0.
  {
    command: /^export LONGCLIP_DATABASE_URL=/,
    runBy: "test/settings.test.ts",
    fragment: "LONGCLIP_DATABASE_URL",
  },
  {
    command: /^longclip serve +--model \S+ --media-root /,
    runBy: "test/helpers/cluster.ts",
    fragment: 'startServe(this.common("node"',
  },
  {
    command: /^longclip worker --model \S+ --media-root /,
    runBy: "test/helpers/cluster.ts",
    fragment: '"worker",',
  },
  {
    command: /^npm run demo:train$/,
    notRun: "the whole recipe trains for hours under CI's load; its --smoke form runs every stage",
  },
  {
    command: /^npm run demo:train -- --out artifacts\/demo2 --stages report$/,
    runBy: "training/tests/test_recipe.py",
    fragment: '"--stages", "report"',
  },
  {
    command: /^npm run demo:train -- --smoke /,
    runBy: "training/tests/test_recipe.py",
    fragment: '"--smoke"',
  },
  {
    command:
      /^scripts\/python -m training synth --out \S+ --count \d+ --seed \d+ --layout urban1k$/,
    runBy: "test/bench-urban.test.ts",
    fragment: '"training", "synth"',
  },
  {
    command: /^npm run bench:urban -- --data /,
    runBy: "test/bench-urban.test.ts",
    fragment: "bench-urban.ts",
  },
  { command: /^npm test$/, runBy: ".ci/run", fragment: "\nnpm test\n" },
  { command: /^npm run test:fast$/, runBy: ".ci/run", fragment: "\nnpm run test:fast\n" },
];

/** The README's shell commands: one per line, `\` continuations joined, comments dropped. */
function readmeCommands(): string[] {
  return [...read("README.md").matchAll(/^```sh\n([\s\S]*?)^```/gm)].flatMap((m) =>
    (m[1] ?? "")
      .replace(/\\\n\s*/g, " ")
      .split("\n")
      .map((line) => line.replace(/\s+#.*$/, "").trim())
      .filter((line) => line !== ""),
  );
}

test("every shell command of the README is run by a test or by .ci/run, or says why not", () => {
  const commands = readmeCommands();
  assert.ok(commands.length >= 20, `found only ${commands.length} commands`);
  const wrong: string[] = [];
  for (const command of commands) {
    const entries = README_COMMANDS.filter((entry) => entry.command.test(command));
    if (entries.length !== 1) {
      wrong.push(`\`${command.slice(0, 80)}\`: ${entries.length} entries of README_COMMANDS match`);
      continue;
    }
    const entry = entries[0];
    if (entry && "runBy" in entry && !read(entry.runBy).includes(entry.fragment)) {
      wrong.push(`\`${command.slice(0, 80)}\`: ${entry.runBy} does not contain ${entry.fragment}`);
    }
  }
  for (const entry of README_COMMANDS) {
    if (!commands.some((command) => entry.command.test(command)))
      wrong.push(`README_COMMANDS: ${entry.command} matches no README command (stale entry)`);
  }
  assert.deepEqual(wrong, []);
});
