"""fp16 towers (training/export/half.py): the graph rewrite, its float32 edges, and the embeddings
through ONNX Runtime against fp32 and against the official code's reference outputs; the
device check entry export and quantize write into config.json."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from training.__main__ import main
from training.export.half import FP16_MAX, halve_model, to_half
from training.export.onnx_run import run_onnx
from training.export.quantize import MIN_COSINE, cosines, device_check_inputs

from .conftest import CLIP_VOCAB, TINY_DIR, needs_onnx_runtime, needs_shared


def _float_initializers(model):
    return [init.name for init in model.graph.initializer if init.data_type == TensorProto.FLOAT]


def test_to_half_saturates_finite_values_and_keeps_infinities():
    values = np.array([1e6, -1e6, np.inf, -np.inf, 0.1, 65504], dtype=np.float32)
    half = to_half(values)
    assert half.dtype == np.float16
    assert half[0] == FP16_MAX and half[1] == -FP16_MAX
    assert np.isposinf(half[2]) and np.isneginf(half[3])
    assert abs(float(half[4]) - 0.1) < 1e-4 and half[5] == FP16_MAX


def _small_graph(weight, mask):
    """x [N, K] -> Softmax(x·W + mask + 0.5) -> Cast(int64 shape → float) scaling -> y."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["h", "mask"], ["hm"]),
        helper.make_node(
            "Constant",
            [],
            ["half"],
            value=numpy_helper.from_array(np.array(0.5, dtype=np.float32)),
        ),
        helper.make_node("Add", ["hm", "half"], ["hh"]),
        helper.make_node("Softmax", ["hh"], ["s"], axis=-1),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["shape_float"], ["widest"], keepdims=0),
        helper.make_node("Mul", ["s", "widest"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", weight.shape[1]])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(mask, "mask")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@needs_onnx_runtime
def test_small_graph_computes_in_fp16_with_float32_edges(tmp_path):
    rng = np.random.default_rng(2)
    weight = (rng.standard_normal((48, 16)) * 0.2).astype(np.float32)
    mask = np.zeros(16, dtype=np.float32)
    mask[3] = -np.inf
    model = _small_graph(weight, mask)
    assert halve_model(model) == 3  # two initializers and one Constant
    assert _float_initializers(model) == []
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    casts = [node for node in model.graph.node if node.op_type == "Cast"]
    assert [helper.get_attribute_value(node.attribute[0]) for node in casts] == [
        TensorProto.FLOAT16,  # the input
        TensorProto.FLOAT16,  # the graph's own Cast to float, now to fp16
        TensorProto.FLOAT,  # the output
    ]
    path = tmp_path / "small.onnx"
    onnx.save(model, str(path))
    x = rng.standard_normal((5, 48)).astype(np.float32)
    (got,) = run_onnx([(str(path), "x", x, "y")])
    logits = x @ weight + mask + 0.5
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected = expected / expected.sum(-1, keepdims=True) * 48
    assert got.dtype == np.float32 and (got[:, 3] == 0).all()
    # fp16 carries 11 significant bits: relative error ~1e-3, far above float32's ~1e-7.
    error = np.abs(got - expected).max() / np.abs(expected).max()
    assert 1e-5 < error < 5e-3, error


def _tower_outputs(directory, reference):
    pixels = np.stack(
        [
            np.fromfile(TINY_DIR / image["pixels"], dtype="<f4").reshape(image["shape"])
            for image in reference["images"]
        ]
    )
    # The official tokenizer's rows at 248 tokens, zero-padded (the causal mask ignores padding).
    rows = [text["ids_248"] for text in reference["texts"]]
    ids = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = row
    return run_onnx(
        [
            (str(directory / "vision.onnx"), "pixel_values", pixels, "image_embeds"),
            (str(directory / "text.onnx"), "input_ids", ids, "text_embeds"),
        ]
    )


def _assert_device_checks(directory, config, towers):
    """Each converted tower's check entry is the fp32 embedding of the device check input: the
    converted tower's own embedding of that input is within its min_cosine."""
    inputs = device_check_inputs(
        config["image_resolution"],
        config["context_length"],
        config["start_token_id"],
        config["end_token_id"],
    )
    for tower in towers:
        check = config[tower]["check"]
        assert check["min_cosine"] == MIN_COSINE
        assert len(check["embedding"]) == config["embed_dim"]
        entry = config[tower]
        (got,) = run_onnx(
            [(str(directory / entry["file"]), entry["input"], inputs[tower], entry["output"])]
        )
        expected = np.array([check["embedding"]], dtype=np.float32)
        assert cosines(got, expected).min() >= MIN_COSINE


@needs_shared
@needs_onnx_runtime
def test_quantize_fp16_converts_both_towers_checked_against_fp32_and_the_reference(
    tiny_export, reference, tmp_path, capsys
):
    out = tmp_path / "tiny-fp16"
    args = ["quantize", "--precision", "fp16", "--model-dir", str(tiny_export)]
    assert main(args + ["--out", str(out)]) == 0
    assert f"fp16 checked against fp32 (min cosine, threshold {MIN_COSINE})" in (
        capsys.readouterr().out
    )
    config = json.loads((out / "config.json").read_text())
    assert config["vision"]["precision"] == "fp16" and config["text"]["precision"] == "fp16"
    for tower in ("vision", "text"):
        model = onnx.load(str(out / f"{tower}.onnx"))
        assert _float_initializers(model) == []
        assert (out / f"{tower}.onnx").stat().st_size < 0.6 * (
            tiny_export / f"{tower}.onnx"
        ).stat().st_size
    fp16 = _tower_outputs(out, reference)
    fp32 = _tower_outputs(tiny_export, reference)
    official = [
        np.array([image["embedding"] for image in reference["images"]]),
        np.array([text["embedding"] for text in reference["texts"]]),
    ]
    for name, half, full, expected in zip(("vision", "text"), fp16, fp32, official):
        to_fp32, to_official = cosines(half, full).min(), cosines(half, expected).min()
        print(f"fp16 {name}: min cosine {to_fp32:.6f} to fp32, {to_official:.6f} to reference")
        assert to_fp32 >= 0.999 and to_official >= 0.999
    _assert_device_checks(out, config, ("vision", "text"))

    assert main(["quantize", "--model-dir", str(out), "--out", str(tmp_path / "again")]) == 1
    assert "already fp16" in capsys.readouterr().err


@needs_shared
@needs_onnx_runtime
def test_export_fp16(tmp_path, capsys):
    out = tmp_path / "tiny-fp16"
    args = ["export", "--checkpoint", str(TINY_DIR / "longclip-tiny.pt"), "--vocab"]
    assert main(args + [str(CLIP_VOCAB), "--out", str(out), "--fp16"]) == 0
    log = capsys.readouterr().out
    assert "verified against PyTorch" in log and "fp16 towers: vision" in log
    config = json.loads((out / "config.json").read_text())
    assert config["vision"]["precision"] == "fp16" and config["text"]["precision"] == "fp16"
    assert not list(out.glob("*.fp16.onnx"))
    for tower in ("vision", "text"):
        assert _float_initializers(onnx.load(str(out / f"{tower}.onnx"))) == []
    # Here the check embeddings come from PyTorch, independently of the ONNX files.
    _assert_device_checks(out, config, ("vision", "text"))


def test_int8_and_fp16_exclude_each_other(capsys):
    args = ["export", "--random-init", "tiny", "--vocab", "v", "--out", "o", "--int8", "--fp16"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
