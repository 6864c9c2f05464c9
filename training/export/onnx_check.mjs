// Runs ONNX models with onnxruntime-node for the export verification in exporter.py (there is
// no Python onnxruntime on the development machine).
// Usage: node training/export/onnx_check.mjs REQUEST.json
// REQUEST: {"threads": 2, "jobs": [{"model", "input", "dtype": "float32"|"int64", "shape",
//           "input_file", "output", "output_file"}]}
// Inputs and outputs are raw little-endian files; prints {"jobs": [{"output_shape"}]}.
import { readFileSync, writeFileSync } from "node:fs";

let ort;
try {
  ort = (await import("onnxruntime-node")).default;
} catch (error) {
  process.stderr.write(
    `onnxruntime-node is not installed (${error.message}); run "npm install" in the repository ` +
      "or pass --no-verify\n",
  );
  process.exit(3);
}

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const threads = request.threads ?? 2;
const sessions = new Map();
const results = [];
for (const job of request.jobs) {
  let session = sessions.get(job.model);
  if (!session) {
    session = await ort.InferenceSession.create(job.model, {
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
    });
    sessions.set(job.model, session);
  }
  const bytes = readFileSync(job.input_file);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const data = job.dtype === "int64" ? new BigInt64Array(buffer) : new Float32Array(buffer);
  const feeds = { [job.input]: new ort.Tensor(job.dtype, data, job.shape) };
  const output = (await session.run(feeds))[job.output];
  const values = output.data;
  writeFileSync(job.output_file, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
  results.push({ output_shape: output.dims });
}
process.stdout.write(`${JSON.stringify({ jobs: results })}\n`);
