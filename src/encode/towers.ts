/**
 * The two ONNX towers of a model directory, opened together on one device. `openTowers` runs
 * them in this thread; `WorkerTowers` (worker-towers.ts) runs the same code in a worker thread.
 */
import * as ort from "onnxruntime-node";
import type { Device } from "../config.ts";
import { AppError } from "../errors.ts";
import { type EngineLogger, openSession, type ResolvedDevice, SerialSession } from "./session.ts";

export type TowerName = "vision" | "text";

/** A dense tensor as plain typed-array data, so it can cross a thread boundary. */
export type TensorData =
  | { type: "float32"; data: Float32Array; dims: number[] }
  | { type: "int64"; data: BigInt64Array; dims: number[] };

export interface TowerSpec {
  /** Absolute path of the .onnx file. */
  path: string;
  input: string;
  output: string;
}

export interface TowersSpec {
  vision: TowerSpec;
  text: TowerSpec;
  device: Device;
  threads: number;
}

export interface Towers {
  /** Where the towers run after `auto` resolved. */
  readonly device: ResolvedDevice;
  run(tower: TowerName, input: TensorData): Promise<TensorData>;
  close(): Promise<void>;
}

function checkNames(tower: TowerName, spec: TowerSpec, session: SerialSession): void {
  if (!session.inputNames.includes(spec.input) || !session.outputNames.includes(spec.output)) {
    throw new AppError(
      "model_invalid",
      `${tower} tower ${spec.path}: config.json names input "${spec.input}" and output "${spec.output}", the ONNX file has inputs [${session.inputNames.join(", ")}] and outputs [${session.outputNames.join(", ")}]. Re-export the model.`,
      500,
    );
  }
}

class InProcessTowers implements Towers {
  constructor(
    private readonly spec: TowersSpec,
    private readonly sessions: Record<TowerName, SerialSession>,
  ) {}

  get device(): ResolvedDevice {
    return this.sessions.vision.device;
  }

  async run(tower: TowerName, input: TensorData): Promise<TensorData> {
    const { input: inputName, output: outputName } = this.spec[tower];
    const tensor =
      input.type === "int64"
        ? new ort.Tensor("int64", input.data, input.dims)
        : new ort.Tensor("float32", input.data, input.dims);
    const outputs = await this.sessions[tower].run({ [inputName]: tensor });
    const output = outputs[outputName];
    if (output === undefined || output.type !== "float32") {
      throw new AppError(
        "model_invalid",
        `${tower} tower ${this.spec[tower].path} returned no float32 "${outputName}". Re-export the model.`,
        500,
      );
    }
    return { type: "float32", data: output.data as Float32Array, dims: [...output.dims] };
  }

  async close(): Promise<void> {
    await Promise.all([this.sessions.vision.close(), this.sessions.text.close()]);
  }
}

/** Opens both towers in this thread; with `auto`, the text tower follows the vision tower's device. */
export async function openTowers(spec: TowersSpec, logger?: EngineLogger): Promise<Towers> {
  const options = { device: spec.device, threads: spec.threads, ...(logger ? { logger } : {}) };
  const vision = await openSession(spec.vision.path, options);
  let text: Awaited<ReturnType<typeof openSession>>;
  try {
    text = await openSession(spec.text.path, {
      ...options,
      device: spec.device === "auto" ? vision.device : spec.device,
    });
  } catch (error) {
    await vision.session.release();
    throw error;
  }
  const sessions = {
    vision: new SerialSession(vision.session, vision.device),
    text: new SerialSession(text.session, text.device),
  };
  try {
    checkNames("vision", spec.vision, sessions.vision);
    checkNames("text", spec.text, sessions.text);
  } catch (error) {
    await Promise.all([sessions.vision.close(), sessions.text.close()]);
    throw error;
  }
  return new InProcessTowers(spec, sessions);
}
