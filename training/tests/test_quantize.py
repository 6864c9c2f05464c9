"""int8 towers (training/export/quantize.py): the graph rewrite, the weights, and the embeddings
through ONNX Runtime (the onnx_check.mjs path export uses) against fp32 and the reference
outputs."""

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.export import quantize
from training.__main__ import main
from training.export.onnx_run import model_id, run_onnx
from training.export.quantize import MIN_COSINE, cosines, quantize_model, quantize_weight

from .conftest import CLIP_VOCAB, TINY_DIR, needs_onnx_runtime, needs_shared


def _constant_matmuls(model):
    weights = {init.name: init for init in model.graph.initializer}
    return [
        (node, weights[node.input[1]])
        for node in model.graph.node
        if node.op_type == "MatMul"
        and node.input[1] in weights
        and weights[node.input[1]].data_type == TensorProto.FLOAT
        and len(weights[node.input[1]].dims) == 2
    ]


def _op_count(model, op_type):
    return sum(node.op_type == op_type for node in model.graph.node)


def test_weights_dequantise_within_half_a_step():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((96, 40)).astype(np.float32) * rng.uniform(0.01, 3, 40)
    weight[:, 7] = 0
    quantized, scale = quantize_weight(weight)
    assert quantized.dtype == np.int8 and scale.shape == (40,)
    error = np.abs(quantized.astype(np.float32) * scale - weight)
    assert (error <= scale / 2 + 1e-6 * np.abs(weight)).all()
    # 7-bit weights: a column's peak maps to 63 (it was 127 with 8-bit weights, see below)
    peaks = np.abs(quantized.astype(np.int32)).max(axis=0)
    assert (peaks[np.arange(40) != 7] == 63).all() and peaks[7] == 0


def test_no_pair_of_products_leaves_int16():
    """Without VNNI, ONNX Runtime's uint8 x int8 kernel (vpmaddubsw) adds each adjacent pair of
    products in a saturating int16: the weights must keep 255 * |w| * 2 within 32767."""
    rng = np.random.default_rng(2)
    weight = rng.standard_normal((256, 64)).astype(np.float32) * rng.uniform(0.01, 3, 64)
    quantized, _ = quantize_weight(weight)
    assert 2 * 255 * int(np.abs(quantized.astype(np.int32)).max()) <= np.iinfo(np.int16).max


