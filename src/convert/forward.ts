/**
 * An independent forward pass of the CLIP towers in plain TypeScript, straight from the
 * official-layout weights (no ONNX, no graph): the reference the converter checks its ONNX
 * files against. Sums accumulate in float64. Weights are read one layer at a time.
 */
import { type ClipWeights, TEXT_PREFIX, VISION_PREFIX } from "./clip-spec.ts";

function dot(x: Float32Array, xo: number, weight: Float32Array, wo: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let k = 0;
  for (; k + 3 < n; k += 4) {
    s0 += (x[xo + k] as number) * (weight[wo + k] as number);
    s1 += (x[xo + k + 1] as number) * (weight[wo + k + 1] as number);
    s2 += (x[xo + k + 2] as number) * (weight[wo + k + 2] as number);
    s3 += (x[xo + k + 3] as number) * (weight[wo + k + 3] as number);
  }
  for (; k < n; k++) s0 += (x[xo + k] as number) * (weight[wo + k] as number);
  return s0 + s1 + s2 + s3;
}

/**
 * [rows, out] = x [rows, in] · W^T for W [out, in] (+ bias). Output-major, so each weight row
 * is read once and stays in cache while every input row meets it.
 */
function linearRows(
  x: Float32Array,
  rows: number,
  inDim: number,
  weight: Float32Array,
  outDim: number,
  bias?: Float32Array,
): Float32Array {
  const out = new Float32Array(rows * outDim);
  for (let o = 0; o < outDim; o++) {
    const wo = o * inDim;
    const b = bias ? (bias[o] as number) : 0;
    for (let r = 0; r < rows; r++) out[r * outDim + o] = dot(x, r * inDim, weight, wo, inDim) + b;
  }
  return out;
}

/** x [inDim] · P for P [inDim, outDim] (the two projections' layout). */
function project(x: Float32Array, projection: Float32Array, outDim: number): Float32Array {
  const out = new Float64Array(outDim);
  for (let k = 0; k < x.length; k++) {
    const value = x[k] as number;
    for (let o = 0; o < outDim; o++)
      out[o] = (out[o] as number) + value * (projection[k * outDim + o] as number);
  }
  return Float32Array.from(out);
}

function layerNorm(
  x: Float32Array,
  rows: number,
  dim: number,
  gamma: Float32Array,
  beta: Float32Array,
  eps: number,
) {
  const out = new Float32Array(x.length);
  for (let r = 0; r < rows; r++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[r * dim + i] as number;
    mean /= dim;
    let variance = 0;
    for (let i = 0; i < dim; i++) variance += ((x[r * dim + i] as number) - mean) ** 2;
    const scale = 1 / Math.sqrt(variance / dim + eps);
    for (let i = 0; i < dim; i++) {
      out[r * dim + i] =
        ((x[r * dim + i] as number) - mean) * scale * (gamma[i] as number) + (beta[i] as number);
    }
  }
  return out;
}

function activate(x: Float32Array, kind: ClipWeights["spec"]["activation"]): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i] as number;
    x[i] =
      kind === "quick_gelu" ? v / (1 + Math.exp(-1.702 * v)) : 0.5 * v * (1 + erf(v / Math.SQRT2));
  }
}

/** Abramowitz–Stegun 7.1.26 is too coarse for 1e-4; this series/continued fraction is not. */
function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 2.5) {
    let term = t;
    let sum = t;
    for (let n = 1; n < 60; n++) {
      term *= (-t * t) / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * sum * (2 / Math.sqrt(Math.PI));
  }
  let fraction = 0;
  for (let n = 60; n >= 1; n--) fraction = n / 2 / (t + fraction);
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + fraction);
  return Math.sign(x) * (1 - erfc);
}

/** Self-attention of `rows` tokens; causal masks each token to itself and earlier ones. */
function attention(qkv: Float32Array, rows: number, width: number, heads: number, causal: boolean) {
  const head = width / heads;
  const scale = 1 / Math.sqrt(head);
  const out = new Float32Array(rows * width);
  const scores = new Float64Array(rows);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < rows; i++) {
      const last = causal ? i : rows - 1;
      let max = Number.NEGATIVE_INFINITY;
      for (let j = 0; j <= last; j++) {
        let dot = 0;
        for (let d = 0; d < head; d++) {
          dot +=
            (qkv[i * 3 * width + h * head + d] as number) *
            (qkv[j * 3 * width + width + h * head + d] as number);
        }
        scores[j] = dot * scale;
        max = Math.max(max, scores[j] as number);
      }
      let total = 0;
      for (let j = 0; j <= last; j++) {
        scores[j] = Math.exp((scores[j] as number) - max);
        total += scores[j] as number;
      }
      for (let d = 0; d < head; d++) {
        let sum = 0;
        for (let j = 0; j <= last; j++) {
          sum += (scores[j] as number) * (qkv[j * 3 * width + 2 * width + h * head + d] as number);
        }
        out[i * width + h * head + d] = sum / total;
      }
    }
  }
  return out;
}

