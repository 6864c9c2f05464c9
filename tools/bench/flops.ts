/**
 * Analytic FLOP counts of the CLIP towers (one multiply-add = 2 FLOPs), counting the matrix
 * products only: layer norms, softmax, GELU and additions are a few percent at these sizes.
 */

export interface VisionShape {
  resolution: number;
  patchSize: number;
  width: number;
  layers: number;
  embedDim: number;
}

export interface TextShape {
  width: number;
  layers: number;
  embedDim: number;
}

/** The ViT presets of training/model/clip.py (LongCLIP-B/L shapes). */
export const VISION_SHAPES: Record<string, VisionShape> = {
  "ViT-B/16": { resolution: 224, patchSize: 16, width: 768, layers: 12, embedDim: 512 },
  "ViT-L/14": { resolution: 224, patchSize: 14, width: 1024, layers: 24, embedDim: 768 },
};

export const TEXT_SHAPES: Record<string, TextShape> = {
  "ViT-B/16": { width: 512, layers: 12, embedDim: 512 },
  "ViT-L/14": { width: 768, layers: 12, embedDim: 768 },
};

/**
 * Multiply-adds of one transformer layer over `tokens` tokens of `width`: the QKV (3·T·D²) and
 * output (T·D²) projections, QKᵀ and attention·V (2·T²·D) and the 4×-wide MLP (8·T·D²).
 */
export function layerMacs(tokens: number, width: number): number {
  return 12 * tokens * width * width + 2 * tokens * tokens * width;
}

/** FLOPs of one image through the vision tower. */
export function visionFlops(shape: VisionShape): number {
  const grid = Math.floor(shape.resolution / shape.patchSize);
  const patches = grid * grid;
  const tokens = patches + 1;
  const patchEmbed = patches * 3 * shape.patchSize * shape.patchSize * shape.width;
  const projection = shape.width * shape.embedDim;
  return 2 * (patchEmbed + shape.layers * layerMacs(tokens, shape.width) + projection);
}

/** FLOPs of one text row of `tokens` tokens (the causal mask does not skip work in ONNX). */
export function textFlops(shape: TextShape, tokens: number): number {
  return 2 * (shape.layers * layerMacs(tokens, shape.width) + shape.width * shape.embedDim);
}
