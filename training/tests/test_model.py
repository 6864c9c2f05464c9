"""Model and checkpoint loading against the official outputs in ../shared/reference."""

import numpy as np
import pytest
import torch

from training.model.checkpoint import load_checkpoint, save_official, save_training_checkpoint
from training.model.clip import (
    CLIP,
    UnsupportedCheckpointError,
    build_model,
    freeze_kept_positions,
    model_config,
)

from .conftest import TINY_DIR, needs_shared

TEXT_TOLERANCE = 1e-5
IMAGE_TOLERANCE = 1e-4


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max()).item()


@pytest.fixture(scope="module")
def longclip_tiny():
    torch.set_num_threads(2)
    return load_checkpoint(TINY_DIR / "longclip-tiny.pt")


def load_pixels(image: dict) -> torch.Tensor:
    data = np.fromfile(TINY_DIR / image["pixels"], dtype="<f4").reshape(image["shape"])
    return torch.from_numpy(data.copy())


@needs_shared
def test_official_longclip_checkpoint_loads_strictly(longclip_tiny):
    model, info = longclip_tiny
    raw = torch.load(TINY_DIR / "longclip-tiny.pt", map_location="cpu")
    assert info["format"] == "longclip" and info["model_type"] == "longclip"
    assert set(model.state_dict()) == set(raw)
    assert raw["visual.conv1.weight"].dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert torch.equal(model.visual.conv1.weight, raw["visual.conv1.weight"].float())
    cfg = model.config
    assert (cfg.context_length, cfg.embed_dim) == (248, 64)
    assert (cfg.vision_width, cfg.text_layers) == (128, 2)
    assert (cfg.image_resolution, cfg.vision_patch_size, cfg.text_heads) == (224, 16, 2)


@needs_shared
def test_openai_checkpoint_loads_with_77_positions():
    model, info = load_checkpoint(TINY_DIR / "openai-tiny.pt")
    raw = torch.load(TINY_DIR / "openai-tiny.pt", map_location="cpu")
    assert info["format"] == "openai" and model.config.model_type == "clip"
    assert model.config.context_length == 77
    metadata = {"input_resolution", "context_length", "vocab_size"}
    assert set(model.state_dict()) == set(raw) - metadata
    assert not hasattr(model, "positional_embedding_res")


@needs_shared
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_openai_torchscript_archive_loads(tmp_path):
    model, _ = load_checkpoint(TINY_DIR / "openai-tiny.pt")
    ids = torch.zeros(1, 77, dtype=torch.long)
    ids[0, :3] = torch.tensor([49406, 320, 49407])
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.trace_module(model, {"encode_text": ids}).save(str(archive))
    loaded, info = load_checkpoint(archive)
    assert info["format"] == "openai-torchscript"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@needs_shared
def test_text_embeddings_match_reference(longclip_tiny, reference):
    model, _ = longclip_tiny
    worst = 0.0
    with torch.no_grad():
        for text in reference["texts"]:
            expected = torch.tensor(text["embedding"])
            ids = torch.tensor([text["ids_248"]])
            padded = torch.zeros(1, 248, dtype=torch.long)
            padded[0, : ids.shape[1]] = ids
            for row in (ids, padded):
                worst = max(worst, relative(model.encode_text(row)[0], expected))
    print(f"text embeddings: max relative difference {worst:.3g}")
    assert worst < TEXT_TOLERANCE


@needs_shared
def test_image_embeddings_match_reference(longclip_tiny, reference):
    model, _ = longclip_tiny
    pixels = torch.stack([load_pixels(image) for image in reference["images"]])
    expected = torch.tensor([image["embedding"] for image in reference["images"]])
    with torch.no_grad():
        actual = model.encode_image(pixels)
    worst = max(relative(a, e) for a, e in zip(actual, expected))
    print(f"image embeddings: max relative difference {worst:.3g}")
    assert worst < IMAGE_TOLERANCE


