/**
 * The check an int8 or fp16 tower gets when it is opened. Its conversion was checked against
 * fp32 on the exporting machine's CPU, but the kernels that run it here may differ (a GPU's
 * fp16 ones above all). config.json carries the fp32 model's embedding of an input defined by
 * formula (training/export/quantize.py, device_check_inputs; docs/model-format.md); the tower's own
 * embedding of that input must reach the recorded cosine, or the model is refused.
 */
import { AppError } from "../core/errors.ts";
import type { ModelConfig } from "../model/format.ts";
import { cosine } from "../vector-index/exact.ts";
import type { EngineLogger } from "./session.ts";
import type { TensorData, TowerName, Towers } from "./towers.ts";

/** Pixels 1.5·sin(0.7·i) over the flat [1, 3, R, R] index; one row of ≤ 32 token ids. */
export function deviceCheckInput(tower: TowerName, config: ModelConfig): TensorData {
  if (tower === "vision") {
    const r = config.image_resolution;
    const data = new Float32Array(3 * r * r);
    for (let i = 0; i < data.length; i++) data[i] = 1.5 * Math.sin(0.7 * i);
    return { type: "float32", data, dims: [1, 3, r, r] };
  }
  const start = config.start_token_id;
  const length = Math.min(config.context_length, 32);
  const data = new BigInt64Array(length);
  data[0] = BigInt(start);
  for (let i = 1; i < length - 1; i++) data[i] = BigInt(((7919 * i) % (start - 1)) + 1);
  data[length - 1] = BigInt(config.end_token_id);
  return { type: "int64", data, dims: [1, length] };
}

/**
 * Runs each converted tower with a check entry on its device check input; throws
 * `model_invalid` below the recorded cosine, and logs the cosine it passes with.
 */
export async function checkConvertedTowers(
  towers: Towers,
  config: ModelConfig,
  modelDir: string,
  logger: EngineLogger,
): Promise<void> {
  for (const name of ["vision", "text"] as const) {
    const entry = config[name];
    const device = towers.devices[name];
    if (entry.precision === "fp32" || device === undefined) continue;
    if (entry.precision === "fp16" && device === "cpu") {
      logger.warn(
        `the ${name} tower is fp16, meant for --device cuda: on the CPU, ONNX Runtime converts it back to fp32 operator by operator, slower than the fp32 export`,
      );
    }
    if (entry.check === undefined) continue;
    const output = await towers.run(name, deviceCheckInput(name, config));
    const value = cosine(output.data as Float32Array, Float32Array.from(entry.check.embedding));
    if (!(value >= entry.check.min_cosine)) {
      throw new AppError(
        "model_invalid",
        `The ${entry.precision} ${name} tower of ${modelDir} gives cosine ${value.toFixed(4)} to its fp32 reference on ${device}, below ${entry.check.min_cosine}: its kernels on this device are not accurate enough. Use the fp32 export of this model (python3 -m training export without --${entry.precision}).`,
        { modelDir },
      );
    }
    logger.info(
      `${entry.precision} ${name} tower checked on ${device}: cosine ${value.toFixed(6)} to fp32 (≥ ${entry.check.min_cosine})`,
    );
  }
}
