import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import sharp from "sharp";
import { compareNames, describeExcluded, loadUrbanDataset } from "../tools/eval/urban1k.ts";

let root: string;

async function image(format: "jpeg" | "png"): Promise<Buffer> {
  return sharp({ create: { width: 8, height: 8, channels: 3, background: "#336699" } })
    .toFormat(format)
    .toBuffer();
}

before(async () => {
  root = await mkdtemp(path.join(tmpdir(), "eval-urban1k-"));
  const dir = path.join(root, "set");
  await mkdir(path.join(dir, "image"), { recursive: true });
  await mkdir(path.join(dir, "caption"));
  await mkdir(path.join(dir, "short"));
  const jpeg = await image("jpeg");
  const files: Record<string, string | Buffer> = {
    "image/2.jpg": jpeg,
    "caption/2.txt": "  A long caption.  \nsecond line is ignored\n",
    "short/2.txt": "Short.\n",
    "image/10.png": await image("png"),
    "caption/10.txt": "Caption of ten.",
    "image/1.jpg": jpeg,
    "caption/1.txt": "One.\r\nTwo.",
    // A .jpg is preferred over a .png of the same name, as the official script opens NAME.jpg.
    "image/both.jpg": jpeg,
    "image/both.png": await image("png"),
    "caption/both.txt": "Both.",
    "image/nocaption.jpg": jpeg,
    "caption/noimage.txt": "No image.",
    "image/empty.jpg": jpeg,
    "caption/empty.txt": "   \nthe caption is on the first line only\n",
    "image/zero.jpg": Buffer.alloc(0),
    "caption/zero.txt": "Zero-byte image.",
    "image/latin1.jpg": jpeg,
    "caption/latin1.txt": Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]),
    "image/notes.md": "not an image",
    "caption/.hidden.txt": "ignored",
  };
  for (const [name, content] of Object.entries(files)) {
    await writeFile(path.join(dir, name), content);
  }
  // A caption path that is a directory, and an image path that is a directory.
  await mkdir(path.join(dir, "caption", "dir.txt"));
  await writeFile(path.join(dir, "image", "dir.jpg"), jpeg);
  await mkdir(path.join(dir, "image", "dir2.jpg"));
  await writeFile(path.join(dir, "caption", "dir2.txt"), "image is a directory");
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("loadUrbanDataset", () => {
  it("pairs images with first caption lines in natural name order", async () => {
    const dataset = await loadUrbanDataset(path.join(root, "set"));
    assert.deepEqual(
      dataset.pairs.map((p) => [p.name, path.basename(p.imagePath), p.caption]),
      [
        ["1", "1.jpg", "One."],
        ["2", "2.jpg", "A long caption."],
        ["10", "10.png", "Caption of ten."],
        ["both", "both.jpg", "Both."],
      ],
    );
  });

  it("reports every incomplete pair with its reason instead of failing", async () => {
    const dataset = await loadUrbanDataset(path.join(root, "set"));
    const reasons = Object.fromEntries(dataset.excluded.map((e) => [e.name, e.reason]));
    assert.deepEqual(reasons, {
      dir: "caption_unreadable",
      dir2: "image_unreadable",
      empty: "caption_empty",
      latin1: "caption_unreadable",
      noimage: "image_missing",
      nocaption: "caption_missing",
      zero: "image_unreadable",
    });
    for (const e of dataset.excluded) assert.ok(e.message.length > 0);
    const summary = describeExcluded(dataset.excluded, 3);
    assert.match(summary, /^7 pairs left out: .+, and 4 more$/);
  });

  it("reads another caption directory on request", async () => {
    const dataset = await loadUrbanDataset(path.join(root, "set"), { captionDir: "short" });
    assert.deepEqual(
      dataset.pairs.map((p) => [p.name, p.caption]),
      [["2", "Short."]],
    );
    assert.equal(dataset.excluded.filter((e) => e.reason === "caption_missing").length, 9);
  });

  it("fails with dataset_invalid when the layout is not there", async () => {
    await assert.rejects(loadUrbanDataset(path.join(root, "nope")), {
      code: "dataset_invalid",
      message: /image\/NAME\.jpg and caption\/NAME\.txt/,
    });
  });

  it("orders names naturally", () => {
    assert.deepEqual(["10", "9", "b", "a2", "a10", "1"].sort(compareNames), [
      "1",
      "9",
      "10",
      "a2",
      "a10",
      "b",
    ]);
    assert.deepEqual(describeExcluded([]), "no pairs left out");
  });
});