@needs_shared
def test_forward_normalises(longclip_tiny, reference):
    model, _ = longclip_tiny
    pixels = load_pixels(reference["images"][0]).unsqueeze(0)
    ids = torch.tensor([reference["texts"][0]["ids_248"]])
    with torch.no_grad():
        image, text, scale = model(pixels, ids)
    assert torch.allclose(image.norm(dim=-1), torch.ones(1))
    assert torch.allclose(text.norm(dim=-1), torch.ones(1))
    assert scale.item() == pytest.approx(model.logit_scale.exp().item())


def test_resnet_checkpoint_is_rejected_clearly():
    state_dict = {
        "visual.layer1.0.conv1.weight": torch.zeros(64, 64, 1, 1),
        "visual.attnpool.positional_embedding": torch.zeros(50, 2048),
        "text_projection": torch.zeros(512, 1024),
    }
    with pytest.raises(UnsupportedCheckpointError, match="ResNet image towers are not supported"):
        build_model(state_dict)


def test_text_result_does_not_depend_on_padding():
    model = CLIP.random_init(model_config("tiny")).eval()
    row = torch.tensor([[49406, 1000, 2000, 3000, 49407]])
    padded = torch.cat([row, torch.zeros(1, 243, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert relative(model.encode_text(padded), model.encode_text(row)) < 1e-6
        # the positions past the kept rows come from positional_embedding_res only
        before = model.encode_text(padded)
        model.positional_embedding.data[30:] += 1.0
        assert torch.equal(model.encode_text(padded), before)


def test_presets_and_fp16_state_dicts_roundtrip(tmp_path):
    base, large = model_config("ViT-B/16"), model_config("ViT-L/14")
    assert (base.embed_dim, base.vision_width, base.vision_layers) == (512, 768, 12)
    assert (base.text_width, base.context_length) == (512, 248)
    assert (large.embed_dim, large.vision_patch_size, large.vision_layers) == (768, 14, 24)
    assert (large.text_heads, large.vision_heads) == (12, 16)
    model = CLIP.random_init(model_config("tiny")).eval()
    save_official(model, tmp_path / "official.pt")
    raw = torch.load(tmp_path / "official.pt")
    assert raw["transformer.resblocks.0.attn.in_proj_weight"].dtype == torch.float16
    assert raw["text_projection"].dtype == torch.float16
    assert raw["positional_embedding_res"].dtype == torch.float32
    loaded, info = load_checkpoint(tmp_path / "official.pt")
    assert info["format"] == "longclip"
    weight = model.visual.transformer.resblocks[0].mlp.c_fc.weight
    loaded_weight = loaded.visual.transformer.resblocks[0].mlp.c_fc.weight
    assert torch.equal(loaded_weight, weight.half().float())


def test_training_checkpoint_roundtrip(tmp_path):
    model = CLIP.random_init(model_config("tiny"))
    freeze_kept_positions(model)
    assert not model.positional_embedding.requires_grad
    assert model.positional_embedding_res.requires_grad
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ids = torch.tensor([[49406, 5, 49407]])
    model.encode_text(ids).sum().backward()
    optimizer.step()
    path = tmp_path / "step7.pt"
    save_training_checkpoint(path, model, optimizer, scheduler, None, 7, {"lr": 1e-3})
    loaded, info = load_checkpoint(path)
    assert info["format"] == "longclip-training" and info["step"] == 7
    assert info["training"]["args"] == {"lr": 1e-3}
    assert info["training"]["optimizer"]["state"]
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unreadable_and_incomplete_checkpoints_are_rejected(tmp_path):
    (tmp_path / "notes.pt").write_text('{"not": "a checkpoint"}')
    with pytest.raises(UnsupportedCheckpointError, match="cannot read"):
        load_checkpoint(tmp_path / "notes.pt")
    torch.save({"visual.proj": torch.zeros(4, 4)}, tmp_path / "partial.pt")
    with pytest.raises(UnsupportedCheckpointError, match="missing visual.conv1.weight"):
        load_checkpoint(tmp_path / "partial.pt")
