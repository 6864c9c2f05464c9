/**
 * The model bench:scale serves HTTP `/search` with: the demo model (models/demo, 64-d) with a
 * fixed linear map into `dims` dimensions appended to both towers, so a text query runs the
 * demo's real tokenizer and text tower and lands in the benchmark's vector space. The map has
 * orthonormal rows (seeded Gram-Schmidt), so it keeps the demo's cosines; its queries lie in a
 * 64-d subspace of the `dims`-d space, away from the benchmark's clusters, which makes them
 * a latency probe, not a recall one (recall is measured through the storage seam).
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import path from "node:path";
import onnxProto from "onnx-proto";
import { PROJECT_ROOT } from "../../src/core/settings.ts";
import { seededGaussian } from "./vectors.ts";

const { onnx } = onnxProto;

export interface BenchModel {
  dir: string;
  modelId: string;
}

/** `rows` orthonormal rows of `cols` entries (rows <= cols), row-major. */
function orthonormalRows(rows: number, cols: number, seed: number): Float32Array {
  const gaussian = seededGaussian(seed);
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const row = out.subarray(r * cols, (r + 1) * cols);
    for (let j = 0; j < cols; j++) row[j] = gaussian();
    for (let p = 0; p < r; p++) {
      const prev = out.subarray(p * cols, (p + 1) * cols);
      let dot = 0;
      for (let j = 0; j < cols; j++) dot += (row[j] as number) * (prev[j] as number);
      for (let j = 0; j < cols; j++) row[j] = (row[j] as number) - dot * (prev[j] as number);
    }
    let norm = 0;
    for (let j = 0; j < cols; j++) norm += (row[j] as number) ** 2;
    norm = Math.sqrt(norm);
    for (let j = 0; j < cols; j++) row[j] = (row[j] as number) / norm;
  }
  return Float32Array.from(out);
}

/** Rewrites one tower: its output goes through MatMul with `projection` ([from, dims]). */
function projectTower(
  source: string,
  target: string,
  output: string,
  projection: Float32Array,
  from: number,
  dims: number,
) {
  const model = onnx.ModelProto.decode(readFileSync(source));
  const graph = model.graph as onnxProto.onnx.GraphProto;
  const inner = `${output}_before_bench_projection`;
  for (const node of graph.node) {
    node.output = (node.output ?? []).map((name) => (name === output ? inner : name));
  }
  graph.initializer.push(
    onnx.TensorProto.create({
      name: "bench_projection",
      dims: [from, dims],
      dataType: onnx.TensorProto.DataType.FLOAT,
      rawData: new Uint8Array(projection.buffer, projection.byteOffset, projection.byteLength),
    }),
  );
  graph.node.push(
    onnx.NodeProto.create({
      opType: "MatMul",
      input: [inner, "bench_projection"],
      output: [output],
      name: "bench_projection_matmul",
    }),
  );
  const shape = graph.output[0]?.type?.tensorType?.shape?.dim;
  const last = shape?.[shape.length - 1];
  if (last !== undefined) last.dimValue = dims;
  writeFileSync(target, onnx.ModelProto.encode(model).finish());
}

/** The projected demo model for `dims` dimensions, written once under `cacheDir`. */
export function projectedDemoModel(cacheDir: string, dims: number): BenchModel {
  const modelId = `bench-demo-${dims}`;
  const dir = path.join(cacheDir, "models", modelId);
  if (existsSync(path.join(dir, "config.json"))) return { dir, modelId };
  const demo = path.join(PROJECT_ROOT, "models", "demo");
  const config = JSON.parse(readFileSync(path.join(demo, "config.json"), "utf8"));
  const from = config.embed_dim as number;
  const projection = orthonormalRows(from, dims, 31);
  const partial = `${dir}.partial`;
  mkdirSync(partial, { recursive: true });
  for (const tower of ["text", "vision"] as const) {
    const entry = config[tower] as { file: string; output: string };
    projectTower(
      path.join(demo, entry.file),
      path.join(partial, entry.file),
      entry.output,
      projection,
      from,
      dims,
    );
  }
  copyFileSync(path.join(demo, config.tokenizer.file), path.join(partial, config.tokenizer.file));
  writeFileSync(
    path.join(partial, "config.json"),
    `${JSON.stringify({ ...config, model_id: modelId, name: modelId, embed_dim: dims }, null, 2)}\n`,
  );
  renameSync(partial, dir);
  return { dir, modelId };
}
