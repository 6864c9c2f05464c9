/**
 * The next model of a blue/green reindex, checked before any run starts: a directory that
 * cannot load, or whose config.json disagrees with its ONNX graphs (another embedding size,
 * another image resolution), is refused at once with `400 model_invalid` instead of failing
 * later in the background. A run that fails for its model is recorded as failed with its error
 * (./blue-green.ts) and never resumed by itself.
 */
import { AppError, errorOf, isAppError } from "../../core/errors.ts";
import type { Generation } from "./generation.ts";

/** An error of the next model itself (not of the store, not of one item): never retried. */
export class ModelFailure extends Error {
  constructor(readonly reason: unknown) {
    super(errorOf(reason).message);
  }
}

/** Marks what `work` throws as the model's failure. */
export async function asModelFailure<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw new ModelFailure(error);
  }
}

/**
 * One tiny run of each tower (a blank image at the config's resolution, a short text): each
 * must give `dims` finite values. Catches a config that disagrees with its graphs before a run
 * embeds anything (and before an image resolution the graph does not take is decoded for
 * every item).
 */
export async function checkAgainstGraphs(next: Generation): Promise<void> {
  const { embedder, options } = next;
  const side = options.resolution;
  const [image] = await embedder.embedPixels([new Float32Array(3 * side * side)]);
  const [text] = await embedder.embedTexts(["a photo"]);
  for (const [tower, output] of [
    ["vision", image],
    ["text", text?.embedding],
  ] as const) {
    if (output?.length !== embedder.dims || !output.every(Number.isFinite)) {
      throw new AppError(
        "model_invalid",
        `its ${tower} tower does not give ${embedder.dims} finite values for one input (config.json says embed_dim ${embedder.dims}): config.json and the ONNX graph disagree. Re-export the model.`,
      );
    }
  }
}

/**
 * `load` and check the model in `modelDir`; a failure is `400 model_invalid` (or
 * `404 model_not_found`), saying what is wrong with the directory.
 */
export async function loadCheckedModel(
  modelDir: string,
  load: (modelDir: string) => Promise<Generation>,
): Promise<Generation> {
  let next: Generation;
  try {
    next = await load(modelDir);
  } catch (error) {
    throw invalidModel(error);
  }
  try {
    await checkAgainstGraphs(next);
  } catch (error) {
    await next.embedder.close().catch(() => undefined);
    throw invalidModel(error);
  }
  return next;
}

function invalidModel(error: unknown): AppError {
  // A client's mistake stays as it is (no model there, or this library cannot load models).
  if (isAppError(error) && error.status < 500) return error;
  const { message } = isAppError(error)
    ? error
    : { message: (error as Error)?.message ?? String(error) };
  return new AppError(
    "model_invalid",
    `The next model cannot be used: ${message}`,
    isAppError(error) ? error.details : undefined,
    400,
  );
}
