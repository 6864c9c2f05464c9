"""Export of longclip-tiny to the model directory, checked through ONNX Runtime."""

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from training import __version__
from training.__main__ import main
from training.model.checkpoint import load_checkpoint
from training.export.exporter import ExportError, relative_difference, verify
from training.export.onnx_run import OnnxRunError, _run_node_ort, run_onnx

from .conftest import CLIP_VOCAB, TINY_DIR, needs_onnx_runtime, needs_shared

pytestmark = [needs_shared, needs_onnx_runtime]


def test_config_follows_the_model_format(tiny_export):
    config = json.loads((tiny_export / "config.json").read_text())
    digest = hashlib.sha256()
    for name in ("vision.onnx", "text.onnx"):
        digest.update((tiny_export / name).read_bytes())
    source = hashlib.sha256((TINY_DIR / "longclip-tiny.pt").read_bytes()).hexdigest()
    assert config["model_id"] == f"longclip-tiny-{digest.hexdigest()[:12]}"
    assert config["source_sha256"] == source
    assert config["format"] == "longclip-onnx" and config["format_version"] == 1
    assert config["name"] == "longclip-tiny" and config["model_type"] == "longclip"
    assert config["embed_dim"] == 64 and config["image_resolution"] == 224
    assert (config["context_length"], config["vocab_size"]) == (248, 49408)
    assert (config["start_token_id"], config["end_token_id"]) == (49406, 49407)
    assert config["tokenizer"] == {"file": CLIP_VOCAB.name, "type": "clip-bpe", "num_merges": 48894}
    assert config["vision"] == {
        "file": "vision.onnx",
        "input": "pixel_values",
        "output": "image_embeds",
        "precision": "fp32",
    }
    assert config["text"] == {
        "file": "text.onnx",
        "input": "input_ids",
        "output": "text_embeds",
        "precision": "fp32",
    }
    assert config["exporter_version"] == __version__
    assert (tiny_export / CLIP_VOCAB.name).read_bytes() == CLIP_VOCAB.read_bytes()


def test_onnx_graphs_are_float32_with_dynamic_axes(tiny_export):
    expected_inputs = {"vision.onnx": ["batch", 3, 224, 224], "text.onnx": ["batch", "sequence"]}
    for name, dims in expected_inputs.items():
        model = onnx.load(str(tiny_export / name))
        onnx.checker.check_model(model)
        shape = model.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in shape] == dims
        allowed = {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
        assert {t.data_type for t in model.graph.initializer} <= allowed


def test_onnx_text_embeddings_match_reference(tiny_export, reference):
    texts = reference["texts"]
    text_model = str(tiny_export / "text.onnx")
    jobs = [
        (text_model, "input_ids", np.array([t["ids_248"]], dtype=np.int64), "text_embeds")
        for t in texts
    ]
    padded = np.zeros((len(texts), 248), dtype=np.int64)
    for row, text in enumerate(texts):
        padded[row, : len(text["ids_248"])] = text["ids_248"]
    jobs.append((text_model, "input_ids", padded, "text_embeds"))
    outputs = run_onnx(jobs)
    expected = np.array([t["embedding"] for t in texts], dtype=np.float32)
    unpadded = max(relative_difference(out[0], exp) for out, exp in zip(outputs, expected))
    full = max(relative_difference(out, exp) for out, exp in zip(outputs[-1], expected))
    print(f"ONNX text: max relative difference {unpadded:.3g} unpadded, {full:.3g} at L=248")
    assert unpadded < 1e-5 and full < 1e-5


def test_onnx_image_embeddings_match_reference(tiny_export, reference):
    pixels = np.stack(
        [
            np.fromfile(TINY_DIR / image["pixels"], dtype="<f4").reshape(image["shape"])
            for image in reference["images"]
        ]
    )
    vision_model = str(tiny_export / "vision.onnx")
    (output,) = run_onnx([(vision_model, "pixel_values", pixels, "image_embeds")])
    expected = np.array([image["embedding"] for image in reference["images"]], dtype=np.float32)
    worst = max(relative_difference(out, exp) for out, exp in zip(output, expected))
    print(f"ONNX image: max relative difference {worst:.3g}")
    assert worst < 1e-4


def test_verification_catches_a_different_model(tiny_export):
    model, _ = load_checkpoint(TINY_DIR / "longclip-tiny.pt")
    with torch.no_grad():
        model.ln_final.bias.add_(0.5)
    with pytest.raises(ExportError, match=r"text L=\d+ max relative difference"):
        verify(model, tiny_export)


def test_vocabulary_mismatch_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "bad"
    args = ["export", "--random-init", "tiny", "--vocab", str(CLIP_VOCAB), "--out", str(out)]
    assert main(args + ["--num-merges", "1000"]) == 1
    assert "1514 tokens" in capsys.readouterr().err
    assert not out.exists()


def test_random_init_export(tmp_path):
    out = tmp_path / "random-tiny"
    args = ["export", "--random-init", "tiny", "--vocab", str(CLIP_VOCAB), "--out", str(out)]
    assert main(args + ["--no-verify"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_id"].startswith("random-tiny-") and config["embed_dim"] == 64
    ids = np.array([[49406, 320, 1929, 49407]], dtype=np.int64)
    (embedding,) = run_onnx([(str(out / "text.onnx"), "input_ids", ids, "text_embeds")])
    assert embedding.shape == (1, 64) and np.isfinite(embedding).all()


def test_missing_runtime_says_how_to_proceed(tiny_export, monkeypatch):
    monkeypatch.setenv("PATH", "")
    ids = np.array([[49406, 49407]], dtype=np.int64)
    with pytest.raises(OnnxRunError, match="pass --no-verify"):
        _run_node_ort([(str(tiny_export / "text.onnx"), "input_ids", ids, "text_embeds")], 1)
