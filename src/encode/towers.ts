/**
 * The ONNX towers of a model directory. `openTowers` opens some of them in this thread;
 * `WorkerTowers` (worker-towers.ts) runs the same code in a worker thread; `joinTowers` puts
 * towers opened in different threads behind one `Towers`, routing each call by tower name.
 */
import * as ort from "onnxruntime-node";
import { AppError } from "../core/errors.ts";
import type { Device } from "../core/settings.ts";
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
  /** Intra-op threads of this tower's session; 0 lets ONNX Runtime choose. */
  threads: number;
}

/** Which towers one thread opens, all on `device` (`auto` resolves per tower). */
export interface TowersSpec {
  device: Device;
  towers: Partial<Record<TowerName, TowerSpec>>;
}

/** Where each opened tower runs, after `auto` resolved. */
export type TowerDevices = Partial<Record<TowerName, ResolvedDevice>>;

export interface Towers {
  readonly devices: TowerDevices;
  /** Runs a tower; `output` names the output fetched (default: the embedding, spec.output). */
  run(tower: TowerName, input: TensorData, output?: string): Promise<TensorData>;
  close(): Promise<void>;
}

export function towerNames(spec: TowersSpec): TowerName[] {
  return (["vision", "text"] as const).filter((name) => spec.towers[name] !== undefined);
}

export function notOpened(tower: TowerName): AppError {
  return new AppError(
    "encoder_failed",
    `The ${tower} tower was not opened by this encoder; this is a bug, please report it.`,
  );
}

function checkNames(tower: TowerName, spec: TowerSpec, session: SerialSession): void {
  if (!session.inputNames.includes(spec.input) || !session.outputNames.includes(spec.output)) {
    throw new AppError(
      "model_invalid",
      `${tower} tower ${spec.path}: config.json names input "${spec.input}" and output "${spec.output}", the ONNX file has inputs [${session.inputNames.join(", ")}] and outputs [${session.outputNames.join(", ")}]. Re-export the model.`,
    );
  }
}

interface OpenTower {
  spec: TowerSpec;
  session: SerialSession;
}

class InProcessTowers implements Towers {
  readonly devices: TowerDevices = {};

  constructor(private readonly opened: Partial<Record<TowerName, OpenTower>>) {
    for (const [name, tower] of Object.entries(opened)) {
      this.devices[name as TowerName] = tower.session.device;
    }
  }

  async run(tower: TowerName, input: TensorData, output?: string): Promise<TensorData> {
    const opened = this.opened[tower];
    if (opened === undefined) throw notOpened(tower);
    const { input: inputName, path } = opened.spec;
    const outputName = output ?? opened.spec.output;
    const tensor =
      input.type === "int64"
        ? new ort.Tensor("int64", input.data, input.dims)
        : new ort.Tensor("float32", input.data, input.dims);
    // The embedding alone by default (a dense output, patch_embeds, is not copied out). Another
    // output is fetched with all of them: onnxruntime-node 1.23 names the fetched tensors by
    // the session's output order, so fetching only the second output returns it under the
    // first one's name (test/api-explain.test.ts runs into it).
    const outputs = await opened.session.run(
      { [inputName]: tensor },
      outputName === opened.spec.output ? [outputName] : undefined,
    );
    const fetched = outputs[outputName];
    if (fetched === undefined || fetched.type !== "float32") {
      throw new AppError(
        "model_invalid",
        `${tower} tower ${path} returned no float32 "${outputName}". Re-export the model.`,
      );
    }
    return { type: "float32", data: fetched.data as Float32Array, dims: [...fetched.dims] };
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.opened).map((tower) => tower.session.close()));
  }
}

/** Opens the towers of `spec` in this thread, one after another; each resolves `auto` itself. */
export async function openTowers(spec: TowersSpec, logger?: EngineLogger): Promise<Towers> {
  const opened: Partial<Record<TowerName, OpenTower>> = {};
  try {
    for (const name of towerNames(spec)) {
      const tower = spec.towers[name] as TowerSpec;
      const { session, device } = await openSession(tower.path, {
        device: spec.device,
        threads: tower.threads,
        ...(logger ? { logger } : {}),
      });
      opened[name] = { spec: tower, session: new SerialSession(session, device) };
      checkNames(name, tower, opened[name].session);
    }
  } catch (error) {
    await Promise.all(Object.values(opened).map((tower) => tower.session.close()));
    throw error;
  }
  return new InProcessTowers(opened);
}

/**
 * Joins groups of towers being opened at once (e.g. one worker each). If any group fails, the
 * others are closed and the first failure, in the order given, is thrown.
 */
export async function openJoined(openings: readonly Promise<Towers>[]): Promise<Towers> {
  const results = await Promise.allSettled(openings);
  const failed = results.find((r) => r.status === "rejected");
  if (failed !== undefined) {
    await Promise.all(
      results.map((r) => (r.status === "fulfilled" ? r.value.close().catch(() => {}) : undefined)),
    );
    throw failed.reason;
  }
  return joinTowers(results.map((r) => (r as PromiseFulfilledResult<Towers>).value));
}

/** One `Towers` over groups that open disjoint towers; close waits for every group. */
export function joinTowers(groups: readonly Towers[]): Towers {
  const route = new Map<TowerName, Towers>();
  const devices: TowerDevices = {};
  for (const group of groups) {
    for (const [name, device] of Object.entries(group.devices)) {
      route.set(name as TowerName, group);
      devices[name as TowerName] = device;
    }
  }
  return {
    devices,
    run: (tower, input, output) =>
      route.get(tower)?.run(tower, input, output) ?? Promise.reject(notOpened(tower)),
    close: async () => {
      const results = await Promise.allSettled(groups.map((group) => group.close()));
      const failed = results.find((r) => r.status === "rejected");
      if (failed !== undefined) throw failed.reason;
    },
  };
}
