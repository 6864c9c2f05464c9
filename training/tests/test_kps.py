"""KPS against the official stretch in reference.json, and the stretch command."""

import pytest
import torch

from training.__main__ import main
from training.model.kps import stretch_positional_embedding, stretch_state_dict, uniform_stretch

from .conftest import TINY_DIR, needs_shared


@needs_shared
def test_kps_equals_official_stretch(reference):
    source = torch.tensor(reference["kps"]["source_positional_embedding"])
    expected = torch.tensor(reference["kps"]["stretched_positional_embedding"])
    stretched = stretch_positional_embedding(source)
    assert stretched.shape == (248, source.shape[1]) and stretched.dtype == torch.float32
    difference = (stretched - expected).abs().max().item()
    print(f"KPS: max abs difference {difference:.3g}")
    assert difference == 0.0


def test_kps_shape_kept_rows_and_interpolation():
    source = torch.randn(77, 8)
    out = stretch_positional_embedding(source, compute_dtype=None)
    assert torch.equal(out[:20], source[:20])
    # every 4th row from 20 on is a source row; the rows between interpolate linearly
    assert torch.equal(out[20:244:4], source[20:76])
    assert torch.allclose(out[22], (source[20] + source[21]) / 2)
    assert torch.allclose(out[247], source[76] + 3 * (source[76] - source[75]) / 4)
    assert stretch_positional_embedding(source, keep=10, ratio=2).shape == (144, 8)


def test_uniform_stretch_spans_all_rows():
    source = torch.randn(77, 8)
    out = uniform_stretch(source)
    assert out.shape == (248, 8)
    assert torch.allclose(out[0], source[0]) and torch.allclose(out[-1], source[-1])
    assert not torch.allclose(out[:20], source[:20])


def test_stretch_refuses_a_longclip_state_dict():
    with pytest.raises(ValueError, match="already has positional_embedding_res"):
        stretch_state_dict(
            {
                "positional_embedding": torch.zeros(248, 4),
                "positional_embedding_res": torch.zeros(248, 4),
            }
        )


@needs_shared
def test_stretch_command_reproduces_longclip_tiny(tmp_path):
    out = tmp_path / "long.pt"
    args = ["stretch", "--checkpoint", str(TINY_DIR / "openai-tiny.pt"), "--out", str(out)]
    assert main(args) == 0
    written = torch.load(out)
    official = torch.load(TINY_DIR / "longclip-tiny.pt")
    assert set(written) == set(official)
    # longclip-tiny.pt went on to train positional_embedding_res and logit_scale
    for key in set(official) - {"positional_embedding_res", "logit_scale"}:
        assert written[key].dtype == official[key].dtype, key
        assert torch.equal(written[key], official[key]), key
    assert torch.equal(written["positional_embedding_res"], written["positional_embedding"])


@needs_shared
def test_uniform_stretch_command(tmp_path):
    out = tmp_path / "uniform.pt"
    args = ["stretch", "--checkpoint", str(TINY_DIR / "openai-tiny.pt"), "--out", str(out)]
    assert main(args + ["--method", "uniform"]) == 0
    written = torch.load(out)
    source = torch.load(TINY_DIR / "openai-tiny.pt")["positional_embedding"]
    assert written["positional_embedding"].shape == (248, source.shape[1])
    assert torch.allclose(written["positional_embedding"][-1], source[-1])
