/**
 * The video stage against real ffmpeg on tiny generated videos: recognition by bytes, frame
 * sampling at scene changes, the limits (checked on the header and while decoding), hostile
 * files, missing ffmpeg, time limits and aborts.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import sharp from "sharp";
import { AppError } from "../src/core/errors.ts";
import { collectImageFiles } from "../src/library/ingest/files.ts";
import {
  decodeVideoFrames,
  frameAt,
  hasVideoExtension,
  probeVideo,
  videoContainer,
  withTemporaryFile,
} from "../src/preprocess/video/index.ts";
import { SceneSampler, signature } from "../src/preprocess/video/scenes.ts";
import { colourScenes, ffmpeg, liveWebm, VIDEO_SETTINGS, videoDir } from "./helpers/videos.ts";

const dir = videoDir();
after(() => rmSync(dir, { recursive: true, force: true }));

function rejectsWith(code: string) {
  return (error: unknown) => {
    assert.ok(error instanceof AppError, `an AppError, not ${String(error)}`);
    assert.equal(error.code, code, error.message);
    assert.ok(error.status >= 400 && error.status < 500, `status ${error.status}`);
    return true;
  };
}

/** Mean RGB of packed RGB pixels. */
function meanColour(rgb: Uint8Array): [number, number, number] {
  const sum = [0, 0, 0];
  for (let i = 0; i < rgb.length; i++) (sum[i % 3] as number) += rgb[i] as number;
  const n = rgb.length / 3;
  return [(sum[0] as number) / n, (sum[1] as number) / n, (sum[2] as number) / n];
}

describe("recognised by bytes", () => {
  test("MP4, MOV, WebM and Matroska made by ffmpeg; images and other bytes are not videos", () => {
    const made: [string, string][] = [
      ["a.mp4", "mp4"],
      ["a.mov", "mov"],
      ["a.webm", "webm"],
      ["a.mkv", "matroska"],
    ];
    for (const [name, container] of made) {
      const file = path.join(dir, name);
      const codec = name.endsWith(".webm") ? ["-c:v", "libvpx"] : [];
      ffmpeg(file, ["-f", "lavfi", "-i", "color=c=red:s=32x32:r=5:d=1", ...codec]);
      assert.equal(videoContainer(readFileSync(file)), container, name);
      // The name plays no part: the same bytes under another name are the same container.
      assert.equal(videoContainer(readFileSync(file).subarray(0, 64)), container, `${name} head`);
    }
    // An AVIF image is an ISO box file too: its brand keeps it an image.
    const avif = Buffer.concat([
      Buffer.from([0, 0, 0, 0x1c]),
      Buffer.from("ftypavif"),
      Buffer.alloc(16),
    ]);
    assert.equal(videoContainer(avif), undefined);
    const heic = Buffer.concat([
      Buffer.from([0, 0, 0, 0x18]),
      Buffer.from("ftypheic"),
      Buffer.alloc(12),
    ]);
    assert.equal(videoContainer(heic), undefined);
    assert.equal(videoContainer(Buffer.from([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10])), undefined);
    assert.equal(videoContainer(Buffer.alloc(0)), undefined);
    assert.equal(videoContainer(Buffer.from("not a video at all, just text")), undefined);
    assert.ok(hasVideoExtension("clip.MP4"));
    assert.ok(!hasVideoExtension("photo.jpg"));
    assert.ok(!hasVideoExtension(undefined));
  });
});

