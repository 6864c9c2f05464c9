/**
 * The README and docs/ cannot go stale without a failing test: every `longclip` command they
 * show names a real command and only flags that command accepts, every `npm run` names a
 * script of package.json, every file path in backticks exists, and every relative link leads
 * to a file (and, with `#anchor`, to a heading) that exists. Commands that need the network, a
 * GPU or real weights cannot run here; this checks that what they name is real.
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
