"""A checkpoint is data: reading one never runs code it names (issue 24, finding 1)."""

import os
import random
import zipfile

import numpy as np
import pytest
import torch

from training.model.checkpoint import load_checkpoint, save_training_checkpoint
from training.model.clip import CLIP, UnsupportedCheckpointError, model_config


class _RunsCode:
    """Pickles as a call of os.system: what a crafted checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp_path, torchscript_names: bool):
    marker = tmp_path / "ran"
    path = tmp_path / "crafted.pt"
    torch.save({"visual.proj": torch.zeros(2, 2), "payload": _RunsCode(marker)}, path)
    if torchscript_names:
        # entry names that make a zip look like a TorchScript archive
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("crafted/code/__torch__/model.py", "")
    return path, marker


@pytest.mark.parametrize("torchscript_names", [False, True])
def test_a_crafted_pickle_is_refused_without_running(tmp_path, torchscript_names):
    path, marker = _crafted(tmp_path, torchscript_names)
    with pytest.raises(UnsupportedCheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_trust_pickle_is_what_runs_a_pickle(tmp_path):
    # the explicit flag really switches to the full unpickler (so the test above can fail)
    path, marker = _crafted(tmp_path, False)
    with pytest.raises(Exception):
        load_checkpoint(path, trust_pickle=True)
    assert marker.exists()


def _trained_tiny():
    torch.manual_seed(0)
    model = CLIP.random_init(model_config("tiny"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    model.encode_text(torch.tensor([[49406, 5, 49407]])).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def test_training_checkpoints_load_with_the_restricted_reader(tmp_path):
    model, optimizer, scheduler = _trained_tiny()
    random.seed(3)
    np.random.seed(3)
    args = {"lr": 1e-3, "out": tmp_path, "steps": None, "rng": {"python": random.getstate()}}
    args["rng"]["numpy"] = np.random.get_state()
    args["rng"]["torch"] = torch.get_rng_state()
    path = tmp_path / "checkpoint-7.pt"
    save_training_checkpoint(path, model, optimizer, scheduler, None, 7, args)

    raw = torch.load(path, weights_only=True)  # the reader every load uses
    assert raw["format"] == "longclip-training"
    _, info = load_checkpoint(path)
    saved = info["training"]
    assert info["step"] == 7 and saved["step"] == 7
    assert _plain(saved["optimizer"]) == _plain(optimizer.state_dict())
    assert _plain(saved["scheduler"]) == _plain(scheduler.state_dict())
    assert saved["args"]["lr"] == 1e-3 and saved["args"]["out"] == str(tmp_path)
    rng = saved["args"]["rng"]
    random.setstate(rng["python"])  # the tuples come back as tuples
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    assert random.random() == _after_seed(3, random.random)
    assert np.random.rand() == _after_seed(3, np.random.rand)
    restored = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    restored.load_state_dict(saved["optimizer"])


def test_older_training_checkpoints_need_trust_pickle(tmp_path):
    model, optimizer, _ = _trained_tiny()
    path = tmp_path / "old.pt"
    # the format before the JSON part: floats in the optimizer state need the full unpickler
    torch.save(
        {
            "format": "longclip-training",
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": 3,
        },
        path,
    )
    with pytest.raises(UnsupportedCheckpointError, match="--trust-pickle"):
        load_checkpoint(path)
    _, info = load_checkpoint(path, trust_pickle=True)
    assert info["step"] == 3


def _after_seed(seed, draw):
    random.seed(seed)
    np.random.seed(seed)
    return draw()


def _plain(value):
    """Tensors compared by value, so two state dicts can be compared with ==."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value