describe("frames at scene changes", () => {
  test("one settled frame per scene, inside it; a fade is waited out", async () => {
    // red 0-2 s, lime 2-4 s, then a 0.5 s fade to blue, blue fully from 4 s to 5.5 s.
    const file = colourScenes(path.join(dir, "scenes.mp4"), ["red", "lime", "blue"], 2, {
      fade: 0.5,
    });
    const video = await decodeVideoFrames(file, VIDEO_SETTINGS, 32);
    assert.equal(video.frames.length, 3, JSON.stringify(video.frames.map((f) => f.t)));
    const [red, lime, blue] = video.frames as [
      (typeof video.frames)[0],
      (typeof video.frames)[0],
      (typeof video.frames)[0],
    ];
    assert.ok(red.t >= 0 && red.t < 1.5, `red at ${red.t}`);
    assert.ok(lime.t >= 2 && lime.t < 3.5, `lime at ${lime.t}`);
    assert.ok(blue.t >= 4 && blue.t < 5.5, `blue at ${blue.t} (after the fade, not in it)`);
    // The frames are the scenes' pixels: short side 32, the colours ffmpeg was asked for.
    assert.deepEqual([red.width, red.height], [48, 32]);
    const [r, g, b] = meanColour(blue.rgb);
    assert.ok(b > 200 && r < 40 && g < 40, `blue frame is ${r},${g},${b}`);
    assert.ok(meanColour(red.rgb)[0] > 200);
    assert.ok(meanColour(lime.rgb)[1] > 200);
    assert.ok(
      Math.abs((video.probe.duration ?? 0) - 5.5) < 0.2,
      `duration ${video.probe.duration}`,
    );
  });

  test("a long shot is sampled every videoMaxIntervalMs; the cap keeps frames spread", async () => {
    const file = colourScenes(path.join(dir, "still.mp4"), ["gray"], 6);
    const every = await decodeVideoFrames(
      file,
      { ...VIDEO_SETTINGS, videoMaxIntervalMs: 1000 },
      16,
    );
    const times = every.frames.map((f) => f.t);
    assert.deepEqual(times, [0.25, 1.25, 2.25, 3.25, 4.25, 5.25]);
    const capped = await decodeVideoFrames(
      file,
      { ...VIDEO_SETTINGS, videoMaxIntervalMs: 1000, maxVideoFrames: 3 },
      16,
    );
    const kept = capped.frames.map((f) => f.t);
    assert.equal(kept.length, 3);
    assert.equal(kept[0], 0.25);
    assert.equal(kept[2], 5.25);
  });

  test("the sampler: a cut within the minimum interval waits for it; scene frames outrank interval frames", () => {
    const sig = (value: number) => new Float32Array(768).fill(value);
    const sampler = new SceneSampler<number>(
      { threshold: 0.1, minIntervalS: 1, maxIntervalS: 2, maxFrames: 3 },
      (frame) => frame,
    );
    // 0-3 s: value 0; a cut at 3 s to 0.5, another at 3.5 s to 1; still until 8 s.
    for (let i = 0; i <= 32; i++) {
      const t = i / 4;
      sampler.push(t, sig(t < 3 ? 0 : t < 3.5 ? 0.5 : 1), i);
    }
    const kept = sampler.finish();
    // By the rules: the start settles at 0.25; interval frames at 2.25 and 6.25; the cut at 3 s
    // settles at 3.25 (1 s after 2.25); the cut at 3.5 s settles at 3.75 but waits for the
    // minimum interval, to 4.25. Over the cap of 3, the two interval frames go.
    assert.deepEqual(
      kept.map((k) => [k.t, k.frame, k.score]),
      [
        [0.25, 1, 1],
        [3.25, 13, 0.5],
        [4.25, 17, 0.5],
      ],
    );
  });

  test("signature: block means of each channel, 0 to 1", () => {
    const rgb = new Uint8Array(32 * 16 * 3);
    for (let i = 0; i < rgb.length; i += 3) rgb[i] = 255;
    const s = signature(rgb, 32, 16);
    assert.equal(s.length, 16 * 16 * 3);
    assert.equal(s[0], 1);
    assert.equal(s[1], 0);
  });
});

