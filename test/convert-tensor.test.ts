/** Element types and views of stored tensors, against values worked out by hand. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { gatherStrided, stridedSpan, toFloat32, transposed } from "../src/convert/tensor.ts";
import { parseStateDictPickle } from "../src/convert/torch-pickle.ts";

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

test("fp16: normal, subnormal, signed zero, infinity and NaN bit patterns", () => {
  // 0x3c00 = 1, 0xc000 = -2, 0x0001 = 2^-24, 0x7bff = 65504, 0x8000 = -0, 0x7c00 = inf, 0x7e00 = NaN
  const out = toFloat32(
    bytes(0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x7b, 0x00, 0x80, 0x00, 0x7c, 0x00, 0x7e),
    "float16",
    7,
  );
  assert.deepEqual(Array.from(out.subarray(0, 4)), [1, -2, 2 ** -24, 65504]);
  assert.ok(Object.is(out[4], -0));
  assert.equal(out[5], Number.POSITIVE_INFINITY);
  assert.ok(Number.isNaN(out[6]));
});

test("bf16 is the high half of a float32; fp64 and int64 convert", () => {
  // bf16 0x3fc0 = 1.5, 0xc100 = -8
  assert.deepEqual(Array.from(toFloat32(bytes(0xc0, 0x3f, 0x00, 0xc1), "bfloat16", 2)), [1.5, -8]);
  const f64 = new Float64Array([0.1, -3]);
  assert.deepEqual(Array.from(toFloat32(new Uint8Array(f64.buffer), "float64", 2)), [
    Math.fround(0.1),
    -3,
  ]);
  const i64 = new BigInt64Array([224n, -1n]);
  assert.deepEqual(Array.from(toFloat32(new Uint8Array(i64.buffer), "int64", 2)), [224, -1]);
});

test("too few stored bytes is checkpoint_unreadable", () => {
  assert.throws(() => toFloat32(bytes(0, 0, 0), "float32", 1), { code: "checkpoint_unreadable" });
});

test("a transposed (non-contiguous) view is gathered in C order", () => {
  const storage = Float32Array.from([0, 1, 2, 3, 4, 5]); // [2, 3] row-major
  // its transpose [3, 2] as PyTorch stores a .t() view: same storage, strides [1, 3]
  assert.deepEqual(Array.from(gatherStrided(storage, [3, 2], [1, 3])), [0, 3, 1, 4, 2, 5]);
  assert.equal(stridedSpan([3, 2], [1, 3]), 6);
  assert.deepEqual(Array.from(transposed(storage, 2, 3)), [0, 3, 1, 4, 2, 5]);
});

test("a protocol-4 pickle naming builtins.eval through STACK_GLOBAL is refused", () => {
  // PROTO 4, SHORT_BINUNICODE 'builtins', 'eval', STACK_GLOBAL, '1+1', TUPLE1, REDUCE, STOP
  const pickle = Buffer.concat([
    bytes(0x80, 0x04, 0x8c, 8),
    Buffer.from("builtins"),
    bytes(0x8c, 4),
    Buffer.from("eval"),
    bytes(0x93, 0x8c, 3),
    Buffer.from("1+1"),
    bytes(0x85, 0x52, 0x2e),
  ]);
  assert.throws(() => parseStateDictPickle(pickle), {
    code: "checkpoint_unsafe",
    message: /builtins\.eval/,
  });
});
