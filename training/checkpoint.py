"""Loading and saving checkpoints: official Long-CLIP, OpenAI CLIP, and our training format."""

import hashlib
import os
import pickle
import zipfile
from pathlib import Path
from typing import Optional, Tuple

import torch
from torch import nn

from .model import CLIP, UnsupportedCheckpointError, build_model

TRAINING_FORMAT = "longclip-training"
# entries that are metadata or derived, not parameters: OpenAI's TorchScript archives carry the
# first three; a traced model also carries its causal mask
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
# parameters the official convert_weights stores in fp16 (conv/linear weights and biases,
# attention in-projections, the two projections); everything else stays fp32
_FP16_SUFFIXES = (
    "attn.in_proj_weight",
    "attn.in_proj_bias",
    "attn.out_proj.weight",
    "attn.out_proj.bias",
    "mlp.c_fc.weight",
    "mlp.c_fc.bias",
    "mlp.c_proj.weight",
    "mlp.c_proj.bias",
)
_FP16_KEYS = ("visual.conv1.weight", "visual.proj", "text_projection")


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _read(path: Path):
    try:
        if _is_torchscript(path):
            archive = torch.jit.load(str(path), map_location="cpu")
            return archive.state_dict(), "openai-torchscript"
        return torch.load(str(path), map_location="cpu"), None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise UnsupportedCheckpointError(
            f"cannot read {path} as a PyTorch checkpoint ({error}); expected an official "
            "Long-CLIP or OpenAI CLIP .pt file or a training checkpoint"
        ) from error


def load_checkpoint(path, keep_positions: Optional[int] = None) -> Tuple[CLIP, dict]:
    """Loads any supported checkpoint into a float32 CPU model in eval mode.

    ``info`` has ``format`` ("longclip", "openai", "openai-torchscript" or "longclip-training"),
    ``model_type``, ``sha256``, ``path``, and for training checkpoints ``step`` and ``training``
    (the whole saved dict, for resuming: optimizer, scheduler, scaler, args).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    raw, kind = _read(path)
    info = {"path": str(path), "sha256": sha256_file(path)}
    if isinstance(raw, dict) and raw.get("format") == TRAINING_FORMAT:
        state_dict = raw["state_dict"]
        info.update(format=TRAINING_FORMAT, step=raw.get("step", 0), training=raw)
        if keep_positions is None:
            keep_positions = raw.get("keep_positions")
    elif isinstance(raw, dict) and "state_dict" in raw and "visual.proj" not in raw:
        raise UnsupportedCheckpointError(
            f"{path} holds a 'state_dict' but is not a {TRAINING_FORMAT} checkpoint; pass an "
            "official Long-CLIP/OpenAI CLIP file or one written by 'python3 -m training train'"
        )
    elif isinstance(raw, dict):
        state_dict = raw
        if kind is None:
            kind = "longclip" if "positional_embedding_res" in raw else "openai"
        info["format"] = kind
    else:
        raise UnsupportedCheckpointError(
            f"{path} is not a state dict (got {type(raw).__name__}); expected an official "
            "Long-CLIP or OpenAI CLIP checkpoint"
        )
    state_dict = {k: v for k, v in state_dict.items() if k not in OPENAI_EXTRA_KEYS}
    model = build_model(state_dict, keep_positions=keep_positions or 20)
    info["model_type"] = model.config.model_type
    return model, info


def _unwrap(model: nn.Module) -> CLIP:
    return model.module if hasattr(model, "module") else model


def official_state_dict(model: nn.Module) -> dict:
    """The state dict with the official dtypes (fp16 where convert_weights puts fp16)."""
    out = {}
    for key, value in _unwrap(model).state_dict().items():
        value = value.detach().cpu()
        half = key in _FP16_KEYS or key.endswith(_FP16_SUFFIXES)
        out[key] = value.half() if half else value.float()
    return out


def _atomic_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, str(tmp))
    os.replace(tmp, path)


def save_official(model: nn.Module, path) -> None:
    """Writes an official-format checkpoint (a plain state dict like longclip-B.pt; a "clip"
    model gives an OpenAI-style 77-position one) loadable by the official code."""
    _atomic_save(official_state_dict(model), path)


def save_training_checkpoint(path, model, optimizer, scheduler, scaler, step, args, vocab=None):
    """Saves everything needed to resume; ``load_checkpoint`` reads the model back.

    ``args`` may be an argparse Namespace or a dict; ``vocab`` the tokenizer file used.
    """
    clip = _unwrap(model)
    state = {
        "format": TRAINING_FORMAT,
        "model_type": clip.config.model_type,
        "config": clip.config.to_dict(),
        "keep_positions": clip.config.keep_positions,
        "state_dict": {k: v.detach().cpu() for k, v in clip.state_dict().items()},
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "args": dict(vars(args)) if hasattr(args, "__dict__") else dict(args or {}),
        "vocab": str(vocab) if vocab is not None else None,
    }
    _atomic_save(state, path)
