/**
 * Videos through the HTTP API over a real socket (fastify, SQLite + hnswlib, the demo model,
 * real ffmpeg): uploaded in the images field beside images and indexed by path; hostile
 * videos each fail only themselves with their 4xx code, and nothing stored is lost.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import type { components } from "../src/api/types.gen.ts";
import { multipart, type Part, startTestApp, type TestServer, tempDir } from "./api-helpers.ts";
import { sampleImage } from "./helpers/demo-model.ts";
import { colourScenes, ffmpeg, liveWebm } from "./helpers/videos.ts";

type S = components["schemas"];

const MAX_VIDEO_BYTES = 300_000;

describe("videos over HTTP", () => {
  let server: TestServer;
  let media: string;
  const made = tempDir("longclip-api-videos-");
  const file = (name: string) => path.join(made, name);
  const videos: Record<string, Buffer> = {};

  const upload = (parts: Part[]) => {
    const form = multipart(parts);
    return server.http.post("/index").set(form.headers).send(form.payload);
  };
  const part = (name: string, value: Buffer, contentType = "video/mp4"): Part => ({
    name: "images",
    value,
    filename: name,
    contentType,
  });

  before(async () => {
    media = tempDir("longclip-api-video-media-");
    videos.scenes = readFileSync(
      colourScenes(file("scenes.mp4"), ["red", "lime", "blue"], 1, { size: "96x64" }),
    );
    videos.webm = readFileSync(
      colourScenes(file("scenes.webm"), ["yellow", "navy"], 1, { extra: ["-c:v", "libvpx"] }),
    );
    const fast = ffmpeg(file("fast.mp4"), [
      "-f",
      "lavfi",
      "-i",
      "testsrc2=s=160x120:r=10:d=4",
      "-pix_fmt",
      "yuv420p",
      "-movflags",
      "+faststart",
    ]);
    videos.truncated = readFileSync(fast).subarray(0, Math.floor(readFileSync(fast).length / 2));
    videos.huge = readFileSync(colourScenes(file("huge.mp4"), ["red"], 1, { size: "640x480" }));
    videos.endless = readFileSync(liveWebm(file("live.webm"), 6));
    videos.noStream = readFileSync(
      ffmpeg(file("zero.mp4"), ["-f", "lavfi", "-i", "color=c=red:s=32x32:r=5", "-frames:v", "0"]),
    );
    // A real MP4 with junk after it: still an MP4 by its bytes, over the byte limit.
    videos.oversized = Buffer.concat([videos.scenes as Buffer, Buffer.alloc(MAX_VIDEO_BYTES)]);
    const clip = colourScenes(file("clip.webm"), ["navy", "yellow"], 1, {
      extra: ["-c:v", "libvpx"],
    });
    writeFileSync(path.join(media, "clip.webm"), readFileSync(clip));
    writeFileSync(path.join(media, "big.mp4"), videos.oversized);
    writeFileSync(path.join(media, "fake.mov"), Buffer.from("not a movie\n".repeat(100)));
    server = await startTestApp({
      mediaRoot: media,
      maxVideoBytes: MAX_VIDEO_BYTES,
      maxVideoSeconds: 4,
      maxVideoPixels: 100_000,
      maxBatchItems: 16,
    });
  });
  after(async () => {
    await server?.app.close();
  });

  test("hostile videos fail only themselves, each with its code; the rest of the batch is indexed", async () => {
    // Something stored before, which nothing below may lose.
    const first = await upload([part("before.jpg", sampleImage("hopper.jpg"), "image/jpeg")]);
    assert.equal(first.status, 200, first.text);
    const kept = (first.body as S["IndexResponse"]).results[0]?.id as string;

    const res = await upload([
      part("scenes.mp4", videos.scenes as Buffer),
      part("truncated.mp4", videos.truncated as Buffer),
      part("huge.mp4", videos.huge as Buffer),
      part("endless.webm", videos.endless as Buffer, "video/webm"),
      part("empty.mp4", Buffer.alloc(0)),
      part("nostream.mp4", videos.noStream as Buffer),
      part("notavideo.mp4", Buffer.from("plain text, not a video\n".repeat(40))),
      part("oversized.mp4", videos.oversized as Buffer),
      part("photo.png", sampleImage("shapes.png"), "image/png"),
    ]);
    assert.equal(res.status, 200, res.text);
    const results = (res.body as S["IndexResponse"]).results;
    assert.deepEqual(
      results.map((r) => r.error?.code ?? r.status),
      [
        "indexed",
        "invalid_video",
        "video_too_many_pixels",
        "video_too_long",
        "invalid_video",
        "invalid_video",
        "invalid_video",
        "video_too_large",
        "indexed",
      ],
      res.text,
    );
    for (const failed of results.filter((r) => r.status === "failed")) {
      assert.ok((failed.error?.message.length ?? 0) > 20, failed.error?.message);
    }
    const video = await server.http.get(`/items/${results[0]?.id}`);
    assert.equal(video.status, 200);
    const item = video.body as S["Item"];
    assert.equal(item.content_type, "video/mp4");
    assert.deepEqual([item.width, item.height], [96, 64]);
    assert.equal(item.bytes, (videos.scenes as Buffer).length);
    // The original is served as it was uploaded.
    const original = await server.http.get(`/items/${results[0]?.id}/image`).buffer(true);
    assert.equal(original.status, 200);
    assert.equal(original.headers["content-type"], "video/mp4");
    assert.ok(Buffer.from(original.body as Buffer).equals(videos.scenes as Buffer));

    // Nothing stored is lost: the earlier item and the two new ones, and no more.
    const list = (await server.http.get("/items?limit=100")).body as S["ItemPage"];
    assert.deepEqual(
      list.items.map((i) => i.id).sort(),
      [kept, results[0]?.id, results[8]?.id].sort(),
    );
  });

  test("GET /items/{id}/image?t= gives the frame at t as JPEG; the thumbnail is a frame", async () => {
    const sizeBefore = ((await server.http.get("/stats")).body as S["Stats"]).index.size;
    // The same scenes under another container: other bytes, so another item.
    const res = await upload([part("frames.webm", videos.webm as Buffer, "video/webm")]);
    assert.equal(res.status, 200, res.text);
    const webmId = (res.body as S["IndexResponse"]).results[0]?.id as string;
    // One vector for the video and one per scene (yellow, navy): 3 more in the index.
    const sizeAfter = ((await server.http.get("/stats")).body as S["Stats"]).index.size;
    assert.equal(sizeAfter - sizeBefore, 3, `${webmId}: ${sizeBefore} -> ${sizeAfter}`);
    const scenes = await upload([part("frames.mp4", videos.scenes as Buffer)]);
    const id = (scenes.body as S["IndexResponse"]).results[0]?.id as string;
    // red 0-1 s, lime 1-2 s, blue 2-3 s
    const expected: [number, number][] = [
      [0.5, 0],
      [1.5, 1],
      [2.5, 2],
    ];
    for (const [t, channel] of expected) {
      const frame = await server.http.get(`/items/${id}/image?t=${t}`).buffer(true);
      assert.equal(frame.status, 200, frame.text);
      assert.equal(frame.headers["content-type"], "image/jpeg");
      const { data, info } = await sharp(frame.body as Buffer)
        .raw()
        .toBuffer({ resolveWithObject: true });
      assert.deepEqual([info.width, info.height], [96, 64]);
      const centre = ((32 * 96 + 48) * info.channels) as number;
      const rgb = [data[centre], data[centre + 1], data[centre + 2]] as number[];
      assert.ok((rgb[channel] as number) > 180, `t=${t}: ${rgb}`);
    }
    // A search by a blue picture finds the video at its blue scene: the hit says the frame.
    const blue = await sharp({
      create: { width: 96, height: 64, channels: 3, background: { r: 0, g: 0, b: 255 } },
    })
      .png()
      .toBuffer();
    const form = multipart([{ name: "image", value: blue, filename: "blue.png" }]);
    const found = await server.http.post("/search/image?k=3").set(form.headers).send(form.payload);
    assert.equal(found.status, 200, found.text);
    const top = (found.body as S["ImageSearchResponse"]).hits[0];
    assert.equal(top?.id, id, found.text);
    assert.equal(top?.match?.kind, "frame", found.text);
    const t = top?.match?.t ?? -1;
    assert.ok(t >= 2 && t < 3, `matched at ${t} s, in the blue scene (2-3 s)`);
    // A reindex decodes the frames again at their times: nothing fails, no vector is dropped,
    // and the same blue scene is still found.
    const stats = (await server.http.get("/stats")).body as S["Stats"];
    assert.equal(await server.library.reindex(), stats.items, "every item embedded again");
    assert.equal(
      ((await server.http.get("/stats")).body as S["Stats"]).index.size,
      stats.index.size,
    );
    const again = await server.http.post("/search/image?k=3").set(form.headers).send(form.payload);
    const reindexed = (again.body as S["ImageSearchResponse"]).hits[0];
    assert.equal(reindexed?.id, id, again.text);
    assert.equal(reindexed?.match?.t, top?.match?.t, again.text);
    const past = await server.http.get(`/items/${id}/image?t=60`);
    assert.equal(past.status, 404, past.text);
    assert.equal(past.body.error.code, "not_found");
    const bad = await server.http.get(`/items/${id}/image?t=-1`);
    assert.equal(bad.status, 400, bad.text);
    const thumb = await server.http.get(`/items/${id}/thumbnail?size=64`).buffer(true);
    assert.equal(thumb.status, 200, thumb.text);
    assert.equal(thumb.headers["content-type"], "image/webp");
    // An image item has no frames.
    const photo = await upload([part("still.jpg", sampleImage("hopper.jpg"), "image/jpeg")]);
    const photoId = (photo.body as S["IndexResponse"]).results[0]?.id as string;
    const notVideo = await server.http.get(`/items/${photoId}/image?t=1`);
    assert.equal(notVideo.status, 400, notVideo.text);
    assert.equal(notVideo.body.error.code, "validation_failed");
  });

  test("by path: a WebM is indexed; an oversized video and a fake .mov get their codes", async () => {
    const res = await server.http
      .post("/index")
      .send({ items: [{ path: "clip.webm" }, { path: "big.mp4" }, { path: "fake.mov" }] });
    assert.equal(res.status, 200, res.text);
    const results = (res.body as S["IndexResponse"]).results;
    assert.deepEqual(
      results.map((r) => r.error?.code ?? r.status),
      ["indexed", "video_too_large", "invalid_video"],
    );
    const item = (await server.http.get(`/items/${results[0]?.id}`)).body as S["Item"];
    assert.equal(item.content_type, "video/webm");
    assert.equal(item.source, "path");
  });

  test("the original answers byte ranges (the page's <video> seeks by them); a path is checked on each", async () => {
    const res = await server.http.post("/index").send({ items: [{ path: "clip.webm" }] });
    const id = (res.body as S["IndexResponse"]).results[0]?.id as string;
    const file = path.join(media, "clip.webm");
    const whole = readFileSync(file);
    const size = whole.length;
    const get = (range?: string) => {
      const request = server.http.get(`/items/${id}/image`);
      if (range !== undefined) request.set("range", range);
      return request.buffer(true);
    };
    const plain = await get();
    assert.equal(plain.status, 200);
    assert.equal(plain.headers["accept-ranges"], "bytes");
    // [Range, expected first byte, expected last byte]
    const cases: [string, number, number][] = [
      ["bytes=0-99", 0, 99],
      ["bytes=100-", 100, size - 1],
      ["bytes=-50", size - 50, size - 1],
      [`bytes=${size - 10}-${size + 1000}`, size - 10, size - 1],
    ];
    for (const [range, first, last] of cases) {
      const part = await get(range);
      assert.equal(part.status, 206, `${range}: ${part.status}`);
      assert.equal(part.headers["content-type"], "video/webm");
      assert.equal(part.headers["content-range"], `bytes ${first}-${last}/${size}`, range);
      assert.ok(Buffer.from(part.body as Buffer).equals(whole.subarray(first, last + 1)), range);
    }
    // Not one byte range: the whole original (the RFC lets a server ignore such a Range).
    for (const range of ["bytes=0-1,10-20", "items=0-5", "bytes=x-y"]) {
      const answer = await get(range);
      assert.equal(answer.status, 200, range);
      assert.ok(Buffer.from(answer.body as Buffer).equals(whole), range);
    }
    const past = await server.http.get(`/items/${id}/image`).set("range", `bytes=${size}-`);
    assert.equal(past.status, 416, past.text);
    assert.equal(past.body.error.code, "range_not_satisfiable");
    assert.equal(past.headers["content-range"], `bytes */${size}`);
    // The file changed on disk (same size, other bytes): no range of it is served.
    const changed = Buffer.from(whole);
    changed[size - 1] = (changed[size - 1] as number) ^ 0xff;
    writeFileSync(file, changed);
    try {
      const stale = await server.http.get(`/items/${id}/image`).set("range", "bytes=0-99");
      assert.equal(stale.status, 409, stale.text);
      assert.equal(stale.body.error.code, "image_changed");
    } finally {
      writeFileSync(file, whole);
    }
  });

  test("without ffmpeg, a video is 415 unsupported_video and the image beside it is indexed", async () => {
    const bare = await startTestApp({ ffmpegPath: path.join(made, "no-ffmpeg-here", "ffmpeg") });
    try {
      const form = multipart([
        part("scenes.mp4", videos.scenes as Buffer),
        part("photo.jpg", sampleImage("hopper.jpg"), "image/jpeg"),
      ]);
      const res = await bare.http.post("/index").set(form.headers).send(form.payload);
      const results = (res.body as S["IndexResponse"]).results;
      assert.deepEqual(
        results.map((r) => r.error?.code ?? r.status),
        ["unsupported_video", "indexed"],
      );
      assert.match(results[0]?.error?.message ?? "", /apt-get install ffmpeg/);
    } finally {
      await bare.app.close();
    }
  });
});
