/**
 * POST /explain over a real socket against a real library (SQLite + HNSW, ONNX Runtime, sharp)
 * with a tiny CLIP converted here with the dense output (helpers/tiny-clip.ts): the grid is
 * recomputed independently (ONNX Runtime run on the model's vision.onnx directly, the text
 * embedded by a second encoder, the method's arithmetic written out here), the score is the
 * item's /search score, the PNG is an overlay of the image's size, and bad requests get their
 * 4xx codes; a model exported without the dense output answers 409 dense_output_missing.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import sharp from "sharp";
import type { Response } from "supertest";
import type { components } from "../src/api/types.gen.ts";
import { DEFAULT_SETTINGS } from "../src/core/settings.ts";
import { Encoder } from "../src/encode/encoder.ts";
import { DEFAULT_HEAT_MAP, NEUTRAL_CAPTION } from "../src/library/explain/heat-map.ts";
import { readModelConfig } from "../src/model/read.ts";
import { preprocessImage } from "../src/preprocess/index.ts";
import { preprocessOptions } from "../src/preprocess/options.ts";
import { preprocessWithCrops } from "../src/preprocess/regions.ts";
import { multipart, startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { photoJpeg } from "./helpers/demo-model.ts";
import { tinyClipModelDir } from "./helpers/tiny-clip.ts";
import { colourScenes } from "./helpers/videos.ts";

type S = components["schemas"];
const QUERY = "a large orange circle on the left above a pale bar";

function unit(values: ArrayLike<number>): number[] {
  const norm = Math.sqrt(Array.from(values).reduce((sum, v) => sum + v * v, 0));
  return Array.from(values, (v) => v / norm);
}

const dot = (a: readonly number[], b: readonly number[]) =>
  a.reduce((sum, v, i) => sum + v * (b[i] as number), 0);

/** The heat map of DEFAULT_HEAT_MAP's method, written out independently of heat-map.ts. */
function expectedGrid(
  patches: number[][],
  query: number[],
  image: number[],
  rows: number,
  columns: number,
): number[][] {
  let grid = patches.map((patch) => {
    if (!DEFAULT_HEAT_MAP.removeImage) return dot(patch, query);
    const along = dot(patch, image);
    const rest = patch.map((v, i) => v - along * (image[i] as number));
    return dot(unit(rest), query);
  });
  for (let pass = 0; pass < DEFAULT_HEAT_MAP.smoothing; pass++) {
    grid = grid.map((_, p) => {
      const r = Math.floor(p / columns);
      const c = p % columns;
      const near: number[] = [];
      for (let rr = r - 1; rr <= r + 1; rr++) {
        for (let cc = c - 1; cc <= c + 1; cc++) {
          if (rr >= 0 && rr < rows && cc >= 0 && cc < columns)
            near.push(grid[rr * columns + cc] as number);
        }
      }
      return near.reduce((a, b) => a + b, 0) / near.length;
    });
  }
  return Array.from({ length: rows }, (_, r) => grid.slice(r * columns, (r + 1) * columns));
}

