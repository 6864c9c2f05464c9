/**
 * Which frames of a video to embed, chosen as the decoded frames stream past (nothing but the
 * chosen ones and the latest frame is held). A frame is compared with the one before by a 16×16
 * colour thumbnail (mean absolute difference, 0 to 1); a difference over the threshold starts a
 * new scene, whose frame is taken once the picture has settled (a fade or a camera move has
 * passed), so it shows the scene rather than a blend of two. Between scene changes a frame is
 * taken every `maxIntervalS`; no two are closer than `minIntervalS`. Past `maxFrames` the
 * least telling frame goes: an evenly spaced one first, then the scene change with the
 * smallest difference.
 */

export const SIGNATURE_SIDE = 16;

export interface SceneOptions {
  threshold: number;
  minIntervalS: number;
  maxIntervalS: number;
  maxFrames: number;
}

/** A frame kept for embedding. */
export interface KeptFrame<F> {
  t: number;
  frame: F;
  /** How strongly it starts a scene (the difference that triggered it); 0 for an interval frame. */
  score: number;
}

/** Block-averaged RGB thumbnail of a packed RGB frame, values 0..1. */
export function signature(rgb: Uint8Array, width: number, height: number): Float32Array {
  const side = SIGNATURE_SIDE;
  const out = new Float32Array(side * side * 3);
  for (let by = 0; by < side; by++) {
    const y0 = Math.floor((by * height) / side);
    const y1 = Math.max(y0 + 1, Math.floor(((by + 1) * height) / side));
    for (let bx = 0; bx < side; bx++) {
      const x0 = Math.floor((bx * width) / side);
      const x1 = Math.max(x0 + 1, Math.floor(((bx + 1) * width) / side));
      let r = 0;
      let g = 0;
      let b = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const i = (y * width + x) * 3;
          r += rgb[i] as number;
          g += rgb[i + 1] as number;
          b += rgb[i + 2] as number;
        }
      }
      const n = (y1 - y0) * (x1 - x0) * 255;
      const o = (by * side + bx) * 3;
      out[o] = r / n;
      out[o + 1] = g / n;
      out[o + 2] = b / n;
    }
  }
  return out;
}

export function difference(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs((a[i] as number) - (b[i] as number));
  return sum / a.length;
}

export class SceneSampler<F> {
  private readonly kept: KeptFrame<F>[] = [];
  private previous: Float32Array | undefined;
  private lastKeptT = Number.NEGATIVE_INFINITY;
  /** A scene change not yet given its frame: its strength and the last frame seen. */
  private pending: { score: number } | undefined;
  private latest: { t: number; frame: F } | undefined;

  constructor(
    private readonly options: SceneOptions,
    /** Makes a frame safe to keep (the decoder reuses its buffer); called for kept frames only. */
    private readonly copy: (frame: F) => F,
  ) {}

  /** Takes the next decoded frame, at `t` seconds, with its signature. */
  push(t: number, sig: Float32Array, frame: F): void {
    const copy = this.copy;
    const { threshold, minIntervalS, maxIntervalS } = this.options;
    const change = this.previous === undefined ? 1 : difference(sig, this.previous);
    this.previous = sig;
    if (change >= threshold) {
      // A cut, or the next step of a fade: the scene's frame waits until the picture settles.
      this.pending = { score: Math.max(this.pending?.score ?? 0, change) };
    }
    const sinceKept = t - this.lastKeptT;
    if (this.pending !== undefined) {
      const settled = change < threshold / 2;
      if (settled && sinceKept >= minIntervalS) {
        this.keep({ t, frame: copy(frame), score: this.pending.score });
        this.pending = undefined;
      }
    } else if (sinceKept >= maxIntervalS) {
      this.keep({ t, frame: copy(frame), score: 0 });
    }
    this.latest = { t, frame };
  }

  /** The frames to embed, in time order. A scene still unsettled at the end gets its last frame. */
  finish(): KeptFrame<F>[] {
    const latest = this.latest;
    if (this.pending !== undefined && latest !== undefined) {
      if (latest.t - this.lastKeptT >= this.options.minIntervalS || this.kept.length === 0) {
        this.keep({ t: latest.t, frame: this.copy(latest.frame), score: this.pending.score });
      }
    }
    this.pending = undefined;
    return [...this.kept].sort((a, b) => a.t - b.t);
  }

  private keep(frame: KeptFrame<F>): void {
    this.kept.push(frame);
    this.lastKeptT = frame.t;
    if (this.kept.length <= this.options.maxFrames) return;
    // Over the cap: the weakest goes (interval frames score 0); among equals, the one whose
    // going leaves the shortest gap, so the kept frames stay spread over the video.
    const kept = this.kept;
    // The first and last frames bound the video's span: they go last.
    const gap = (i: number) =>
      (kept[i + 1]?.t ?? Number.POSITIVE_INFINITY) - (kept[i - 1]?.t ?? Number.NEGATIVE_INFINITY);
    let weakest = 0;
    for (let i = 1; i < kept.length; i++) {
      const a = (kept[i] as KeptFrame<F>).score;
      const b = (kept[weakest] as KeptFrame<F>).score;
      if (a < b || (a === b && gap(i) < gap(weakest))) weakest = i;
    }
    kept.splice(weakest, 1);
  }
}
