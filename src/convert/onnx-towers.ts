/**
 * The two ONNX towers of docs/model-format.md, built from a CLIP spec and its weights:
 * vision.onnx (pixel_values [N,3,R,R] -> image_embeds [N,D]) and text.onnx (input_ids [N,L],
 * L dynamic up to the context -> text_embeds [N,D], pooled at the first highest id), both
 * unnormalised, opset 17, the same inputs and outputs as the Python exporter's. The vision
 * tower may add the dense output `patch_embeds` [N, g*g, D] (docs/model-format.md, vision.dense):
 * the last block's value path ("value", MaskCLIP) or its patch tokens ("final"), through ln_post
 * and the projection like the pooled token, which stays the same node for node.
 */

import type { DenseKind, DenseOutput } from "../model/format.ts";
import {
  type ClipSpec,
  type ClipWeights,
  canonicalShapes,
  TEXT_PREFIX,
  VISION_PREFIX,
} from "./clip-spec.ts";
import { GraphBuilder, TransformerBuilder } from "./onnx-graph.ts";
import { type GraphDefinition, valueInfo } from "./onnx-writer.ts";

export const OPSET = 17;
export const VISION_INPUT = "pixel_values";
export const VISION_OUTPUT = "image_embeds";
/** The vision tower's optional dense output (the Python exporter's DENSE_OUTPUT). */
export const DENSE_OUTPUT = "patch_embeds";
export const TEXT_INPUT = "input_ids";
export const TEXT_OUTPUT = "text_embeds";

function towerBuilder(weights: ClipWeights, eps: number) {
  const graph = new GraphBuilder();
  const shapes = canonicalShapes(weights.spec);
  return {
    graph,
    tower: new TransformerBuilder(graph, weights, shapes, weights.spec.activation, eps),
  };
}

/** config.json's `vision.dense` entry for a tower exported with `dense`. */
export function denseEntry(spec: ClipSpec, dense: DenseKind): DenseOutput {
  const side = spec.imageResolution / spec.patchSize;
  return { output: DENSE_OUTPUT, kind: dense, grid: [side, side] };
}

export function visionGraph(
  weights: ClipWeights,
  producerVersion: string,
  dense?: DenseKind,
): GraphDefinition {
  const spec: ClipSpec = weights.spec;
  const { graph: g, tower } = towerBuilder(weights, spec.visionLayerNormEps);
  const width = spec.visionWidth;
  const patches = g.op("Conv", [VISION_INPUT, tower.param("visual.conv1.weight")], {
    kernel_shape: { ints: [spec.patchSize, spec.patchSize] },
    strides: { ints: [spec.patchSize, spec.patchSize] },
  });
  // [N, W, g, g] -> [N, g*g, W]
  const tokens = g.op("Transpose", [g.op("Reshape", [patches, g.int64s([0, width, -1])])], {
    perm: { ints: [0, 2, 1] },
  });
  const batch = g.op("Slice", [g.op("Shape", [VISION_INPUT]), g.int64s([0]), g.int64s([1])]);
  const classShape = g.op("Concat", [batch, g.int64s([1, width])], { axis: { int: 0 } });
  const classToken = g.op("Expand", [
    g.op("Reshape", [tower.param("visual.class_embedding"), g.int64s([1, 1, width])]),
    classShape,
  ]);
  let x = g.op("Concat", [classToken, tokens], { axis: { int: 1 } });
  x = g.op("Add", [x, tower.param("visual.positional_embedding")]);
  x = tower.layerNorm(x, "visual.ln_pre");
  const last = spec.visionLayers - 1;
  x = tower.blocks(x, VISION_PREFIX, last, width, spec.visionHeads);
  const beforeLast = x;
  x = tower.block(x, `${VISION_PREFIX}.${last}`, width, spec.visionHeads);
  const pooled = g.op("Squeeze", [
    g.op("Gather", [x, g.int64s([0])], { axis: { int: 1 } }),
    g.int64s([1]),
  ]);
  g.op("MatMul", [tower.layerNorm(pooled, "visual.ln_post"), tower.param("visual.proj")]);
  g.nameLastOutput(VISION_OUTPUT);
  const res = spec.imageResolution;
  const outputs = [valueInfo(VISION_OUTPUT, "float", ["batch", spec.embedDim])];
  if (dense) {
    const tokens =
      dense === "final" ? x : tower.valuePath(beforeLast, `${VISION_PREFIX}.${last}`, width);
    // drop the class token: [N, 1 + g*g, W] -> [N, g*g, W]
    const patchTokens = g.op("Slice", [tokens, g.int64s([1]), g.int64s([2 ** 62]), g.int64s([1])]);
    g.op("MatMul", [tower.layerNorm(patchTokens, "visual.ln_post"), tower.param("visual.proj")]);
    g.nameLastOutput(DENSE_OUTPUT);
    const patches = (res / spec.patchSize) ** 2;
    outputs.push(valueInfo(DENSE_OUTPUT, "float", ["batch", patches, spec.embedDim]));
  }
  return {
    name: "vision",
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(VISION_INPUT, "float", ["batch", 3, res, res])],
    outputs,
    opset: OPSET,
    producerVersion,
  };
}

/** The causal mask: 0 on and below the diagonal, -inf above. */
function causalMask(context: number): Float32Array {
  const mask = new Float32Array(context * context);
  for (let row = 0; row < context; row++) {
    mask.fill(Number.NEGATIVE_INFINITY, row * context + row + 1, (row + 1) * context);
  }
  return mask;
}

export function textGraph(weights: ClipWeights, producerVersion: string): GraphDefinition {
  const spec: ClipSpec = weights.spec;
  const { graph: g, tower } = towerBuilder(weights, spec.textLayerNormEps);
  const context = spec.contextLength;
  const length = g.op("Slice", [g.op("Shape", [TEXT_INPUT]), g.int64s([1]), g.int64s([2])]);
  const tokens = g.op("Gather", [tower.param("token_embedding.weight"), TEXT_INPUT], {
    axis: { int: 0 },
  });
  const positions = g.op("Slice", [
    tower.param("text_positions"),
    g.int64s([0]),
    length,
    g.int64s([0]),
  ]);
  let x = g.op("Add", [tokens, positions]);
  const fullMask = g.weight("causal_mask", [context, context], async () => causalMask(context));
  const mask = g.op("Slice", [
    fullMask,
    g.int64s([0, 0]),
    g.op("Concat", [length, length], { axis: { int: 0 } }),
    g.int64s([0, 1]),
  ]);
  x = tower.blocks(x, TEXT_PREFIX, spec.textLayers, spec.textWidth, spec.textHeads, mask);
  x = tower.layerNorm(x, "ln_final");
  // the end token is the highest id; ArgMax picks its first position (ids are exact in float32)
  const ids = g.op("Cast", [TEXT_INPUT], { to: { int: 1 } });
  const end = g.op("ArgMax", [ids], { axis: { int: 1 }, keepdims: { int: 1 } });
  const pooled = g.op("GatherND", [x, end], { batch_dims: { int: 1 } });
  g.op("MatMul", [pooled, tower.param("text_projection")]);
  g.nameLastOutput(TEXT_OUTPUT);
  return {
    name: "text",
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [valueInfo(TEXT_INPUT, "int64", ["batch", "sequence"])],
    outputs: [valueInfo(TEXT_OUTPUT, "float", ["batch", spec.embedDim])],
    opset: OPSET,
    producerVersion,
  };
}
