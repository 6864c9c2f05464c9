/**
 * ONNX Runtime session creation: devices, the no-silent-fallback rule for CUDA, and the
 * serialising wrapper. Uses a one-node ONNX model written here (Identity), so it runs without
 * ../shared or an exported model.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import * as ort from "onnxruntime-node";
import { AppError } from "../src/core/errors.ts";
import {
  cpuOptions,
  cudaProviderLibrary,
  cudaUnavailableReason,
  openSession,
  ortBinaryDir,
  SerialSession,
} from "../src/encode/session.ts";

/** Protobuf wire format, just enough for an ONNX ModelProto with one Identity node. */
function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v > 0x7f) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
const field = (num: number, bytes: number[]): number[] => [
  ...varint((num << 3) | 2),
  ...varint(bytes.length),
  ...bytes,
];
const intField = (num: number, value: number): number[] => [...varint(num << 3), ...varint(value)];
const str = (s: string): number[] => [...Buffer.from(s, "utf8")];

function identityModel(): Buffer {
  const FLOAT = 1;
  const tensorType = (dims: number[][]) =>
    field(1, [
      ...intField(1, FLOAT),
      ...field(
        2,
        dims.flatMap((d) => field(1, d)),
      ),
    ]);
  const valueInfo = (name: string) =>
    field(1, str(name)).concat(field(2, tensorType([field(2, str("N")), intField(1, 4)])));
  const node = [...field(1, str("x")), ...field(2, str("y")), ...field(4, str("Identity"))];
  const graph = [
    ...field(1, node),
    ...field(2, str("g")),
    ...field(11, valueInfo("x")),
    ...field(12, valueInfo("y")),
  ];
  const opset = [...field(1, []), ...intField(2, 13)];
  return Buffer.from([...intField(1, 8), ...field(8, opset), ...field(7, graph)]);
}

let dir: string;
let modelPath: string;
const quiet = { info: () => {}, warn: () => {} };

before(() => {
  dir = mkdtempSync(path.join(tmpdir(), "encode-session-"));
  modelPath = path.join(dir, "identity.onnx");
  writeFileSync(modelPath, identityModel());
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe("openSession", () => {
  test("cpu runs the model with the requested thread count", async () => {
    for (const threads of [0, 1]) {
      const { session, device } = await openSession(modelPath, { device: "cpu", threads });
      assert.equal(device, "cpu");
      const x = new Float32Array([1, -2, 3, 4, 5, 6, 7, 8]);
      const out = await session.run({ x: new ort.Tensor("float32", x, [2, 4]) });
      assert.deepEqual(Array.from(out.y?.data as Float32Array), Array.from(x));
      await session.release();
    }
  });

  test("cpu sessions keep intra-op threads from spinning, through the binding's extra entries", async () => {
    const options = cpuOptions(2);
    assert.deepEqual(options.extra, { session: { intra_op: { allow_spinning: "0" } } });
    // The binding reads `extra` (it refuses a non-string value there) and hands each entry to
    // ONNX Runtime as a session config entry; a session with the engine's options runs.
    const numeric = { ...options, extra: { session: { intra_op: { allow_spinning: 0 } } } };
    await assert.rejects(ort.InferenceSession.create(modelPath, numeric), /must be a string/);
    const session = await ort.InferenceSession.create(modelPath, options);
    const x = new Float32Array([1, 2, 3, 4]);
    const out = await session.run({ x: new ort.Tensor("float32", x, [1, 4]) });
    assert.deepEqual(Array.from(out.y?.data as Float32Array), Array.from(x));
    await session.release();
  });

  const cudaMissing = cudaUnavailableReason() !== undefined;

  test("cuda is an error, not a CPU fallback, where the CUDA build is missing", {
    skip: cudaMissing ? false : "this host has the CUDA build of onnxruntime-node",
  }, async () => {
    const library = cudaProviderLibrary();
    if (library !== undefined) assert.equal(existsSync(library), false);
    await assert.rejects(
      openSession(modelPath, { device: "cuda", threads: 0, logger: quiet }),
      (error: unknown) => {
        assert.ok(error instanceof AppError);
        assert.equal(error.code, "cuda_unavailable");
        assert.match(error.message, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
        assert.match(error.message, /--device cpu/);
        return true;
      },
    );
  });

  test("auto falls back to the CPU where CUDA is missing and says so", {
    skip: cudaMissing ? false : "this host has the CUDA build of onnxruntime-node",
  }, async () => {
    const lines: string[] = [];
    const { session, device } = await openSession(modelPath, {
      device: "auto",
      threads: 1,
      logger: { info: (m) => lines.push(m), warn: (m) => lines.push(m) },
    });
    assert.equal(device, "cpu");
    assert.equal(lines.length, 1);
    assert.match(lines[0] as string, /runs on the CPU/);
    await session.release();
  });

  test("a file that is not ONNX is model_invalid", async () => {
    const bad = path.join(dir, "bad.onnx");
    writeFileSync(bad, "not a model");
    await assert.rejects(openSession(bad, { device: "cpu", threads: 0 }), {
      code: "model_invalid",
    });
  });

  test("the native library directory is where onnxruntime-node keeps its binding", () => {
    assert.ok(existsSync(path.join(ortBinaryDir(), "onnxruntime_binding.node")));
  });
});

describe("SerialSession", () => {
  test("concurrent runs all complete, in order, and close waits for them", async () => {
    const { session, device } = await openSession(modelPath, { device: "cpu", threads: 1 });
    const serial = new SerialSession(session, device);
    const runs = Array.from({ length: 20 }, (_, i) =>
      serial.run({ x: new ort.Tensor("float32", new Float32Array(4).fill(i), [1, 4]) }),
    );
    const closing = serial.close();
    const outs = await Promise.all(runs);
    await closing;
    outs.forEach((out, i) => {
      assert.deepEqual(Array.from(out.y?.data as Float32Array), [i, i, i, i]);
    });
    await assert.rejects(
      serial.run({ x: new ort.Tensor("float32", new Float32Array(4), [1, 4]) }),
      { code: "encoder_closed" },
    );
  });

  test("a failing run does not block the ones after it", async () => {
    const { session, device } = await openSession(modelPath, { device: "cpu", threads: 1 });
    const serial = new SerialSession(session, device);
    const bad = serial.run({ wrong: new ort.Tensor("float32", new Float32Array(4), [1, 4]) });
    const good = serial.run({ x: new ort.Tensor("float32", new Float32Array(4).fill(2), [1, 4]) });
    await assert.rejects(bad);
    assert.deepEqual(Array.from((await good).y?.data as Float32Array), [2, 2, 2, 2]);
    await serial.close();
  });
});