describe("POST /explain", () => {
  let server: TestServer;
  let modelDir: string;
  let photo: Buffer;
  const explain = (body: object) =>
    server.http.post("/explain").send(body) as unknown as Promise<Response>;
  /** POST /explain with format png; the body is the PNG's bytes. */
  const explainPng = (body: object) =>
    server.http
      .post("/explain")
      .send({ ...body, format: "png" })
      .buffer(true)
      .parse((response, done) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => done(null, Buffer.concat(chunks)));
      });
  const expectError = (res: Response, status: number, code: string, message?: RegExp) => {
    assert.equal(res.status, status, res.text);
    const error = (res.body as S["Error"]).error;
    assert.equal(error.code, code, res.text);
    if (message) assert.match(error.message, message);
  };

  before(async () => {
    modelDir = await tinyClipModelDir("value");
    server = await startTestApp({ modelDir, explainCacheSize: 4 });
    photo = await photoJpeg(3, 320, 240);
    const form = multipart([
      { name: "ids", value: JSON.stringify(["photo", "square"]) },
      { name: "images", value: photo, filename: "photo.jpg" },
      { name: "images", value: await photoJpeg(5, 200, 200), filename: "square.jpg" },
    ]);
    const res = await server.http.post("/index").set(form.headers).send(form.payload);
    assert.equal(res.status, 200, res.text);
  });
  after(async () => {
    await server?.app.close();
    await server?.library.close();
  });

  /** The query of the heat maps (unit, less the neutral caption with `contrast`) and its raw embedding. */
  async function heatQuery(): Promise<{ query: number[]; raw: number[] }> {
    const encoder = await Encoder.load(modelDir, { ...DEFAULT_SETTINGS, threads: 1 });
    const [text, neutral] = await encoder.embedTexts([QUERY, NEUTRAL_CAPTION]);
    await encoder.close();
    const raw = Array.from(text?.embedding as Float32Array);
    const nothing = Array.from(neutral?.embedding as Float32Array);
    // With `contrast`, the heat map's query is unit(query − neutral caption).
    const query = DEFAULT_HEAT_MAP.contrast
      ? unit(raw.map((v, i) => v - (nothing[i] as number)))
      : raw;
    return { query, raw };
  }

  /** vision.onnx run here on each model input: its unit patch rows and its unit image embedding. */
  async function runVision(
    inputs: Float32Array[],
  ): Promise<{ patches: number[][]; image: number[] }[]> {
    const session = await ort.InferenceSession.create(path.join(modelDir, "vision.onnx"));
    const outputs = [];
    for (const pixels of inputs) {
      const out = await session.run({
        pixel_values: new ort.Tensor("float32", pixels, [1, 3, 224, 224]),
      });
      const rawPatches = out.patch_embeds?.data as Float32Array;
      outputs.push({
        patches: Array.from({ length: 196 }, (_, p) =>
          unit(rawPatches.subarray(p * 64, (p + 1) * 64)),
        ),
        image: unit(out.image_embeds?.data as Float32Array),
      });
    }
    await session.release();
    return outputs;
  }

  test("zoom 3: 25 windows of 80 px (40 px apart) and the whole crop, averaged on a 42 × 42 grid", async () => {
    const res = await explain({ item_id: "photo", query: QUERY });
    assert.equal(res.status, 200, res.text);
    const body = res.body as S["ExplainResponse"];
    assert.equal(body.zoom, 3, "zoom 3 is the default");
    assert.deepEqual(body.grid, { rows: 42, columns: 42 });
    assert.deepEqual(body.crop, { x: 40, y: 0, width: 240, height: 240 });
    // The windows, written out: the 240 px crop at x 40 in thirds, a window every half third.
    const windows = [];
    for (let row = 0; row < 5; row++) {
      for (let column = 0; column < 5; column++) {
        windows.push({ x: 40 + 40 * column, y: 40 * row, width: 80, height: 80 });
      }
    }
    const options = preprocessOptions(readModelConfig(modelDir), DEFAULT_SETTINGS);
    const cut = await preprocessWithCrops(photo, options, { kind: "boxes", boxes: windows });
    const views = await runVision([cut.pixels, ...(cut.regions ?? []).map((r) => r.pixels)]);
    const { query } = await heatQuery();
    const boxes = [body.crop, ...windows];
    const grids = views.map((v) => expectedGrid(v.patches, query, v.image, 14, 14));
    let worst = 0;
    for (let r = 0; r < 42; r++) {
      for (let c = 0; c < 42; c++) {
        // The fine cell's centre in the original's pixels; the mean of the views that hold it.
        const x = 40 + ((c + 0.5) * 240) / 42;
        const y = ((r + 0.5) * 240) / 42;
        const covering = views.flatMap((_, i) => {
          const box = boxes[i] as (typeof boxes)[number];
          if (x < box.x || x >= box.x + box.width || y < box.y || y >= box.y + box.height)
            return [];
          const patchRow = Math.floor(((y - box.y) / box.height) * 14);
          const patchColumn = Math.floor(((x - box.x) / box.width) * 14);
          return [grids[i]?.[patchRow]?.[patchColumn] as number];
        });
        const expected = covering.reduce((a, b) => a + b, 0) / covering.length;
        worst = Math.max(worst, Math.abs((body.scores[r]?.[c] as number) - expected));
      }
    }
    assert.ok(worst < 1e-4, `worst difference ${worst}`);
    assert.equal(body.scores[body.peak.row]?.[body.peak.column], body.max);
    // Zoom beyond the server's explainZoom (3) is refused; below 1 fails validation.
    expectError(await explain({ item_id: "photo", query: QUERY, zoom: 4 }), 400, "zoom_too_large");
    expectError(
      await explain({ item_id: "photo", query: QUERY, zoom: 0 }),
      400,
      "validation_failed",
    );
  });

  test("zoom 1: the grid is the query's cosine to each patch, recomputed from the ONNX output", async () => {
    const res = await explain({ item_id: "photo", query: QUERY, zoom: 1 });
    assert.equal(res.status, 200, res.text);
    const body = res.body as S["ExplainResponse"];
    assert.deepEqual(body.grid, { rows: 14, columns: 14 });
    assert.equal(body.zoom, 1);
    assert.equal(body.kind, "value");
    assert.deepEqual(body.image, { width: 320, height: 240 });
    assert.deepEqual(body.crop, { x: 40, y: 0, width: 240, height: 240 });

    // The reference: vision.onnx run here on the same preprocessing, the text by its own encoder.
    const options = preprocessOptions(readModelConfig(modelDir), DEFAULT_SETTINGS);
    const { pixels } = await preprocessImage(photo, options);
    const [whole] = await runVision([pixels]);
    const { patches, image } = whole as { patches: number[][]; image: number[] };
    const { query, raw } = await heatQuery();
    const expected = expectedGrid(patches, query, image, 14, 14);
    let worst = 0;
    body.scores.forEach((row, r) => {
      assert.equal(row.length, 14);
      row.forEach((score, c) => {
        worst = Math.max(worst, Math.abs(score - (expected[r]?.[c] as number)));
      });
    });
    assert.ok(worst < 1e-4, `worst difference ${worst}`);
    const flat = body.scores.flat();
    assert.equal(body.min, Math.min(...flat));
    assert.equal(body.max, Math.max(...flat));
    assert.equal(body.scores[body.peak.row]?.[body.peak.column], body.max);
    // The overall score is the item's /search score.
    const search = await server.http.post("/search").send({ query: QUERY, k: 2, exact: true });
    const hit = (search.body as S["SearchResponse"]).hits.find((h) => h.id === "photo");
    assert.ok(hit);
    assert.ok(Math.abs(body.score - hit.score) < 1e-5, `${body.score} vs ${hit.score}`);
    assert.ok(Math.abs(body.score - dot(image, raw)) < 1e-4);
  });

  test("a video is explained at a frame: the query's best stored frame, or the one at t", async () => {
    const made = tempDir("longclip-explain-video-");
    // red 0-1 s, lime 1-2 s, blue 2-3 s
    const video = readFileSync(
      colourScenes(path.join(made, "scenes.mp4"), ["red", "lime", "blue"], 1, { size: "96x64" }),
    );
    const form = multipart([
      { name: "ids", value: JSON.stringify(["clip"]) },
      { name: "images", value: video, filename: "scenes.mp4", contentType: "video/mp4" },
    ]);
    const indexed = await server.http.post("/index").set(form.headers).send(form.payload);
    assert.equal(indexed.status, 200, indexed.text);
    const options = preprocessOptions(readModelConfig(modelDir), DEFAULT_SETTINGS);
    const { query } = await heatQuery();
    /** The heat map of the frame at `t`, from vision.onnx on the frame GET /items/clip/image?t= gives. */
    const frameGrid = async (t: number) => {
      const frame = await server.http.get(`/items/clip/image?t=${t}`).buffer(true);
      assert.equal(frame.status, 200, frame.text);
      const { pixels } = await preprocessImage(frame.body as Buffer, options);
      const [view] = await runVision([pixels]);
      return expectedGrid(view?.patches ?? [], query, view?.image ?? [], 14, 14);
    };
    const worstOf = (got: number[][], expected: number[][]) =>
      Math.max(...got.flat().map((v, i) => Math.abs(v - (expected.flat()[i] as number))));

    // Without t: the frame the query's search matched by, with the search's score.
    const search = await server.http.post("/search").send({ query: QUERY, k: 10, exact: true });
    const hit = (search.body as S["SearchResponse"]).hits.find((h) => h.id === "clip");
    assert.equal(hit?.match?.kind, "frame", search.text);
    const best = await explain({ item_id: "clip", query: QUERY, zoom: 1 });
    assert.equal(best.status, 200, best.text);
    const atBest = best.body as S["ExplainResponse"];
    assert.equal(atBest.t, hit?.match?.t);
    assert.ok(
      Math.abs(atBest.score - (hit?.score ?? 0)) < 1e-5,
      `${atBest.score} vs ${hit?.score}`,
    );
    assert.deepEqual(atBest.image, { width: 96, height: 64 });
    assert.ok(worstOf(atBest.scores, await frameGrid(atBest.t ?? -1)) < 1e-4);

    // At t: that frame (red), not another scene's.
    const red = await explain({ item_id: "clip", query: QUERY, zoom: 1, t: 0.5 });
    assert.equal(red.status, 200, red.text);
    const atRed = red.body as S["ExplainResponse"];
    assert.equal(atRed.t, 0.5);
    assert.ok(worstOf(atRed.scores, await frameGrid(0.5)) < 1e-4);
    assert.ok(worstOf(atRed.scores, await frameGrid(2.5)) > 1e-3, "the red frame, not the blue");
    // The PNG is drawn over that frame (the video's size).
    const png = await explainPng({ item_id: "clip", query: QUERY, t: 2.5 });
    assert.equal(png.status, 200);
    const drawn = await sharp(png.body as Buffer).metadata();
    assert.deepEqual([drawn.width, drawn.height], [96, 64]);
    // t on an image, or below 0, is refused.
    expectError(
      await explain({ item_id: "photo", query: QUERY, t: 1 }),
      400,
      "validation_failed",
      /not a video/,
    );
    expectError(await explain({ item_id: "clip", query: QUERY, t: -1 }), 400, "validation_failed");
  });

  test("a composed query explains like its text when it has one text part", async () => {
    const text = (await explain({ item_id: "square", query: QUERY })).body as S["ExplainResponse"];
    const res = await explain({ item_id: "square", compose: [{ text: QUERY, weight: 2 }] });
    assert.equal(res.status, 200, res.text);
    const composed = res.body as S["ExplainResponse"];
    assert.deepEqual(composed.crop, { x: 0, y: 0, width: 200, height: 200 });
    const worst = Math.max(
      ...composed.scores.flat().map((s, i) => Math.abs(s - (text.scores.flat()[i] as number))),
    );
    assert.ok(worst < 1e-5, `worst ${worst}`);
    assert.equal(composed.query?.parts, 1);
    const other = await explain({
      item_id: "square",
      compose: [
        { text: QUERY, weight: 1 },
        { item_id: "photo", weight: -0.5 },
      ],
    });
    assert.equal(other.status, 200, other.text);
    assert.notDeepEqual((other.body as S["ExplainResponse"]).scores, text.scores);
  });

  test("format png: the image with the heat map over its crop, the rest dimmed", async () => {
    const res = await explainPng({ item_id: "photo", query: QUERY });
    assert.equal(res.status, 200);
    assert.equal(res.headers["content-type"], "image/png");
    const png = res.body as Buffer;
    const overlay = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.equal(overlay.info.width, 320);
    assert.equal(overlay.info.height, 240);
    const original = await sharp(photo).removeAlpha().raw().toBuffer();
    const mean = (data: Buffer, x0: number, x1: number) => {
      let sum = 0;
      let count = 0;
      for (let y = 0; y < 240; y++) {
        for (let x = x0; x < x1; x++) {
          for (let c = 0; c < 3; c++) sum += data[(y * 320 + x) * 3 + c] as number;
          count += 3;
        }
      }
      return sum / count;
    };
    // Outside the crop (x < 40): dimmed by half; inside: coloured, not the original.
    const left = mean(overlay.data, 0, 38) / mean(original, 0, 38);
    assert.ok(left > 0.4 && left < 0.6, `outside the crop: ${left} of the original`);
    let changed = 0;
    for (let i = 40 * 3; i < overlay.data.length; i += 97) {
      if (Math.abs((overlay.data[i] as number) - (original[i] as number)) > 12) changed++;
    }
    assert.ok(changed > 100, `only ${changed} sampled values changed`);
  });

  test("bad requests: unknown item 404, empty query 400, neither query nor compose 400", async () => {
    expectError(await explain({ item_id: "nope", query: QUERY }), 404, "not_found", /"nope"/);
    expectError(await explain({ item_id: "photo", query: "  " }), 400, "empty_query");
    expectError(await explain({ item_id: "photo" }), 400, "validation_failed", /exactly one/);
    expectError(
      await explain({ item_id: "photo", query: QUERY, compose: [{ text: "x", weight: 1 }] }),
      400,
      "validation_failed",
    );
    expectError(
      await explain({ item_id: "photo", query: QUERY, format: "gif" }),
      400,
      "validation_failed",
    );
    expectError(
      await explain({ item_id: "photo", compose: [{ item_id: "nope", weight: 1 }] }),
      404,
      "not_found",
    );
    expectError(
      await explain({ item_id: "photo", query: "word ".repeat(400), truncate: false }),
      400,
      "query_too_long",
    );
  });

  test("an item indexed by path whose file changed is 409 image_changed", async () => {
    const root = tempDir("longclip-explain-media-");
    const pathServer = await startTestApp({ modelDir, mediaRoot: root });
    try {
      const file = path.join(root, "a.jpg");
      writeFileSync(file, await photoJpeg(7));
      const indexed = await pathServer.http
        .post("/index")
        .send({ items: [{ id: "by-path", path: "a.jpg" }] });
      assert.equal(indexed.status, 200, indexed.text);
      const first = await pathServer.http
        .post("/explain")
        .send({ item_id: "by-path", query: QUERY });
      assert.equal(first.status, 200, first.text);
      writeFileSync(file, await photoJpeg(8));
      const res = (await pathServer.http
        .post("/explain")
        .send({ item_id: "by-path", query: `${QUERY} again` })) as unknown as Response;
      expectError(res, 409, "image_changed");
    } finally {
      await pathServer.app.close();
      await pathServer.library.close();
    }
  });
});

describe("POST /explain with a model exported without the dense output", () => {
  test("409 dense_output_missing, saying to re-export with --dense value", async () => {
    const server = await startTestApp({ modelDir: await tinyClipModelDir() });
    try {
      const form = multipart([
        { name: "ids", value: JSON.stringify(["a"]) },
        { name: "images", value: await photoJpeg(1), filename: "a.jpg" },
      ]);
      assert.equal(
        (await server.http.post("/index").set(form.headers).send(form.payload)).status,
        200,
      );
      const res = (await server.http
        .post("/explain")
        .send({ item_id: "a", query: QUERY })) as unknown as Response;
      assert.equal(res.status, 409, res.text);
      const error = (res.body as S["Error"]).error;
      assert.equal(error.code, "dense_output_missing");
      assert.match(error.message, /--dense value/);
    } finally {
      await server.app.close();
      await server.library.close();
    }
  });
});