async function transformer(
  weights: ClipWeights,
  x: Float32Array,
  rows: number,
  tower: {
    prefix: string;
    layers: number;
    width: number;
    heads: number;
    eps: number;
    causal: boolean;
  },
): Promise<Float32Array> {
  const { prefix, width, eps } = tower;
  const read = (name: string) => weights.read(name);
  const state = x;
  for (let layer = 0; layer < tower.layers; layer++) {
    const p = `${prefix}.${layer}`;
    const normed = layerNorm(
      state,
      rows,
      width,
      await read(`${p}.ln_1.weight`),
      await read(`${p}.ln_1.bias`),
      eps,
    );
    const qkv = linearRows(
      normed,
      rows,
      width,
      await read(`${p}.attn.in_proj_weight`),
      3 * width,
      await read(`${p}.attn.in_proj_bias`),
    );
    const attended = attention(qkv, rows, width, tower.heads, tower.causal);
    const projected = linearRows(
      attended,
      rows,
      width,
      await read(`${p}.attn.out_proj.weight`),
      width,
      await read(`${p}.attn.out_proj.bias`),
    );
    for (let i = 0; i < state.length; i++)
      state[i] = (state[i] as number) + (projected[i] as number);
    const normed2 = layerNorm(
      state,
      rows,
      width,
      await read(`${p}.ln_2.weight`),
      await read(`${p}.ln_2.bias`),
      eps,
    );
    const hidden = linearRows(
      normed2,
      rows,
      width,
      await read(`${p}.mlp.c_fc.weight`),
      4 * width,
      await read(`${p}.mlp.c_fc.bias`),
    );
    activate(hidden, weights.spec.activation);
    const mlp = linearRows(
      hidden,
      rows,
      4 * width,
      await read(`${p}.mlp.c_proj.weight`),
      width,
      await read(`${p}.mlp.c_proj.bias`),
    );
    for (let i = 0; i < state.length; i++) state[i] = (state[i] as number) + (mlp[i] as number);
  }
  return state;
}

/** The unnormalised image embedding of one normalised [3, R, R] image. */
export async function forwardImage(
  weights: ClipWeights,
  pixels: Float32Array,
): Promise<Float32Array> {
  const spec = weights.spec;
  const res = spec.imageResolution;
  const patch = spec.patchSize;
  const grid = res / patch;
  const width = spec.visionWidth;
  const patchValues = 3 * patch * patch;
  // rows of [channel, dy, dx] values, one per patch, in the conv weight's order
  const patches = new Float32Array(grid * grid * patchValues);
  for (let gy = 0; gy < grid; gy++) {
    for (let gx = 0; gx < grid; gx++) {
      const row = (gy * grid + gx) * patchValues;
      for (let c = 0; c < 3; c++) {
        for (let dy = 0; dy < patch; dy++) {
          for (let dx = 0; dx < patch; dx++) {
            patches[row + (c * patch + dy) * patch + dx] = pixels[
              c * res * res + (gy * patch + dy) * res + gx * patch + dx
            ] as number;
          }
        }
      }
    }
  }
  const embedded = linearRows(
    patches,
    grid * grid,
    patchValues,
    await weights.read("visual.conv1.weight"),
    width,
  );
  const tokens = grid * grid + 1;
  const x = new Float32Array(tokens * width);
  x.set(await weights.read("visual.class_embedding"), 0);
  x.set(embedded, width);
  const positions = await weights.read("visual.positional_embedding");
  for (let i = 0; i < x.length; i++) x[i] = (x[i] as number) + (positions[i] as number);
  const eps = spec.visionLayerNormEps;
  const pre = layerNorm(
    x,
    tokens,
    width,
    await weights.read("visual.ln_pre.weight"),
    await weights.read("visual.ln_pre.bias"),
    eps,
  );
  const tower = {
    prefix: VISION_PREFIX,
    layers: spec.visionLayers,
    width,
    heads: spec.visionHeads,
    eps,
    causal: false,
  };
  const out = await transformer(weights, pre, tokens, tower);
  const pooled = layerNorm(
    out.subarray(0, width),
    1,
    width,
    await weights.read("visual.ln_post.weight"),
    await weights.read("visual.ln_post.bias"),
    eps,
  );
  return project(pooled, await weights.read("visual.proj"), spec.embedDim);
}

/** The unnormalised text embedding of one row of ids (pooled at the first highest id). */
export async function forwardText(
  weights: ClipWeights,
  ids: readonly number[],
): Promise<Float32Array> {
  const spec = weights.spec;
  const width = spec.textWidth;
  let end = 0;
  ids.forEach((id, i) => {
    if (id > (ids[end] as number)) end = i;
  });
  // causal: tokens after the end token cannot change it
  const rows = end + 1;
  const table = await weights.read("token_embedding.weight");
  const positions = await weights.read("text_positions");
  const x = new Float32Array(rows * width);
  for (let i = 0; i < rows; i++) {
    for (let d = 0; d < width; d++) {
      x[i * width + d] =
        (table[(ids[i] as number) * width + d] as number) + (positions[i * width + d] as number);
    }
  }
  const eps = spec.textLayerNormEps;
  const tower = {
    prefix: TEXT_PREFIX,
    layers: spec.textLayers,
    width,
    heads: spec.textHeads,
    eps,
    causal: true,
  };
  const out = await transformer(weights, x, rows, tower);
  const last = out.subarray(end * width, rows * width);
  const pooled = layerNorm(
    last,
    1,
    width,
    await weights.read("ln_final.weight"),
    await weights.read("ln_final.bias"),
    eps,
  );
  return project(pooled, await weights.read("text_projection"), spec.embedDim);
}
