/**
 * Hybrid vs vector vs keyword search on a set where the metadata carries words no image can
 * show: rendered synthetic scenes (a seed the demo model never saw), each tagged with one
 * made-up word (a pseudo-album: every tag is on `--per-tag` scenes picked at random, so a tag
 * alone narrows the search but cannot rank inside its album). Each scene is queried with its
 * caption (long: the full paragraph; short: its first sentence, shared by the 3 other scenes
 * of its hard-negative group) plus its tag, in each mode; R@1/5/10 of the scene is printed.
 *
 *   npm run bench:hybrid -- [--count 400] [--per-tag 8] [--postgres] [--json]
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { SearchMode } from "../../src/core/types.ts";
import {
  indexAll,
  openBenchLibrary,
  SCENE_FLAGS,
  type Scene,
  scenesOf,
  seededRandom,
} from "./search-extras.ts";

const { values } = parseArgs({
  options: {
    ...SCENE_FLAGS,
    "per-tag": { type: "string", default: "8" },
  },
});
const count = Number(values.count);
const perTag = Number(values["per-tag"]);
const seed = Number(values.seed);

/** Pronounceable made-up words: in no caption, no image, and no English dictionary. */
function madeUpWords(n: number, random: () => number): string[] {
  const onsets = [
    "b",
    "d",
    "f",
    "g",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "kr",
    "pl",
    "st",
    "tr",
    "zl",
  ];
  const vowels = ["a", "e", "i", "o", "u", "au", "ei", "oo"];
  const codas = ["", "n", "r", "x", "k", "m", "sh", "th"];
  const pick = (list: string[]) => list[Math.floor(random() * list.length)] as string;
  const words = new Set<string>();
  while (words.size < n) {
    words.add(`${pick(onsets)}${pick(vowels)}${pick(onsets)}${pick(vowels)}${pick(codas)}`);
  }
  return [...words];
}

const scenes = await scenesOf(values);
const random = seededRandom(seed);
const tags = madeUpWords(Math.ceil(count / perTag), random);
// Scenes shuffled, then dealt into albums of perTag: an album mixes unrelated scenes.
const order = scenes.map((_, i) => i);
for (let i = order.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [order[i], order[j]] = [order[j] as number, order[i] as number];
}
const tagOf = new Map<string, string>();
order.forEach((sceneIndex, position) => {
  tagOf.set((scenes[sceneIndex] as Scene).name, tags[Math.floor(position / perTag)] as string);
});

const bench = await openBenchLibrary(values.postgres === true);
try {
  await indexAll(
    bench.library,
    scenes.map((scene) => ({
      id: scene.name,
      bytes: readFileSync(scene.image),
      // Only the tag: the caption is what the image shows, the query's job to find.
      metadata: { tags: [tagOf.get(scene.name) as string] },
    })),
    // PGlite serves every connection from one backend; many concurrent look-ups can break
    // its unnamed prepared statements, so Postgres gets smaller batches.
    values.postgres ? 4 : 32,
  );
  const results: Record<string, Record<SearchMode, { r1: number; r5: number; r10: number }>> = {};
  for (const variant of ["long", "short"] as const) {
    results[variant] = {} as Record<SearchMode, { r1: number; r5: number; r10: number }>;
    for (const mode of ["vector", "keyword", "hybrid"] as const) {
      let r1 = 0;
      let r5 = 0;
      let r10 = 0;
      for (const scene of scenes) {
        const text = `${variant === "long" ? scene.caption : scene.short} Tag: ${tagOf.get(scene.name)}.`;
        const { hits } = await bench.library.searchText(text, { k: 10, mode });
        const rank = hits.findIndex((hit) => hit.id === scene.name) + 1;
        if (rank === 1) r1++;
        if (rank >= 1 && rank <= 5) r5++;
        if (rank >= 1) r10++;
      }
      const pct = (n: number) => Number(((100 * n) / scenes.length).toFixed(1));
      results[variant][mode] = { r1: pct(r1), r5: pct(r5), r10: pct(r10) };
    }
  }
  if (values.json) {
    process.stdout.write(
      `${JSON.stringify({ backend: bench.backend, count, perTag, seed, results })}\n`,
    );
  } else {
    process.stdout.write(
      `${count} unseen synthetic scenes (seed ${seed}), one made-up tag per ${perTag} scenes; ${bench.backend}; demo model\n`,
    );
    process.stdout.write("query                mode       R@1    R@5   R@10\n");
    for (const [variant, byMode] of Object.entries(results)) {
      for (const [mode, r] of Object.entries(byMode)) {
        process.stdout.write(
          `${`${variant} caption + tag`.padEnd(21)}${mode.padEnd(8)}${String(r.r1).padStart(6)}%${String(r.r5).padStart(6)}%${String(r.r10).padStart(6)}%\n`,
        );
      }
    }
  }
} finally {
  await bench.close();
}