describe("hostile videos get their codes", () => {
  test("truncated: an MP4 cut in half is invalid_video", async () => {
    const file = colourScenes(path.join(dir, "cut.mp4"), ["red", "blue"], 2);
    const half = path.join(dir, "half.mp4");
    writeFileSync(half, readFileSync(file).subarray(0, Math.floor(readFileSync(file).length / 2)));
    await assert.rejects(decodeVideoFrames(half, VIDEO_SETTINGS, 32), rejectsWith("invalid_video"));
    // A fast-start MP4 (index first) cut in half: ffmpeg decodes the first half and exits 0;
    // the header promised twice as much.
    const faststart = ffmpeg(path.join(dir, "fast.mp4"), [
      "-f",
      "lavfi",
      "-i",
      "testsrc2=s=160x120:r=10:d=6",
      "-pix_fmt",
      "yuv420p",
      "-movflags",
      "+faststart",
    ]);
    truncateSync(faststart, Math.floor(readFileSync(faststart).length / 2));
    await assert.rejects(decodeVideoFrames(faststart, VIDEO_SETTINGS, 32), (error: unknown) => {
      rejectsWith("invalid_video")(error);
      assert.match((error as Error).message, /truncated/);
      return true;
    });
  });

  test("zero-length: no bytes, or a container with no video stream, is invalid_video", async () => {
    const empty = path.join(dir, "empty.mp4");
    writeFileSync(empty, Buffer.alloc(0));
    await assert.rejects(
      decodeVideoFrames(empty, VIDEO_SETTINGS, 32),
      rejectsWith("invalid_video"),
    );
    const noFrames = ffmpeg(path.join(dir, "zero.mp4"), [
      "-f",
      "lavfi",
      "-i",
      "color=c=red:s=32x32:r=5",
      "-frames:v",
      "0",
    ]);
    await assert.rejects(
      decodeVideoFrames(noFrames, VIDEO_SETTINGS, 32),
      rejectsWith("invalid_video"),
    );
  });

  test("not a video: other bytes with a video's name are invalid_video", async () => {
    const fake = path.join(dir, "fake.mp4");
    writeFileSync(fake, Buffer.from("this is a text file named like a video\n".repeat(50)));
    assert.equal(videoContainer(readFileSync(fake)), undefined);
    await assert.rejects(decodeVideoFrames(fake, VIDEO_SETTINGS, 32), rejectsWith("invalid_video"));
  });

  test("huge dimensions: refused from the header, before anything is decoded", async () => {
    const huge = ffmpeg(path.join(dir, "huge.mp4"), [
      "-f",
      "lavfi",
      "-i",
      "color=c=red:s=4096x4096:r=1:d=1",
      "-c:v",
      "libx264",
      "-preset",
      "ultrafast",
    ]);
    await assert.rejects(
      decodeVideoFrames(huge, VIDEO_SETTINGS, 32),
      rejectsWith("video_too_many_pixels"),
    );
    const small = colourScenes(path.join(dir, "small.mp4"), ["red"], 1);
    await assert.rejects(
      probeVideo(small, { ...VIDEO_SETTINGS, maxVideoPixels: 96 * 64 - 1 }),
      rejectsWith("video_too_many_pixels"),
    );
  });

  test("too long by its header: refused before decoding", async () => {
    const file = colourScenes(path.join(dir, "long.mp4"), ["red"], 4);
    await assert.rejects(
      decodeVideoFrames(file, { ...VIDEO_SETTINGS, maxVideoSeconds: 2 }, 32),
      rejectsWith("video_too_long"),
    );
  });

  test("an endless stream (no duration in its header) is cut off once it runs past the limit", async () => {
    const live = liveWebm(path.join(dir, "live.webm"), 6);
    const probe = await probeVideo(live, VIDEO_SETTINGS);
    assert.equal(probe.duration, undefined, "the header gives no duration");
    await assert.rejects(
      decodeVideoFrames(live, { ...VIDEO_SETTINGS, maxVideoSeconds: 2 }, 32),
      (error: unknown) => {
        rejectsWith("video_too_long")(error);
        // Cut off at the first sample past the limit, not decoded to the end.
        assert.equal((error as AppError).details?.seconds, 2.25);
        return true;
      },
    );
    // Under the limit the same stream decodes.
    const whole = await decodeVideoFrames(live, VIDEO_SETTINGS, 32);
    assert.equal(whole.decodedSeconds, 6);
  });

  test("decoding past videoDecodeTimeoutMs is stopped: video_too_long", async () => {
    const file = colourScenes(path.join(dir, "slow.mp4"), ["red"], 2);
    await assert.rejects(
      decodeVideoFrames(file, { ...VIDEO_SETTINGS, videoDecodeTimeoutMs: 1 }, 32),
      rejectsWith("video_too_long"),
    );
  });

  test("an abort kills the decoder and rejects with the abort's reason", async () => {
    const file = colourScenes(path.join(dir, "abort.mp4"), ["red"], 2);
    const controller = new AbortController();
    const reason = new Error("client went away");
    controller.abort(reason);
    await assert.rejects(
      decodeVideoFrames(file, VIDEO_SETTINGS, 32, controller.signal),
      (e) => e === reason,
    );
  });

  test("no ffmpeg: unsupported_video, saying how to install it", async () => {
    const file = colourScenes(path.join(dir, "nodecoder.mp4"), ["red"], 1);
    const missing = { ...VIDEO_SETTINGS, ffmpegPath: path.join(dir, "no-such-dir", "ffmpeg") };
    await assert.rejects(decodeVideoFrames(file, missing, 32), (error: unknown) => {
      rejectsWith("unsupported_video")(error);
      assert.match((error as Error).message, /apt-get install ffmpeg/);
      return true;
    });
  });
});

describe("walks", () => {
  test("a folder walk (CLI index, jobs) picks up videos beside images", async () => {
    const folder = path.join(dir, "walk");
    mkdirSync(folder);
    for (const name of ["a.jpg", "b.MP4", "c.webm", "d.mov", "e.mkv", "f.m4v", "notes.txt"]) {
      writeFileSync(path.join(folder, name), "x");
    }
    const { files } = await collectImageFiles([folder]);
    assert.deepEqual(
      files.map((f) => path.basename(f)),
      ["a.jpg", "b.MP4", "c.webm", "d.mov", "e.mkv", "f.m4v"],
    );
  });
});

describe("a frame for display", () => {
  test("frameAt gives the JPEG of the scene at t; past the end is not_found", async () => {
    const file = colourScenes(path.join(dir, "show.mp4"), ["red", "blue"], 2);
    const jpeg = await frameAt(file, 3, VIDEO_SETTINGS);
    assert.deepEqual([...jpeg.subarray(0, 2)], [0xff, 0xd8]);
    const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [96, 64]);
    const [r, , b] = meanColour(data);
    assert.ok(b > 200 && r < 50, `frame at 3 s is ${r},_,${b}`);
    await assert.rejects(frameAt(file, 60, VIDEO_SETTINGS), rejectsWith("not_found"));
  });

  test("withTemporaryFile removes its file even when the use fails", async () => {
    let seen = "";
    await assert.rejects(
      withTemporaryFile(Buffer.from("x"), async (file) => {
        seen = file;
        assert.equal(readFileSync(file, "utf8"), "x");
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.throws(() => readFileSync(seen), /ENOENT/);
  });
});
