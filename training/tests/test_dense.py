"""The vision tower's dense output (patch embeddings for heat maps): the model, the export, and
the pointing measurement's arithmetic."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from training.__main__ import main
from training.export.onnx_run import run_onnx
from training.model.clip import CLIP, model_config, value_path
from training.recipe.pointing import inside, patch_centres, score, summarise

from .conftest import CLIP_VOCAB, needs_onnx_runtime, needs_shared
from .test_model_format import check as check_schema


def _model(layers: int = 2, resolution: int = 64, patch: int = 16) -> CLIP:
    config = dataclasses.replace(
        model_config("tiny"),
        image_resolution=resolution,
        vision_patch_size=patch,
        vision_layers=layers,
        text_layers=1,
    )
    torch.manual_seed(0)
    return CLIP.random_init(config).eval()


def test_the_pooled_embedding_is_the_same_with_either_dense_kind():
    model = _model()
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        pooled = model.encode_image(pixels)
        for kind in ("value", "final"):
            with_dense, patches = model.visual.forward_dense(pixels, kind)
            assert torch.equal(with_dense, pooled)
            assert patches.shape == (3, 16, model.config.embed_dim)


def test_final_patches_are_the_last_tokens_through_ln_post_and_the_projection():
    model = _model()
    visual = model.visual
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        tokens = visual.transformer(visual._tokens(pixels).permute(1, 0, 2)).permute(1, 0, 2)
        expected = visual.ln_post(tokens[:, 1:, :]) @ visual.proj
        _, patches = visual.forward_dense(pixels, "final")
    assert torch.allclose(patches, expected, atol=1e-6)


def test_the_value_path_is_attention_where_each_token_sees_only_itself():
    """MaskCLIP's reading: drop query and key, so attention is the identity; what remains of
    the block's attention branch is out_proj(v(ln_1(x)))."""
    block = _model().visual.transformer.resblocks[-1]
    x = torch.randn(17, 2, 128)
    only_self = torch.full((17, 17), float("-inf")).fill_diagonal_(0.0)
    with torch.no_grad():
        y = block.ln_1(x)
        attended = block.attn(y, y, y, need_weights=False, attn_mask=only_self)[0]
        assert torch.allclose(value_path(block, x, residual=False), attended, atol=1e-5)
        assert torch.allclose(value_path(block, x, residual=True), attended + x, atol=1e-5)


def test_patches_are_row_major():
    """With one block, a value-path patch embedding depends on its own pixels only, so
    changing the pixels of the patch at (row, column) changes output row * columns + column."""
    model = _model(layers=1)
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, before = model.visual.forward_dense(pixels, "value")
        row, column = 1, 2
        pixels[:, :, row * 16 : (row + 1) * 16, column * 16 : (column + 1) * 16] += 1.0
        _, after = model.visual.forward_dense(pixels, "value")
    changed = (after - before).abs().amax(dim=-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [row * 4 + column]
    assert model.visual.grid == (4, 4)


def test_unknown_dense_kind_is_refused():
    with pytest.raises(ValueError, match="value or final"):
        _model().visual.forward_dense(torch.zeros(1, 3, 64, 64), "mean")


def test_pointing_counts_the_hottest_patch_inside_the_box():
    centres = patch_centres((4, 4), 64)  # centres at 8, 24, 40, 56
    assert centres[5].tolist() == [24.0, 24.0] and centres[7].tolist() == [56.0, 24.0]
    box = (16, 16, 48, 32)  # holds the centres of row 1, columns 1 and 2
    assert inside(centres, box).nonzero()[0].tolist() == [5, 6]
    heat = np.zeros(16)
    heat[6] = 1.0
    assert score(heat, box, centres) == (True, 2 / 16)
    heat[6], heat[0] = 0.0, 1.0
    assert score(heat, box, centres) == (False, 2 / 16)
    summary = summarise([(True, 0.5, True), (False, 0.1, False), (True, 0.1, False)])
    assert summary["all"] == {"n": 3, "pointing": 2 / 3, "baseline": 0.7 / 3}
    assert summary["salient"]["pointing"] == 1.0 and summary["small"]["pointing"] == 0.5


@needs_shared
@needs_onnx_runtime
def test_export_adds_the_dense_output_and_keeps_the_pooled_one(tmp_path):
    common = ["export", "--random-init", "tiny", "--vocab", str(CLIP_VOCAB)]
    outputs = {}
    for kind in ("none", "value", "final"):
        out = tmp_path / kind
        assert main(common + ["--out", str(out), "--dense", kind, "--seed", "3"]) == 0
        config = json.loads((out / "config.json").read_text())
        check_schema(config)
        if kind == "none":
            assert "dense" not in config["vision"]
        else:
            assert config["vision"]["dense"] == {
                "output": "patch_embeds",
                "kind": kind,
                "grid": [14, 14],
            }
        outputs[kind] = out
    pixels = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    jobs = [
        (str(outputs[k] / "vision.onnx"), "pixel_values", pixels, "image_embeds") for k in outputs
    ]
    jobs += [
        (str(outputs[k] / "vision.onnx"), "pixel_values", pixels, "patch_embeds")
        for k in ("value", "final")
    ]
    plain, value, final, value_patches, final_patches = run_onnx(jobs)
    assert np.abs(value - plain).max() <= 1e-6 * np.abs(plain).max()
    assert np.abs(final - plain).max() <= 1e-6 * np.abs(plain).max()
    assert value_patches.shape == final_patches.shape == (2, 196, 64)
    assert not np.allclose(value_patches, final_patches)
