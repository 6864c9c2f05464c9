/**
 * Videos in the pipeline: recognised by their bytes (./container.ts), probed and decoded by
 * ffmpeg child processes (./tool.ts, ./probe.ts, ./frames.ts), sampled at scene changes
 * (./scenes.ts); single frames for display (./still.ts). ffmpeg is Debian's package (or any
 * build given by LONGCLIP_FFMPEG): see docs/video.md for why not an npm binary.
 */
export {
  hasVideoExtension,
  VIDEO_CONTENT_TYPES,
  VIDEO_EXTENSIONS,
  type VideoContainer,
  videoContainer,
} from "./container.ts";
export {
  type DecodedVideo,
  decodeVideoFrames,
  frameSize,
  SAMPLE_FPS,
  type VideoFrame,
} from "./frames.ts";
export { probeVideo, type VideoProbe } from "./probe.ts";
export { frameAt, withTemporaryFile } from "./still.ts";
