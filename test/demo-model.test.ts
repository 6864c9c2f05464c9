/**
 * The committed demo model (models/demo, written by `npm run demo:train`): a valid Long-CLIP
 * model directory within the size budget, with a gallery whose long captions find their own
 * images far better than chance when run through the real encoder, and whose example
 * paragraphs (the README's quick-start query, the web page's placeholder and example buttons)
 * each find their own scene first.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { loadSettings, PROJECT_ROOT } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { retrievalRecall } from "../tools/eval/recall.ts";

const DEMO_DIR = path.join(PROJECT_ROOT, "models", "demo");
const README = path.join(PROJECT_ROOT, "README.md");
const PAGE = path.join(PROJECT_ROOT, "web", "index.html");
const GALLERY_DIR = path.join(DEMO_DIR, "gallery");
// A floor well above chance: the committed model must have learnt the captions, not just load.
const MIN_FACTOR = 2;
const SKIP_WITHOUT_DEMO: string | false = existsSync(path.join(DEMO_DIR, "config.json"))
  ? false
  : `skipped: ${DEMO_DIR} has no config.json (run npm run demo:train)`;

interface GalleryItem {
  file: string;
  caption: string;
  short_caption: string;
  label: string;
  group: number;
}

/** The example paragraphs a newcomer meets first: the README's curl query, the page's. */
function exampleQueries(): { where: string; text: string }[] {
  const readme = readFileSync(README, "utf8");
  const page = readFileSync(PAGE, "utf8");
  const curl = /-d '\{"query": "([^"]+)"/.exec(readme);
  // The search box's placeholder is a short hint now; the page's examples are its buttons.
  const buttons = [...page.matchAll(/data-example="([^"]+)"/g)];
  assert.ok(curl, "README query found");
  assert.ok(buttons.length >= 3, `${buttons.length} example paragraphs on the page`);
  return [
    { where: "README quick start", text: curl[1] as string },
    ...buttons.map((m, i) => ({ where: `page example ${i + 1}`, text: m[1] as string })),
  ];
}

function cosineOrder(query: Float32Array, embeddings: (Float32Array | undefined)[]): number[] {
  const score = (e: Float32Array | undefined) =>
    e === undefined
      ? Number.NEGATIVE_INFINITY
      : e.reduce((sum, v, i) => sum + v * (query[i] ?? 0), 0);
  return embeddings
    .map((e, i) => [score(e), i] as const)
    .sort((a, b) => b[0] - a[0])
    .map(([, i]) => i);
}

function totalBytes(dir: string): number {
  let sum = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    sum += entry.isDirectory() ? totalBytes(full) : statSync(full).size;
  }
  return sum;
}

describe("models/demo", { skip: SKIP_WITHOUT_DEMO }, () => {
  let encoder: Encoder;
  let items: GalleryItem[];

  before(async () => {
    const manifest = JSON.parse(readFileSync(path.join(GALLERY_DIR, "gallery.json"), "utf8"));
    items = manifest.items as GalleryItem[];
    encoder = await Encoder.load(DEMO_DIR, loadSettings({ modelDir: DEMO_DIR, threads: 1 }));
  });

  after(async () => {
    await encoder?.close();
  });

  it("is a 248-position Long-CLIP directory of at most 20 MB", () => {
    const config = JSON.parse(readFileSync(path.join(DEMO_DIR, "config.json"), "utf8"));
    assert.equal(config.name, "longclip-demo");
    assert.equal(config.model_type, "longclip");
    assert.equal(config.context_length, 248);
    assert.equal(encoder.modelId, config.model_id);
    assert.ok(totalBytes(DEMO_DIR) <= 20 * 1024 * 1024, "models/demo stays within 20 MB");
  });

  it("has a gallery manifest whose files all exist", () => {
    assert.ok(items.length >= 24, `${items.length} gallery items`);
    for (const item of items) {
      assert.ok(existsSync(path.join(GALLERY_DIR, item.file)), item.file);
      assert.ok(item.caption.length > item.short_caption.length, item.file);
    }
  });

  it("retrieves gallery images from their long captions far above chance", async () => {
    const buffers = items.map((item) => readFileSync(path.join(GALLERY_DIR, item.file)));
    const images = await encoder.embedImageBytes(buffers);
    const imageEmbeddings = images.map((r) => (r.ok ? r.embedding : undefined));
    const texts = await encoder.embedTexts(items.map((item) => item.caption));
    const recall = retrievalRecall(
      imageEmbeddings,
      texts.map((t) => t.embedding),
    );
    assert.equal(recall.n, items.length);
    // chance: R@1 = 1/n, R@5 = 5/n
    const n = items.length;
    assert.ok(recall.t2i.r5 >= MIN_FACTOR * (5 / n), `text→image R@5 ${recall.t2i.r5}`);
    assert.ok(recall.i2t.r5 >= MIN_FACTOR * (5 / n), `image→text R@5 ${recall.i2t.r5}`);
  });

  it("finds the scene of every example paragraph first among the gallery's images", async () => {
    const images = await encoder.embedImageBytes(
      items.map((item) => readFileSync(path.join(GALLERY_DIR, item.file))),
    );
    const embeddings = images.map((r) => (r.ok ? r.embedding : undefined));
    const examples = exampleQueries();
    const texts = await encoder.embedTexts(examples.map((e) => e.text));
    examples.forEach((example, i) => {
      // every example is the caption of one gallery scene, so the newcomer can see it found
      const own = items.findIndex((item) => item.caption === example.text);
      assert.ok(own >= 0, `${example.where} is the caption of a gallery item`);
      const order = cosineOrder(texts[i]?.embedding as Float32Array, embeddings);
      assert.equal(items[order[0] as number]?.file, items[own]?.file, `${example.where}: rank 1`);
    });
  });
});
