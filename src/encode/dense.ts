/** The error of a model without the vision tower's dense output (vision.dense). */
import { AppError } from "../core/errors.ts";

/** What a model without the dense output answers a request for patch embeddings with. */
export function denseOutputMissing(modelId: string): AppError {
  return new AppError(
    "dense_output_missing",
    `The model ${modelId} has no patch output (vision.dense in its config.json), which heat maps need; re-export it with \`longclip export --dense value\` (or \`python3 -m training export --dense value\`).`,
  );
}