def _matmul_graph(weight):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@needs_onnx_runtime
def test_onnx_runtime_computes_the_integer_products_exactly(tmp_path):
    """The worst case for a saturating kernel: activations that quantise to 255 and weights of
    one sign at their peak. ONNX Runtime's result must be the exact integer product, computed
    here with numpy from the same quantised values (DynamicQuantizeLinear replayed)."""
    rng = np.random.default_rng(3)
    weight = np.abs(rng.standard_normal((512, 48))).astype(np.float32)
    x = rng.uniform(0.5, 1.0, (6, 512)).astype(np.float32)
    model = _matmul_graph(weight)
    assert quantize_model(model) == 1
    path = tmp_path / "matmul.onnx"
    onnx.save(model, str(path))
    (got,) = run_onnx([(str(path), "x", x, "y")])
    w_q, w_scale = quantize_weight(weight)
    # DynamicQuantizeLinear: range widened to include 0, 255 steps, round half to even
    x_scale = np.float32((max(x.max(), 0) - min(x.min(), 0)) / np.float32(255))
    x_zero = np.clip(np.round(-min(x.min(), 0) / x_scale), 0, 255)
    x_q = np.clip(np.round(x / x_scale) + x_zero, 0, 255)
    exact = (x_q - x_zero).astype(np.int64) @ w_q.astype(np.int64)
    expected = exact.astype(np.float64) * x_scale * w_scale
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def _small_graph(weight, bias):
    """x [N, K] -> MatMul(x, W) -> + W[0] (a second use of W's initializer via Gather) -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Gather", ["w", "zero"], ["w0"], axis=0),
        helper.make_node("Add", ["h", "w0"], ["hb"]),
        helper.make_node("Add", ["hb", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weight.shape[1]])],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(bias, "b"),
            numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@needs_onnx_runtime
def test_small_graph_matches_numpy_and_keeps_a_shared_weight(tmp_path):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((64, 32)).astype(np.float32)
    bias = rng.standard_normal(32).astype(np.float32)
    model = _small_graph(weight, bias)
    assert quantize_model(model) == 1
    assert _op_count(model, "MatMul") == 0 and _op_count(model, "MatMulInteger") == 1
    assert "w" in {init.name for init in model.graph.initializer}
    path = tmp_path / "small.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((5, 64)).astype(np.float32)
    (got,) = run_onnx([(str(path), "x", x, "y")])
    expected = x @ weight + weight[0] + bias
    assert cosines(got, expected).min() > 0.999


@needs_shared
@needs_onnx_runtime
def test_vision_tower_rewrite(tiny_export):
    original = onnx.load(str(tiny_export / "vision.onnx"))
    matmuls = _constant_matmuls(original)
    model = onnx.load(str(tiny_export / "vision.onnx"))
    assert quantize_model(model) == len(matmuls) > 0
    assert _constant_matmuls(model) == []
    for op in ("DynamicQuantizeLinear", "MatMulInteger"):
        assert _op_count(model, op) == len(matmuls)
    assert _op_count(model, "MatMul") == _op_count(original, "MatMul") - len(matmuls)
    initializers = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for index, (_, weight) in enumerate(matmuls):
        values = numpy_helper.to_array(weight)
        quantized = initializers[f"int8_{index}_w"]
        scale = initializers[f"int8_{index}_wscale"]
        assert quantized.dtype == np.int8 and quantized.shape == values.shape
        error = np.abs(quantized.astype(np.float32) * scale - values)
        assert (error <= scale / 2 + 1e-6 * np.abs(values)).all()


def _reference_pixels(reference):
    return np.stack(
        [
            np.fromfile(TINY_DIR / image["pixels"], dtype="<f4").reshape(image["shape"])
            for image in reference["images"]
        ]
    )


@needs_shared
@needs_onnx_runtime
def test_quantize_command_writes_a_checked_int8_copy(tiny_export, reference, tmp_path, capsys):
    out = tmp_path / "tiny-int8"
    assert main(["quantize", "--model-dir", str(tiny_export), "--out", str(out)]) == 0
    assert f"threshold {MIN_COSINE}" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    fp32_config = json.loads((tiny_export / "config.json").read_text())
    assert config["vision"]["precision"] == "int8" and config["text"]["precision"] == "fp32"
    assert config["model_id"] == model_id("longclip-tiny", out) != fp32_config["model_id"]
    assert (out / "text.onnx").read_bytes() == (tiny_export / "text.onnx").read_bytes()
    assert (out / CLIP_VOCAB.name).is_file()
    pixels = _reference_pixels(reference)
    fp32, int8 = run_onnx(
        [
            (str(directory / "vision.onnx"), "pixel_values", pixels, "image_embeds")
            for directory in (tiny_export, out)
        ]
    )
    expected = np.array([image["embedding"] for image in reference["images"]], dtype=np.float32)
    to_fp32, to_reference = cosines(int8, fp32), cosines(int8, expected)
    print(f"int8 vision: min cosine {to_fp32.min():.5f} to fp32, {to_reference.min():.5f} to ref")
    assert to_fp32.min() >= MIN_COSINE and to_reference.min() >= MIN_COSINE

    assert main(["quantize", "--model-dir", str(out), "--out", str(tmp_path / "again")]) == 1
    assert "already int8" in capsys.readouterr().err


@needs_shared
@needs_onnx_runtime
def test_quantize_refuses_below_the_threshold(tiny_export, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quantize, "MIN_COSINE", 1.01)
    out = tmp_path / "refused"
    assert main(["quantize", "--model-dir", str(tiny_export), "--out", str(out)]) == 1
    assert "keep the fp32 tower" in capsys.readouterr().err
    assert not (out / "config.json").exists()


@needs_shared
@needs_onnx_runtime
def test_export_int8(tmp_path, capsys):
    out = tmp_path / "tiny-int8"
    args = ["export", "--checkpoint", str(TINY_DIR / "longclip-tiny.pt"), "--vocab"]
    assert main(args + [str(CLIP_VOCAB), "--out", str(out), "--int8"]) == 0
    log = capsys.readouterr().out
    assert "verified against PyTorch" in log and f"threshold {MIN_COSINE}" in log
    config = json.loads((out / "config.json").read_text())
    assert config["vision"]["precision"] == "int8" and config["text"]["precision"] == "fp32"
    assert not (out / "vision.int8.onnx").exists()
    vision = onnx.load(str(out / "vision.onnx"))
    assert _op_count(vision, "MatMulInteger") > 0 and _constant_matmuls(vision) == []


def test_bad_towers_argument(tmp_path, capsys):
    args = ["quantize", "--model-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--towers"]
    assert main(args + ["image"]) == 1
    assert "vision and/or text" in capsys.readouterr().err


def test_missing_model_says_to_export(tmp_path, capsys):
    assert main(["quantize", "--model-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "export a model first" in capsys.readouterr().err
