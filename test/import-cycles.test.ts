/**
 * No import cycles among the TypeScript and JavaScript modules of src/, scripts/, tools/, bin/
 * and web/: neither among the imports that load a module at run time nor once type imports
 * count too (a type cycle ties two rooms together as much as a run-time one: src/store/ used
 * to take Item and Metadata from src/library/, which takes the store's types). src/server/web.ts
 * and scripts/build-web.ts used to import each other; the page's panels (web/) call each other
 * through callbacks wired in web/main.ts, never through imports both ways.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { PROJECT_ROOT } from "../src/core/settings.ts";

/**
 * Relative imports that load a module at run time: static ones other than `import type` /
 * `export type` (the compiler erases those, so they cannot make an evaluation cycle) and
 * literal dynamic ones.
 */
const IMPORT =
  /(?:import|export)(?!\s+type\b)[^"'`;]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;

/** Every relative import: `import type`, `export type` and `import("./x").T` types too. */
const ANY_IMPORT =
  /(?:import|export)[^"'`;]*?from\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;

function modules(): string[] {
  return ["src", "scripts", "tools", "bin", "web"].flatMap((dir) =>
    readdirSync(path.join(PROJECT_ROOT, dir), { recursive: true, encoding: "utf8" })
      .filter((name) => /\.(ts|js)$/.test(name))
      .map((name) => path.join(dir, name)),
  );
}

function importsOf(file: string, pattern: RegExp = IMPORT): string[] {
  const text = readFileSync(path.join(PROJECT_ROOT, file), "utf8");
  return [...text.matchAll(pattern)]
    .map((match) => path.normalize(path.join(path.dirname(file), match[1] ?? match[2] ?? "")))
    .filter((target) => existsSync(path.join(PROJECT_ROOT, target)));
}

/** Each cycle as `a -> b -> a`, found by a depth-first search. */
function importCycles(files: readonly string[], edges: (file: string) => string[]) {
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, "open");
    stack.push(file);
    for (const next of edges(file)) {
      if (state.get(next) === "open") {
        cycles.push([...stack.slice(stack.indexOf(next)), next].join(" -> "));
      } else if (!state.has(next)) {
        visit(next);
      }
    }
    stack.pop();
    state.set(file, "done");
  };
  for (const file of files) if (!state.has(file)) visit(file);
  return cycles;
}

test("the cycle search finds a cycle", () => {
  const graph: Record<string, string[]> = { a: ["b"], b: ["c"], c: ["a"], d: ["a"] };
  assert.deepEqual(
    importCycles(Object.keys(graph), (file) => graph[file] ?? []),
    ["a -> b -> c -> a"],
  );
});

test("src/, scripts/, tools/, bin/ and web/ have no import cycles", () => {
  const files = modules();
  assert.ok(files.includes(path.join("src", "server", "web.ts")), "the modules were found");
  assert.ok(files.includes(path.join("web", "search.ts")), "the page's modules were found");
  assert.deepEqual(importCycles(files, importsOf), []);
});

test("the import patterns tell type imports from run-time ones", () => {
  const text = [
    'import { a } from "./a.ts";',
    'import type { B } from "./b.ts";',
    "import {\n  type C,\n  c,\n} from './c.ts';",
    'export type { D } from "./d.ts";',
    'let e: import("./e.ts").E;',
  ].join("\n");
  const found = (pattern: RegExp) => [...text.matchAll(pattern)].map((m) => m[1] ?? m[2]);
  assert.deepEqual(found(IMPORT), ["./a.ts", "./c.ts", "./e.ts"]);
  assert.deepEqual(found(ANY_IMPORT), ["./a.ts", "./b.ts", "./c.ts", "./d.ts", "./e.ts"]);
});

test("src/, scripts/, tools/, bin/ and web/ have no import cycles, type imports included", () => {
  assert.deepEqual(
    importCycles(modules(), (file) => importsOf(file, ANY_IMPORT)),
    [],
  );
});

/**
 * The rooms of src/ from the bottom up, as the pipeline reads (README: tokenize -> preprocess ->
 * encode -> store/vector-index -> library -> server/CLI): a room imports only rooms on a lower
 * floor, types included. src/store/ used to take its item types from src/library/, and
 * src/tokenize/ the model config's type from src/encode/.
 */
const FLOORS: Record<string, number> = {
  core: 0,
  util: 1,
  model: 2,
  tokenize: 3,
  preprocess: 3,
  "vector-index": 3,
  encode: 4,
  convert: 5,
  store: 5,
  library: 6,
  jobs: 7,
  api: 7,
  server: 8,
  cli: 9,
};

test("no import in src/ runs up the pipeline", () => {
  const roomOf = (file: string) => file.split(path.sep)[1] ?? "";
  const sources = modules().filter((file) => file.startsWith(`src${path.sep}`));
  assert.deepEqual(
    [...new Set(sources.map(roomOf))].filter((room) => FLOORS[room] === undefined),
    [],
    "every room of src/ has a floor",
  );
  const upward = sources.flatMap((file) =>
    importsOf(file, ANY_IMPORT)
      .filter((target) => target.startsWith(`src${path.sep}`) && roomOf(target) !== roomOf(file))
      .filter((target) => (FLOORS[roomOf(target)] ?? 0) >= (FLOORS[roomOf(file)] ?? 0))
      .map((target) => `${file} -> ${target}`),
  );
  assert.deepEqual(upward, []);
});
